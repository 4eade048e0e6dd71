"""Publish: make the star-schema build this run wrote and audited what readers see.

Runs only after `star_schema` succeeded, and that step fails when a blocking (ERROR) check
fails, so an unaudited or failing build never reaches analysts. `publish` also refuses a build
whose recorded audit failed, whoever asks.
"""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from financial_assets.lakehouse.publication import latest_publication, publish
from financial_assets.resources.catalog import ReaderCatalogResource
from financial_assets.resources.lakehouse import LakehouseResource
from financial_assets.transform.star_schema import TABLES


@asset(
    group_name="analytics",
    deps=list(TABLES),
    kinds={"iceberg"},
)
def published_star_schema(
    context: AssetExecutionContext,
    lakehouse: LakehouseResource,
    reader_catalog: ReaderCatalogResource,
) -> MaterializeResult:
    """The star schema analysts read: one row in the `star_schema_publications` Iceberg table
    naming the star tables' audited snapshots (one commit, so readers switch them all together),
    then each table's `main` moved to its snapshot and tagged `published_<version>`. Athena and
    Spark read `main`; `financial-assets query` and the DuckDB file follow the publication rows.
    Earlier publications stay readable for rollback and time travel (`financial-assets versions`,
    `rollback VERSION`, `query --as-of`) until maintenance expires them."""
    catalog = lakehouse.catalog()
    built = context.instance.get_latest_materialization_event(AssetKey("fact_transactions"))
    version = built.asset_materialization.metadata["version"].value
    reader_catalog.check(catalog)  # a DuckDB file of another lakehouse fails the step before the commit
    before = latest_publication(catalog)
    publication = publish(catalog, version, context.run.run_id)
    context.log.info(f"published star schema version {version} (was {before.version if before else 'none'})")
    updated = reader_catalog.refresh(catalog, publication)
    context.log.info(f"readers now on {version}: {', '.join(updated) or 'none configured'}")
    return MaterializeResult(
        metadata={
            "version": version,
            "previous_version": before.version if before else None,
            "snapshots": MetadataValue.json({table: str(sid) for table, sid in publication.snapshots.items()}),
            "published_at": publication.published_at.isoformat(),
        }
    )
