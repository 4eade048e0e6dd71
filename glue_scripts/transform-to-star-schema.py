"""AWS Glue entry point: build one version of the star schema, report it to Dagster via Pipes.

A thin shell: the build is `financial_assets.lakehouse.star_builds.build_and_record`, as on the
local engine, shipped to the job as a zip through ``--extra-py-files`` (see `financial_assets.resources.glue`).
It writes Apache Iceberg tables in the lakehouse's catalog: on AWS the Glue Data Catalog, whose
Iceberg tables Athena reads; the Spark settings the build depends on are set by the build itself
(`configure_session`), the same on Glue as on a laptop.

Job arguments (Glue passes ``--name value`` pairs):

- ``--catalog-warehouse``  the warehouse, s3://bucket[/prefix]
- ``--catalog-name``, ``--catalog-raw-namespace``, ``--catalog-analytics-namespace``: the catalog
  (Spark's name for it) and its two namespaces, on AWS the Glue databases ``<db>_raw`` and ``<db>``
- ``--catalog-region``     optional: the AWS region of Glue and S3
- ``--catalog-s3-endpoint-url`` optional: an S3 and Glue endpoint other than AWS's (a stand-in)
- ``--catalog-sql-url``    optional, a stand-in's only: an Iceberg SQL catalog instead of Glue's
- ``--version``            the version to build, chosen by Dagster
- ``--pii-clear-text``     optional, ``true``: the operator's opt-in to clear personal data
- ``--pii-key-secret-id``  the Secrets Manager secret holding the PII HMAC key
- ``--quality-thresholds`` optional: the audit's thresholds as JSON (QualityThresholds)
- ``--full-refresh``       optional, ``true``: rebuild everything even when an incremental build is possible
- ``--dagster-pipes-context`` / ``--dagster-pipes-messages``: added by `PipesGlueClient`

(See `financial_assets.lakehouse.catalog.glue_job_arguments` for the ``--catalog-*`` ones.)

The PII key is never a job argument (the Glue console shows those): it comes from the
FIN_PII_HMAC_KEY environment variable when set, otherwise from the secret. AWS clients follow
boto's usual configuration, so AWS_ENDPOINT_URL points them at a stand-in in tests.

Any error propagates: the run fails, and Pipes carries the exception to Dagster.
"""

from __future__ import annotations

import argparse
import os
import sys

import boto3
from dagster_pipes import (
    PipesCliArgsParamsLoader,
    PipesS3ContextLoader,
    PipesS3MessageWriter,
    open_dagster_pipes,
)

from financial_assets.lakehouse.catalog import catalog_from_job_arguments
from financial_assets.lakehouse.star_builds import build_and_record
from financial_assets.lakehouse.tables import STAR_TABLES
from financial_assets.quality.specs import QualityThresholds
from financial_assets.transform.pii import PiiPolicy
from financial_assets.transform.session import spark_session

PII_KEY_ENV = "FIN_PII_HMAC_KEY"
MESSAGE_INTERVAL_S = 5  # seconds between uploads of buffered Pipes messages


class _JobArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # raise instead of exiting, so Pipes reports it like any failure
        raise ValueError(f"job arguments: {message}")


def parse_job_arguments(argv: list[str]) -> argparse.Namespace:
    """The job's own arguments (the catalog's are read by `catalog_from_job_arguments`)."""
    parser = _JobArgumentParser(prog="transform-to-star-schema", add_help=False, allow_abbrev=False)
    parser.add_argument("--version", required=True)
    parser.add_argument("--pii-clear-text", default="false", choices=["true", "false"], type=str.lower)
    parser.add_argument("--pii-key-secret-id", default=None)
    parser.add_argument("--quality-thresholds", default=None)
    parser.add_argument("--full-refresh", default="false", choices=["true", "false"], type=str.lower)
    # Glue adds its own (--JOB_ID, --JOB_RUN_ID, --JOB_NAME, --TempDir, ...), Pipes its two.
    arguments, _others = parser.parse_known_args(argv)
    return arguments


def pii_policy(arguments: argparse.Namespace) -> PiiPolicy:
    if arguments.pii_clear_text == "true":
        return PiiPolicy(clear_text=True)
    key = os.environ.get(PII_KEY_ENV) or None
    if key is None and arguments.pii_key_secret_id:
        secret = boto3.client("secretsmanager").get_secret_value(SecretId=arguments.pii_key_secret_id)
        key = secret["SecretString"] if "SecretString" in secret else secret["SecretBinary"].decode()
    return PiiPolicy(hmac_key=key.encode() if key else None)  # no key and no opt-in: raises


def job_spark_session():
    """Glue's own session inside Glue (Iceberg through ``--datalake-formats iceberg`` and the
    job's ``--conf``); a local one anywhere else (a stand-in, a laptop)."""
    try:
        from awsglue.context import GlueContext
    except ImportError:
        return spark_session(app_name="transform-to-star-schema"), "local Spark"
    from pyspark.context import SparkContext

    return GlueContext(SparkContext.getOrCreate()).spark_session, "AWS Glue"


def main(argv: list[str]) -> None:
    s3 = boto3.client("s3")
    with open_dagster_pipes(
        params_loader=PipesCliArgsParamsLoader(),
        context_loader=PipesS3ContextLoader(client=s3),
        message_writer=PipesS3MessageWriter(client=s3, interval=MESSAGE_INTERVAL_S),
    ) as pipes:
        arguments = parse_job_arguments(argv)
        catalog = catalog_from_job_arguments(argv)
        policy = pii_policy(arguments)
        spark, runtime = job_spark_session()
        pipes.log.info(f"building star schema version {arguments.version} in {catalog!r} on {runtime}, {policy!r}")
        thresholds = (
            QualityThresholds.from_json(arguments.quality_thresholds)
            if arguments.quality_thresholds else QualityThresholds()
        )
        report = build_and_record(
            spark, catalog, arguments.version, policy, thresholds, full_refresh=arguments.full_refresh == "true"
        )
        pipes.log.info(f"{report.mode} build: {report.mode_reason}; {report.new_fact_rows:,} new fact rows")
        for table in STAR_TABLES:
            pipes.log.info(f"{table}: {report.row_counts[table]:,} rows")
            pipes.report_asset_materialization(asset_key=table, metadata=report.table_metadata(table))
        for check in report.checks:
            pipes.report_asset_check(
                asset_key=check.asset,
                check_name=check.name,
                passed=check.passed,
                severity=check.severity,
                metadata=check.pipes_metadata(),
            )


if __name__ == "__main__":
    main(sys.argv[1:])
