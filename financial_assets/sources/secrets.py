"""Source credentials from AWS Secrets Manager, read when a connection is made and never kept.

The secret is a JSON object: {"postgres_url": "postgresql://...", "mongo_url": "mongodb://..."}.
"""

from __future__ import annotations

import json

from financial_assets.sources.errors import SourceUnavailableError

SECRET_KEYS = ("postgres_url", "mongo_url")


def source_url_from_secret(secret_id: str, key: str, region: str | None = None) -> str:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        secret = boto3.client("secretsmanager", region_name=region).get_secret_value(SecretId=secret_id)
    except (BotoCoreError, ClientError) as error:
        raise SourceUnavailableError(f"cannot read the source secret {secret_id}: {type(error).__name__}") from None
    try:
        value = json.loads(secret["SecretString"])[key]
    except (KeyError, ValueError, TypeError):
        raise SourceUnavailableError(
            f"the source secret {secret_id} must be a JSON object with {' and '.join(SECRET_KEYS)}"
        ) from None
    return value
