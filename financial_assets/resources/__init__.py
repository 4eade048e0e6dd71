"""The resources each deployment runs with, built in one place from the validated settings."""

from __future__ import annotations

from dagster import EnvVar

from financial_assets.alerts import AlertsResource
from financial_assets.lakehouse.catalog import LakehouseCatalog
from financial_assets.resources.catalog import ReaderCatalogResource
from financial_assets.resources.document_store import DocumentStoreResource
from financial_assets.resources.lakehouse import LakehouseResource
from financial_assets.resources.pii import PiiPolicyResource
from financial_assets.resources.postgres import PostgresResource
from financial_assets.resources.spark import SparkResource
from financial_assets.settings import DEFAULT_SPARK_MASTER, Settings


def _secret(settings: Settings, name: str):
    """A secret setting as resource configuration: when the environment set it, an EnvVar naming
    its variable (the UI's config view shows the name; Dagster reads the value the settings
    validated, from the same environment, when the resource starts); otherwise its default."""
    variable = settings.secret_variable(name)
    return EnvVar(variable) if variable else getattr(settings, name)


def deployment_resources(settings: Settings) -> dict:
    """The resources of FIN_DEPLOYMENT: `local` (a laptop or one server: URLs, local or S3
    lakehouse, Spark or Glue, DuckDB) or `aws` (credentials from Secrets Manager, Glue,
    the Glue Data Catalog and Athena)."""
    aws = settings.deployment == "aws"
    resources = {
        "postgres": PostgresResource(
            url=None if aws else _secret(settings, "postgres_url"),
            secret_id=settings.sources_secret_id if aws else None,
        ),
        "document_store": DocumentStoreResource(
            url=None if aws else _secret(settings, "mongo_url"),
            secret_id=settings.sources_secret_id if aws else None,
            database=settings.mongo_database,
        ),
        "lakehouse": LakehouseResource.for_catalog(settings.catalog()),
        "pii": PiiPolicyResource(
            hmac_key=_secret(settings, "pii_hmac_key"),
            local_key_file=settings.local_pii_key_file,
            clear_text=settings.pii_clear_text,
        ),
        "star_schema_engine": _star_schema_engine(settings),
        "reader_catalog": ReaderCatalogResource(duckdb_path=settings.duckdb_path),
        # Slack only with both its token and its channel (the settings refuse one without the other).
        "alerts": AlertsResource(
            alert_log_path=settings.alert_log_path,
            webhook_url=_secret(settings, "alert_webhook_url"),
            slack=_slack(settings),
            slack_channel=settings.slack_channel,
        ),
    }
    if aws:
        # Imported only here: dagster_aws takes seconds to load, and only the AWS deployment uses Athena.
        from dagster_aws.athena import AthenaClientResource

        resources["athena"] = AthenaClientResource(workgroup=settings.athena_workgroup)
    return resources


def local_pipeline_resources(
    catalog: LakehouseCatalog,
    pii_hmac_key: str,
    *,
    postgres_url: str | None = None,
    mongo_url: str | None = None,
    mongo_database: str | None = None,
    spark_master: str = DEFAULT_SPARK_MASTER,
    star_schema_engine=None,
) -> dict:
    """Resources for running the pipeline in this process against given sources, without
    reading FIN_* settings: what the tests and the benchmarks use. ``catalog`` holds every table. The sources are included
    only when their URLs are given (the analytics assets do not need them)."""
    from financial_assets.resources.star_schema_engine import LocalSparkEngine

    resources = {
        "lakehouse": LakehouseResource.for_catalog(catalog),
        "reader_catalog": ReaderCatalogResource(duckdb_path=f"{catalog.warehouse.removeprefix('file://')}/analytics.duckdb"),
        "pii": PiiPolicyResource(hmac_key=pii_hmac_key),
        "star_schema_engine": star_schema_engine or LocalSparkEngine(spark=SparkResource(master=spark_master)),
    }
    if postgres_url:
        resources["postgres"] = PostgresResource(url=postgres_url)
    if mongo_url:
        resources["document_store"] = DocumentStoreResource(url=mongo_url, database=mongo_database)
    return resources


def _slack(settings: Settings):
    """Slack's client when its token is set. Imported only then: dagster_slack loads slack_sdk,
    a quarter of a second on every load of the code location."""
    if not settings.slack_token:
        return None
    from dagster_slack import SlackResource

    return SlackResource(token=_secret(settings, "slack_token"))


def _star_schema_engine(settings: Settings):
    """Local Spark unless FIN_STAR_SCHEMA_ENGINE=glue: the same transform either way."""
    if settings.star_schema_engine == "glue":
        from financial_assets.resources.glue import GlueEngine

        return GlueEngine(
            job_name=settings.glue_job_name,
            staging_s3_uri=settings.glue_staging_s3_uri,
            pipes_bucket=settings.glue_pipes_bucket,
            pii_key_secret_id=settings.glue_pii_key_secret_id,
            region=settings.aws_region,
            endpoint_url=settings.s3_endpoint_url,
        )
    from financial_assets.resources.star_schema_engine import LocalSparkEngine

    return LocalSparkEngine(spark=SparkResource(master=settings.spark_master, remote=settings.spark_remote))


__all__ = [
    "DocumentStoreResource",
    "LakehouseResource",
    "PiiPolicyResource",
    "PostgresResource",
    "ReaderCatalogResource",
    "SparkResource",
    "deployment_resources",
    "local_pipeline_resources",
]
