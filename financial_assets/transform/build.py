"""One build of the star schema: read the raw zone, transform, write an audit branch, audit it.

What both engines run, through `financial_assets.lakehouse.star_builds`: the local engine in the
Dagster process, the AWS Glue job inside Glue (reporting the result through Dagster Pipes).
No Dagster import here.

Every table is an Apache Iceberg table. A build pins the raw tables' current snapshots, writes the
four star-schema tables on a branch of their own, ``audit_<version>`` (``main``, which readers
see, does not move), audits exactly what the branches hold, and returns its report with the
record a later build starts from. It reads no publication state itself: the caller
(`financial_assets.lakehouse.star_builds`) passes in the published build it may extend and
appends the report to ``star_schema_builds``.

A build is *incremental* when it can be: when the published build was made by the same code and
PII policy, the raw transactions and events have only been appended to since the snapshots it
read, and nothing that arrived can change one of its facts. Then the fact branch starts at the
published fact snapshot and only the facts of the new transactions are appended (no file is
copied); its audit is the published audit plus that of the new rows. The dimensions are small:
each is rebuilt, replaced in one commit and checked whole (the members' dimensions and histories
stay as published while their raw snapshots do: :func:`members_kept`). Independent writes and
checks run at once (`financial_assets.transform.concurrency`). Anything else rebuilds everything and
says why: a reloaded or rewritten raw table, a transaction committed late below the published
mark, a new event for a published transaction, an account that changed customer or disappeared,
an account arriving for a published transaction, a calendar day lost, changed code or PII key,
or ``full_refresh``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from financial_assets.code_versions import STAR_SCHEMA_DIGEST
from financial_assets.lakehouse.catalog import TABLE_PROPERTIES as CATALOG_TABLE_PROPERTIES
from financial_assets.lakehouse.catalog import LakehouseCatalog
from financial_assets.lakehouse.tables import CONTENT_DIGEST, RAW_TABLES, STAR_TABLES, audit_branch
from financial_assets.quality.specs import CheckOutcome, QualityThresholds
from financial_assets.quality.star_checks import FactAudit, audit_facts, audit_outcomes, table_outcomes
from financial_assets.transform.concurrency import concurrently
from financial_assets.transform.history import (
    ACCOUNT_HISTORY,
    BALANCES,
    CUSTOMER_HISTORY,
    HISTORIES,
    INSERT,
    HistorySpec,
    balance_day,
    balance_snapshot,
    empty_history,
    first_history,
    history_changes,
    members,
    merge_statement,
    with_day_measures,
)
from financial_assets.transform.literal_rows import quoted
from financial_assets.transform.pii import PiiPolicy
from financial_assets.transform.session import configure_session
from financial_assets.transform.star_schema import (
    STATISTICS,
    RawTables,
    StarSchema,
    build_dimensions,
    build_fact_transactions,
    date_key,
    event_statistics,
)

# Raw tables whose loads append past a cursor; customers and accounts are reloaded whole each
# time (snapshots), so an incremental build compares what they became instead.
APPEND_ONLY = ("transactions", "transaction_events")
# The raw tables the members (customers, accounts) are made of, and the star tables made of them
# alone: while those raw snapshots stay the published build's, so do these tables.
MEMBER_SOURCES = ("customers", "accounts")
MEMBER_DIMENSIONS = ("dim_customers", "dim_accounts")
MEMBER_TABLES = (*MEMBER_DIMENSIONS, *(spec.table for spec in HISTORIES))
FACT_PARTITIONING = "days(transaction_at)"
# The facts are clustered by day (one writer per day's files) and sorted by id within each file by
# the table's own write order: Spark then sorts once, where sorting the rows before the write, as
# the dimensions are, would add a second sort of every fact to the one Iceberg asks for.
FACT_WRITE_ORDER = "DISTRIBUTED BY PARTITION LOCALLY ORDERED BY transaction_id"
# Copy-on-write: readers (DuckDB through PyIceberg's planning) never meet delete files.
TABLE_PROPERTIES = {
    **CATALOG_TABLE_PROPERTIES,
    "write.delete.mode": "copy-on-write",
    "write.update.mode": "copy-on-write",
    "write.merge.mode": "copy-on-write",
    "write.spark.accept-any-schema": "true",
}
# MERGE INTO does not resolve on a table that accepts any schema (Spark 4.1, Iceberg 1.11: its
# columns are "not found"); a history is only ever merged into, so it does without.
HISTORY_TABLE_PROPERTIES = {k: v for k, v in TABLE_PROPERTIES.items() if k != "write.spark.accept-any-schema"}
FULL, INCREMENTAL = "full", "incremental"
# Up to this many raw events, the fact build broadcasts them (`build_fact_transactions`): about
# 100 MB on the driver and on each executor at most. Beyond it, a sort-merge join shuffles and sorts
# every transaction: at 2M transactions and 300k events, 13-20% of the fact write's CPU.
BROADCAST_EVENTS_UP_TO = 1_000_000


class RawZoneNotReadyError(RuntimeError):
    """A raw table the star schema needs has never been loaded."""


@dataclass
class BuildReport:
    version: str
    branch: str
    tables: dict[str, str]  # table -> Iceberg identifier
    snapshots: dict[str, int]  # table -> snapshot id at the head of the audit branch
    row_counts: dict[str, int]
    statistics: dict[str, int] = field(default_factory=dict)
    checks: list[CheckOutcome] = field(default_factory=list)
    mode: str = FULL
    mode_reason: str = ""
    new_fact_rows: int = 0
    record: dict = field(default_factory=dict)  # what a build on top of this one starts from
    history_changes: dict[str, dict[str, int]] = field(default_factory=dict)  # history table -> what changed

    def table_metadata(self, table: str) -> dict:
        """Plain values (JSON-safe, so Dagster Pipes can carry them from Glue)."""
        metadata = {
            "dagster/row_count": self.row_counts[table],
            "version": self.version,
            "table": self.tables[table],
            "branch": self.branch,
            "snapshot_id": str(self.snapshots[table]),  # 64-bit: text, so no reader rounds it
        }
        if table == "fact_transactions":
            metadata.update(self.statistics)
            metadata.update(build_mode=self.mode, build_mode_reason=self.mode_reason, new_fact_rows=self.new_fact_rows)
        metadata.update(self.history_changes.get(table, {}))
        return metadata


# Taken at import: the code this process runs, whatever happens to the files afterwards. A change
# forces a full build.
_SOURCE_DIGEST = STAR_SCHEMA_DIGEST


def transform_fingerprint(policy: PiiPolicy) -> str:
    """Changes whenever the transform, the audit or the PII policy does."""
    return hashlib.sha256(f"{_SOURCE_DIGEST}/{policy.fingerprint()}".encode()).hexdigest()[:16]


class _Lakehouse:
    """The catalog as a build sees it: Spark reads and writes the data; table metadata (refs,
    snapshots, their summaries) comes from PyIceberg, which answers in milliseconds where a
    Spark query of a metadata table costs a job."""

    def __init__(self, spark: SparkSession, catalog: LakehouseCatalog):
        self.spark, self.catalog = spark, catalog

    def raw(self, name: str) -> str:
        return self.catalog.spark_table(self.catalog.raw_table(name))

    def star(self, name: str, branch: str | None = None) -> str:
        return self.catalog.spark_table(self.catalog.analytics_table(name), branch)

    def _metadata(self, name: str):
        """The PyIceberg table behind the Spark name ``name``, as committed now (None: no table)."""
        from pyiceberg.exceptions import NoSuchTableError

        try:
            return self.catalog.load().load_table(name.removeprefix(f"{self.catalog.name}."))
        except NoSuchTableError:
            return None

    def head(self, name: str, ref: str):
        """The PyIceberg snapshot at the head of ``ref`` (id and summary from one metadata read;
        None: no such table or ref)."""
        table = self._metadata(name)
        found = table.refs().get(ref) if table is not None else None
        return table.snapshot_by_id(found.snapshot_id) if found else None

    def ref(self, name: str, ref: str) -> int | None:
        head = self.head(name, ref)
        return head.snapshot_id if head else None

    # Read through the catalog (``table``), not as a data source by format: Spark finds a format by
    # scanning every jar on its class path for data source registrations, ~15 ms per DataFrame.
    def at(self, name: str, snapshot_id: int) -> DataFrame:
        return self.spark.read.option("versionAsOf", snapshot_id).table(name)

    def appended(self, name: str, after: int, through: int) -> DataFrame:
        """The rows appended after snapshot ``after`` up to ``through`` (both on one lineage)."""
        if after == through:
            return self.at(name, through).limit(0)
        return self.spark.read.option("start-snapshot-id", after).option("end-snapshot-id", through).table(name)

    def operations_since(self, name: str, after: int, through: int) -> list[str] | None:
        """The operations of the snapshots after ``after`` up to ``through``; None when ``after``
        is not an ancestor of ``through`` (the table was replaced, or history expired)."""
        table = self._metadata(name)
        operations, current = [], table.snapshot_by_id(through)
        while current is not None and current.snapshot_id != after:
            operations.append(current.summary.operation.value if current.summary else "unknown")
            current = table.snapshot_by_id(current.parent_snapshot_id) if current.parent_snapshot_id else None
        return operations if current is not None else None

    def committed_at(self, name: str, snapshot_id: int) -> datetime:
        """When snapshot ``snapshot_id`` of ``name`` was committed (a raw table's: its extraction)."""
        return datetime.fromtimestamp(self._metadata(name).snapshot_by_id(snapshot_id).timestamp_ms / 1000, timezone.utc)


def _records(snapshot) -> int:
    """The rows a PyIceberg snapshot holds, from its summary."""
    return int(snapshot.summary["total-records"])


@dataclass(frozen=True)
class RawZone:
    """The raw tables at the snapshots the build pinned when it started, the rows each snapshot
    holds, and the content digests their loads recorded (snapshot loads only)."""

    snapshots: dict[str, int]
    tables: RawTables
    digests: dict[str, str | None]
    rows: dict[str, int]


def read_raw_zone(lakehouse: _Lakehouse) -> RawZone:
    """Each raw table at its current snapshot, pinned, so that the rows and the recorded inputs
    agree even if a load commits meanwhile."""
    snapshots, frames, digests, rows = {}, {}, {}, {}
    for name in RAW_TABLES:
        table = lakehouse.raw(name)
        head = lakehouse.head(table, "main")
        if head is None:
            raise RawZoneNotReadyError(f"raw table {table} has never been loaded: materialize raw_{name} first")
        snapshots[name] = head.snapshot_id
        frames[name] = lakehouse.at(table, head.snapshot_id)
        digests[name] = head.summary.get(CONTENT_DIGEST) if head.summary else None
        rows[name] = _records(head)
    return RawZone(snapshots, RawTables(**frames), digests, rows)


@dataclass(frozen=True)
class PublishedBuild:
    """The build readers see now, as a new build may extend it: its version, the star tables'
    published snapshots, and the record it left (empty when it left none)."""

    version: str
    snapshots: dict[str, int]
    record: dict


@dataclass(frozen=True)
class BuildPlan:
    mode: str
    reason: str
    base_version: str | None = None
    base_snapshots: dict | None = None  # the published star tables' snapshots
    base: dict | None = None  # the published build's record
    settled_through: int | None = None  # incremental: the greatest raw transaction id now

    @classmethod
    def full(cls, reason: str) -> BuildPlan:
        return cls(FULL, reason)


def members_kept(published: PublishedBuild | None, raw: RawZone, fingerprint: str) -> bool:
    """Whether the published :data:`MEMBER_TABLES` are what this build would make: the same code
    and PII policy, from the same raw customers and accounts: the snapshots the published build
    read, or reloads of the same rows (equal content digests: a reload commits a new snapshot
    even when nothing changed)."""
    record = published.record if published else {}

    def same_rows(name: str) -> bool:
        digest = raw.digests.get(name)
        return record["raw_snapshots"].get(name) == raw.snapshots[name] or (
            digest is not None and record.get("raw_digests", {}).get(name) == digest)

    return (
        bool(record) and record["fingerprint"] == fingerprint and all(same_rows(name) for name in MEMBER_SOURCES)
        and all(table in published.snapshots for table in MEMBER_TABLES)
    )


def plan_build(
    lakehouse: _Lakehouse, raw: RawZone, fingerprint: str, full_refresh: bool, dimensions: dict[str, DataFrame],
    published: PublishedBuild | None, members_unchanged: bool = False,
) -> BuildPlan:
    """Incremental on top of the published build when that is sure to give the same tables as
    a full build; otherwise full, with the reason. ``members_unchanged``: see :func:`members_kept`."""
    if full_refresh:
        return BuildPlan.full("full refresh requested")
    if published is None:
        return BuildPlan.full("no version has been published yet")
    base_version, record = published.version, published.record
    if not record:
        return BuildPlan.full(f"published version {base_version} has no record to build on")
    if record["fingerprint"] != fingerprint:
        return BuildPlan.full(f"the transform, its audit or the PII policy changed since version {base_version}")
    for name in APPEND_ONLY:
        operations = lakehouse.operations_since(lakehouse.raw(name), record["raw_snapshots"][name], raw.snapshots[name])
        if operations is None or any(operation != "append" for operation in operations):
            return BuildPlan.full(f"raw {name} was reloaded or rewritten since version {base_version}")
    plan = BuildPlan(INCREMENTAL, f"new rows on top of version {base_version}", base_version,
                     published.snapshots, record)
    why, newest = _why_not_incremental(lakehouse, raw, plan, dimensions, members_unchanged)
    if why:
        return BuildPlan.full(f"{why} (since version {base_version})")
    marks = [mark for mark in (record["settled_through"], newest) if mark is not None]
    return replace(plan, settled_through=max(marks, default=None))


def _new_rows(lakehouse: _Lakehouse, raw: RawZone, plan: BuildPlan, name: str) -> DataFrame:
    return lakehouse.appended(lakehouse.raw(name), plan.base["raw_snapshots"][name], raw.snapshots[name])


def _base_table(lakehouse: _Lakehouse, plan: BuildPlan, table: str) -> DataFrame:
    return lakehouse.at(lakehouse.star(table), plan.base_snapshots[table])


def _above(frame: DataFrame, column: str, mark) -> DataFrame:
    return frame if mark is None else frame.where(F.col(column) > F.lit(mark))


# What can make a published fact differ from what a full build would now give, measured in one
# query (each Spark action costs a fixed second or so, whatever the data): kind -> the rows it
# counts, tagged "base" (the published tables) or "now", grouped by the columns it compares.
_LATE_TRANSACTIONS, _LATE_EVENTS = "late_transactions", "late_events"
_CHANGED_ACCOUNTS, _ARRIVED_ACCOUNTS, _DROPPED_DAYS = "changed_accounts", "arrived_accounts", "dropped_days"


def _why_not_incremental(
    lakehouse: _Lakehouse, raw: RawZone, plan: BuildPlan, dimensions: dict[str, DataFrame], members_unchanged: bool,
) -> tuple[str | None, int | None]:
    """The reason the published facts cannot be kept (or None), and the greatest new transaction id.

    - a transaction committed late, below the published greatest id (the event statistics the
      published build settled count on every transaction up to it being there);
    - a new event at or below that id (it changes a published fact, or the published count of
      events for unknown transactions);
    - an account that moved to another customer or disappeared (accounts and customers are
      reloaded whole, as snapshots), or a published transaction whose account was unknown and
      has arrived;
    - a day the calendar lost (an account opened later than the first transaction, say).

    The accounts are not compared when ``members_unchanged`` (the same raw snapshots make them).
    """
    mark = plan.base["settled_through"]
    kind, side = F.col("_kind"), F.col("_side")

    def tagged(frame: DataFrame, name: str, which: str, key: str, second_key: str | None = None) -> DataFrame:
        keys = [F.col(key), F.col(second_key) if second_key else F.lit(None)]  # every kind has both columns
        return frame.select(F.lit(name).alias("_kind"), F.lit(which).alias("_side"),
                            *[k.cast("bigint").alias(f"_k{i}") for i, k in enumerate(keys)])

    late = F.lit(False) if mark is None else F.col("transaction_id") <= F.lit(mark)
    new_transactions = _new_rows(lakehouse, raw, plan, "transactions").select(
        F.lit(_LATE_TRANSACTIONS).alias("_kind"), F.lit("now").alias("_side"),
        F.when(late, 1).alias("_late"), F.col("transaction_id").cast("bigint").alias("_max"))
    # An event whose transaction id is NULL was never above the mark either.
    new_events = _new_rows(lakehouse, raw, plan, "transaction_events").select(
        F.lit(_LATE_EVENTS).alias("_kind"), F.lit("now").alias("_side"),
        F.when(F.lit(mark is not None) & ~F.coalesce(F.col("transaction_id") > F.lit(mark), F.lit(False)), 1)
        .alias("_late"))
    accounts, calendar = _base_table(lakehouse, plan, "dim_accounts"), _base_table(lakehouse, plan, "dim_dates")
    compared = [
        tagged(calendar, _DROPPED_DAYS, "base", "date_key"),
        tagged(dimensions["dim_dates"], _DROPPED_DAYS, "now", "date_key"),
    ]
    if not members_unchanged:
        compared += [
            tagged(accounts, _CHANGED_ACCOUNTS, "base", "account_key", "customer_key"),
            tagged(dimensions["dim_accounts"], _CHANGED_ACCOUNTS, "now", "account_key", "customer_key"),
            tagged(accounts, _ARRIVED_ACCOUNTS, "base", "account_key"),
            tagged(dimensions["dim_accounts"], _ARRIVED_ACCOUNTS, "now", "account_key"),
        ]
    rows = new_transactions.unionByName(new_events, allowMissingColumns=True)
    for frame in compared:
        rows = rows.unionByName(frame, allowMissingColumns=True)
    # Per compared key: its rows on each side; a multiset difference (what exceptAll counts) is
    # the excess of one side over the other.
    per_key = rows.groupBy("_kind", "_k0", "_k1").agg(
        F.count(F.when(side == "base", 1)).alias("base"), F.count(F.when(side == "now", 1)).alias("now"),
        F.count("_late").alias("late"), F.max("_max").alias("max"))
    excess = F.when(kind == _ARRIVED_ACCOUNTS, F.col("now") - F.col("base")).otherwise(F.col("base") - F.col("now"))
    found = {
        row["_kind"]: row for row in per_key.groupBy("_kind").agg(
            F.sum(F.greatest(excess, F.lit(0))).alias("excess"), F.sum("late").alias("late"),
            F.max("max").alias("max"),
        ).collect()
    }

    def count(name: str, column: str) -> int:
        return int(found[name][column] or 0) if name in found else 0

    newest = found[_LATE_TRANSACTIONS]["max"] if _LATE_TRANSACTIONS in found else None
    newest = None if newest is None else int(newest)
    if late := count(_LATE_TRANSACTIONS, "late"):
        return f"{late:,} transactions committed late, below the published greatest id {mark}", newest
    if late := count(_LATE_EVENTS, "late"):
        return f"{late:,} new events belong to published transactions", newest
    if changed := count(_CHANGED_ACCOUNTS, "excess"):
        return f"{changed:,} accounts changed customer or were removed", newest
    if count(_ARRIVED_ACCOUNTS, "excess"):
        # Rare, and the only comparison that reads every published transaction: only then.
        arrived = dimensions["dim_accounts"].select("account_key").exceptAll(accounts.select("account_key"))
        published = lakehouse.at(lakehouse.raw("transactions"), plan.base["raw_snapshots"]["transactions"])
        reached = published.join(arrived, published["account_id"] == arrived["account_key"], "left_semi").count()
        if reached:
            return f"{reached:,} published transactions belong to accounts that arrived", newest
    if dropped := count(_DROPPED_DAYS, "excess"):
        return f"the calendar lost {dropped:,} days that published facts may use", newest
    return None, newest


def _ensure_table(lakehouse: _Lakehouse, table: str, columns: str, partitioning: str | None = None,
                  properties: dict[str, str] = TABLE_PROPERTIES) -> None:
    """Create ``table`` (Iceberg, :data:`TABLE_PROPERTIES` by default) with the DDL ``columns``, unless it exists."""
    properties = ", ".join(f"'{key}' = '{value}'" for key, value in properties.items())
    partitioned = f" PARTITIONED BY ({partitioning})" if partitioning else ""
    lakehouse.spark.sql(
        f"CREATE TABLE IF NOT EXISTS {table} ({columns}) USING iceberg{partitioned} TBLPROPERTIES ({properties})"
    )


def _columns(schema: T.StructType) -> str:
    return ", ".join(f"{quoted(f.name)} {f.dataType.simpleString()}" for f in schema)


def _create_branch(lakehouse: _Lakehouse, table: str, branch: str, snapshot_id: int | None) -> None:
    """The build's branch of ``table``, starting at ``snapshot_id`` (the published state), or at
    the table's current state when nothing was published."""
    as_of = f" AS OF VERSION {snapshot_id}" if snapshot_id is not None else ""
    lakehouse.spark.sql(f"ALTER TABLE {table} CREATE BRANCH {quoted(branch)}{as_of}")


def _ensure_fact_write_order(lakehouse: _Lakehouse, table: str) -> None:
    """:data:`FACT_WRITE_ORDER` on the fact table (set once: a table made before it lacks it)."""
    if lakehouse._metadata(table).sort_order().is_unsorted:
        lakehouse.spark.sql(f"ALTER TABLE {table} WRITE {FACT_WRITE_ORDER}")


def _writer(frame: DataFrame, target: str, sorted_by_table: bool = False):
    # Sorted by key within each file, so that a rebuild of the same raw data writes the same rows
    # in the same order; a global sort would cost another shuffle.
    ordered = frame if sorted_by_table else frame.sortWithinPartitions(frame.columns[0])
    return ordered.writeTo(target).option("mergeSchema", "true")


def _write_history(
    lakehouse: _Lakehouse, spec: HistorySpec, dimensions: dict[str, DataFrame], branch: str,
    published: int | None, extracted_at: datetime,
) -> dict[str, int]:
    """Bring ``spec``'s history, on ``branch`` from its ``published`` snapshot, up to the raw
    snapshot committed at ``extracted_at``: one MERGE of the changed members' rows, and no commit
    at all when nothing changed; a history with no version yet gets every member's first one
    appended. Returns the counts of what changed."""
    table = lakehouse.star(spec.table)
    empty = empty_history(spec, dimensions[spec.dimension])
    _ensure_table(lakehouse, table, _columns(empty.schema), properties=HISTORY_TABLE_PROPERTIES)
    _create_branch(lakehouse, table, branch, published)
    target = lakehouse.star(spec.table, branch)
    head = lakehouse.head(table, branch)
    if head is None or _records(head) == 0:
        # Nothing to compare with or merge into: one append, counted by its commit.
        _writer(first_history(spec, dimensions, extracted_at), target).append()
        head = lakehouse.head(table, branch)
        return {"new_versions": _records(head) if head else 0, "closed_versions": 0, "deleted_members": 0}
    changes = history_changes(spec, lakehouse.at(table, head.snapshot_id), members(spec, dimensions), extracted_at)
    # Counted first: most builds find no change, and then that one query is all they run.
    counted = {(r["_action"], r["is_deleted"]): r["count"] for r in changes.groupBy("_action", "is_deleted").count().collect()}
    found = {
        "new_versions": counted.get((INSERT, False), 0),
        "closed_versions": sum(n for (action, _), n in counted.items() if action != INSERT),
        "deleted_members": sum(n for (action, deleted), n in counted.items() if action != INSERT and deleted),
    }
    if any(found.values()):
        # Cut from the history it was read from: a MERGE whose source reads its own target does
        # not resolve in Spark.
        changes = changes.localCheckpoint()
        view = f"history_changes_{spec.table}_{branch}"
        changes.createOrReplaceTempView(view)
        try:
            lakehouse.spark.sql(merge_statement(spec, target, view, empty.columns))
        finally:
            lakehouse.spark.catalog.dropTempView(view)
    return found


def _write_balances(
    lakehouse: _Lakehouse, dim_accounts: DataFrame, branch: str, published: int | None, extracted_at: datetime,
    new_transactions: DataFrame | None,
) -> list[int]:
    """Add the snapshot of the accounts extracted at ``extracted_at`` to the balance table on
    ``branch`` (from its ``published`` snapshot; a later extraction the same day replaces the
    day's rows), and measure again the days whose facts changed: all of them in a full build, the
    days of ``new_transactions`` in an incremental one. Returns the days written."""
    table = lakehouse.star(BALANCES)
    today = balance_day(extracted_at)
    facts = lakehouse.at(lakehouse.star("fact_transactions"),
                         lakehouse.ref(lakehouse.star("fact_transactions"), branch))
    snapshot = with_day_measures(balance_snapshot(dim_accounts, extracted_at), facts, [today])
    _ensure_table(lakehouse, table, _columns(snapshot.schema), "date_key")
    _create_branch(lakehouse, table, branch, published)
    earlier = (lakehouse.at(table, published) if published else snapshot.limit(0)).where(F.col("date_key") != today)
    if new_transactions is None:
        days = [r[0] for r in earlier.select("date_key").distinct().collect()]
    else:
        days = [r[0] for r in new_transactions.select(date_key(F.to_date("timestamp"))).distinct().collect()]
    days = sorted({*days, today})
    rows = with_day_measures(earlier, facts, days).unionByName(snapshot)
    writer = _writer(rows, lakehouse.star(BALANCES, branch))
    if new_transactions is None:
        writer.overwrite(F.lit(True))
    else:
        writer.overwrite(F.col("date_key").isin(days))  # the days' files replaced, the others kept
    return days


@dataclass(frozen=True)
class _Start:
    """What a build knows before it writes anything."""

    lakehouse: _Lakehouse
    raw: RawZone
    fingerprint: str
    dimensions: dict[str, DataFrame]
    members_kept: bool
    plan: BuildPlan


def _start(spark: SparkSession, catalog: LakehouseCatalog, policy: PiiPolicy, published: PublishedBuild | None,
           full_refresh: bool) -> _Start:
    configure_session(spark, catalog)
    lakehouse = _Lakehouse(spark, catalog)
    raw = read_raw_zone(lakehouse)
    fingerprint = transform_fingerprint(policy)
    dimensions = build_dimensions(raw.tables, policy)
    kept = members_kept(published, raw, fingerprint)
    plan = plan_build(lakehouse, raw, fingerprint, full_refresh, dimensions, published, kept)
    return _Start(lakehouse, raw, fingerprint, dimensions, kept, plan)


def plan_next_build(spark: SparkSession, catalog: LakehouseCatalog, policy: PiiPolicy, *,
                    published: PublishedBuild | None = None, full_refresh: bool = False) -> BuildPlan:
    """How a build on top of ``published`` would go now (full or incremental, and why), writing
    nothing: what `build_star_schema_version` decides first."""
    return _start(spark, catalog, policy, published, full_refresh).plan


def build_star_schema_version(
    spark: SparkSession,
    catalog: LakehouseCatalog,
    version: str,
    policy: PiiPolicy,
    thresholds: QualityThresholds | None = None,
    *,
    published: PublishedBuild | None = None,
    full_refresh: bool = False,
    now: datetime | None = None,
) -> BuildReport:
    """Write the star schema on the branch ``audit_<version>`` of each table (incrementally on top
    of ``published``, the build readers see, when it can), and audit what the branches hold."""
    now = now or datetime.now(timezone.utc)
    start = _start(spark, catalog, policy, published, full_refresh)
    lakehouse, raw, fingerprint, dimensions, plan = (
        start.lakehouse, start.raw, start.fingerprint, start.dimensions, start.plan)
    branch = audit_branch(version)
    base_snapshots = plan.base_snapshots or {}
    incremental = plan.mode == INCREMENTAL

    new_transactions = _new_rows(lakehouse, raw, plan, "transactions") if incremental else raw.tables.transactions
    # Events of transactions the published facts lack: new ones, and older ones that were waiting
    # (no new transaction is at or below the published greatest id: the plan made sure).
    open_events = raw.tables.transaction_events
    if incremental:
        open_events = _above(open_events, "transaction_id", plan.base["settled_through"])
    broadcast_events = raw.rows["transaction_events"] <= BROADCAST_EVENTS_UP_TO

    # The histories and the balance snapshot go on from what readers see, whatever the mode: the
    # sources forget, so a full build cannot make them again.
    kept = published.snapshots if published else {}
    extracted = {name: lakehouse.committed_at(lakehouse.raw(name), raw.snapshots[name]) for name in MEMBER_SOURCES}

    def write_dimension(name: str, frame: DataFrame) -> None:
        if start.members_kept and name in MEMBER_DIMENSIONS:  # the published rows are this build's
            _create_branch(lakehouse, lakehouse.star(name), branch, kept[name])
            return
        _ensure_table(lakehouse, lakehouse.star(name), _columns(frame.schema))
        _create_branch(lakehouse, lakehouse.star(name), branch, base_snapshots.get(name))
        _writer(frame, lakehouse.star(name, branch)).overwrite(F.lit(True))  # one commit replaces all

    def write_history(spec: HistorySpec, source: str) -> dict[str, int]:
        if start.members_kept:  # no member changed since the published history
            _create_branch(lakehouse, lakehouse.star(spec.table), branch, kept[spec.table])
            return {"new_versions": 0, "closed_versions": 0, "deleted_members": 0}
        return _write_history(lakehouse, spec, dimensions, branch, kept.get(spec.table), extracted[source])

    def write_facts_and_balances() -> tuple[dict[str, dict[str, int]], list[int]]:
        """The histories, then the facts (their version keys read the histories' branches), then
        the balances (measured from the facts' branch)."""
        customer_changes, account_changes = concurrently(
            lambda: write_history(CUSTOMER_HISTORY, "customers"), lambda: write_history(ACCOUNT_HISTORY, "accounts"))
        histories = {spec.table: lakehouse.at(lakehouse.star(spec.table),
                                              lakehouse.ref(lakehouse.star(spec.table), branch)) for spec in HISTORIES}
        facts = build_fact_transactions(new_transactions, dimensions["dim_accounts"], open_events, histories, as_of=now,
                                        broadcast_events=broadcast_events)
        fact_table = lakehouse.star("fact_transactions")
        _ensure_table(lakehouse, fact_table, _columns(facts.schema), FACT_PARTITIONING)
        _ensure_fact_write_order(lakehouse, fact_table)
        _create_branch(lakehouse, fact_table, branch, base_snapshots.get("fact_transactions"))
        fact_writer = _writer(facts, lakehouse.star("fact_transactions", branch), sorted_by_table=True)
        if incremental:
            fact_writer.append()
        else:
            fact_writer.overwrite(F.lit(True))
        days = _write_balances(lakehouse, dimensions["dim_accounts"], branch, kept.get(BALANCES),
                               extracted["accounts"], new_transactions if incremental else None)
        return {CUSTOMER_HISTORY.table: customer_changes, ACCOUNT_HISTORY.table: account_changes}, days

    # The new rows and the settled mark the plan measured from them alone (incremental), or every row.
    settled_through = plan.settled_through if incremental else (
        raw.tables.transactions.agg(F.max("transaction_id")).first()[0])
    # Each table on its own branch and commit, and what needs no written table at once with the
    # writes: the dimensions, the chain histories -> facts -> balances, the event statistics (raw rows only).
    new_statistics, (history_counts, balance_days), *_ = concurrently(
        lambda: event_statistics(new_transactions, open_events, settled_through),
        write_facts_and_balances,
        *[lambda name=name, frame=frame: write_dimension(name, frame) for name, frame in dimensions.items()],
    )

    # Each branch's head read once: its id and its row count (the snapshot's summary).
    heads = {name: lakehouse.head(lakehouse.star(name), branch) for name in STAR_TABLES}
    snapshots = {name: head.snapshot_id for name, head in heads.items()}
    # The audit reads what the branches hold, not the plan that wrote them.
    written = StarSchema(**{name: lakehouse.at(lakehouse.star(name), snapshots[name]) for name in STAR_TABLES})
    audited = lakehouse.appended(lakehouse.star("fact_transactions"), base_snapshots["fact_transactions"],
                                 snapshots["fact_transactions"]) if incremental else written.fact_transactions
    # Histories and dimensions of members kept as published: so are the measures their checks read.
    known_measures = (start.members_kept and published.record.get("history_measures")) or None
    new_audit, (table_checks, histories_measured) = concurrently(
        lambda: audit_facts(audited, written, new_transactions, now),
        lambda: table_outcomes(written, balance_days, known_measures),
    )
    fact_audit = (FactAudit.from_dict(plan.base["fact_audit"]) + new_audit) if incremental else new_audit
    base_settled = plan.base["settled_statistics"] if incremental else {name: 0 for name in STATISTICS}
    statistics = {name: base_settled[name] + new_statistics[name] for name in STATISTICS}
    settled = {name: base_settled[name] + new_statistics[f"settled_{name}"] for name in STATISTICS}
    statistics["unknown_account_rows"] = fact_audit.unknown_members.get("account_key", 0)
    checks = audit_outcomes(written, fact_audit, statistics, thresholds or QualityThresholds(), now, new_audit,
                            tables=table_checks)
    row_counts = {name: _records(head) for name, head in heads.items()}
    return BuildReport(
        version=version, branch=branch, tables={name: catalog.analytics_table(name) for name in STAR_TABLES},
        snapshots=snapshots, row_counts=row_counts, statistics=statistics, checks=checks, mode=plan.mode,
        mode_reason=plan.reason, new_fact_rows=new_audit.rows, history_changes=history_counts,
        record={
            "fingerprint": fingerprint,
            "raw_snapshots": raw.snapshots,
            "raw_digests": raw.digests,
            "fact_audit": fact_audit.to_dict(),
            "settled_statistics": settled,
            "settled_through": settled_through,
            "history_measures": histories_measured,
        },
    )
