from __future__ import annotations

import os
import secrets
from pathlib import Path

from dagster import ConfigurableResource, get_dagster_logger
from pydantic import Field

from financial_assets.transform.pii_policy import PiiPolicy


class PiiPolicyResource(ConfigurableResource):
    """How personal data reaches the analytics zone: emails pseudonymised with a keyed HMAC,
    phones masked, addresses reduced to city and region, unless `clear_text` is chosen.

    The key comes from FIN_PII_HMAC_KEY (a secrets manager in production). A local deployment
    without it uses a random key kept in `local_key_file`, created on first use, so tokens stay
    stable across local runs without a key ever living in the repository.
    """

    hmac_key: str | None = Field(default=None, description="Secret key for email tokens.")
    local_key_file: str | None = Field(
        default=None, description="Where a local deployment keeps its generated key."
    )
    clear_text: bool = Field(
        default=False, description="Opt in to clear emails, phones and addresses in analytics."
    )

    def policy(self) -> PiiPolicy:
        if self.clear_text:
            return PiiPolicy(clear_text=True)
        if self.hmac_key:
            return PiiPolicy(hmac_key=self.hmac_key.encode())
        if self.local_key_file:
            return PiiPolicy(hmac_key=self._local_key(Path(self.local_key_file)))
        return PiiPolicy()  # raises: no key and no opt-in

    @staticmethod
    def _local_key(path: Path) -> bytes:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as key_file:
                key_file.write(secrets.token_hex(32))
            get_dagster_logger().warning(
                f"generated a local PII key in {path}; set FIN_PII_HMAC_KEY in production"
            )
        return path.read_text().strip().encode()
