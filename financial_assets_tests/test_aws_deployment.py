"""FIN_DEPLOYMENT=aws: credentials from Secrets Manager, the Glue Data Catalog following each
publish, and queries sent to Athena, against moto's HTTP server."""

import json
import uuid

import boto3
import pytest

from financial_assets.lakehouse.publication import Publication
from financial_assets.query import cli as query_cli
from financial_assets.query.catalogs import GlueCatalog, contract_columns
from financial_assets.query.duckdb_views import ANALYST_QUERY
from financial_assets.resources import DocumentStoreResource, PostgresResource, deployment_resources
from financial_assets.settings import Settings, SettingsError
from financial_assets.transform.star_schema import TABLES

AWS_ENVIRONMENT = {
    "FIN_DEPLOYMENT": "aws",
    "FIN_SOURCES_SECRET_ID": "financial-assets/sources",
    "FIN_LAKEHOUSE_URI": "s3://bank-lakehouse/lake",
    "FIN_GLUE_JOB_NAME": "transform-to-star-schema",
    "FIN_GLUE_STAGING_S3_URI": "s3://bank-lakehouse/glue/packages",
    "FIN_GLUE_PIPES_BUCKET": "bank-lakehouse",
}


@pytest.fixture
def aws_endpoint(moto_endpoint, monkeypatch):
    """Every boto3 client of the test (and of the code under test) talks to moto."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint


def publication(version: str) -> Publication:
    return Publication(
        version=version,
        published_at="2026-11-29T00:00:00+00:00",
        run_id="run",
        tables={table: f"s3://bank-lakehouse/lake/analytics/versions/{version}/{table}" for table in TABLES},
    )


def test_aws_deployment_refuses_plain_source_urls():
    with pytest.raises(SettingsError, match="^FIN_POSTGRES_URL must not be set when FIN_DEPLOYMENT=aws"):
        Settings.from_env({**AWS_ENVIRONMENT, "FIN_POSTGRES_URL": "postgresql://app:pw@db/financial"})


def test_aws_deployment_chooses_glue_athena_and_the_glue_catalog():
    resources = deployment_resources(Settings.from_env(AWS_ENVIRONMENT))

    assert type(resources["star_schema_engine"]).__name__ == "GlueEngine"
    assert resources["athena"].workgroup == "financial-assets"
    assert (resources["reader_catalog"].glue_database, resources["reader_catalog"].duckdb_path) == ("financial_data_db", None)
    assert resources["postgres"].url is None and resources["postgres"].secret_id == "financial-assets/sources"


def test_local_deployment_chooses_spark_and_a_duckdb_file():
    resources = deployment_resources(Settings.from_env({}))

    assert type(resources["star_schema_engine"]).__name__ == "LocalSparkEngine"
    assert resources["reader_catalog"].duckdb_path.endswith("var/analytics.duckdb")
    assert "athena" not in resources


def test_source_credentials_come_from_secrets_manager(aws_endpoint, seeded_sources):
    databases, _ = seeded_sources
    secret = f"financial-assets/sources-{uuid.uuid4().hex[:8]}"
    boto3.client("secretsmanager").create_secret(
        Name=secret, SecretString=json.dumps({"postgres_url": databases.postgres_url, "mongo_url": databases.mongo_url})
    )

    with PostgresResource(secret_id=secret).connect() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM customers")
        assert cursor.fetchone()[0] > 0
    with DocumentStoreResource(secret_id=secret, database=databases.mongo_database).connect() as database:
        assert database["transaction_events"].find_one() is not None
    assert PostgresResource(secret_id=secret).display_url == f"(secret {secret})"


def test_the_glue_catalog_points_every_table_at_the_published_version(aws_endpoint):
    database = f"financial_data_db_{uuid.uuid4().hex[:6]}"
    glue = boto3.client("glue")
    catalog = GlueCatalog(glue, database)

    catalog.publish(publication("v1"))
    catalog.publish(publication("v2"))

    tables = {t["Name"]: t for t in glue.get_tables(DatabaseName=database)["TableList"]}
    assert set(tables) == set(TABLES)
    fact = tables["fact_transactions"]["StorageDescriptor"]
    assert fact["Location"] == "s3://bank-lakehouse/lake/analytics/versions/v2/fact_transactions/"
    assert [(c["Name"], c["Type"]) for c in fact["Columns"]] == contract_columns("fact_transactions")
    assert ("amount", "decimal(12,2)") in contract_columns("fact_transactions")
    assert fact["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")


def test_the_analyst_query_is_sent_to_athena_in_the_workgroup_on_the_catalog_tables(aws_endpoint, monkeypatch):
    from dagster_aws.athena.resources import AthenaClient

    athena = boto3.client("athena")
    workgroup = f"financial-assets-{uuid.uuid4().hex[:6]}"
    athena.create_work_group(Name=workgroup, Configuration={"ResultConfiguration": {"OutputLocation": "s3://bank-lakehouse/athena-results/"}})
    # Athena's engine cannot run here: the results it would write are the only part stood in for.
    monkeypatch.setattr(AthenaClient, "_results", lambda self, execution_id: [("name", "email", "total"), ("Ada", "t0k3n", "42.00")])
    monkeypatch.setattr(AthenaClient, "_poll", lambda self, execution_id: None)
    settings = Settings.from_env({**AWS_ENVIRONMENT, "FIN_ATHENA_WORKGROUP": workgroup})

    columns, rows, _ = query_cli._athena(settings, ANALYST_QUERY)

    [execution_id] = athena.list_query_executions(WorkGroup=workgroup)["QueryExecutionIds"]
    sent = athena.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]["Query"]
    assert '"financial_data_db"."fact_transactions" AS f' in sent
    assert '"financial_data_db"."dim_customers" AS c' in sent
    assert (columns, rows) == (["name", "email", "total"], [("Ada", "t0k3n", "42.00")])



def test_aws_mode_runs_end_to_end_on_moto_up_to_the_athena_call(aws_endpoint, server_settings, spark, tmp_path, monkeypatch):
    """Sources behind a secret, raw zone and star schema on S3, the build as a Glue job run,
    publish, the catalog, and the analyst's query sent to Athena."""
    from dagster import materialize
    from dagster_aws.athena.resources import AthenaClient

    from financial_assets.analytics import ANALYTICS_ASSETS
    from financial_assets.analytics.glue import GlueEngine
    from financial_assets.lakehouse.publication import published
    from financial_assets.lakehouse.storage import LakehouseStorage
    from financial_assets.raw import RAW_ASSETS
    from financial_assets.sample_data.config import SeedConfig
    from financial_assets.sample_data.seed import seed_sources
    from financial_assets_tests.conftest import TEST_PII_KEY, _fresh_databases
    from financial_assets_tests.glue_standin import GlueStandin

    suffix = uuid.uuid4().hex[:8]
    bucket, database, workgroup = f"lakehouse-{suffix}", f"financial_data_db_{suffix}", f"wg-{suffix}"
    s3, secrets = boto3.client("s3"), boto3.client("secretsmanager")
    s3.create_bucket(Bucket=bucket)
    pii_secret = secrets.create_secret(Name=f"pii-{suffix}", SecretString=TEST_PII_KEY)["ARN"]
    boto3.client("glue").create_job(
        Name=f"transform-{suffix}", Role="arn:aws:iam::123456789012:role/glue", GlueVersion="5.0",
        Command={"Name": "glueetl", "ScriptLocation": f"s3://{bucket}/glue/scripts/transform-to-star-schema.py"},
    )
    boto3.client("athena").create_work_group(
        Name=workgroup, Configuration={"ResultConfiguration": {"OutputLocation": f"s3://{bucket}/athena-results/"}}
    )
    monkeypatch.setattr(AthenaClient, "_poll", lambda self, execution_id: None)
    monkeypatch.setattr(AthenaClient, "_results", lambda self, execution_id: [("name", "email", "total")])

    with _fresh_databases(server_settings) as sources, GlueStandin(aws_endpoint, workdir=tmp_path / "glue") as standin:
        seed_sources(sources.postgres_url, sources.mongo_url, sources.mongo_database,
                     SeedConfig(customers=40, transactions=600))
        secrets.create_secret(Name=f"sources-{suffix}", SecretString=json.dumps(
            {"postgres_url": sources.postgres_url, "mongo_url": sources.mongo_url}))
        settings = Settings.from_env({
            "FIN_DEPLOYMENT": "aws",
            "FIN_SOURCES_SECRET_ID": f"sources-{suffix}",
            "FIN_MONGO_DATABASE": sources.mongo_database,
            "FIN_LAKEHOUSE_URI": f"s3://{bucket}",
            "FIN_S3_ENDPOINT_URL": aws_endpoint,
            "FIN_GLUE_JOB_NAME": f"transform-{suffix}",
            "FIN_GLUE_STAGING_S3_URI": f"s3://{bucket}/glue/packages",
            "FIN_GLUE_PIPES_BUCKET": bucket,
            "FIN_GLUE_PII_KEY_SECRET_ID": pii_secret,
            "FIN_GLUE_DATABASE": database,
            "FIN_ATHENA_WORKGROUP": workgroup,
            "AWS_REGION": "us-east-1",
        })
        resources = deployment_resources(settings)

        class GlueEngineOnStandin(GlueEngine):
            def glue_client(self):
                return standin

        engine = resources["star_schema_engine"]
        resources["star_schema_engine"] = GlueEngineOnStandin(
            job_name=engine.job_name, staging_s3_uri=engine.staging_s3_uri, pipes_bucket=engine.pipes_bucket,
            pii_key_secret_id=engine.pii_key_secret_id, region=engine.region, endpoint_url=engine.endpoint_url,
            message_interval_s=1,
        )
        result = materialize([*RAW_ASSETS, *ANALYTICS_ASSETS], resources=resources)

    assert result.success
    storage = LakehouseStorage(f"s3://{bucket}", s3_endpoint_url=aws_endpoint)
    publication = published(storage)
    fact = boto3.client("glue").get_table(DatabaseName=database, Name="fact_transactions")["Table"]
    assert fact["StorageDescriptor"]["Location"] == f"{publication.tables['fact_transactions']}/"
    assert storage.exists(f"analytics/versions/{publication.version}/fact_transactions/_SUCCESS")

    columns, _, _ = query_cli._athena(settings, ANALYST_QUERY)
    [execution_id] = boto3.client("athena").list_query_executions(WorkGroup=workgroup)["QueryExecutionIds"]
    sent = boto3.client("athena").get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]
    assert f'"{database}"."fact_transactions"' in sent["Query"]
    assert columns == ["name", "email", "total"]
