"""One star-schema build against the lakehouse's state: what both engines run.

The transform (`financial_assets.transform.build`) reads no publication state: this module finds
the build readers see now and passes it in (an incremental build extends it), then appends the
new build's report to ``star_schema_builds``, where `financial_assets.lakehouse.publication`
finds it to publish. The local engine calls :func:`build_and_record` in the Dagster process, the
AWS Glue job inside Glue. No Dagster import; the one module of this package that runs Spark.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from pyspark.sql import SparkSession

from financial_assets.lakehouse.catalog import LakehouseCatalog
from financial_assets.lakehouse.publication import find_build, latest_publication, record_build
from financial_assets.quality.specs import QualityThresholds
from financial_assets.transform.build import (
    BuildPlan,
    BuildReport,
    PublishedBuild,
    build_star_schema_version,
    plan_next_build,
)
from financial_assets.transform.pii import PiiPolicy


def published_build(catalog: LakehouseCatalog) -> PublishedBuild | None:
    """The build readers see now, with the record it left; None before the first publish."""
    publication = latest_publication(catalog)
    if publication is None:
        return None
    build = find_build(catalog, publication.version)
    return PublishedBuild(publication.version, dict(publication.snapshots), build.record if build else {})


def next_build_plan(spark: SparkSession, catalog: LakehouseCatalog, policy: PiiPolicy, *,
                    full_refresh: bool = False) -> BuildPlan:
    """How the next build would go now, on top of the published build (full or incremental, and
    why), without writing anything."""
    return plan_next_build(spark, catalog, policy, published=published_build(catalog), full_refresh=full_refresh)


def build_and_record(
    spark: SparkSession,
    catalog: LakehouseCatalog,
    version: str,
    policy: PiiPolicy,
    thresholds: QualityThresholds | None = None,
    *,
    full_refresh: bool = False,
    now: datetime | None = None,
) -> BuildReport:
    """Build and audit ``version`` on its audit branches, on top of the published build, and
    append its row to ``star_schema_builds``."""
    report = build_star_schema_version(
        spark, catalog, version, policy, thresholds,
        published=published_build(catalog), full_refresh=full_refresh, now=now,
    )
    # Built now, whatever instant the audit judged freshness against.
    record_build(catalog, {
        "version": report.version,
        "built_at": datetime.now(timezone.utc),
        "mode": report.mode,
        "mode_reason": report.mode_reason,
        "branch": report.branch,
        "snapshots": list(report.snapshots.items()),
        "row_counts": list(report.row_counts.items()),
        "checks": json.dumps([
            {"asset": c.asset, "name": c.name, "passed": c.passed, "severity": c.severity} for c in report.checks
        ]),
        "record": json.dumps(report.record),
    })
    return report
