"""Compaction of ``fact_transactions``: its small files rewritten on Spark, then published.

Incremental builds add a few files per run; Iceberg's ``rewrite_data_files`` procedure bin-packs
them into fewer (same rows, a ``replace`` snapshot on ``main``). Readers follow the publication
rows, not ``main``, so the compacted snapshot is published as a row of kind ``compaction``: the
same version, the same snapshots of the other tables, the new ``fact_transactions`` one;
the version's ``published_<version>`` tag moves onto it, so a rollback to the version stays
possible while the small files expire with the retention window.

No Dagster import; the caller passes the Spark session (no PySpark import at module level).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from financial_assets.lakehouse.catalog import LakehouseCatalog
from financial_assets.lakehouse import publication as wap
from financial_assets.lakehouse.tables import publication_tag

FACT_TABLE = "fact_transactions"

Log = Callable[[str], None]


@dataclass(frozen=True)
class Compaction:
    """The published ``fact_transactions`` snapshot's data files before and after; the publication
    recorded (None when nothing was rewritten or the compaction was skipped, ``skipped`` says why)."""

    files_before: int = 0
    files_after: int = 0
    publication: wap.Publication | None = None
    skipped: str | None = None


def data_file_count(catalog: LakehouseCatalog, name: str, snapshot_id: int) -> int:
    table = catalog.load().load_table(catalog.analytics_table(name))
    return sum(1 for _ in table.scan(snapshot_id=snapshot_id).plan_files())


def compact_fact_transactions(
    spark, catalog: LakehouseCatalog, min_input_files: int = 2, run_id: str | None = None,
    log: Log = lambda _message: None,
) -> Compaction:
    """Rewrite the published ``fact_transactions``' small files and publish the result.

    Runs only when ``main`` is the published snapshot (after a crash between a publication row
    and its ``main`` move, the next publish or rollback repairs ``main`` first). The new snapshot
    is published only if it was made from the published one and nothing was published meanwhile.
    """
    from financial_assets.transform.session import configure_session

    current = wap.latest_publication(catalog)
    if current is None:
        return Compaction(skipped="nothing published yet")
    identifier = catalog.analytics_table(FACT_TABLE)
    table = catalog.load().load_table(identifier)
    published = current.snapshots[FACT_TABLE]
    if table.metadata.current_snapshot_id != published:
        return Compaction(skipped=(
            f"main of {identifier} ({table.metadata.current_snapshot_id}) is not the published snapshot "
            f"({published}) of version {current.version}: publish or roll back first"
        ))
    before = data_file_count(catalog, FACT_TABLE, published)
    log(f"compacting {identifier} of version {current.version}: {before} data files (min-input-files {min_input_files})")

    configure_session(spark, catalog)
    result = spark.sql(
        f"CALL {catalog.name}.system.rewrite_data_files("
        f"table => '{identifier}', options => map('min-input-files', '{int(min_input_files)}'))"
    ).first()
    log(f"rewrite_data_files: {result.asDict() if result else 'no result'}")

    table = table.refresh()
    compacted = table.metadata.current_snapshot_id
    if compacted == published:
        log(f"{identifier}: nothing to compact")
        return Compaction(before, before)
    parent = table.snapshot_by_id(compacted).parent_snapshot_id
    if parent != published or wap.latest_publication(catalog) != current:
        return Compaction(before, data_file_count(catalog, FACT_TABLE, compacted), skipped=(
            f"{identifier} changed during compaction (main {compacted}, parent {parent}; published {published}): "
            "the compacted snapshot is not published"
        ))

    publication = wap.Publication(
        current.version, datetime.now(timezone.utc), wap.COMPACTION, run_id, {**current.snapshots, FACT_TABLE: compacted}
    )
    wap.record_publication(catalog, publication)  # the commit point, as for a publish
    with table.manage_snapshots() as manage:  # the rollback window's tag follows the version's latest publication
        manage.create_tag(snapshot_id=compacted, tag_name=publication_tag(current.version))
    after = data_file_count(catalog, FACT_TABLE, compacted)
    log(f"{identifier}: {before} -> {after} data files, published as snapshot {compacted} of version {current.version}")
    return Compaction(before, after, publication)
