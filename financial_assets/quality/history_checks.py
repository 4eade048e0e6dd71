"""The checks of what keeps history: the type-2 histories, the facts' point-in-time keys, the
daily balance snapshot. All pipeline integrity (ERROR, blocking): a history that overlaps or
loses its current version, or a snapshot with a repeated or missing day, is our bug, never the
source's. Pure PySpark, no Dagster import; `financial_assets.quality.star_checks` runs them with
the others.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from financial_assets.quality.specs import HISTORY_CHECKS, CheckOutcome, outcome_of
from financial_assets.transform.history import BALANCES, HISTORIES, HistorySpec, day_measures, with_version_key
from financial_assets.transform.members import UNKNOWN_KEY

FACTS = "fact_transactions"


def _outcome(asset: str, name: str, passed: bool, **metadata) -> CheckOutcome:
    return outcome_of(HISTORY_CHECKS, asset, name, passed, **metadata)


def _per_member(spec: HistorySpec, history: DataFrame, dimension: DataFrame) -> DataFrame:
    """One row per member of a history and its current dimension: what the checks count."""
    key, version = spec.member_key, spec.version_key
    by_member = Window.partitionBy(key).orderBy(F.col("valid_from").asc_nulls_first(), F.col(version))
    next_from = F.lead("valid_from").over(by_member)
    flagged = history.select(
        F.col(key), F.lit(1).alias("_version"),
        F.col("is_current").cast("int").alias("_current"),
        (F.count(F.lit(1)).over(Window.partitionBy(version)) > 1).cast("int").alias("_repeated"),
        (F.col(version).isNull() | F.col(key).isNull()).cast("int").alias("_null_key"),
        (
            F.coalesce(F.col("valid_from") >= F.col("valid_to"), F.lit(False))
            | (F.col("valid_from").isNull() & (F.col(key) != UNKNOWN_KEY))
            | (next_from.isNotNull() & (F.col("valid_to").isNull() | (next_from < F.col("valid_to"))))
            | ~F.coalesce(F.col("is_current") == F.col("valid_to").isNull(), F.lit(False))
            | F.coalesce(F.col("is_deleted") & F.col("is_current"), F.lit(True))
        ).cast("int").alias("_bad_interval"),
    )
    live = dimension.select(F.col(key), F.lit(1).alias("_live"))
    return flagged.unionByName(live, allowMissingColumns=True).groupBy(key).agg(
        F.count("_version").alias("versions"), F.coalesce(F.sum("_current"), F.lit(0)).alias("current"),
        F.count("_live").alias("live"), F.sum("_repeated").alias("repeated"), F.sum("_null_key").alias("null_key"),
        F.sum("_bad_interval").alias("bad_interval"),
    ).select(F.lit(spec.table).alias("_table"), "*").drop(key)


def history_measures(tables: dict[str, DataFrame]) -> dict[str, dict[str, int]]:
    """Per history table, every count its checks need: one query for all of them. Plain ints, so
    a build records them and a later build that keeps the same histories and dimensions (the
    members' raw snapshots unchanged) decides the checks from them without reading the tables."""
    members = None
    for spec in HISTORIES:
        part = _per_member(spec, tables[spec.table], tables[spec.dimension])
        members = part if members is None else members.unionByName(part)
    live_member = F.col("live") > 0
    totals = members.groupBy("_table").agg(
        F.count(F.when(F.col("versions") > 0, 1)).alias("members"),
        F.sum("versions").alias("versions"),
        F.sum("repeated").alias("repeated_version_keys"),
        F.sum("null_key").alias("null_keys"),
        F.sum("bad_interval").alias("overlapping_versions"),
        F.count(F.when(live_member & (F.col("current") != 1), 1)).alias("live_without_one_current"),
        F.count(F.when(~live_member & (F.col("current") > 0), 1)).alias("deleted_with_current"),
    )
    names = [name for name in totals.columns if name != "_table"]
    found = {row["_table"]: {n: int(row[n] or 0) for n in names} for row in totals.collect()}
    return {spec.table: found.get(spec.table, dict.fromkeys(names, 0)) for spec in HISTORIES}


def history_outcomes(measured: dict[str, dict[str, int]]) -> list[CheckOutcome]:
    """The checks of each history table against its current dimension, from what
    :func:`history_measures` measured."""
    outcomes = []
    for spec in HISTORIES:
        found = measured[spec.table]
        size = {"members": found["members"], "versions": found["versions"]}
        outcomes += [
            _outcome(spec.table, "keys_unique_and_not_null", not (found["repeated_version_keys"] or found["null_keys"]),
                     **size, repeated_version_keys=found["repeated_version_keys"], null_keys=found["null_keys"]),
            _outcome(spec.table, "validity_intervals_do_not_overlap", not found["overlapping_versions"],
                     **size, overlapping_versions=found["overlapping_versions"]),
            _outcome(spec.table, "one_current_version_per_live_member",
                     not (found["live_without_one_current"] or found["deleted_with_current"]),
                     **size, live_without_one_current=found["live_without_one_current"],
                     deleted_with_current=found["deleted_with_current"]),
        ]
    return outcomes


def with_expected_version_keys(facts: DataFrame, tables: dict[str, DataFrame], as_of: datetime) -> DataFrame:
    """``facts`` and, per version key column ``c``, ``_expected_<c>``: the version the written history
    holds valid at the fact's time (what `with_version_key` would give it now, from the same
    ``as_of``). Joins with the histories only (broadcast): an audit adds it to its own scan of the facts."""
    columns = [spec.version_key for spec in HISTORIES]
    expected = facts.withColumnsRenamed({c: f"_written_{c}" for c in columns})
    for spec in HISTORIES:
        expected = with_version_key(expected, spec, tables[spec.table], as_of)
    return expected.withColumnsRenamed({c: f"_expected_{c}" for c in columns}).withColumnsRenamed(
        {f"_written_{c}": c for c in columns})


def version_key_mismatches() -> dict[str, Column]:
    """Per version key column: true on a row of `with_expected_version_keys` whose written key is
    not the expected one."""
    return {spec.version_key: ~F.col(f"_expected_{spec.version_key}").eqNullSafe(F.col(spec.version_key))
            for spec in HISTORIES}


def version_key_outcome(errors: dict[str, int]) -> CheckOutcome:
    return _outcome(FACTS, "history_keys_resolve", not any(errors.values()), unresolved_rows=errors)


def balance_outcomes(balances: DataFrame, facts: DataFrame, days: list[int] | None = None) -> list[CheckOutcome]:
    """The snapshot's checks: ``days`` are the days this build wrote (None: all of them), the
    only ones whose rows and measures are checked again; gaps are looked for in the whole table."""
    audited = balances if days is None else balances.where(F.col("date_key").isin(days))
    if days is None:
        days = sorted(r[0] for r in balances.select("date_key").distinct().collect() if r[0] is not None)
    per_row = audited.groupBy("account_key", "date_key").agg(
        F.count(F.lit(1)).alias("rows"), F.sum("transaction_count").alias("count"),
        F.sum("net_signed_amount").alias("net"))
    measured = per_row.join(day_measures(facts, days), ["account_key", "date_key"], "left")
    wrong = ~F.coalesce(F.col("transaction_count"), F.lit(0)).eqNullSafe(F.col("count")) | ~F.coalesce(
        F.col("net_signed_amount"), F.lit(0)).cast("decimal(22,2)").eqNullSafe(F.col("net"))
    rows = measured.agg(
        F.count(F.when((F.col("rows") > 1) | F.col("account_key").isNull() | F.col("date_key").isNull(), 1))
        .alias("repeated"),
        F.count(F.when(wrong, 1)).alias("mismatched"),
    )
    # The snapshot days numbered in order (a few hundred rows: one partition is fine), so that an
    # account's rows cover its first to its last day without a gap when they are as many as the
    # numbers between.
    numbered = balances.select("date_key").distinct().withColumn("_day", F.dense_rank().over(Window.orderBy("date_key")))
    ranked = balances.select("account_key", "date_key").distinct().join(F.broadcast(numbered), "date_key")
    gaps = ranked.groupBy("account_key").agg(
        (F.max("_day") - F.min("_day") + 1 - F.count(F.lit(1))).alias("missing")
    ).agg(F.count(F.when(F.col("missing") > 0, 1)).alias("accounts"), F.sum("missing").alias("days"))
    found = rows.crossJoin(gaps).first()  # one job for both
    return [
        _outcome(BALANCES, "one_row_per_account_per_day", not found["repeated"],
                 repeated_or_null_keys=int(found["repeated"])),
        _outcome(BALANCES, "no_gap_days", not found["accounts"],
                 accounts_with_gaps=int(found["accounts"] or 0), missing_days=int(found["days"] or 0)),
        _outcome(BALANCES, "net_amounts_reconcile_with_facts", not found["mismatched"],
                 mismatched_rows=int(found["mismatched"])),
    ]
