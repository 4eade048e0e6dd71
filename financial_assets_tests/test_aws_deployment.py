"""FIN_DEPLOYMENT=aws: credentials from Secrets Manager, the lakehouse as Iceberg tables in the
Glue Data Catalog, the build as a Glue job, and queries sent to Athena, against moto's HTTP server."""

import json
import uuid

import boto3
import pytest

from financial_assets.query import cli as query_cli
from financial_assets.lakehouse.tables import ANALYST_QUERY
from financial_assets.resources import DocumentStoreResource, PostgresResource, deployment_resources
from financial_assets.settings import Settings, SettingsError

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


def athena_answers(endpoint: str, columns: list[str], rows: list[tuple]) -> None:
    """Athena's engine cannot run here: moto's server is told what its next query returns, as
    Athena returns it (a SELECT's first row repeats the column names)."""
    import requests

    as_rows = [{"Data": [{"VarCharValue": value} for value in row]} for row in [tuple(columns), *rows]]
    response = requests.post(f"{endpoint}/moto-api/static/athena/query-results", json={
        "region": "us-east-1",
        "results": [{"rows": as_rows, "column_info": [{"Name": name, "Type": "varchar"} for name in columns]}],
    }, timeout=10)
    assert response.status_code == 201


def sent_to_athena(workgroup: str) -> str:
    athena = boto3.client("athena")
    [execution_id] = athena.list_query_executions(WorkGroup=workgroup)["QueryExecutionIds"]
    return athena.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]["Query"]


def new_workgroup() -> str:
    workgroup = f"financial-assets-{uuid.uuid4().hex[:6]}"
    boto3.client("athena").create_work_group(
        Name=workgroup, Configuration={"ResultConfiguration": {"OutputLocation": "s3://bank-lakehouse/athena-results/"}}
    )
    return workgroup


def test_aws_deployment_refuses_plain_source_urls():
    with pytest.raises(SettingsError, match="^FIN_POSTGRES_URL must not be set when FIN_DEPLOYMENT=aws"):
        Settings.from_env({**AWS_ENVIRONMENT, "FIN_POSTGRES_URL": "postgresql://app:pw@db/financial"})


def test_aws_deployment_chooses_glue_athena_and_the_glue_data_catalog():
    resources = deployment_resources(Settings.from_env(AWS_ENVIRONMENT))
    catalog = resources["lakehouse"].catalog()

    assert type(resources["star_schema_engine"]).__name__ == "GlueEngine"
    assert resources["athena"].workgroup == "financial-assets"
    assert (catalog.kind, catalog.warehouse) == ("glue", "s3://bank-lakehouse/lake")
    assert (catalog.raw_namespace, catalog.analytics_namespace) == ("financial_data_db_raw", "financial_data_db")
    assert resources["reader_catalog"].duckdb_path is None  # Athena reads the catalog's tables: nothing to tell
    assert resources["postgres"].url is None and resources["postgres"].secret_id == "financial-assets/sources"


def test_local_deployment_chooses_spark_a_sql_catalog_and_a_duckdb_file():
    resources = deployment_resources(Settings.from_env({}))

    assert type(resources["star_schema_engine"]).__name__ == "LocalSparkEngine"
    assert resources["lakehouse"].catalog().kind == "sql"
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


def test_the_analyst_query_is_sent_to_athena_in_the_workgroup_on_the_catalog_tables(aws_endpoint):
    workgroup = new_workgroup()
    athena_answers(aws_endpoint, ["name", "email", "total_transaction_amount"], [])
    settings = Settings.from_env({**AWS_ENVIRONMENT, "FIN_ATHENA_WORKGROUP": workgroup})

    query_cli._athena(settings, ANALYST_QUERY)

    sent = sent_to_athena(workgroup)
    assert '"financial_data_db"."fact_transactions" AS f' in sent
    assert '"financial_data_db"."dim_customers" AS c' in sent


def test_athenas_answer_comes_back_with_the_querys_columns_and_every_row(aws_endpoint):
    workgroup = new_workgroup()
    athena_answers(aws_endpoint, ["name", "email", "total_transaction_amount"],
                   [("Ada", "t0k3n", "42.00"), ("Bob", "t0k4n", "7.00")])
    settings = Settings.from_env({**AWS_ENVIRONMENT, "FIN_ATHENA_WORKGROUP": workgroup})

    columns, rows, _ = query_cli._athena(settings, ANALYST_QUERY)

    assert columns == ["name", "email", "total_transaction_amount"]
    assert rows == [("Ada", "t0k3n", "42.00"), ("Bob", "t0k4n", "7.00")]


def test_aws_mode_runs_end_to_end_on_moto_up_to_the_athena_call(aws_endpoint, server_settings, tmp_path):
    """Sources behind a secret; the raw zone and the star schema as Iceberg tables in moto's Glue
    Data Catalog with their files on moto's S3 (the two databases made as the stack makes them);
    the build as a Glue job run (a subprocess whose Spark opens the same catalog); publish; and
    the analyst's query sent to Athena on the catalog's tables."""
    from dagster import materialize

    from financial_assets.analytics import ANALYTICS_ASSETS
    from financial_assets.resources.glue import GlueEngine
    from financial_assets.lakehouse.publication import latest_publication
    from financial_assets.lakehouse.tables import STAR_TABLES
    from financial_assets.raw import RAW_ASSETS
    from financial_assets.sample_data.config import SeedConfig
    from financial_assets.sample_data.seed import seed_sources
    from financial_assets_tests.conftest import GLUE_JOB_SPARK_CONF, TEST_HISTORY_DAYS, TEST_PII_KEY, _fresh_databases
    from financial_assets_tests.glue_standin import GlueStandin

    suffix = uuid.uuid4().hex[:8]
    bucket, database, workgroup = f"lakehouse-{suffix}", f"financial_data_db_{suffix}", f"wg-{suffix}"
    s3, secrets, glue = boto3.client("s3"), boto3.client("secretsmanager"), boto3.client("glue")
    s3.create_bucket(Bucket=bucket)
    for name, zone in ((f"{database}_raw", "raw"), (database, "analytics")):
        glue.create_database(DatabaseInput={"Name": name, "LocationUri": f"s3://{bucket}/{zone}"})
    pii_secret = secrets.create_secret(Name=f"pii-{suffix}", SecretString=TEST_PII_KEY)["ARN"]
    glue.create_job(
        Name=f"transform-{suffix}", Role="arn:aws:iam::123456789012:role/glue", GlueVersion="6.0",
        Command={"Name": "glueetl", "ScriptLocation": f"s3://{bucket}/glue/scripts/transform-to-star-schema.py"},
        DefaultArguments={"--datalake-formats": "iceberg", "--conf": GLUE_JOB_SPARK_CONF},
    )
    boto3.client("athena").create_work_group(
        Name=workgroup, Configuration={"ResultConfiguration": {"OutputLocation": f"s3://{bucket}/athena-results/"}}
    )
    athena_answers(aws_endpoint, ["name", "email", "total_transaction_amount"], [])

    with _fresh_databases(server_settings) as sources, GlueStandin(aws_endpoint, workdir=tmp_path / "glue") as standin:
        seed_sources(sources.postgres_url, sources.mongo_url, sources.mongo_database,
                     SeedConfig(customers=40, transactions=600, history_days=TEST_HISTORY_DAYS))
        secrets.create_secret(Name=f"sources-{suffix}", SecretString=json.dumps(
            {"postgres_url": sources.postgres_url, "mongo_url": sources.mongo_url}))
        settings = Settings.from_env({
            "FIN_DEPLOYMENT": "aws",
            "FIN_SOURCES_SECRET_ID": f"sources-{suffix}",
            "FIN_MONGO_DATABASE": sources.mongo_database,
            "FIN_LAKEHOUSE_URI": f"s3://{bucket}",
            "FIN_S3_ENDPOINT_URL": aws_endpoint,
            "FIN_CATALOG_NAME": f"aws_{suffix}",
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
    catalog = settings.catalog()
    publication = latest_publication(catalog)
    for table in STAR_TABLES:  # what Athena reads: each table's main, at the published snapshot
        registered = glue.get_table(DatabaseName=database, Name=table)["Table"]
        iceberg = catalog.load().load_table(catalog.analytics_table(table))
        assert registered["Parameters"]["table_type"].upper() == "ICEBERG", table
        assert iceberg.location() == f"s3://{bucket}/analytics/{table}", table
        assert iceberg.current_snapshot().snapshot_id == publication.snapshots[table], table
    assert {t["Name"] for t in glue.get_tables(DatabaseName=f"{database}_raw")["TableList"]} >= {
        "customers", "accounts", "transactions", "transaction_events"}

    query_cli._athena(settings, ANALYST_QUERY)
    assert f'"{database}"."fact_transactions"' in sent_to_athena(workgroup)
