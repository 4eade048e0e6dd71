"""Digests of the code that decides what a zone's tables hold, taken once at import.

The star schema's digest serves twice. A build records it (with the PII policy's fingerprint),
and the next build rebuilds everything when it changed, instead of appending to facts the old
code made (`financial_assets/transform/build.py`): correctness, even for a Glue job that never
sees Dagster. And it is the star-schema assets' Dagster code version, so the UI marks them stale
after the very changes that make the next build a full one. The raw zone's digest is its assets'
code version. No Dagster or Spark import: the Glue job imports this module.
"""

from __future__ import annotations

import hashlib
from importlib import resources

# The code whose change can change a fact or an audit.
STAR_SCHEMA_CODE = {
    "financial_assets.transform": (
        "star_schema.py", "history.py", "members.py", "literal_rows.py", "pii.py", "pii_policy.py", "build.py"),
    "financial_assets.quality": ("star_checks.py", "history_checks.py", "specs.py", "defects.py"),
    "financial_assets.lakehouse": ("tables.py",),
}
# The code that decides a raw table's columns and rows, given the source's.
RAW_ZONE_CODE = {
    "financial_assets.extract": ("contracts.py", "documents.py", "loads.py", "postgres.py"),
}


def code_digest(files: dict[str, tuple[str, ...]]) -> str:
    """SHA-256 of the files, read from the installed package (a zip on Glue)."""
    digest = hashlib.sha256()
    for package, names in files.items():
        for name in names:
            digest.update(resources.files(package).joinpath(name).read_bytes())
    return digest.hexdigest()


STAR_SCHEMA_DIGEST = code_digest(STAR_SCHEMA_CODE)
RAW_ZONE_DIGEST = code_digest(RAW_ZONE_CODE)
# Dagster shows code versions in full: 12 hex digits are plenty to tell releases apart.
STAR_SCHEMA_CODE_VERSION = STAR_SCHEMA_DIGEST[:12]
RAW_ZONE_CODE_VERSION = RAW_ZONE_DIGEST[:12]
