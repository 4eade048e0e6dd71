"""Which star-schema version readers see: one pointer object, replaced in a single write.

Write-Audit-Publish: a build writes `analytics/versions/<version>/` (write), checks it and
records the outcome in its `_build.json` (audit), and only then may this module point
`analytics/_published.json` at it (publish). Readers (DuckDB views, the AWS Glue Data Catalog)
follow the pointer, so they see the old version or the new one whole, never a mix; a failed
or killed build never moves the pointer. The last few versions are kept for rollback.
No Dagster import.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from financial_assets.lakehouse.storage import LakehouseStorage

POINTER = "analytics/_published.json"
VERSIONS = "analytics/versions"
DEFAULT_KEEP = 5


class PublicationError(RuntimeError):
    """A version cannot be published: it is unknown, incomplete or failed a blocking check."""


@dataclass(frozen=True)
class Publication:
    version: str
    published_at: str
    run_id: str | None
    tables: dict[str, str]
    # Versions published before this one, newest first: the rollback targets.
    history: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()


@dataclass(frozen=True)
class BuiltVersion:
    version: str
    row_counts: dict[str, int]
    failed_blocking_checks: list[str]
    failed_warnings: list[str]

    @property
    def publishable(self) -> bool:
        return not self.failed_blocking_checks


def built_version(storage: LakehouseStorage, version: str) -> BuiltVersion | None:
    data = storage.read_bytes(f"{VERSIONS}/{version}/_build.json")
    if data is None:
        return None
    build = json.loads(data)
    checks = build.get("checks", [])
    return BuiltVersion(
        version=version,
        row_counts=build["row_counts"],
        failed_blocking_checks=[f"{c['asset']}.{c['name']}" for c in checks if not c["passed"] and c["severity"] == "ERROR"],
        failed_warnings=[f"{c['asset']}.{c['name']}" for c in checks if not c["passed"] and c["severity"] != "ERROR"],
    )


def built_versions(storage: LakehouseStorage) -> list[BuiltVersion]:
    """Versions whose build finished (it writes `_build.json` last), oldest first."""
    names = sorted({p.split("/")[2] for p in storage.list_files(VERSIONS) if p.endswith("/_build.json")})
    return [built_version(storage, name) for name in names]


def published(storage: LakehouseStorage) -> Publication | None:
    data = storage.read_bytes(POINTER)
    return Publication(**json.loads(data)) if data is not None else None


def _point_at(storage: LakehouseStorage, version: str, run_id: str | None, history: list[str]) -> Publication:
    build = built_version(storage, version)
    if build is None:
        raise PublicationError(f"version {version} was never completely built in {storage.uri}")
    if not build.publishable:
        raise PublicationError(
            f"version {version} failed blocking checks: {', '.join(build.failed_blocking_checks)}"
        )
    publication = Publication(
        version=version,
        published_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        run_id=run_id,
        tables={table: storage.uri_of(f"{VERSIONS}/{version}/{table}") for table in build.row_counts},
        history=history,
    )
    storage.write_bytes(POINTER, publication.to_json())
    return publication


def publish(storage: LakehouseStorage, version: str, run_id: str | None = None, keep: int = DEFAULT_KEEP) -> Publication:
    """Point readers at ``version``, then delete versions beyond the ``keep`` newest published."""
    current = published(storage)
    history = ([current.version, *current.history] if current else [])[: keep - 1]
    publication = _point_at(storage, version, run_id, [v for v in history if v != version])
    _prune(storage, keep={version, *publication.history}, older_than=version)
    return publication


def rollback(storage: LakehouseStorage, version: str) -> Publication:
    """Point readers back at a kept, previously published ``version``."""
    current = published(storage)
    if current is None:
        raise PublicationError("nothing has been published yet")
    if version not in current.history:
        kept = ", ".join(current.history) or "none"
        raise PublicationError(f"{version} is not a kept earlier publication (kept: {kept})")
    history = [current.version, *[v for v in current.history if v != version]]
    return _point_at(storage, version, current.run_id, history)


def _prune(storage: LakehouseStorage, keep: set[str], older_than: str) -> None:
    """Remove finished builds older than ``older_than`` that are not kept.

    Newer builds (a run that has yet to publish) and unfinished ones (no `_build.json`: maybe
    still running) are left alone. Version names sort by build time.
    """
    for build in built_versions(storage):
        if build.version < older_than and build.version not in keep:
            for path in storage.list_files(f"{VERSIONS}/{build.version}"):
                storage.delete(path)
