"""The Dagster asset ``lakehouse_maintenance``: compaction, refs, snapshot expiry, in that order.

Its job (``maintain_lakehouse``) is in `financial_assets.automation`; it runs daily at 05:00 UTC
when the automation sensor is on (stopped by default).
"""

from datetime import datetime, timedelta, timezone
from typing import Any

from dagster import AssetExecutionContext, AssetKey, Config, MaterializeResult, MetadataValue, ResourceParam, asset
from pydantic import Field

from financial_assets.automation.policies import LAKEHOUSE_WRITERS, daily_maintenance
from financial_assets.lakehouse.publication import DEFAULT_KEEP
from financial_assets.maintenance.compaction import Compaction, compact_fact_transactions
from financial_assets.maintenance.lakehouse import expire_snapshots, tidy_refs
from financial_assets.ownership import MAINTENANCE, OWNERS, asset_tags
from financial_assets.resources.catalog import ReaderCatalogResource
from financial_assets.resources.lakehouse import LakehouseResource
from financial_assets.resources.spark import SparkResource


class MaintenanceConfig(Config):
    retention_days: float = Field(
        default=7.0, ge=0,
        description="Snapshots older than this are expired (and their files deleted) unless a reader "
        "could see them within this window, or a branch or rollback tag holds them.",
    )
    keep: int = Field(default=DEFAULT_KEEP, ge=1, description="Published versions kept for rollback (tagged).")
    compact: bool = Field(default=True, description="Compact fact_transactions' small files first (local Spark engine).")
    min_input_files: int = Field(default=2, ge=1, description="Iceberg's min-input-files for rewrite_data_files.")
    branch_grace_hours: float = Field(
        default=24.0, ge=0, description="Audit branches of builds older than this, other than the newest, are dropped."
    )


PUBLISHED = AssetKey("published_star_schema")


@asset(
    group_name="maintenance",
    deps=[PUBLISHED],
    kinds={"iceberg"},
    owners=OWNERS,
    tags=asset_tags(MAINTENANCE, "lakehouse", pii=False),
    # It compacts, publishes the compacted snapshot and expires files: a writer like any other.
    pool=LAKEHOUSE_WRITERS,
    automation_condition=daily_maintenance(PUBLISHED),
)
def lakehouse_maintenance(
    context: AssetExecutionContext,
    config: MaintenanceConfig,
    lakehouse: LakehouseResource,
    reader_catalog: ReaderCatalogResource,
    star_schema_engine: ResourceParam[Any],
) -> MaterializeResult:
    """Keeps the lakehouse's Iceberg history bounded: compacts fact_transactions' small files
    and publishes the result (local Spark engine only), drops the rollback tags of versions out
    of the window and killed builds' audit branches, then expires snapshots older than the
    retention on every raw and analytics table, deleting the files nothing needs any more.
    Publications current within the retention window stay readable (`query --as-of`)."""
    catalog = lakehouse.catalog()
    now = datetime.now(timezone.utc)
    log = context.log.info
    metadata: dict = {}

    compaction = Compaction(skipped="not asked for (compact: false)")
    if config.compact:
        reader_catalog.check(catalog)  # compaction publishes: refuse a DuckDB file of another lakehouse first
        spark = getattr(star_schema_engine, "spark", None)  # the local engine's SparkResource
        if not isinstance(spark, SparkResource):
            compaction = Compaction(skipped=f"{type(star_schema_engine).__name__} has no Spark session in this process")
        else:
            compaction = compact_fact_transactions(spark.session(), catalog, config.min_input_files, context.run.run_id, log)
    if compaction.skipped:
        (context.log.warning if config.compact else log)(f"compaction skipped: {compaction.skipped}")
    if compaction.publication:
        refreshed = reader_catalog.refresh(catalog, compaction.publication)
        log(f"readers now on the compacted snapshot: {'; '.join(refreshed) or 'none to refresh'}")
    metadata.update({
        "compaction": compaction.skipped or ("compacted" if compaction.publication else "nothing to compact"),
        "files_before_compaction": compaction.files_before,
        "files_after_compaction": compaction.files_after,
    })

    refs = tidy_refs(catalog, config.keep, timedelta(hours=config.branch_grace_hours), now, log)
    log(f"refs: {len(refs.tags_dropped)} tags dropped, {len(refs.tags_set)} set, {len(refs.branches_dropped)} branches dropped")

    expiry = expire_snapshots(catalog, now - timedelta(days=config.retention_days), log)
    metadata.update({
        "snapshots_expired": sum(t.snapshots_expired for t in expiry),
        "files_deleted": sum(t.files_deleted for t in expiry),
        "data_files_deleted": sum(t.data_files_deleted for t in expiry),
        "tags_dropped": MetadataValue.json(refs.tags_dropped),
        "branches_dropped": MetadataValue.json(refs.branches_dropped),
        "tables": MetadataValue.json({
            t.table: {"snapshots_expired": t.snapshots_expired, "files_deleted": t.files_deleted} for t in expiry
        }),
    })
    log(f"expired {metadata['snapshots_expired']} snapshots, deleted {metadata['files_deleted']} files")
    return MaterializeResult(metadata=metadata)


MAINTENANCE_ASSETS = [lakehouse_maintenance]
