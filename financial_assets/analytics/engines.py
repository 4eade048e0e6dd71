"""Where the star schema is built: in this process's Spark, or as an AWS Glue job.

Both run `financial_assets.transform.build.build_star_schema_version`; they differ only in
where it runs and how its report comes back.
"""

from __future__ import annotations

from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    ConfigurableResource,
    MaterializeResult,
)

from financial_assets.resources.lakehouse import LakehouseResource
from financial_assets.resources.pii import PiiPolicyResource
from financial_assets.resources.spark import SparkResource
from financial_assets.quality.star_checks import CheckOutcome, QualityThresholds
from financial_assets.transform.build import build_star_schema_version
from financial_assets.transform.star_schema import TABLES


def check_result(outcome: CheckOutcome) -> AssetCheckResult:
    return AssetCheckResult(
        asset_key=outcome.asset,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=AssetCheckSeverity(outcome.severity),
        metadata=outcome.metadata,
    )


class StarSchemaEngine(ConfigurableResource):
    """Builds one version of the star schema, audits it, and reports a materialization per
    table and a result per check."""

    def build(
        self,
        context: AssetExecutionContext,
        lakehouse: LakehouseResource,
        pii: PiiPolicyResource,
        version: str,
        thresholds: QualityThresholds,
        full_refresh: bool = False,
    ) -> Iterator[MaterializeResult | AssetCheckResult]:
        raise NotImplementedError


class LocalSparkEngine(StarSchemaEngine):
    """The build runs in this process, on the Spark session of `spark`."""

    spark: SparkResource

    def build(self, context, lakehouse, pii, version, thresholds, full_refresh=False):
        context.log.info(f"building star schema version {version} on Spark ({self.spark.remote or self.spark.master})")
        report = build_star_schema_version(
            self.spark.session(), lakehouse.catalog(), version, pii.policy(), thresholds, full_refresh=full_refresh
        )
        context.log.info(f"{report.mode} build: {report.mode_reason}; {report.new_fact_rows:,} new fact rows")
        for table in TABLES:
            yield MaterializeResult(asset_key=table, metadata=report.table_metadata(table))
        for outcome in report.checks:
            yield check_result(outcome)
