"""The star schema built by an AWS Glue job through Dagster Pipes, against a Glue stand-in on moto.

Each Glue run is a local subprocess with its own JVM (~15 s), so this module makes two: one
successful build shared by the tests that read it, and one that fails.
"""

import uuid

import boto3
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize

from financial_assets.analytics.assets import star_schema
from financial_assets.analytics.glue import GlueEngine
from financial_assets.analytics.glue_package import package_zip, upload_if_changed
from financial_assets.quality.star_checks import STAR_CHECKS
from financial_assets.raw import RAW_ASSETS
from financial_assets.transform.star_schema import TABLES
from financial_assets_tests.conftest import TEST_PII_KEY as PII_KEY
from financial_assets_tests.conftest import pipeline_resources
from financial_assets_tests.glue_standin import GlueStandin


@pytest.fixture(scope="module")
def aws(moto_endpoint):
    """On moto: a bucket for the job's code and Pipes, the PII key's secret, and the Glue job."""
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
        GlueVersion="5.0",
        DefaultArguments={"--additional-python-modules": "dagster-pipes==1.13.27"},
    )
    return {"endpoint": moto_endpoint, "bucket": bucket, "secret": secret["ARN"], "job": job}


@pytest.fixture(scope="module")
def standin(aws, tmp_path_factory):
    with GlueStandin(aws["endpoint"], workdir=tmp_path_factory.mktemp("glue-standin")) as glue:
        yield glue


def glue_engine(aws, standin) -> GlueEngine:
    class GlueEngineOnStandin(GlueEngine):
        def glue_client(self):
            return standin

    return GlueEngineOnStandin(
        job_name=aws["job"],
        staging_s3_uri=f"s3://{aws['bucket']}/packages",
        pipes_bucket=aws["bucket"],
        pii_key_secret_id=aws["secret"],
        region="us-east-1",
        endpoint_url=aws["endpoint"],
        message_interval_s=1,
    )


@pytest.fixture(scope="module")
def raw_lakehouse(tmp_path_factory, seeded_sources):
    """A local lakehouse whose raw zone the raw assets loaded from the seeded sources with faults.

    Local, because the stand-in runs the job on this machine: local Spark cannot read s3://.
    """
    databases, report = seeded_sources
    lakehouse = tmp_path_factory.mktemp("lakehouse")
    result = materialize(RAW_ASSETS, resources=pipeline_resources(lakehouse, databases))
    assert result.success
    return lakehouse, report


@pytest.fixture(scope="module")
def glue_build(raw_lakehouse, aws, standin):
    """The star schema materialized once with the Glue engine."""
    lakehouse, report = raw_lakehouse
    result = materialize(
        [star_schema], resources=pipeline_resources(lakehouse, engine=glue_engine(aws, standin)),
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


def sorted_table(location: str):
    table = pq.read_table(location)
    return table.sort_by([(table.column_names[0], "ascending")])


def test_materializing_with_glue_reports_each_table_with_its_row_count(glue_build):
    result, report = glue_build
    metadata = materializations(result)

    assert set(metadata) == set(TABLES)
    assert metadata["dim_customers"]["dagster/row_count"].value == report.rows["customers"] + 1  # + unknown
    assert metadata["dim_accounts"]["dagster/row_count"].value == report.rows["accounts"] + 1
    assert metadata["fact_transactions"]["dagster/row_count"].value == report.rows["transactions"]
    for table in TABLES:
        assert metadata[table]["dagster/row_count"].value == pq.read_table(metadata[table]["location"].value).num_rows
        assert metadata[table]["AWS Glue Job Run ID"].value.startswith("jr_")  # it ran as a Glue job run


def test_glue_and_local_spark_build_identical_tables(glue_build, raw_lakehouse, spark):
    lakehouse, _ = raw_lakehouse
    local = materialize(
        [star_schema],
        resources=pipeline_resources(lakehouse),
        raise_on_error=False, instance=DagsterInstance.ephemeral(),
    )
    glue_tables, local_tables = materializations(glue_build[0]), materializations(local)
    assert check_outcomes(glue_build[0]) == check_outcomes(local)

    for table in TABLES:
        glue_location, local_location = glue_tables[table]["location"].value, local_tables[table]["location"].value
        assert glue_location != local_location  # two versions, built apart
        assert sorted_table(glue_location).equals(sorted_table(local_location)), table


def test_check_results_arrive_from_glue_and_a_failed_blocking_check_fails_the_step(glue_build):
    result, _ = glue_build
    outcomes = check_outcomes(result)

    assert len(outcomes) == len(STAR_CHECKS)
    assert outcomes[("fact_transactions", "accepted_transaction_types")] is False  # the seeded 'refund'
    assert outcomes[("dim_customers", "keys_unique_and_not_null")] is True
    assert "blocking asset check" in result.failure_data_for_node("star_schema").error.message


def test_the_pii_key_never_travels_as_a_job_argument(glue_build, standin):
    runs = list(standin.runs.values())

    assert runs
    for run in runs:
        assert "--pii-key-secret-id" in run.arguments
        assert all(PII_KEY not in value for value in run.arguments.values())


def test_full_refresh_reaches_the_glue_job(raw_lakehouse, aws, standin):
    lakehouse, _ = raw_lakehouse
    result = materialize(
        [star_schema], resources=pipeline_resources(lakehouse, engine=glue_engine(aws, standin)),
        run_config={"ops": {"star_schema": {"config": {"full_refresh": True}}}},
        raise_on_error=False, instance=DagsterInstance.ephemeral(),
    )
    fact = materializations(result)["fact_transactions"]

    assert list(standin.runs.values())[-1].arguments["--full-refresh"] == "true"
    assert (fact["build_mode"].value, fact["build_mode_reason"].value) == ("full", "full refresh requested")


def test_a_failing_glue_run_fails_the_step_with_the_jobs_error(aws, standin, tmp_path):
    empty_lakehouse = tmp_path  # no raw zone: the job fails inside the transform
    result = materialize(
        [star_schema],
        resources=pipeline_resources(empty_lakehouse, engine=glue_engine(aws, standin)),
        raise_on_error=False,
        instance=DagsterInstance.ephemeral(),
    )

    assert not result.success
    error = result.failure_data_for_node("star_schema").error.cause  # what PipesGlueClient raised
    message = error.message
    assert "completed with status FAILED" in message
    assert "raw/customers has never been loaded" in message
    assert not (empty_lakehouse / "analytics").exists()


def test_an_unchanged_package_is_not_uploaded_again(aws):
    s3 = boto3.client("s3", endpoint_url=aws["endpoint"])
    package = package_zip()
    uri = f"s3://{aws['bucket']}/reupload/{package.name}"

    assert upload_if_changed(s3, uri, package) is True
    assert package_zip() == package  # byte for byte: the name is a content hash
    assert upload_if_changed(s3, uri, package_zip()) is False
