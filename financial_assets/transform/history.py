"""What the sources forget: type-2 history of customers and accounts, point-in-time keys for the
facts, and a daily snapshot of account balances. Pure PySpark, no Dagster import (Glue runs it).

The sources keep only the current row of a customer or an account, and have no ``updated_at``:
a change can only be seen by comparing what one extraction of the source says with what the
previous one said. So:

- **A version** is one state of a member (a customer, an account) on the columns analytics may
  see: those of ``dim_customers`` / ``dim_accounts`` (tokens, masked values, city and region; not
  an account's balance, which changes every day and is a measure of
  ``fact_account_balances_daily``). Each build compares the member's current version with the raw
  snapshot it pinned; when they differ, the current version is closed and a new one opened.
- **valid_from** of a change is the time the raw snapshot that first showed it was committed (the
  extraction): the change happened at or before that instant, after the previous extraction, and
  the source cannot say more. A member's first version starts at its creation (an account's
  ``opened_at``; a customer's earliest account opening), or at the extraction when unknown, so
  that the transactions made before the history began still find it.
- Intervals are half-open, ``[valid_from, valid_to)``; ``valid_to`` is NULL while the version is
  current. A member deleted from the source has its current version closed at the extraction and
  flagged ``is_deleted``: never erased. The unknown member -1 has one version, key -1, valid always.
- The **version key** is a 64-bit hash of the member key and ``valid_from``: the same history gives
  the same keys, whichever build wrote it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from financial_assets.transform.literal_rows import literal_rows, quoted
from financial_assets.transform.members import UNKNOWN_KEY

INSERT, CLOSE = "insert", "close"
VALIDITY = ("valid_from", "valid_to", "is_current", "is_deleted")


@dataclass(frozen=True)
class HistorySpec:
    """A type-2 history table: its member key, its version key, and the dimension it versions."""

    table: str
    dimension: str
    member_key: str
    version_key: str
    untracked: tuple[str, ...] = ()  # the dimension's columns a change of which opens no version

    def attributes(self, dimension: DataFrame) -> list[str]:
        return [c for c in dimension.columns if c != self.member_key and c not in self.untracked]

    def columns(self, dimension: DataFrame) -> list[str]:
        return [self.member_key, self.version_key, *self.attributes(dimension), *VALIDITY]


CUSTOMER_HISTORY = HistorySpec("dim_customers_history", "dim_customers", "customer_key", "customer_version_key")
ACCOUNT_HISTORY = HistorySpec("dim_accounts_history", "dim_accounts", "account_key", "account_version_key",
                              untracked=("balance",))
HISTORIES = (CUSTOMER_HISTORY, ACCOUNT_HISTORY)
BALANCES = "fact_account_balances_daily"


def version_key(member: Column, valid_from: Column) -> Column:
    return F.when(member == UNKNOWN_KEY, F.lit(UNKNOWN_KEY).cast("bigint")).otherwise(
        F.xxhash64(member, valid_from))


def customers_created_at(dim_accounts: DataFrame) -> DataFrame:
    """``customer_key, created_at``: a customer's earliest account opening (the source keeps no
    customer creation time)."""
    return dim_accounts.where(F.col("customer_key") != UNKNOWN_KEY).groupBy("customer_key").agg(
        F.min("opened_at").alias("created_at"))


def members(spec: HistorySpec, dimensions: dict[str, DataFrame]) -> DataFrame:
    """The current dimension rows of ``spec``'s members, with ``created_at``."""
    dimension = dimensions[spec.dimension]
    if spec is CUSTOMER_HISTORY:
        return dimension.join(customers_created_at(dimensions["dim_accounts"]), "customer_key", "left")
    return dimension.withColumn("created_at", F.col("opened_at"))


def empty_history(spec: HistorySpec, dimension: DataFrame) -> DataFrame:
    """A history with no version yet, in the columns and types of ``spec``'s table."""
    types = {f.name: f.dataType for f in dimension.schema}
    types.update({spec.version_key: T.LongType(), "valid_from": T.TimestampType(), "valid_to": T.TimestampType(),
                  "is_current": T.BooleanType(), "is_deleted": T.BooleanType()})
    schema = T.StructType([T.StructField(c, types[c]) for c in spec.columns(dimension)])
    return literal_rows(dimension.sparkSession, schema, {}, rows=0)


def history_changes(spec: HistorySpec, versions: DataFrame, current: DataFrame, extracted_at: datetime) -> DataFrame:
    """What turns ``versions`` (the history so far) into the history of ``current`` (the member rows
    of a raw snapshot committed at ``extracted_at``, from :func:`members`): rows tagged ``_action``,
    ``insert`` (a new version, every column) or ``close`` (the version key of a current version, and
    its ``valid_to`` and ``is_deleted``). Empty when nothing changed."""
    key, attributes = spec.member_key, spec.attributes(current.drop("created_at"))
    at = F.lit(extracted_at).cast("timestamp")
    now = current.select(key, *attributes, "created_at", F.lit(True).alias("_now"))
    open_versions = versions.where("is_current").select(
        key, spec.version_key, *[F.col(c).alias(f"_was_{c}") for c in attributes], F.lit(True).alias("_open"))
    ever = versions.select(key).distinct().select(key, F.lit(True).alias("_ever"))
    compared = now.join(open_versions, key, "full_outer").join(ever, key, "left")
    present, was_open = F.col("_now").isNotNull(), F.col("_open").isNotNull()
    same = F.lit(True)
    for column in attributes:
        same = same & F.col(column).eqNullSafe(F.col(f"_was_{column}"))
    opens = present & (~was_open | ~same)
    closes = was_open & (~present | ~same)
    # A member's first version starts at its creation (never after the extraction); any later one
    # at the extraction that showed it.
    first_from = F.when(F.col(key) == UNKNOWN_KEY, F.lit(None).cast("timestamp")).otherwise(
        F.least(F.coalesce(F.col("created_at"), at), at))
    valid_from = F.when(F.col("_ever").isNull(), first_from).otherwise(at)
    inserted = compared.where(opens).select(
        F.lit(INSERT).alias("_action"),
        F.col(key), version_key(F.col(key), valid_from).alias(spec.version_key), *attributes,
        valid_from.alias("valid_from"), F.lit(None).cast("timestamp").alias("valid_to"),
        F.lit(True).alias("is_current"), F.lit(False).alias("is_deleted"),
    )
    closed = compared.where(closes).select(
        F.lit(CLOSE).alias("_action"), F.col(key), F.col(spec.version_key), at.alias("valid_to"),
        F.lit(False).alias("is_current"), (~present).alias("is_deleted"),
    )
    return inserted.unionByName(closed, allowMissingColumns=True).select("_action", *spec.columns(current.drop(
        "created_at")))


def merge_statement(spec: HistorySpec, target: str, changes_view: str, columns: list[str]) -> str:
    """The Iceberg ``MERGE INTO`` that applies :func:`history_changes` (a view) to ``target``: only
    the changed members' rows are written."""
    listed = ", ".join(quoted(c) for c in columns)
    values = ", ".join(f"s.{quoted(c)}" for c in columns)
    version_key = quoted(spec.version_key)
    return (
        f"MERGE INTO {target} t USING {changes_view} s "
        f"ON t.{version_key} = s.{version_key} AND s._action = '{CLOSE}' "
        f"WHEN MATCHED THEN UPDATE SET t.valid_to = s.valid_to, t.is_current = false, t.is_deleted = s.is_deleted "
        f"WHEN NOT MATCHED AND s._action = '{INSERT}' THEN INSERT ({listed}) VALUES ({values})"
    )


def first_history(spec: HistorySpec, dimensions: dict[str, DataFrame], extracted_at: datetime) -> DataFrame:
    """The history of members that have none yet: each one's first version."""
    current = members(spec, dimensions)
    changes = history_changes(spec, empty_history(spec, dimensions[spec.dimension]), current, extracted_at)
    return changes.where(F.col("_action") == INSERT).drop("_action")


def with_version_key(facts: DataFrame, spec: HistorySpec, versions: DataFrame, as_of: datetime) -> DataFrame:
    """``facts`` with ``spec``'s version key: the version of the fact's member valid at its
    ``transaction_at``; -1 when none is (no time, a time after ``as_of``, before the member's first
    version or after its deletion, an unknown member).

    An equi-join on the member key (its few versions broadcast) plus a filter on the interval:
    intervals never overlap, so each fact meets at most one version and no row is repeated."""
    key = spec.member_key
    candidates = F.broadcast(versions.where(F.col(key) != UNKNOWN_KEY).select(
        F.col(key).alias("_member"), F.col(spec.version_key).alias("_version"),
        F.col("valid_from").alias("_from"), F.col("valid_to").alias("_to")))
    at = F.col("transaction_at")
    valid = (F.col(key) == F.col("_member")) & (at >= F.col("_from")) & (
        F.col("_to").isNull() | (at < F.col("_to"))) & (at <= F.lit(as_of))
    return facts.join(candidates, valid, "left").withColumn(
        spec.version_key, F.coalesce(F.col("_version"), F.lit(UNKNOWN_KEY).cast("bigint"))
    ).drop("_member", "_version", "_from", "_to")


# --- the daily balance snapshot ------------------------------------------------------------------


def balance_day(extracted_at: datetime) -> int:
    """The date_key of the snapshot a build adds: the UTC day of the raw accounts' extraction."""
    return int(extracted_at.astimezone(timezone.utc).strftime("%Y%m%d"))


def balance_snapshot(dim_accounts: DataFrame, extracted_at: datetime) -> DataFrame:
    """One row per live account (not the unknown member): its balance as extracted, on the
    extraction's day, measures to be filled by :func:`with_day_measures`."""
    return dim_accounts.where(F.col("account_key") != UNKNOWN_KEY).select(
        F.lit(balance_day(extracted_at)).alias("date_key"),
        "account_key", "customer_key", "balance",
        F.lit(extracted_at).cast("timestamp").alias("extracted_at"),
    )


# Up to this many days, the facts of some days are also selected by their transaction_at's range,
# which Iceberg prunes to those days' partitions: an incremental build's few days read a few files,
# not the whole fact table. More days (a full build's) read nearly everything anyway.
_PRUNED_DAYS = 31


def facts_of_days(facts: DataFrame, days: list[int]) -> DataFrame:
    """The facts whose date_key is one of ``days`` (yyyymmdd)."""
    of_days = facts.where(F.col("date_key").isin(days))
    starts = []
    for day in days:
        try:
            starts.append(datetime.strptime(str(day), "%Y%m%d").replace(tzinfo=timezone.utc))
        except ValueError:  # the unknown day: no range to prune by
            return of_days
    if not starts or len(starts) > _PRUNED_DAYS:
        return of_days
    at = F.col("transaction_at")
    in_range = [(at >= F.lit(start)) & (at < F.lit(start + timedelta(days=1))) for start in starts]
    return of_days.where(functools.reduce(lambda a, b: a | b, in_range))


def day_measures(facts: DataFrame, days: list[int]) -> DataFrame:
    """Per account and day of ``days``: its facts' count and net signed amount."""
    return facts_of_days(facts, days).groupBy("account_key", "date_key").agg(
        F.count(F.lit(1)).alias("transaction_count"),
        F.coalesce(F.sum("signed_amount"), F.lit(0)).cast("decimal(22,2)").alias("net_signed_amount"),
    )


def with_day_measures(rows: DataFrame, facts: DataFrame, days: list[int]) -> DataFrame:
    """Balance rows (of ``days`` only) with the day's measures, as the facts now hold them: a
    transaction loaded after its day's snapshot still counts on that day."""
    measured = rows.select("date_key", "account_key", "customer_key", "balance", "extracted_at").where(
        F.col("date_key").isin(days)).join(day_measures(facts, days), ["account_key", "date_key"], "left")
    return measured.select(
        "date_key", "account_key", "customer_key", "balance", "extracted_at",
        F.coalesce("transaction_count", F.lit(0)).cast("bigint").alias("transaction_count"),
        F.coalesce("net_signed_amount", F.lit(0)).cast("decimal(22,2)").alias("net_signed_amount"),
    )
