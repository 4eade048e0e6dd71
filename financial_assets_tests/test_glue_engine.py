"""The star schema built by an AWS Glue job through Dagster Pipes, against a Glue stand-in on moto.

The job runs as Glue 6.0 would run it (`financial_assets_tests.glue_standin`): a subprocess with
its own JVM (~15 s), the Iceberg runtime of ``--datalake-formats iceberg``, and the catalog its
``--catalog-*`` arguments name. Here that catalog is the suite's SQL catalog with a local
warehouse (the Glue Data Catalog on moto is `test_aws_deployment`'s end-to-end test), so this
module makes two runs: one full-refresh build shared by the tests that read it, and one that
fails before its JVM starts.
"""

import uuid

import boto3
import pytest
from dagster import DagsterInstance, materialize

from financial_assets.analytics.assets import star_schema
from financial_assets.resources.glue import GlueEngine
from financial_assets.resources.glue_package import package_zip, upload_if_changed
from financial_assets.lakehouse.catalog import LakehouseCatalog, catalog_from_job_arguments, glue_job_arguments
from financial_assets.quality.specs import STAR_CHECKS
from financial_assets.raw import RAW_ASSETS
from financial_assets.lakehouse.tables import STAR_TABLES
from financial_assets_tests.conftest import TEST_PII_KEY as PII_KEY
from financial_assets_tests.conftest import GLUE_JOB_SPARK_CONF, pipeline_resources, temporary_lakehouse
from financial_assets_tests.glue_standin import GlueStandin


@pytest.fixture(scope="module")
def aws(moto_endpoint):
    """On moto: a bucket for the job's code and Pipes, the PII key's secret, and the Glue job,
    defined with the Iceberg arguments of infra/financial-assets.yaml and the suite's interpreted
    expressions (conftest.py)."""
    suffix = uuid.uuid4().hex[:10]
    bucket = f"glue-{suffix}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    secret = boto3.client("secretsmanager", endpoint_url=moto_endpoint).create_secret(
        Name=f"financial-assets/pii-hmac-key-{suffix}", SecretString=PII_KEY
    )
    job = f"transform-to-star-schema-{suffix}"
    boto3.client("glue", endpoint_url=moto_endpoint).create_job(
        Name=job,
        Role="arn:aws:iam::123456789012:role/financial-assets-glue",
        Command={"Name": "glueetl", "ScriptLocation": f"s3://{bucket}/scripts/transform-to-star-schema.py",
                 "PythonVersion": "3"},
        GlueVersion="6.0",
        DefaultArguments={
            "--additional-python-modules": "dagster-pipes==1.13.27",
            "--datalake-formats": "iceberg",
            "--conf": GLUE_JOB_SPARK_CONF,
        },
    )
    return {"endpoint": moto_endpoint, "bucket": bucket, "secret": secret["ARN"], "job": job}


@pytest.fixture(scope="module")
def standin(aws, tmp_path_factory):
    with GlueStandin(aws["endpoint"], workdir=tmp_path_factory.mktemp("glue-standin")) as glue:
        yield glue


def glue_engine(aws, standin, pii_key_secret_id: str | None = None) -> GlueEngine:
    class GlueEngineOnStandin(GlueEngine):
        def glue_client(self):
            return standin

    return GlueEngineOnStandin(
        job_name=aws["job"],
        staging_s3_uri=f"s3://{aws['bucket']}/packages",
        pipes_bucket=aws["bucket"],
        pii_key_secret_id=pii_key_secret_id or aws["secret"],
        region="us-east-1",
        endpoint_url=aws["endpoint"],
        message_interval_s=1,
    )


@pytest.fixture(scope="module")
def raw_lakehouse(server_settings, tmp_path_factory, seeded_sources):
    """A lakehouse whose raw zone the raw assets loaded from the seeded sources with faults."""
    databases, report = seeded_sources
    with temporary_lakehouse(server_settings, tmp_path_factory.mktemp("lakehouse")) as catalog:
        result = materialize(RAW_ASSETS, resources=pipeline_resources(catalog, databases))
        assert result.success
        yield catalog, report


@pytest.fixture(scope="module")
def glue_build(raw_lakehouse, aws, standin):
    """The star schema materialized once with the Glue engine (a Glue job run costs a JVM's start:
    one run serves every test here), asked for a full refresh and tolerating no NULL or negative
    amount (the thresholds travel to the job as JSON), so that the seeded faults block."""
    catalog, report = raw_lakehouse
    result = materialize(
        [star_schema], resources=pipeline_resources(catalog, engine=glue_engine(aws, standin)),
        run_config={"ops": {"star_schema": {"config": {
            "full_refresh": True, "max_defect_share": {"amounts_present_and_positive": 0.0}}}}},
        raise_on_error=False, instance=DagsterInstance.ephemeral(),
    )
    return result, report


def check_outcomes(result) -> dict:
    return {
        (e.event_specific_data.asset_key.to_user_string(), e.event_specific_data.check_name): e.event_specific_data.passed
        for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def materializations(result) -> dict:
    return {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}


def rows_at(catalog: LakehouseCatalog, table: str, metadata) -> list[dict]:
    """The rows of ``table`` at the snapshot a build reported, in a stable order."""
    snapshot = int(metadata["snapshot_id"].value)
    rows = catalog.load().load_table(catalog.analytics_table(table)).scan(snapshot_id=snapshot).to_arrow().to_pylist()
    return sorted(rows, key=lambda row: tuple(str(value) for value in row.values()))


def test_materializing_with_glue_reports_each_table_with_the_rows_its_snapshot_holds(glue_build, raw_lakehouse):
    result, report = glue_build
    catalog, _ = raw_lakehouse
    metadata = materializations(result)

    assert set(metadata) == set(STAR_TABLES)
    assert metadata["dim_customers"]["dagster/row_count"].value == report.rows["customers"] + 1  # + unknown
    assert metadata["dim_accounts"]["dagster/row_count"].value == report.rows["accounts"] + 1
    assert metadata["fact_transactions"]["dagster/row_count"].value == report.rows["transactions"]
    for table in STAR_TABLES:
        assert metadata[table]["dagster/row_count"].value == len(rows_at(catalog, table, metadata[table])), table
        assert metadata[table]["AWS Glue Job Run ID"].value.startswith("jr_")  # it ran as a Glue job run


def test_the_glue_run_opens_the_catalog_the_engine_was_given(glue_build, raw_lakehouse, standin):
    catalog, _ = raw_lakehouse
    run = list(standin.runs.values())[0]
    argv = [part for pair in run.arguments.items() for part in pair]

    assert catalog_from_job_arguments(argv) == catalog


def test_glue_and_local_spark_build_identical_tables(glue_build, raw_lakehouse, spark):
    catalog, _ = raw_lakehouse
    local = materialize(
        [star_schema], resources=pipeline_resources(catalog),
        raise_on_error=False, instance=DagsterInstance.ephemeral(),
    )
    glue_tables, local_tables = materializations(glue_build[0]), materializations(local)
    assert check_outcomes(glue_build[0]) == check_outcomes(local)

    for table in STAR_TABLES:
        assert glue_tables[table]["snapshot_id"].value != local_tables[table]["snapshot_id"].value  # built apart
        assert rows_at(catalog, table, glue_tables[table]) == rows_at(catalog, table, local_tables[table]), table


def test_check_results_arrive_from_glue_and_a_failed_blocking_check_fails_the_step(glue_build):
    result, _ = glue_build
    outcomes = check_outcomes(result)

    assert len(outcomes) == len(STAR_CHECKS)
    assert outcomes[("fact_transactions", "accepted_transaction_types")] is False  # the seeded 'refund'
    severities = {e.event_specific_data.check_name: e.event_specific_data.severity.value
                  for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert (severities["accepted_transaction_types"], severities["amounts_present_and_positive"]) == ("WARN", "ERROR")
    assert outcomes[("dim_customers", "keys_unique_and_not_null")] is True
    assert "blocking asset check" in result.failure_data_for_node("star_schema").error.message


def test_the_pii_key_never_travels_as_a_job_argument(glue_build, standin):
    runs = list(standin.runs.values())

    assert runs
    for run in runs:
        assert "--pii-key-secret-id" in run.arguments
        assert all(PII_KEY not in value for value in run.arguments.values())


def test_a_catalog_password_never_travels_as_a_job_argument():
    catalog = LakehouseCatalog(warehouse="file:///lake", sql_url="postgresql://owner:s3cret@db.internal/catalog")

    with pytest.raises(ValueError, match="cannot be a Glue job argument"):
        glue_job_arguments(catalog)


def test_full_refresh_reaches_the_glue_job(glue_build, standin):
    result, _ = glue_build
    fact = materializations(result)["fact_transactions"]

    assert list(standin.runs.values())[0].arguments["--full-refresh"] == "true"
    assert (fact["build_mode"].value, fact["build_mode_reason"].value) == ("full", "full refresh requested")


def test_a_failing_glue_run_fails_the_step_with_the_jobs_error(raw_lakehouse, aws, standin):
    catalog, _ = raw_lakehouse
    # A secret that does not exist: the job fails on its first AWS call, before its JVM would start.
    missing = aws["secret"].rsplit(":", 1)[0] + ":financial-assets/no-such-secret"
    result = materialize(
        [star_schema], resources=pipeline_resources(catalog, engine=glue_engine(aws, standin, missing)),
        raise_on_error=False, instance=DagsterInstance.ephemeral(),
    )

    assert not result.success
    message = result.failure_data_for_node("star_schema").error.cause.message  # what PipesGlueClient raised
    assert "completed with status FAILED" in message
    assert "ResourceNotFoundException" in message


def test_an_unchanged_package_is_not_uploaded_again(aws):
    s3 = boto3.client("s3", endpoint_url=aws["endpoint"])
    package = package_zip()
    uri = f"s3://{aws['bucket']}/reupload/{package.name}"

    assert upload_if_changed(s3, uri, package) is True
    assert package_zip() == package  # byte for byte: the name is a content hash
    assert upload_if_changed(s3, uri, package_zip()) is False
