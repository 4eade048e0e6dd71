"""Personal data policy for the analytics zone, as Spark column expressions (no UDFs).

- email: normalised (trimmed, lower case, inner white space removed) and pseudonymised with
  HMAC-SHA256 under a secret key, so one person is one stable token that cannot be reversed or
  recomputed without the key.
- phone: digits only, all but the last two replaced by `*`.
- address: reduced to city and region (US state); the street line is dropped.
Clear values reach the analytics zone only if the operator opts in (``PiiPolicy.clear_text``,
`financial_assets.transform.pii_policy`).
"""

from __future__ import annotations

import hashlib

from pyspark.sql import Column
from pyspark.sql import functions as F

from financial_assets.transform.pii_policy import PiiPolicy

_BLOCK = 64  # SHA-256's block size in bytes, as HMAC (RFC 2104) needs it


def normalise_email(email: Column) -> Column:
    return F.lower(F.regexp_replace(email, r"\s+", ""))


def hmac_sha256_hex(message: Column, key: bytes) -> Column:
    """HMAC-SHA256(key, message) as lower-case hex, computed by Spark itself."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner_pad = bytes(b ^ 0x36 for b in key)
    outer_pad = bytes(b ^ 0x5C for b in key)
    inner = F.unhex(F.sha2(F.concat(F.lit(inner_pad), F.encode(message, "UTF-8")), 256))
    return F.sha2(F.concat(F.lit(outer_pad), inner), 256)


def email_token(email: Column, policy: PiiPolicy) -> Column:
    normalised = normalise_email(email)
    if policy.clear_text:
        return normalised
    return F.when(normalised.isNull() | (normalised == ""), F.lit(None)).otherwise(
        hmac_sha256_hex(normalised, policy.hmac_key)
    )


def masked_phone(phone: Column, policy: PiiPolicy) -> Column:
    if policy.clear_text:
        return phone
    digits = F.regexp_replace(phone, r"[^0-9]", "")
    # All but the last two digits become '*': left-pad the last two to the full length.
    return F.when(digits == "", F.lit(None)).otherwise(
        F.lpad(F.substring(digits, -2, 2), F.greatest(F.length(digits), F.lit(2)), "*")
    )


def address_city(address: Column) -> Column:
    """The city of a US postal address's last line ("City, ST 12345"); null when absent."""
    last_line = F.element_at(F.split(address, "\n"), -1)
    return F.nullif(F.trim(F.regexp_extract(last_line, r"^([^,]+),\s*[A-Z]{2}\s+\d{5}", 1)), F.lit(""))


def address_region(address: Column) -> Column:
    """The two-letter region of a US postal address's last line (state, or APO/FPO area)."""
    last_line = F.element_at(F.split(address, "\n"), -1)
    return F.nullif(F.regexp_extract(last_line, r"\b([A-Z]{2})\s+\d{5}(-\d{4})?\s*$", 1), F.lit(""))
