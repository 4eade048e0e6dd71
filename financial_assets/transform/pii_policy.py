"""The personal-data policy: the secret key of email tokens, or the operator's opt-in to clear text.

A plain value with no Spark import, so that the Dagster resource that holds it loads no PySpark;
what it does to columns is `financial_assets.transform.pii`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class PiiPolicy:
    hmac_key: bytes | None = None
    clear_text: bool = False

    def __post_init__(self):
        if not self.clear_text and not self.hmac_key:
            raise ValueError(
                "pseudonymising emails needs an HMAC key (FIN_PII_HMAC_KEY), "
                "or an explicit opt-in to clear text"
            )

    def fingerprint(self) -> str:
        """Tells two policies apart without revealing the key: an HMAC of a fixed message."""
        if self.clear_text:
            return "clear-text"
        return hmac.new(self.hmac_key, b"financial_assets pii policy fingerprint", hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:  # never print the key
        return f"PiiPolicy(clear_text={self.clear_text}, hmac_key={'set' if self.hmac_key else 'unset'})"
