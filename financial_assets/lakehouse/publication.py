"""Write-Audit-Publish on Iceberg: which build of the star schema readers see.

- **Write.** A build writes the star-schema tables (:data:`STAR_TABLES`) on an audit branch of each table,
  ``audit_<version>``; ``main`` does not move, so no reader sees it.
- **Audit.** The same build checks exactly what the branches hold and appends one row to the
  ``star_schema_builds`` table: the branches' snapshot ids, row counts, every check's outcome,
  and the record an incremental build on top of it starts from.
- **Publish.** :func:`publish` appends one row to ``star_schema_publications`` naming the
  snapshot ids (one Iceberg commit: the publication is atomic), tags each snapshot
  ``published_<version>`` (so snapshot expiry keeps it while it is in the rollback window),
  moves each table's ``main`` to it and drops the audit branch. Readers that follow the
  publications table (DuckDB locally, `financial-assets query`) switch all the tables together;
  engines that read ``main`` (Athena, Spark) see each table switch within a second of the others.
- **Rollback** re-publishes an earlier publication's snapshots, as a new publication row.

A killed build leaves its audit branch behind and ``main`` untouched; maintenance removes stale
branches. No Dagster and no Spark import: the publish step needs no JVM.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from typing import TYPE_CHECKING

from financial_assets.lakehouse.catalog import TABLE_PROPERTIES, LakehouseCatalog
from financial_assets.lakehouse.tables import BUILDS, PUBLICATIONS, publication_tag
from financial_assets.lazy_names import built_on_first_use

if TYPE_CHECKING:
    import pyarrow as pa

DEFAULT_KEEP = 5
PUBLISH, ROLLBACK, COMPACTION = "publish", "rollback", "compaction"


class PublicationError(RuntimeError):
    """A build cannot be published: it is unknown, incomplete or failed a blocking check."""


@cache
def _schemas() -> dict[str, pa.Schema]:
    """The Arrow schemas of the two tables, built on first use (see `financial_assets.lazy_names`):
    ``BUILDS_SCHEMA``, what a build appends to `star_schema_builds` (`record_build`), and
    ``PUBLICATIONS_SCHEMA``, what a publication appends to `star_schema_publications`."""
    import pyarrow as pa

    return {
        "BUILDS_SCHEMA": pa.schema([
            pa.field("version", pa.string(), nullable=False),
            pa.field("built_at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("mode", pa.string()),
            pa.field("mode_reason", pa.string()),
            pa.field("branch", pa.string()),
            pa.field("snapshots", pa.map_(pa.string(), pa.int64())),
            pa.field("row_counts", pa.map_(pa.string(), pa.int64())),
            pa.field("checks", pa.string()),  # JSON: [{"asset", "name", "passed", "severity"}]
            pa.field("record", pa.string()),  # JSON: what an incremental build on top of this one needs
        ]),
        "PUBLICATIONS_SCHEMA": pa.schema([
            pa.field("version", pa.string(), nullable=False),
            pa.field("published_at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("run_id", pa.string()),
            pa.field("snapshots", pa.map_(pa.string(), pa.int64())),
        ]),
    }


__getattr__ = built_on_first_use(__name__, _schemas)


@dataclass(frozen=True)
class Build:
    version: str
    built_at: datetime
    mode: str
    mode_reason: str
    branch: str
    snapshots: dict[str, int]
    row_counts: dict[str, int]
    checks: list[dict]
    record: dict = field(default_factory=dict)

    @property
    def failed_blocking_checks(self) -> list[str]:
        return [f"{c['asset']}.{c['name']}" for c in self.checks if not c["passed"] and c["severity"] == "ERROR"]

    @property
    def failed_warnings(self) -> list[str]:
        return [f"{c['asset']}.{c['name']}" for c in self.checks if not c["passed"] and c["severity"] != "ERROR"]

    @property
    def publishable(self) -> bool:
        return not self.failed_blocking_checks


@dataclass(frozen=True)
class Publication:
    version: str  # the build whose tables readers see
    published_at: datetime
    kind: str  # publish, rollback or compaction (the same tables, fewer files)
    run_id: str | None
    snapshots: dict[str, int]  # table -> snapshot id


def _rows(catalog: LakehouseCatalog, name: str) -> list[dict]:
    iceberg = catalog.load()
    identifier = catalog.analytics_table(name)
    if not iceberg.table_exists(identifier):
        return []
    return iceberg.load_table(identifier).scan().to_arrow().to_pylist()


def _map(value) -> dict:
    return dict(value) if value else {}


def builds(catalog: LakehouseCatalog) -> list[Build]:
    """Every audited build, oldest first."""
    return sorted(
        (
            Build(
                version=row["version"], built_at=row["built_at"], mode=row["mode"], mode_reason=row["mode_reason"],
                branch=row["branch"], snapshots=_map(row["snapshots"]), row_counts=_map(row["row_counts"]),
                checks=json.loads(row["checks"] or "[]"), record=json.loads(row["record"] or "{}"),
            )
            for row in _rows(catalog, BUILDS)
        ),
        key=lambda build: build.built_at,
    )


def find_build(catalog: LakehouseCatalog, version: str) -> Build | None:
    return next((b for b in builds(catalog) if b.version == version), None)


def publications(catalog: LakehouseCatalog) -> list[Publication]:
    """Every publication and rollback, oldest first."""
    return sorted(
        (
            Publication(row["version"], row["published_at"], row["kind"], row["run_id"], _map(row["snapshots"]))
            for row in _rows(catalog, PUBLICATIONS)
        ),
        key=lambda publication: publication.published_at,
    )


def latest_publication(catalog: LakehouseCatalog) -> Publication | None:
    """What readers see now."""
    history = publications(catalog)
    return history[-1] if history else None


def publication_as_of(catalog: LakehouseCatalog, when: datetime) -> Publication | None:
    """What readers saw at ``when``: the newest publication at or before it."""
    earlier = [p for p in publications(catalog) if p.published_at <= when]
    return earlier[-1] if earlier else None


def kept_versions(catalog: LakehouseCatalog, keep: int = DEFAULT_KEEP) -> list[str]:
    """The ``keep`` most recently published versions, newest first: the rollback window."""
    seen: list[str] = []
    for publication in reversed(publications(catalog)):
        if publication.version not in seen:
            seen.append(publication.version)
    return seen[:keep]


def record_build(catalog: LakehouseCatalog, row: dict) -> None:
    """Append one build's row (the columns of :data:`BUILDS_SCHEMA`) to the builds table."""
    _append(catalog, BUILDS, _schemas()["BUILDS_SCHEMA"], row)


def _append(catalog: LakehouseCatalog, name: str, schema: pa.Schema, row: dict) -> None:
    import pyarrow as pa

    table = catalog.load().create_table_if_not_exists(
        catalog.analytics_table(name), schema=schema, properties=TABLE_PROPERTIES)
    table.append(pa.Table.from_pylist([row], schema=schema))


def record_publication(catalog: LakehouseCatalog, publication: Publication) -> None:
    """Append ``publication`` to the publications table: the commit point readers follow."""
    _append(catalog, PUBLICATIONS, _schemas()["PUBLICATIONS_SCHEMA"], {
        "version": publication.version,
        "published_at": publication.published_at,
        "kind": publication.kind,
        "run_id": publication.run_id,
        "snapshots": list(publication.snapshots.items()),
    })


def _move_main(catalog: LakehouseCatalog, publication: Publication, drop_branch: str | None = None) -> None:
    iceberg = catalog.load()
    tag = publication_tag(publication.version)
    for table_name, snapshot_id in sorted(publication.snapshots.items()):
        table = iceberg.load_table(catalog.analytics_table(table_name))
        refs = table.refs()
        with table.manage_snapshots() as manage:
            manage.set_current_snapshot(snapshot_id=snapshot_id)
            if tag not in refs:
                manage.create_tag(snapshot_id=snapshot_id, tag_name=tag)
            if drop_branch and drop_branch in refs:
                manage.remove_branch(drop_branch)


def publish(catalog: LakehouseCatalog, version: str, run_id: str | None = None) -> Publication:
    """Make the audited build ``version`` what readers see.

    The publication row is the commit point: a crash after it leaves some ``main`` refs behind,
    which the next publish or rollback moves (`financial-assets rollback` repairs them too).
    """
    build = find_build(catalog, version)
    if build is None:
        raise PublicationError(f"version {version} was never completely built and audited in {catalog!r}")
    if not build.publishable:
        raise PublicationError(f"version {version} failed blocking checks: {', '.join(build.failed_blocking_checks)}")
    publication = Publication(version, datetime.now(timezone.utc), PUBLISH, run_id, dict(build.snapshots))
    record_publication(catalog, publication)
    _move_main(catalog, publication, drop_branch=build.branch)
    return publication


def rollback(catalog: LakehouseCatalog, version: str, run_id: str | None = None, keep: int = DEFAULT_KEEP) -> Publication:
    """Readers back on ``version``, an earlier publication still in the rollback window."""
    current = latest_publication(catalog)
    if current is None:
        raise PublicationError("nothing has been published yet")
    window = kept_versions(catalog, keep)
    if version not in window[1:] and version != current.version:
        kept = ", ".join(window[1:]) or "none"
        raise PublicationError(f"{version} is not a kept earlier publication (kept: {kept})")
    earlier = next(p for p in reversed(publications(catalog)) if p.version == version)
    publication = Publication(version, datetime.now(timezone.utc), ROLLBACK, run_id, dict(earlier.snapshots))
    record_publication(catalog, publication)
    _move_main(catalog, publication)
    return publication
