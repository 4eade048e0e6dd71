"""The resources each deployment runs with, chosen in one place."""

from __future__ import annotations

import os

from dagster import EnvVar

from financial_assets.resources.document_store import DocumentStoreResource
from financial_assets.resources.lakehouse import LakehouseResource
from financial_assets.resources.pii import PiiPolicyResource
from financial_assets.resources.postgres import PostgresResource
from financial_assets.resources.spark import SparkResource
from financial_assets.settings import Settings


def _from_env(name: str, default: str | None):
    # An EnvVar keeps a secret out of the UI's config view; the default applies only when unset.
    return EnvVar(name) if os.environ.get(name, "").strip() else default


def local_resources(settings: Settings) -> dict:
    """Resources for a laptop or a single server: local or S3 lakehouse, local Spark."""
    # Imported here: the engines module imports these resources itself.
    from financial_assets.analytics.engines import LocalSparkEngine

    return {
        "postgres": PostgresResource(url=_from_env("FIN_POSTGRES_URL", settings.postgres_url)),
        "document_store": DocumentStoreResource(
            url=_from_env("FIN_MONGO_URL", settings.mongo_url),
            database=settings.mongo_database,
        ),
        "lakehouse": LakehouseResource(
            uri=settings.lakehouse_uri,
            s3_endpoint_url=settings.s3_endpoint_url,
        ),
        "pii": PiiPolicyResource(
            hmac_key=_from_env("FIN_PII_HMAC_KEY", None),
            local_key_file=settings.local_pii_key_file,
            clear_text=settings.pii_clear_text,
        ),
        "star_schema_engine": LocalSparkEngine(
            spark=SparkResource(master=settings.spark_master, remote=settings.spark_remote)
        ),
    }


__all__ = [
    "DocumentStoreResource",
    "LakehouseResource",
    "PiiPolicyResource",
    "PostgresResource",
    "SparkResource",
    "local_resources",
]
