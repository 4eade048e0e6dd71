"""Data-quality checks on a freshly built star-schema version, before anyone may read it.

Pure PySpark with no Dagster import: the local engine and the Glue job both run them and report
the outcomes (as asset check results, through Pipes from Glue). Integrity checks are ERROR and
block publication; soft checks (event match rate, duplicate events, freshness) WARN. Every
threshold is a field of :class:`QualityThresholds`, set from configuration.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from financial_assets.transform.star_schema import UNKNOWN_KEY, RawTables, StarSchema

ERROR, WARN = "ERROR", "WARN"

ACCEPTED_TRANSACTION_TYPES = ("deposit", "withdrawal", "transfer")
ACCEPTED_ACCOUNT_TYPES = ("savings", "checking")
ACCEPTED_DEVICE_TYPES = ("mobile_app", "web_browser", "atm")

# The published tables' contract: columns and Spark types, in order. Drift fails the build.
# The type names are valid Hive/Athena types too, so the Glue Data Catalog takes them as they are.
def _columns(spec: str) -> tuple[tuple[str, str], ...]:
    return tuple(tuple(column.strip().split(" ", 1)) for column in spec.split(";"))


EXPECTED_SCHEMAS = {
    "dim_customers": _columns(
        "customer_key int; name string; email string; phone string; city string; region string"
    ),
    "dim_accounts": _columns(
        "account_key int; customer_key int; account_type string; opened_at timestamp; "
        "opened_date_key int; balance decimal(12,2)"
    ),
    "dim_dates": _columns(
        "date_key int; date date; year int; quarter int; month int; month_name string; day int; "
        "weekday int; weekday_name string; iso_week int; is_weekend boolean"
    ),
    "fact_transactions": _columns(
        "transaction_id int; date_key int; account_key int; customer_key int; amount decimal(12,2); "
        "signed_amount decimal(12,2); transaction_type string; transaction_at timestamp; "
        "device_type string; fraud_score double; country string; city string"
    ),
}


@dataclass(frozen=True)
class QualityThresholds:
    min_event_match_rate: float = 0.90
    max_duplicate_events: int = 0
    max_transaction_age_hours: float = 48.0
    max_row_count_change: float = 0.5  # used by the Dagster-side anomaly check

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> QualityThresholds:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class CheckSpec:
    asset: str
    name: str
    severity: str
    description: str

    @property
    def blocking(self) -> bool:
        return self.severity == ERROR


@dataclass
class CheckOutcome:
    asset: str
    name: str
    passed: bool
    severity: str
    metadata: dict = field(default_factory=dict)

    def pipes_metadata(self) -> dict:
        """The metadata as Dagster Pipes carries it: nested values typed as JSON."""
        return {
            key: {"raw_value": value, "type": "json"} if isinstance(value, dict | list) else value
            for key, value in self.metadata.items()
        }


def _specs() -> list[CheckSpec]:
    specs = []
    for table, key in (("dim_customers", "customer_key"), ("dim_accounts", "account_key"), ("dim_dates", "date_key")):
        specs.append(CheckSpec(table, "keys_unique_and_not_null", ERROR, f"{key} is never null and never repeated."))
    for table in EXPECTED_SCHEMAS:
        specs.append(CheckSpec(table, "schema_matches_contract", ERROR, "Columns and types are the published contract."))
    specs += [
        CheckSpec("fact_transactions", "foreign_keys_resolve", ERROR,
                  "Every date_key, account_key and customer_key has its dimension row (unknown members count)."),
        CheckSpec("fact_transactions", "accepted_transaction_types", ERROR,
                  f"transaction_type is one of {', '.join(ACCEPTED_TRANSACTION_TYPES)}."),
        CheckSpec("fact_transactions", "accepted_device_types", ERROR,
                  f"device_type is one of {', '.join(ACCEPTED_DEVICE_TYPES)}, or null without an event."),
        CheckSpec("dim_accounts", "accepted_account_types", ERROR,
                  f"account_type is one of {', '.join(ACCEPTED_ACCOUNT_TYPES)} (or 'unknown' for the member -1)."),
        CheckSpec("fact_transactions", "reconciles_with_raw", ERROR,
                  "Raw transactions = fact rows, and the sum of amounts per day is equal in both."),
        CheckSpec("fact_transactions", "amounts_present_and_positive", ERROR,
                  "Every amount is present and above zero (the type gives the direction)."),
        CheckSpec("fact_transactions", "transaction_times_valid", ERROR,
                  "Every transaction has a timestamp, and none is in the future."),
        CheckSpec("fact_transactions", "fraud_scores_in_range", ERROR,
                  "Every fraud score is between 0 and 1."),
        CheckSpec("fact_transactions", "unknown_members", WARN,
                  "No fact points at an unknown account or customer (they are kept, and counted here)."),
        CheckSpec("fact_transactions", "events_match_transactions", WARN,
                  "No event refers to a transaction that does not exist."),
        CheckSpec("dim_customers", "emails_present", WARN, "Every customer has an email."),
        CheckSpec("fact_transactions", "event_match_rate", WARN,
                  "The share of facts that found an event is at least min_event_match_rate."),
        CheckSpec("fact_transactions", "duplicate_events", WARN,
                  "Duplicate events (several for one transaction) are at most max_duplicate_events."),
        CheckSpec("fact_transactions", "fresh_transactions", WARN,
                  "The newest transaction is at most max_transaction_age_hours old."),
    ]
    return specs


STAR_CHECKS = _specs()


def _outcome(asset: str, name: str, passed: bool, **metadata) -> CheckOutcome:
    spec = next(s for s in STAR_CHECKS if s.asset == asset and s.name == name)
    return CheckOutcome(asset, name, bool(passed), spec.severity, metadata)


def _keys_unique_and_not_null(table: str, frame: DataFrame, key: str) -> CheckOutcome:
    row = frame.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.col(key).isNull().cast("int")).alias("null_keys"),
        F.countDistinct(key).alias("distinct_keys"),
    ).first()
    null_keys = int(row["null_keys"] or 0)
    duplicated = int(row["rows"]) - null_keys - int(row["distinct_keys"])
    return _outcome(table, "keys_unique_and_not_null", null_keys == 0 and duplicated == 0,
                    rows=int(row["rows"]), null_keys=null_keys, duplicate_keys=duplicated)


def _schema(table: str, frame: DataFrame) -> CheckOutcome:
    actual = tuple((f.name, f.dataType.simpleString()) for f in frame.schema)
    expected = EXPECTED_SCHEMAS[table]
    return _outcome(
        table, "schema_matches_contract", actual == expected,
        missing=[f"{n} {t}" for n, t in expected if (n, t) not in actual],
        unexpected=[f"{n} {t}" for n, t in actual if (n, t) not in expected],
    )


def _foreign_keys(star: StarSchema) -> CheckOutcome:
    fact = star.fact_transactions
    unresolved = {}
    for column, dimension, key in (
        ("date_key", star.dim_dates, "date_key"),
        ("account_key", star.dim_accounts, "account_key"),
        ("customer_key", star.dim_customers, "customer_key"),
    ):
        keys = dimension.select(F.col(key).alias("_k"))
        unresolved[column] = fact.join(keys, fact[column] == keys["_k"], "left_anti").count()
    unknown = fact.agg(*[
        F.sum((F.col(c) == UNKNOWN_KEY).cast("int")).alias(c) for c in ("date_key", "account_key", "customer_key")
    ]).first()
    return _outcome(
        "fact_transactions", "foreign_keys_resolve", not any(unresolved.values()),
        unresolved=unresolved,
        unknown_member_rows={c: int(unknown[c] or 0) for c in ("date_key", "account_key", "customer_key")},
    )


def _accepted_values(asset: str, name: str, frame: DataFrame, column: str, accepted, allow_null: bool,
                     exempt: F.Column | None = None) -> CheckOutcome:
    bad = frame.where(~F.col(column).isin(*accepted) | (F.col(column).isNull() if not allow_null else F.lit(False)))
    if exempt is not None:
        bad = bad.where(~exempt)
    counts = {str(r[column]): int(r["count"]) for r in bad.groupBy(column).count().collect()}
    return _outcome(asset, name, not counts, unexpected_values=counts, unexpected_rows=sum(counts.values()))


def _reconciliation(star: StarSchema, raw: RawTables) -> CheckOutcome:
    def per_day(frame: DataFrame, timestamp: str) -> DataFrame:
        return frame.groupBy(F.to_date(timestamp).alias("day")).agg(
            F.count(F.lit(1)).alias("rows"), F.sum("amount").alias("amount")
        )

    raw_days = per_day(raw.transactions, "timestamp").alias("r")
    fact_days = per_day(star.fact_transactions, "transaction_at").alias("f")
    mismatched = raw_days.join(fact_days, F.col("r.day").eqNullSafe(F.col("f.day")), "full_outer").where(
        ~F.col("r.rows").eqNullSafe(F.col("f.rows")) | ~F.col("r.amount").eqNullSafe(F.col("f.amount"))
    )
    raw_rows, fact_rows = raw.transactions.count(), star.fact_transactions.count()
    days = [str(r["day"]) for r in mismatched.select(F.coalesce("r.day", "f.day").alias("day")).limit(10).collect()]
    return _outcome("fact_transactions", "reconciles_with_raw", raw_rows == fact_rows and not days,
                    raw_rows=raw_rows, fact_rows=fact_rows, mismatched_days=days)


def run_star_checks(
    star: StarSchema,
    raw: RawTables,
    statistics: dict[str, int],
    thresholds: QualityThresholds,
    now: datetime | None = None,
) -> list[CheckOutcome]:
    """Every check of STAR_CHECKS on ``star`` (the tables as written, read back)."""
    now = now or datetime.now(timezone.utc)
    fact = star.fact_transactions
    outcomes = [
        _keys_unique_and_not_null("dim_customers", star.dim_customers, "customer_key"),
        _keys_unique_and_not_null("dim_accounts", star.dim_accounts, "account_key"),
        _keys_unique_and_not_null("dim_dates", star.dim_dates, "date_key"),
        *[_schema(table, frame) for table, frame in star.tables().items()],
        _foreign_keys(star),
        _accepted_values("fact_transactions", "accepted_transaction_types", fact, "transaction_type",
                         ACCEPTED_TRANSACTION_TYPES, allow_null=False),
        _accepted_values("fact_transactions", "accepted_device_types", fact, "device_type",
                         ACCEPTED_DEVICE_TYPES, allow_null=True),
        _accepted_values("dim_accounts", "accepted_account_types", star.dim_accounts, "account_type",
                         ACCEPTED_ACCOUNT_TYPES, allow_null=False, exempt=F.col("account_key") == UNKNOWN_KEY),
        _reconciliation(star, raw),
    ]
    now_literal = F.lit(now)  # tz-aware: Spark takes it as the instant it is
    totals = fact.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count("device_type").alias("with_event"),
        F.max(F.when(F.col("transaction_at") <= now_literal, F.col("transaction_at"))).alias("newest"),
        F.sum((F.col("amount").isNull()).cast("int")).alias("null_amounts"),
        F.sum((F.col("amount") <= 0).cast("int")).alias("non_positive_amounts"),
        F.sum((F.col("transaction_at").isNull()).cast("int")).alias("null_times"),
        F.sum((F.col("transaction_at") > now_literal).cast("int")).alias("future_times"),
        F.sum((~F.col("fraud_score").between(0, 1)).cast("int")).alias("scores_out_of_range"),
        F.sum((F.col("account_key") == UNKNOWN_KEY).cast("int")).alias("unknown_accounts"),
        F.sum((F.col("customer_key") == UNKNOWN_KEY).cast("int")).alias("unknown_customers"),
    ).first()
    count = {name: int(totals[name] or 0) for name in (
        "null_amounts", "non_positive_amounts", "null_times", "future_times", "scores_out_of_range",
        "unknown_accounts", "unknown_customers",
    )}
    outcomes += [
        _outcome("fact_transactions", "amounts_present_and_positive",
                 not count["null_amounts"] and not count["non_positive_amounts"],
                 null_amounts=count["null_amounts"], non_positive_amounts=count["non_positive_amounts"]),
        _outcome("fact_transactions", "transaction_times_valid", not count["null_times"] and not count["future_times"],
                 missing_timestamps=count["null_times"], future_timestamps=count["future_times"]),
        _outcome("fact_transactions", "fraud_scores_in_range", not count["scores_out_of_range"],
                 out_of_range=count["scores_out_of_range"]),
        _outcome("fact_transactions", "unknown_members", not count["unknown_accounts"] and not count["unknown_customers"],
                 facts_with_unknown_account=count["unknown_accounts"],
                 facts_with_unknown_customer=count["unknown_customers"]),
        _outcome("fact_transactions", "events_match_transactions",
                 not statistics.get("events_for_unknown_transactions", 0),
                 events_for_unknown_transactions=int(statistics.get("events_for_unknown_transactions", 0))),
    ]
    missing_emails = star.dim_customers.where(
        (F.col("customer_key") != UNKNOWN_KEY) & F.col("email").isNull()
    ).count()
    outcomes.append(_outcome("dim_customers", "emails_present", missing_emails == 0, customers_without_email=missing_emails))
    rows = int(totals["rows"])
    match_rate = (int(totals["with_event"]) / rows) if rows else 1.0
    outcomes.append(_outcome("fact_transactions", "event_match_rate", match_rate >= thresholds.min_event_match_rate,
                             match_rate=round(match_rate, 4), threshold=thresholds.min_event_match_rate,
                             facts_without_event=rows - int(totals["with_event"])))
    duplicates = int(statistics.get("duplicate_events", 0))
    outcomes.append(_outcome("fact_transactions", "duplicate_events", duplicates <= thresholds.max_duplicate_events,
                             duplicate_events=duplicates, threshold=thresholds.max_duplicate_events))
    newest = totals["newest"]
    if newest is not None and newest.tzinfo is None:
        newest = newest.replace(tzinfo=timezone.utc)  # the session's time zone is UTC
    age_hours = (now - newest).total_seconds() / 3600 if newest else None
    outcomes.append(_outcome(
        "fact_transactions", "fresh_transactions",
        age_hours is not None and age_hours <= thresholds.max_transaction_age_hours,
        newest_transaction_at=newest.isoformat() if newest else None,  # future ones left out
        age_hours=round(age_hours, 1) if age_hours is not None else None,
        threshold_hours=thresholds.max_transaction_age_hours,
    ))
    produced = {(o.asset, o.name) for o in outcomes}
    assert produced == {(s.asset, s.name) for s in STAR_CHECKS}, "a declared check produced no outcome"
    return outcomes


__all__ = ["STAR_CHECKS", "CheckOutcome", "QualityThresholds", "run_star_checks"]
