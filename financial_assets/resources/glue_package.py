"""What the Glue job runs: the entry-point script and the `financial_assets` package as a zip.

No Dagster import. The zip is what Glue puts on ``sys.path`` through ``--extra-py-files``; it is
built byte-for-byte reproducibly (sorted entries, fixed timestamps), so its SHA-256 names a code
version and an unchanged package is never uploaded twice.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import financial_assets

PACKAGE_DIR = Path(financial_assets.__file__).resolve().parent
# The script lives beside the package in the repository, not inside it.
SCRIPT_PATH = PACKAGE_DIR.parent / "glue_scripts" / "transform-to-star-schema.py"

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
_SKIPPED_DIRS = {"__pycache__"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}


@dataclass(frozen=True)
class Artifact:
    name: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def package_zip(package_dir: Path = PACKAGE_DIR) -> Artifact:
    """The package as a zip whose root holds ``financial_assets/``.

    Directories get their own entries: Python's zip importer finds a package folder without an
    ``__init__.py`` (a namespace package) only through such an entry.
    """
    buffer = io.BytesIO()
    root = package_dir.parent
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(package_dir.rglob("*")):
            relative = path.relative_to(root)
            if _SKIPPED_DIRS.intersection(relative.parts) or path.suffix in _SKIPPED_SUFFIXES:
                continue
            if path.is_dir():
                archive.writestr(_entry(f"{relative.as_posix()}/", 0o40755), b"")
            else:
                archive.writestr(_entry(relative.as_posix(), 0o100644), path.read_bytes())
    data = buffer.getvalue()
    return Artifact(f"{package_dir.name}-{hashlib.sha256(data).hexdigest()[:16]}.zip", data)


def entry_script(path: Path = SCRIPT_PATH) -> Artifact:
    return Artifact(path.name, path.read_bytes())


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"expected s3://bucket/key, got {uri!r}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"expected s3://bucket/key, got {uri!r}")
    return bucket, key


def upload_if_changed(s3_client, uri: str, artifact: Artifact) -> bool:
    """Put the artifact at ``uri`` unless the object there already has its SHA-256.

    Returns whether it uploaded. The digest travels as object metadata, so the check is one HEAD.
    """
    from botocore.exceptions import ClientError

    bucket, key = split_s3_uri(uri)
    try:
        current = s3_client.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("sha256")
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
        current = None
    if current == artifact.sha256:
        return False
    s3_client.put_object(Bucket=bucket, Key=key, Body=artifact.data, Metadata={"sha256": artifact.sha256})
    return True
