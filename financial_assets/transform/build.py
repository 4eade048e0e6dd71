"""One build of the star schema: read the raw zone, transform, write a new version.

What both engines run: the local Spark resource calls :func:`build_star_schema_version` in
process, the AWS Glue job calls it inside Glue and reports the result through Dagster Pipes.
No Dagster import here.

Each build writes to ``analytics/versions/<version>/<table>/``, a folder no reader looks at
until the version is published, so a build can fail or be killed halfway without harm.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from financial_assets.lakehouse.storage import LakehouseStorage
from financial_assets.lakehouse.tables import ManifestTable
from financial_assets.quality.star_checks import CheckOutcome, QualityThresholds, run_star_checks
from financial_assets.transform.pii import PiiPolicy
from financial_assets.transform.star_schema import (
    TABLES,
    UNKNOWN_KEY,
    RawTables,
    StarSchema,
    build_star_schema,
    configure_session,
    event_statistics,
)

RAW_TABLES = ("customers", "accounts", "transactions", "transaction_events")


class RawZoneNotReadyError(RuntimeError):
    """A raw table the star schema needs has never been loaded."""


@dataclass
class BuildReport:
    version: str
    locations: dict[str, str]
    row_counts: dict[str, int]
    statistics: dict[str, int] = field(default_factory=dict)
    checks: list[CheckOutcome] = field(default_factory=list)

    def table_metadata(self, table: str) -> dict:
        """Plain values (JSON-safe, so Dagster Pipes can carry them from Glue)."""
        metadata = {
            "dagster/row_count": self.row_counts[table],
            "version": self.version,
            "location": self.locations[table],
        }
        if table == "fact_transactions":
            metadata.update(self.statistics)
        return metadata


def new_version(run_id: str) -> str:
    """Sortable by time, unique per run: 20261129T053000Z-<run id prefix>."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{run_id[:8]}"


def read_raw_tables(spark: SparkSession, storage: LakehouseStorage) -> RawTables:
    """The committed raw tables, read from the files their manifests list."""
    frames: dict[str, DataFrame] = {}
    for name in RAW_TABLES:
        table = ManifestTable(storage, f"raw/{name}")
        if table.manifest() is None:
            raise RawZoneNotReadyError(f"raw/{name} has never been loaded: materialize raw_{name} first")
        # Every committed load leaves at least one file, empty or not, so the schema is known.
        frames[name] = spark.read.option("mergeSchema", "true").parquet(*table.file_uris())
    return RawTables(**frames)


def version_path(version: str, table: str) -> str:
    return f"analytics/versions/{version}/{table}"


def build_star_schema_version(
    spark: SparkSession,
    storage: LakehouseStorage,
    version: str,
    policy: PiiPolicy,
    thresholds: QualityThresholds | None = None,
) -> BuildReport:
    """Write a new version of the star schema, then audit what was written."""
    configure_session(spark)
    raw = read_raw_tables(spark, storage)
    star = build_star_schema(raw, policy)
    locations, row_counts = {}, {}
    for name, frame in star.tables().items():
        location = storage.uri_of(version_path(version, name))
        # Sorted by key so that a rebuild of the same raw data writes the same rows in the same order.
        frame.orderBy(frame.columns[0]).write.mode("errorifexists").parquet(location)
        locations[name] = location
    # The audit reads what was written, not the plan that wrote it.
    written = StarSchema(**{name: spark.read.parquet(location) for name, location in locations.items()})
    for name, frame in written.tables().items():
        row_counts[name] = frame.count()
    statistics = event_statistics(raw.transactions, raw.transaction_events)
    statistics["unknown_account_rows"] = written.fact_transactions.where(
        F.col("account_key") == UNKNOWN_KEY
    ).count()
    checks = run_star_checks(written, raw, statistics, thresholds or QualityThresholds())
    report = BuildReport(version, locations, row_counts, statistics, checks)
    storage.write_bytes(
        f"analytics/versions/{version}/_build.json",
        json.dumps({
            "version": version,
            "tables": list(TABLES),
            "row_counts": row_counts,
            "statistics": statistics,
            "checks": [
                {"asset": c.asset, "name": c.name, "passed": c.passed, "severity": c.severity} for c in checks
            ],
        }, indent=1).encode(),
    )
    return report
