"""Publish: point readers at the star-schema version this run built and audited.

Runs only after `star_schema` succeeded, and that step fails when a blocking (ERROR) check
fails, so an unaudited or failing version never reaches analysts. The pointer also refuses a
version whose recorded audit failed, whoever asks.
"""

from dagster import AssetExecutionContext, AssetKey, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from financial_assets.lakehouse.publication import DEFAULT_KEEP, publish, published
from financial_assets.resources.catalog import ReaderCatalogResource
from financial_assets.resources.lakehouse import LakehouseResource
from financial_assets.transform.star_schema import TABLES


class PublicationConfig(Config):
    keep: int = Field(default=DEFAULT_KEEP, ge=1, description="Published versions kept for rollback.")


@asset(
    group_name="analytics",
    deps=list(TABLES),
    kinds={"parquet"},
)
def published_star_schema(
    context: AssetExecutionContext,
    config: PublicationConfig,
    lakehouse: LakehouseResource,
    reader_catalog: ReaderCatalogResource,
) -> MaterializeResult:
    """The star schema analysts read: a pointer (`analytics/_published.json`) to the newest
    version that passed every blocking check, replaced in one write, then followed by the
    readers' catalogs (the DuckDB file locally, the Glue Data Catalog for Athena on AWS).
    Earlier versions are kept for rollback (`financial-assets versions`, `rollback VERSION`)."""
    storage = lakehouse.storage()
    built = context.instance.get_latest_materialization_event(AssetKey("fact_transactions"))
    version = built.asset_materialization.metadata["version"].value
    before = published(storage)
    publication = publish(storage, version, context.run.run_id, keep=config.keep)
    context.log.info(f"published star schema version {version} (was {before.version if before else 'none'})")
    updated = reader_catalog.publish(publication)
    context.log.info(f"readers' catalogs now on {version}: {', '.join(updated) or 'none configured'}")
    return MaterializeResult(
        metadata={
            "version": version,
            "previous_version": before.version if before else None,
            "kept_versions": MetadataValue.json(publication.history),
            "tables": MetadataValue.json(publication.tables),
        }
    )
