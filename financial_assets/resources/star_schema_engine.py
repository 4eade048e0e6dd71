"""Where the star schema is built: in this process's Spark, or as an AWS Glue job
(`financial_assets.resources.glue`).

Both run `financial_assets.lakehouse.star_builds.build_and_record`; they differ only in where it
runs and how its report comes back. Loading this module loads no PySpark: the code location
(and `dagster definitions validate`) never needs it, only a step that builds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    ConfigurableResource,
    MaterializeResult,
)

from financial_assets.lakehouse.tables import STAR_TABLES
from financial_assets.quality.specs import CheckOutcome, QualityThresholds
from financial_assets.resources.lakehouse import LakehouseResource
from financial_assets.resources.pii import PiiPolicyResource
from financial_assets.resources.spark import SparkResource


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
        from financial_assets.lakehouse.star_builds import build_and_record  # PySpark: only when building

        asked = time.monotonic()
        spark = self.spark.session()
        context.log.info(f"building star schema version {version} on Spark ({self.spark.remote or self.spark.master}); "
                         f"{self.spark.start_report()}; the build waited {time.monotonic() - asked:.1f} s for it")
        report = build_and_record(
            spark, lakehouse.catalog(), version, pii.policy(), thresholds, full_refresh=full_refresh
        )
        context.log.info(f"{report.mode} build: {report.mode_reason}; {report.new_fact_rows:,} new fact rows")
        for table in STAR_TABLES:
            yield MaterializeResult(asset_key=table, metadata=report.table_metadata(table))
        for outcome in report.checks:
            yield check_result(outcome)
