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


@dataclass
class FactAudit:
    """What the fact checks measure, over some set of fact rows. Additive: the audit of a version
    that reuses an audited version's rows is that version's audit plus the audit of the new rows."""

    rows: int = 0
    with_event: int = 0
    null_amounts: int = 0
    non_positive_amounts: int = 0
    null_times: int = 0
    future_times: int = 0
    scores_out_of_range: int = 0
    newest: str | None = None  # ISO time of the newest transaction not in the future
    unknown_members: dict[str, int] = field(default_factory=dict)
    unresolved: dict[str, int] = field(default_factory=dict)
    unexpected_transaction_types: dict[str, int] = field(default_factory=dict)
    unexpected_device_types: dict[str, int] = field(default_factory=dict)
    raw_rows: int = 0
    mismatched_days: list[str] = field(default_factory=list)

    def __add__(self, other: FactAudit) -> FactAudit:
        def counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {key: a.get(key, 0) + b.get(key, 0) for key in sorted({*a, *b})}

        newest = max((t for t in (self.newest, other.newest) if t is not None), key=datetime.fromisoformat,
                     default=None)
        return FactAudit(
            **{name: getattr(self, name) + getattr(other, name) for name in _SUMMED},
            newest=newest,
            unknown_members=counts(self.unknown_members, other.unknown_members),
            unresolved=counts(self.unresolved, other.unresolved),
            unexpected_transaction_types=counts(self.unexpected_transaction_types, other.unexpected_transaction_types),
            unexpected_device_types=counts(self.unexpected_device_types, other.unexpected_device_types),
            mismatched_days=sorted({*self.mismatched_days, *other.mismatched_days}),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FactAudit:
        return cls(**values)


_SUMMED = ("rows", "with_event", "null_amounts", "non_positive_amounts", "null_times", "future_times",
           "scores_out_of_range", "raw_rows")
_FACT_KEYS = (("date_key", "dim_dates"), ("account_key", "dim_accounts"), ("customer_key", "dim_customers"))


def _unexpected_values(frame: DataFrame, column: str, accepted, allow_null: bool,
                       exempt: F.Column | None = None) -> dict[str, int]:
    bad = frame.where(~F.col(column).isin(*accepted) | (F.col(column).isNull() if not allow_null else F.lit(False)))
    if exempt is not None:
        bad = bad.where(~exempt)
    return {str(r[column]): int(r["count"]) for r in bad.groupBy(column).count().collect()}


def _mismatched_days(raw_transactions: DataFrame, fact: DataFrame) -> list[str]:
    """Days whose row count or amount differ between raw and fact (the first ten)."""
    def per_day(frame: DataFrame, timestamp: str) -> DataFrame:
        return frame.groupBy(F.to_date(timestamp).alias("day")).agg(
            F.count(F.lit(1)).alias("rows"), F.sum("amount").alias("amount")
        )

    raw_days = per_day(raw_transactions, "timestamp").alias("r")
    fact_days = per_day(fact, "transaction_at").alias("f")
    mismatched = raw_days.join(fact_days, F.col("r.day").eqNullSafe(F.col("f.day")), "full_outer").where(
        ~F.col("r.rows").eqNullSafe(F.col("f.rows")) | ~F.col("r.amount").eqNullSafe(F.col("f.amount"))
    )
    return sorted(str(r["day"]) for r in mismatched.select(F.coalesce("r.day", "f.day").alias("day")).limit(10).collect())


def audit_facts(fact: DataFrame, star: StarSchema, raw_transactions: DataFrame, now: datetime) -> FactAudit:
    """Measure ``fact`` (all fact rows, or only new ones) against the dimensions of ``star`` and
    the raw transactions they came from."""
    now_literal = F.lit(now)  # tz-aware: Spark takes it as the instant it is
    # One pass over the facts: each dimension's keys joined on (Spark broadcasts the small ones),
    # unmatched ones counted.
    resolved = fact
    for column, dimension in _FACT_KEYS:
        keys = getattr(star, dimension).select(F.col(column).alias(f"_{column}"), F.lit(True).alias(f"_has_{column}"))
        keys = keys.dropDuplicates([f"_{column}"])  # a repeated key is its own check's failure, not more facts
        resolved = resolved.join(keys, resolved[column] == keys[f"_{column}"], "left")
    totals = resolved.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count("device_type").alias("with_event"),
        F.max(F.when(F.col("transaction_at") <= now_literal, F.col("transaction_at"))).alias("newest"),
        F.sum((F.col("amount").isNull()).cast("int")).alias("null_amounts"),
        F.sum((F.col("amount") <= 0).cast("int")).alias("non_positive_amounts"),
        F.sum((F.col("transaction_at").isNull()).cast("int")).alias("null_times"),
        F.sum((F.col("transaction_at") > now_literal).cast("int")).alias("future_times"),
        F.sum((~F.col("fraud_score").between(0, 1)).cast("int")).alias("scores_out_of_range"),
        *[F.sum((F.col(column) == UNKNOWN_KEY).cast("int")).alias(f"unknown_{column}") for column, _ in _FACT_KEYS],
        *[F.sum(F.col(f"_has_{column}").isNull().cast("int")).alias(f"unresolved_{column}") for column, _ in _FACT_KEYS],
    ).first()
    newest = totals["newest"]
    if newest is not None and newest.tzinfo is None:
        newest = newest.replace(tzinfo=timezone.utc)  # the session's time zone is UTC
    return FactAudit(
        **{name: int(totals[name] or 0) for name in _SUMMED if name != "raw_rows"},
        newest=newest.isoformat(timespec="microseconds") if newest else None,
        unknown_members={column: int(totals[f"unknown_{column}"] or 0) for column, _ in _FACT_KEYS},
        unresolved={column: int(totals[f"unresolved_{column}"] or 0) for column, _ in _FACT_KEYS},
        unexpected_transaction_types=_unexpected_values(
            fact, "transaction_type", ACCEPTED_TRANSACTION_TYPES, allow_null=False),
        unexpected_device_types=_unexpected_values(fact, "device_type", ACCEPTED_DEVICE_TYPES, allow_null=True),
        raw_rows=raw_transactions.count(),
        mismatched_days=_mismatched_days(raw_transactions, fact),
    )


def _value_outcome(asset: str, name: str, counts: dict[str, int]) -> CheckOutcome:
    return _outcome(asset, name, not counts, unexpected_values=counts, unexpected_rows=sum(counts.values()))


def dimension_outcomes(star: StarSchema) -> list[CheckOutcome]:
    """The checks that read the dimensions whole (they are small) and every table's schema."""
    missing_emails = star.dim_customers.where(
        (F.col("customer_key") != UNKNOWN_KEY) & F.col("email").isNull()
    ).count()
    return [
        _keys_unique_and_not_null("dim_customers", star.dim_customers, "customer_key"),
        _keys_unique_and_not_null("dim_accounts", star.dim_accounts, "account_key"),
        _keys_unique_and_not_null("dim_dates", star.dim_dates, "date_key"),
        *[_schema(table, frame) for table, frame in star.tables().items()],
        _value_outcome("dim_accounts", "accepted_account_types", _unexpected_values(
            star.dim_accounts, "account_type", ACCEPTED_ACCOUNT_TYPES, allow_null=False,
            exempt=F.col("account_key") == UNKNOWN_KEY)),
        _outcome("dim_customers", "emails_present", missing_emails == 0, customers_without_email=missing_emails),
    ]


def fact_outcomes(
    facts: FactAudit, statistics: dict[str, int], thresholds: QualityThresholds, now: datetime
) -> list[CheckOutcome]:
    """The fact checks, decided from what `audit_facts` measured and the event statistics."""
    fact_rows = facts.rows
    match_rate = (facts.with_event / fact_rows) if fact_rows else 1.0
    duplicates = int(statistics.get("duplicate_events", 0))
    newest = datetime.fromisoformat(facts.newest) if facts.newest else None
    age_hours = (now - newest).total_seconds() / 3600 if newest else None
    return [
        _outcome("fact_transactions", "foreign_keys_resolve", not any(facts.unresolved.values()),
                 unresolved=facts.unresolved, unknown_member_rows=facts.unknown_members),
        _value_outcome("fact_transactions", "accepted_transaction_types", facts.unexpected_transaction_types),
        _value_outcome("fact_transactions", "accepted_device_types", facts.unexpected_device_types),
        _outcome("fact_transactions", "reconciles_with_raw", facts.raw_rows == fact_rows and not facts.mismatched_days,
                 raw_rows=facts.raw_rows, fact_rows=fact_rows, mismatched_days=facts.mismatched_days[:10]),
        _outcome("fact_transactions", "amounts_present_and_positive",
                 not facts.null_amounts and not facts.non_positive_amounts,
                 null_amounts=facts.null_amounts, non_positive_amounts=facts.non_positive_amounts),
        _outcome("fact_transactions", "transaction_times_valid", not facts.null_times and not facts.future_times,
                 missing_timestamps=facts.null_times, future_timestamps=facts.future_times),
        _outcome("fact_transactions", "fraud_scores_in_range", not facts.scores_out_of_range,
                 out_of_range=facts.scores_out_of_range),
        _outcome("fact_transactions", "unknown_members",
                 not facts.unknown_members.get("account_key") and not facts.unknown_members.get("customer_key"),
                 facts_with_unknown_account=facts.unknown_members.get("account_key", 0),
                 facts_with_unknown_customer=facts.unknown_members.get("customer_key", 0)),
        _outcome("fact_transactions", "events_match_transactions",
                 not statistics.get("events_for_unknown_transactions", 0),
                 events_for_unknown_transactions=int(statistics.get("events_for_unknown_transactions", 0))),
        _outcome("fact_transactions", "event_match_rate", match_rate >= thresholds.min_event_match_rate,
                 match_rate=round(match_rate, 4), threshold=thresholds.min_event_match_rate,
                 facts_without_event=fact_rows - facts.with_event),
        _outcome("fact_transactions", "duplicate_events", duplicates <= thresholds.max_duplicate_events,
                 duplicate_events=duplicates, threshold=thresholds.max_duplicate_events),
        _outcome("fact_transactions", "fresh_transactions",
                 age_hours is not None and age_hours <= thresholds.max_transaction_age_hours,
                 newest_transaction_at=facts.newest,  # future ones left out
                 age_hours=round(age_hours, 1) if age_hours is not None else None,
                 threshold_hours=thresholds.max_transaction_age_hours),
    ]


def audit_outcomes(
    star: StarSchema, facts: FactAudit, statistics: dict[str, int], thresholds: QualityThresholds, now: datetime
) -> list[CheckOutcome]:
    """Every check of STAR_CHECKS, once each."""
    outcomes = dimension_outcomes(star) + fact_outcomes(facts, statistics, thresholds, now)
    produced = [(o.asset, o.name) for o in outcomes]
    assert sorted(produced) == sorted((s.asset, s.name) for s in STAR_CHECKS), "checks produced != checks declared"
    return outcomes


def run_star_checks(
    star: StarSchema,
    raw: RawTables,
    statistics: dict[str, int],
    thresholds: QualityThresholds,
    now: datetime | None = None,
) -> list[CheckOutcome]:
    """Every check of STAR_CHECKS on ``star`` (the tables as written, read back), all rows measured."""
    now = now or datetime.now(timezone.utc)
    facts = audit_facts(star.fact_transactions, star, raw.transactions, now)
    return audit_outcomes(star, facts, statistics, thresholds, now)


__all__ = [
    "STAR_CHECKS",
    "CheckOutcome",
    "FactAudit",
    "QualityThresholds",
    "audit_facts",
    "audit_outcomes",
    "run_star_checks",
]
