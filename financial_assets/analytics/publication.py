"""Publish: make the star-schema build this run wrote and audited what readers see.

Runs only after `star_schema` succeeded, and that step fails when a blocking (ERROR) check
fails, so an unaudited or failing build never reaches analysts. The version to publish is
`star_schema`'s output, handed over through the dependency: exactly what the build produced.
`publish` also refuses a build whose recorded audit failed, whoever asks.
"""

from dagster import AssetExecutionContext, AssetIn, MaterializeResult, MetadataValue, asset

from financial_assets.analytics.assets import VERSION_CARRIER
from financial_assets.automation.policies import LAKEHOUSE_WRITERS, PUBLISHED_FRESHNESS, daily_after_upstream
from financial_assets.lakehouse.publication import latest_publication, publish
from financial_assets.lakehouse.tables import STAR_TABLES
from financial_assets.ownership import ANALYTICS, OWNERS, asset_tags
from financial_assets.resources.catalog import ReaderCatalogResource
from financial_assets.resources.lakehouse import LakehouseResource


@asset(
    group_name="analytics",
    ins={"version": AssetIn(VERSION_CARRIER)},
    deps=[table for table in STAR_TABLES if table != VERSION_CARRIER.to_user_string()],
    kinds={"iceberg"},
    owners=OWNERS,
    tags=asset_tags(ANALYTICS, "transactions", pii=True),  # dim_customers holds names in clear
    pool=LAKEHOUSE_WRITERS,
    automation_condition=daily_after_upstream(),
    freshness_policy=PUBLISHED_FRESHNESS,
)
def published_star_schema(
    context: AssetExecutionContext,
    version: str,
    lakehouse: LakehouseResource,
    reader_catalog: ReaderCatalogResource,
) -> MaterializeResult:
    """The star schema analysts read: one row in the `star_schema_publications` Iceberg table
    naming the star tables' audited snapshots (one commit, so readers switch them all together),
    then each table's `main` moved to its snapshot and tagged `published_<version>`. Athena and
    Spark read `main`; `financial-assets query` and the DuckDB file follow the publication rows.
    Earlier publications stay readable for rollback and time travel (`financial-assets versions`,
    `rollback VERSION`, `query --as-of`) until maintenance expires them. Expected by 06:00 UTC
    each day (its freshness policy)."""
    catalog = lakehouse.catalog()
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
