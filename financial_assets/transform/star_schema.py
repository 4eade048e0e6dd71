"""The star schema, from raw DataFrames to `dim_*` and `fact_transactions`. Pure PySpark.

No Dagster import: the local Spark resource and the AWS Glue job call these same functions.

Rules (each has a test in `financial_assets_tests/test_star_schema.py`):

- Unknown members: every dimension has a row with key ``-1`` ("unknown"). A transaction whose
  account does not exist, or an account whose customer does not exist, points at it instead
  of being dropped; a transaction without a timestamp gets ``date_key = -1``.
- Signed amount: deposits count in (``+amount``), withdrawals and transfers out (``-amount``);
  an unrecognised type has no direction, so its signed amount is NULL.
- Events: one per transaction. When a transaction has several, the one with the greatest
  ``event_id`` wins (ObjectIds grow with write time, so the latest written); the others are
  counted, not used. Events for transactions that do not exist are counted, not joined.
- Dates: ``dim_dates`` is a full calendar from the earliest account opening to the latest
  transaction, whether or not a day had a transaction. Dates are UTC days.
- History: ``dim_customers_history`` and ``dim_accounts_history`` keep every version of a member
  (type 2, see `financial_assets.transform.history`); each fact carries ``customer_version_key``
  and ``account_version_key``, the versions valid at its ``transaction_at``, while
  ``dim_customers`` / ``dim_accounts`` stay the current view. ``fact_account_balances_daily`` has
  a row per live account per day a build extracted the accounts.
- Defects: a source row with something wrong in it (a NULL amount, a date in the future, an
  unknown account...) is kept like any other, and its fact carries the codes of what is wrong in
  ``defects`` (`financial_assets.quality.defects`; empty when nothing is). Readers exclude flagged rows with
  ``cardinality(defects) = 0``; the audit counts each code and decides whether the build may be
  published (`financial_assets/quality/star_checks.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from financial_assets.lakehouse.tables import STAR_TABLES
from financial_assets.quality.defects import (
    ACCEPTED_DEVICE_TYPES,
    ACCEPTED_TRANSACTION_TYPES,
    DEFECTS,
    OLDEST_PLAUSIBLE_TIME,
)
from financial_assets.transform.history import (
    ACCOUNT_HISTORY,
    CUSTOMER_HISTORY,
    HISTORIES,
    balance_day,
    balance_snapshot,
    first_history,
    with_day_measures,
    with_version_key,
)
from financial_assets.transform.literal_rows import literal_rows
from financial_assets.transform.members import UNKNOWN_KEY
from financial_assets.transform.pii import (
    PiiPolicy,
    address_city,
    address_region,
    email_token,
    masked_phone,
)

@dataclass(frozen=True)
class RawTables:
    customers: DataFrame
    accounts: DataFrame
    transactions: DataFrame
    transaction_events: DataFrame


@dataclass(frozen=True)
class StarSchema:
    dim_customers: DataFrame
    dim_accounts: DataFrame
    dim_dates: DataFrame
    dim_customers_history: DataFrame
    dim_accounts_history: DataFrame
    fact_transactions: DataFrame
    fact_account_balances_daily: DataFrame

    def tables(self) -> dict[str, DataFrame]:
        return {name: getattr(self, name) for name in STAR_TABLES}


def date_key(value: Column) -> Column:
    """yyyymmdd as an int, or -1 for a missing date."""
    return F.coalesce(F.date_format(value, "yyyyMMdd").cast("int"), F.lit(UNKNOWN_KEY))


def _with_unknown_member(dimension: DataFrame, unknown: dict) -> DataFrame:
    """``dimension`` and its unknown member: ``unknown``'s values, NULL in every other column."""
    return dimension.unionByName(literal_rows(dimension.sparkSession, dimension.schema, unknown, rows=1))


def build_dim_customers(customers: DataFrame, policy: PiiPolicy) -> DataFrame:
    columns = [
        F.col("customer_id").alias("customer_key"),
        F.col("name"),
        email_token(F.col("email"), policy).alias("email"),
        masked_phone(F.col("phone"), policy).alias("phone"),
        address_city(F.col("address")).alias("city"),
        address_region(F.col("address")).alias("region"),
    ]
    if policy.clear_text:
        columns.append(F.col("address"))
    dimension = customers.select(*columns)
    return _with_unknown_member(dimension, {"customer_key": UNKNOWN_KEY, "name": "Unknown customer"})


def build_dim_accounts(accounts: DataFrame, customers: DataFrame) -> DataFrame:
    known_customers = customers.select(F.col("customer_id").alias("known_customer_id"))
    dimension = accounts.join(
        known_customers, accounts["customer_id"] == known_customers["known_customer_id"], "left"
    ).select(
        F.col("account_id").alias("account_key"),
        F.coalesce(F.col("known_customer_id"), F.lit(UNKNOWN_KEY)).alias("customer_key"),
        F.col("account_type"),
        F.col("opened_at"),
        date_key(F.col("opened_at")).alias("opened_date_key"),
        F.col("balance"),
    )
    return _with_unknown_member(
        dimension,
        {"account_key": UNKNOWN_KEY, "customer_key": UNKNOWN_KEY, "account_type": "unknown",
         "opened_date_key": UNKNOWN_KEY},
    )


def build_dim_dates(accounts: DataFrame, transactions: DataFrame) -> DataFrame:
    # The day of the least time, not the least day: a plain min/max of a column is what Iceberg
    # answers from its files' statistics (aggregate push-down) instead of reading every row.
    openings = accounts.agg(F.min("opened_at").alias("first"), F.max("opened_at").alias("last")).select(
        F.to_date("first").alias("first_opening"), F.to_date("last").alias("last_opening"))
    activity = transactions.agg(F.min("timestamp").alias("first"), F.max("timestamp").alias("last")).select(
        F.to_date("first").alias("first_transaction"), F.to_date("last").alias("last_transaction"))
    first = F.coalesce("first_opening", "first_transaction")
    last = F.coalesce("last_transaction", "last_opening")
    days = openings.crossJoin(activity).select(
        F.explode(F.sequence(F.least(first, last), F.greatest(first, last), F.expr("interval 1 day"))).alias(
            "date"
        )
    )
    calendar = days.select(
        date_key(F.col("date")).alias("date_key"),
        F.col("date"),
        F.year("date").alias("year"),
        F.quarter("date").alias("quarter"),
        F.month("date").alias("month"),
        F.date_format("date", "MMMM").alias("month_name"),
        F.dayofmonth("date").alias("day"),
        # ISO weekday: Monday = 1 ... Sunday = 7.
        (((F.dayofweek("date") + 5) % 7) + 1).alias("weekday"),
        F.date_format("date", "EEEE").alias("weekday_name"),
        F.weekofyear("date").alias("iso_week"),
        F.dayofweek("date").isin(1, 7).alias("is_weekend"),
    )
    return _with_unknown_member(calendar, {"date_key": UNKNOWN_KEY})


def deduplicate_events(events: DataFrame) -> DataFrame:
    """One event per transaction: the one with the greatest event_id, with ``events_of_transaction``,
    how many the transaction had (one window: the count costs no shuffle of its own)."""
    per_transaction = Window.partitionBy("transaction_id")
    latest_first = per_transaction.orderBy(F.col("event_id").desc())
    return (
        events.withColumn("_rank", F.row_number().over(latest_first))
        .withColumn("events_of_transaction", F.count(F.lit(1)).over(per_transaction))
        .where(F.col("_rank") == 1)
        .drop("_rank")
    )


def signed_amount(transaction_type: Column, amount: Column) -> Column:
    return (
        F.when(transaction_type == "deposit", amount)
        .when(transaction_type.isin("withdrawal", "transfer"), -amount)
        .otherwise(F.lit(None))
    )


def defect_codes(columns: dict[str, Column], as_of: datetime) -> Column:
    """The ``defects`` of each row: the codes of :data:`DEFECTS` whose condition holds (a NULL
    condition does not), in that order; an empty array when none does, never NULL."""
    amount, timestamp = columns["amount"], columns["timestamp"]
    conditions = {
        "amount_missing": amount.isNull(),
        "amount_not_positive": amount <= 0,
        "time_missing": timestamp.isNull(),
        "time_in_future": timestamp > F.lit(as_of),
        "time_too_old": timestamp < F.lit(OLDEST_PLAUSIBLE_TIME),
        "account_unknown": columns["account_key"].isNull(),
        "customer_unknown": columns["customer_key"] == UNKNOWN_KEY,
        "transaction_type_unknown": ~F.coalesce(
            columns["transaction_type"].isin(*ACCEPTED_TRANSACTION_TYPES), F.lit(False)),
        "device_type_unknown": ~columns["device_type"].isin(*ACCEPTED_DEVICE_TYPES),
        "fraud_score_out_of_range": ~columns["fraud_score"].between(0, 1),
        "event_duplicated": columns["events_of_transaction"] > 1,
    }
    assert list(conditions) == list(DEFECTS), "every defect code has its condition, in DEFECTS' order"
    flagged = F.array(*[F.when(condition, F.lit(code)) for code, condition in conditions.items()])
    return F.filter(flagged, lambda code: code.isNotNull())


def build_fact_transactions(
    transactions: DataFrame, dim_accounts: DataFrame, events: DataFrame, histories: dict[str, DataFrame], *,
    as_of: datetime, broadcast_events: bool = False,
) -> DataFrame:
    """One fact per transaction; ``as_of`` is the instant after which a timestamp is in the future
    (the build's time: a published row keeps the flags and version keys of the build that added
    it). ``histories``: the history tables by name, for the version keys. ``broadcast_events``:
    join the events (one per transaction) by sending them whole to every task, so that the
    transactions are neither shuffled nor sorted for the join (for events that fit in memory)."""
    accounts = dim_accounts.where(F.col("account_key") != UNKNOWN_KEY).select(
        F.col("account_key"), F.col("customer_key")
    )
    event_columns = deduplicate_events(events).select(
        F.col("transaction_id").alias("event_transaction_id"),
        "device_type",
        "fraud_score",
        F.col("geolocation.country").alias("country"),
        F.col("geolocation.city").alias("city"),
        "events_of_transaction",
    )
    if broadcast_events:
        event_columns = F.broadcast(event_columns)
    joined = transactions.join(
        accounts, transactions["account_id"] == accounts["account_key"], "left"
    ).join(event_columns, transactions["transaction_id"] == event_columns["event_transaction_id"], "left")
    facts = joined.select(
        F.col("transaction_id"),
        date_key(F.to_date("timestamp")).alias("date_key"),
        F.coalesce(F.col("account_key"), F.lit(UNKNOWN_KEY)).alias("account_key"),
        F.coalesce(F.col("customer_key"), F.lit(UNKNOWN_KEY)).alias("customer_key"),
        F.col("amount"),
        signed_amount(F.col("transaction_type"), F.col("amount")).alias("signed_amount"),
        F.col("transaction_type"),
        F.col("timestamp").alias("transaction_at"),
        F.col("device_type"),
        F.col("fraud_score"),
        F.col("country"),
        F.col("city"),
        defect_codes({name: F.col(name) for name in (
            "amount", "timestamp", "account_key", "customer_key", "transaction_type", "device_type", "fraud_score",
            "events_of_transaction")}, as_of).alias("defects"),
    )
    for spec in (ACCOUNT_HISTORY, CUSTOMER_HISTORY):
        facts = with_version_key(facts, spec, histories[spec.table], as_of)
    return facts


def build_dimensions(raw: RawTables, policy: PiiPolicy) -> dict[str, DataFrame]:
    return {
        "dim_customers": build_dim_customers(raw.customers, policy),
        "dim_accounts": build_dim_accounts(raw.accounts, raw.customers),
        "dim_dates": build_dim_dates(raw.accounts, raw.transactions),
    }


def build_star_schema(raw: RawTables, policy: PiiPolicy, as_of: datetime | None = None) -> StarSchema:
    """Every table from the raw tables alone, as a first build makes them: each member's history
    starts with its current row, and the balances with ``as_of``'s day (``as_of`` stands for the
    extraction time too)."""
    as_of = as_of or datetime.now(timezone.utc)
    dimensions = build_dimensions(raw, policy)
    histories = {spec.table: first_history(spec, dimensions, as_of) for spec in HISTORIES}
    facts = build_fact_transactions(
        raw.transactions, dimensions["dim_accounts"], raw.transaction_events, histories, as_of=as_of)
    balances = with_day_measures(balance_snapshot(dimensions["dim_accounts"], as_of), facts, [balance_day(as_of)])
    return StarSchema(**dimensions, **histories, fact_transactions=facts, fact_account_balances_daily=balances)


STATISTICS = ("duplicate_events", "events_for_unknown_transactions")


def event_statistics(
    transactions: DataFrame, events: DataFrame, settled_through: int | None = None
) -> dict[str, int]:
    """How many events were duplicates, and how many pointed at no transaction.

    With ``settled_through`` (the greatest transaction id loaded), the same two counts are also
    given for the events of transactions up to it, as ``settled_<name>``: later loads cannot
    change those (a new transaction gets a greater id), so an incremental build reuses them.
    """
    settled = (
        F.col("transaction_id") <= F.lit(settled_through) if settled_through is not None else F.lit(False)
    )
    # One action: the events and the (non-NULL) transaction ids, grouped together by transaction id,
    # give each id's events and whether the transaction exists; one aggregate sums them. (A join
    # would cost Spark a job of its own, to broadcast or shuffle the transactions.)
    ids = events.select("transaction_id", F.lit(1).alias("_event")).unionByName(
        transactions.where(F.col("transaction_id").isNotNull()).select(
            "transaction_id", F.lit(1).alias("_transaction")),
        allowMissingColumns=True,
    )
    per_transaction = ids.groupBy("transaction_id").agg(
        F.count("_event").alias("events"), F.count("_transaction").alias("transactions")
    ).where(F.col("events") > 0)
    known = F.col("transactions") > 0
    measures = {
        "events": F.col("events"),
        "known_events": F.when(known, F.col("events")),
        "duplicates": F.when(known, F.col("events") - 1),
    }
    totals = per_transaction.agg(*[
        aggregate for name, value in measures.items()
        for aggregate in (F.sum(value).alias(name), F.sum(F.when(settled, value)).alias(f"settled_{name}"))
    ]).first()
    prefixes = ("", "settled_") if settled_through is not None else ("",)
    result = {}
    for prefix in prefixes:
        result[f"{prefix}duplicate_events"] = int(totals[f"{prefix}duplicates"] or 0)
        result[f"{prefix}events_for_unknown_transactions"] = int(totals[f"{prefix}events"] or 0) - int(
            totals[f"{prefix}known_events"] or 0)
    return result
