"""Data-quality checks on a freshly built star-schema version, before anyone may read it.

Pure PySpark with no Dagster import: the local engine and the Glue job both run them and report
the outcomes (as asset check results, through Pipes from Glue). Two kinds of failure:

- *Pipeline integrity* (our own bugs: a repeated or NULL key, a foreign key the pipeline broke,
  raw rows != fact rows, sums that differ, schema drift): ERROR at zero tolerance, blocking.
- *Source data defects* (:data:`DEFECT_CHECKS`: what the bank's systems hold is wrong in a row):
  the row is kept and its fact flagged (``defects``, see `financial_assets.transform.star_schema`).
  Any flagged row fails the check as a WARN (an alert, no block); more than the check's
  ``max_defect_share`` of the build's new rows fails it as a blocking ERROR: a share that large
  means a broken source or extract, not a few bad rows.

The soft checks (event match rate, events for unknown transactions, freshness, emails) WARN.
Every threshold is a field of :class:`QualityThresholds`, set from configuration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from financial_assets.lakehouse.tables import PUBLISHED_SCHEMAS
from financial_assets.quality.defects import (
    ACCEPTED_ACCOUNT_TYPES,
    ACCEPTED_DEVICE_TYPES,
    ACCEPTED_TRANSACTION_TYPES,
    DEFECT_CHECKS,
    DEFECTS,
    DefectCheck,
    defect_query,
)
from financial_assets.quality.history_checks import (
    balance_outcomes,
    history_measures,
    history_outcomes,
    version_key_mismatches,
    version_key_outcome,
    with_expected_version_keys,
)
from financial_assets.quality.specs import ERROR, STAR_CHECKS, WARN, CheckOutcome, QualityThresholds, outcome_of
from financial_assets.transform.concurrency import concurrently
from financial_assets.transform.star_schema import UNKNOWN_KEY, RawTables, StarSchema

SAMPLE_KEYS = 5  # sample transaction ids per defect check: the latest flagged


def _outcome(asset: str, name: str, passed: bool, **metadata) -> CheckOutcome:
    return outcome_of(STAR_CHECKS, asset, name, passed, **metadata)


def _schema(table: str, frame: DataFrame) -> CheckOutcome:
    actual = tuple((f.name, f.dataType.simpleString()) for f in frame.schema)
    expected = PUBLISHED_SCHEMAS[table]
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
    defects: dict[str, int] = field(default_factory=dict)  # code -> flagged rows
    defect_samples: dict[str, list[int]] = field(default_factory=dict)  # code -> latest flagged ids
    newest: str | None = None  # ISO time of the newest transaction not in the future
    unknown_members: dict[str, int] = field(default_factory=dict)
    unresolved: dict[str, int] = field(default_factory=dict)
    unexpected_transaction_types: dict[str, int] = field(default_factory=dict)
    unexpected_device_types: dict[str, int] = field(default_factory=dict)
    raw_rows: int = 0
    mismatched_days: list[str] = field(default_factory=list)
    unresolved_versions: dict[str, int] = field(default_factory=dict)  # version key -> rows not valid at their time

    def __add__(self, other: FactAudit) -> FactAudit:
        def counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {key: a.get(key, 0) + b.get(key, 0) for key in sorted({*a, *b})}

        newest = max((t for t in (self.newest, other.newest) if t is not None), key=datetime.fromisoformat,
                     default=None)
        return FactAudit(
            **{name: getattr(self, name) + getattr(other, name) for name in _SUMMED},
            newest=newest,
            defects=counts(self.defects, other.defects),
            defect_samples={code: sorted({*self.defect_samples.get(code, []), *other.defect_samples.get(code, [])})
                            [-SAMPLE_KEYS:] for code in sorted({*self.defect_samples, *other.defect_samples})},
            unknown_members=counts(self.unknown_members, other.unknown_members),
            unresolved=counts(self.unresolved, other.unresolved),
            unexpected_transaction_types=counts(self.unexpected_transaction_types, other.unexpected_transaction_types),
            unexpected_device_types=counts(self.unexpected_device_types, other.unexpected_device_types),
            mismatched_days=sorted({*self.mismatched_days, *other.mismatched_days}),
            unresolved_versions=counts(self.unresolved_versions, other.unresolved_versions),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FactAudit:
        return cls(**values)


_SUMMED = ("rows", "with_event", "raw_rows")
_FACT_KEYS = (("date_key", "dim_dates"), ("account_key", "dim_accounts"), ("customer_key", "dim_customers"))


def _by_kind(frame: DataFrame, kinds: dict[str, Column]) -> DataFrame:
    """``frame`` with a column ``_kind``, each row repeated once per kind whose condition is true
    (NULL counts as false): one scan of ``frame`` feeds several counts."""
    tagged = F.array(*[F.when(condition, F.lit(kind)) for kind, condition in kinds.items()])
    return frame.select(F.explode(tagged).alias("_kind"), "*").where(F.col("_kind").isNotNull())


def _unexpected(column: str, accepted, allow_null: bool) -> Column:
    """True where ``column`` holds a value outside ``accepted`` (or NULL, unless allowed)."""
    return ~F.col(column).isin(*accepted) | (F.col(column).isNull() if not allow_null else F.lit(False))


def _value_counts(rows, column: str) -> dict[str, int]:
    """{value: rows}, by value, from grouped rows (a NULL value is 'None')."""
    return dict(sorted((str(r[column]), int(r["rows"])) for r in rows))


_MISMATCHED_DAYS_KEPT = 10  # the first ten, as sorted text


def _cents(column: str) -> Column:
    """A decimal(12,2) amount as whole cents: summed as a long, where Spark sums the decimal itself
    as a decimal(22,2), in arbitrary-precision arithmetic, row by row."""
    return (F.col(column) * F.lit(100).cast("decimal(3,0)")).cast("bigint")
_DEFECT = "defect:"  # the kind of the rows flagged with a code: defect:<code>


def audit_facts(fact: DataFrame, star: StarSchema, raw_transactions: DataFrame, now: datetime) -> FactAudit:
    """Measure ``fact`` (all fact rows, or only new ones) against the dimensions of ``star`` and
    the raw transactions they came from."""
    now_literal = F.lit(now)  # tz-aware: Spark takes it as the instant it is
    # One query, one shuffle, each table read once (every Spark job has a fixed cost, which on small
    # tables is most of the time): the fact rows, the raw transactions and the dimensions' keys
    # become rows tagged with a kind, grouped by (kind, the value that kind is about), and only the
    # groups that say something are collected: every day (the totals are the sums of the days'
    # measures, and a day whose raw and fact rows differ is named), the unexpected values, the
    # fact keys without a dimension row (at most the distinct keys of the facts; NULL dimension
    # keys are left out, as a NULL never matches), and the rows flagged with each defect code, in
    # SAMPLE_KEYS groups by transaction id whose greatest ids are the samples (a bounded sample
    # however many rows are flagged). The same scan checks each fact's version keys against the
    # written histories (broadcast): a second read of the facts costs a full build as much as the
    # rest of the audit. Every fact row is here ~4 times (its day, its three keys), each raw row once.
    key_columns = [column for column, _ in _FACT_KEYS]
    kind = F.col("_kind")
    is_day = kind == "day"
    mismatches = version_key_mismatches()
    facts = _by_kind(with_expected_version_keys(fact, star.tables(), now), {
        "day": F.lit(True),
        "transaction_type": _unexpected("transaction_type", ACCEPTED_TRANSACTION_TYPES, allow_null=False),
        "device_type": _unexpected("device_type", ACCEPTED_DEVICE_TYPES, allow_null=True),
        **{column: F.lit(True) for column in key_columns},
        **{f"{_DEFECT}{code}": F.array_contains("defects", code) for code in DEFECTS},
    }).select(
        kind,
        F.when(is_day, F.to_date("transaction_at")).alias("day"),
        *[F.when(kind == column, F.col(column)).alias(column)
          for column in ("transaction_type", "device_type", *key_columns)],
        F.when(kind.startswith(_DEFECT), F.pmod("transaction_id", F.lit(SAMPLE_KEYS))).alias("_bucket"),
        F.when(kind.startswith(_DEFECT), F.col("transaction_id")).alias("_sample"),
        F.lit(1).alias("_fact"),
        # The measures on the day's rows only: each fact has one.
        F.when(is_day, _cents("amount")).alias("_fact_amount"),
        F.when(is_day, F.col("device_type")).alias("_event"),
        F.when(is_day & (F.col("transaction_at") <= now_literal), F.col("transaction_at")).alias("_newest"),
        *[F.when(is_day, (F.col(column) == UNKNOWN_KEY).cast("int")).alias(f"_unknown_{column}")
          for column in key_columns],
        *[F.when(is_day, wrong.cast("int")).alias(f"_wrong_{column}") for column, wrong in mismatches.items()],
    )
    raw = raw_transactions.select(
        F.lit("day").alias("_kind"), F.to_date("timestamp").alias("day"), F.lit(1).alias("_raw"),
        _cents("amount").alias("_raw_amount"))
    tagged = facts.unionByName(raw, allowMissingColumns=True)
    for column, dimension in _FACT_KEYS:
        keys = getattr(star, dimension).where(F.col(column).isNotNull()).select(
            F.lit(column).alias("_kind"), F.col(column), F.lit(1).alias("_dimension"))
        tagged = tagged.unionByName(keys, allowMissingColumns=True)
    groups = tagged.groupBy("_kind", "day", "transaction_type", "device_type", *key_columns, "_bucket").agg(
        F.count("_fact").alias("rows"),
        F.count("_raw").alias("raw_rows"),
        F.count("_dimension").alias("dimension_rows"),
        F.sum("_fact_amount").alias("amount"),
        F.sum("_raw_amount").alias("raw_amount"),
        F.count("_event").alias("with_event"),
        F.max("_newest").alias("newest"),
        F.max("_sample").alias("sample"),
        *[F.sum(f"_unknown_{column}").alias(f"unknown_{column}") for column in key_columns],
        *[F.sum(f"_wrong_{column}").alias(f"wrong_{column}") for column in mismatches],
    )
    mismatched = (F.col("rows") != F.col("raw_rows")) | ~F.col("amount").eqNullSafe(F.col("raw_amount"))
    unresolved = (F.col("rows") > 0) & (F.col("dimension_rows") == 0)
    collected = groups.select("*", mismatched.alias("mismatched")).where(
        kind.isin("day", "transaction_type", "device_type")
        | (kind.isin(*key_columns) & unresolved)
        | kind.startswith(_DEFECT)
    ).collect()
    of_kind: dict[str, list] = {}
    for row in collected:
        of_kind.setdefault(row["_kind"], []).append(row)
    days = of_kind.get("day", [])

    def total(name: str) -> int:
        return sum(int(r[name] or 0) for r in days)

    newest = max((r["newest"] for r in days if r["newest"] is not None), default=None)
    if newest is not None and newest.tzinfo is None:
        newest = newest.replace(tzinfo=timezone.utc)  # the session's time zone is UTC
    flagged = {code: of_kind.get(f"{_DEFECT}{code}", []) for code in DEFECTS}
    return FactAudit(
        **{name: total(name) for name in _SUMMED},
        defects={code: sum(int(r["rows"]) for r in groups) for code, groups in flagged.items()},
        defect_samples={code: sorted(int(r["sample"]) for r in groups)[-SAMPLE_KEYS:]
                        for code, groups in flagged.items() if groups},
        newest=newest.isoformat(timespec="microseconds") if newest else None,
        unknown_members={column: total(f"unknown_{column}") for column in key_columns},
        unresolved={column: sum(int(r["rows"]) for r in of_kind.get(column, [])) for column in key_columns},
        unexpected_transaction_types=_value_counts(of_kind.get("transaction_type", []), "transaction_type"),
        unexpected_device_types=_value_counts(of_kind.get("device_type", []), "device_type"),
        mismatched_days=sorted(str(r["day"]) for r in days if r["mismatched"])[:_MISMATCHED_DAYS_KEPT],
        unresolved_versions={column: total(f"wrong_{column}") for column in mismatches},
    )


def _value_outcome(asset: str, name: str, counts: dict[str, int]) -> CheckOutcome:
    return _outcome(asset, name, not counts, unexpected_values=counts, unexpected_rows=sum(counts.values()))


_DIMENSION_KEYS = (("dim_customers", "customer_key"), ("dim_accounts", "account_key"), ("dim_dates", "date_key"))


def dimension_outcomes(star: StarSchema) -> list[CheckOutcome]:
    """The checks that read the dimensions whole (they are small) and every table's schema."""
    # One query with one shuffle, as in `audit_facts`: each dimension's rows counted, grouped by key
    # (a NULL key or a key on several rows comes back, the others stay in Spark), and the rows of
    # the value checks grouped by value.
    kind = F.col("_kind")
    tagged = None
    for table, key in _DIMENSION_KEYS:
        kinds = {"rows": F.lit(True), "key": F.lit(True)}
        if table == "dim_accounts":
            kinds["account_type"] = _unexpected("account_type", ACCEPTED_ACCOUNT_TYPES, allow_null=False) & (
                F.col("account_key") != UNKNOWN_KEY)
        if table == "dim_customers":
            kinds["missing_email"] = (F.col("customer_key") != UNKNOWN_KEY) & F.col("email").isNull()
        part = _by_kind(getattr(star, table), kinds).select(
            F.lit(table).alias("_table"),
            kind,
            F.when(kind == "key", F.col(key)).alias(key),
            *([F.when(kind == "account_type", F.col("account_type")).alias("account_type")]
              if "account_type" in kinds else []),
        )
        tagged = part if tagged is None else tagged.unionByName(part, allowMissingColumns=True)
    keys = [key for _, key in _DIMENSION_KEYS]
    groups = tagged.groupBy("_table", "_kind", *keys, "account_type").agg(F.count(F.lit(1)).alias("rows"))
    null_key = F.lit(True)
    for key in keys:
        null_key = null_key & F.col(key).isNull()  # each table's rows have the other tables' keys NULL
    collected = groups.where((kind != "key") | (F.col("rows") > 1) | null_key).collect()

    def of(table: str, kind_name: str) -> list:
        return [r for r in collected if r["_table"] == table and r["_kind"] == kind_name]

    def keys_unique_and_not_null(table: str, key: str) -> CheckOutcome:
        rows = sum(int(r["rows"]) for r in of(table, "rows"))
        null_keys = sum(int(r["rows"]) for r in of(table, "key") if r[key] is None)
        duplicated = sum(int(r["rows"]) - 1 for r in of(table, "key") if r[key] is not None)
        return _outcome(table, "keys_unique_and_not_null", null_keys == 0 and duplicated == 0,
                        rows=rows, null_keys=null_keys, duplicate_keys=duplicated)

    missing_emails = sum(int(r["rows"]) for r in of("dim_customers", "missing_email"))
    return [
        *[keys_unique_and_not_null(table, key) for table, key in _DIMENSION_KEYS],
        *[_schema(table, frame) for table, frame in star.tables().items()],
        _value_outcome("dim_accounts", "accepted_account_types",
                       _value_counts(of("dim_accounts", "account_type"), "account_type")),
        _outcome("dim_customers", "emails_present", missing_emails == 0, customers_without_email=missing_emails),
    ]


def _percent(share: float) -> str:
    return f"{share:.2%}"


def defect_outcome(check: DefectCheck, facts: FactAudit, new_facts: FactAudit, max_share: float,
                   extra: dict | None = None) -> CheckOutcome:
    """A source-defect check: failed when any row of the version is flagged with one of its codes,
    as an ERROR (blocking) when the flagged share of the build's new rows is above ``max_share``,
    else as a WARN. The metadata says what an operator needs: how many, which, how to list them."""
    counts = {code: facts.defects.get(code, 0) for code in check.codes}
    flagged = sum(counts.values())  # a row holds at most one code of a check
    new_flagged = sum(new_facts.defects.get(code, 0) for code in check.codes)
    share = new_flagged / new_facts.rows if new_facts.rows else 0.0
    blocks = share > max_share
    samples = sorted({key for code in check.codes for key in facts.defect_samples.get(code, [])})[-SAMPLE_KEYS:]
    command = f"financial-assets defects --check {check.name}"
    what_to_do = (
        f"{flagged:,} published fact rows flagged "
        f"({', '.join(f'{code} {count:,}' for code, count in counts.items() if count)}); "
        f"{new_flagged:,} of this build's {new_facts.rows:,} new rows = {_percent(share)}, "
        f"{'above' if blocks else 'within'} max_defect_share.{check.name} = {_percent(max_share)}"
        f"{': the version is blocked' if blocks else ': published with the rows flagged'}. "
        f"Latest flagged transaction_ids: {', '.join(map(str, samples))}. "
        f"List them with `{command}`; fix them in the source system."
    ) if flagged else ""
    metadata = {
        **counts,
        "flagged_rows": flagged,
        "new_rows": new_facts.rows,
        "new_flagged_rows": new_flagged,
        "share_of_new_rows": round(share, 6),
        "max_share": max_share,
        "sample_transaction_ids": samples,
        "query": defect_query(check.codes),
        "list_command": command,
        **(extra or {}),
    }
    if what_to_do:
        metadata["what_to_do"] = what_to_do
    return CheckOutcome("fact_transactions", check.name, flagged == 0, ERROR if blocks else WARN, metadata)


def fact_outcomes(
    facts: FactAudit, statistics: dict[str, int], thresholds: QualityThresholds, now: datetime,
    new_facts: FactAudit | None = None,
) -> list[CheckOutcome]:
    """The fact checks, decided from what `audit_facts` measured over the version (``facts``) and
    over the rows this build added (``new_facts``; all of them when omitted: a full build), and
    the event statistics."""
    new_facts = facts if new_facts is None else new_facts
    fact_rows = facts.rows
    match_rate = (facts.with_event / fact_rows) if fact_rows else 1.0
    duplicates = int(statistics.get("duplicate_events", 0))
    newest = datetime.fromisoformat(facts.newest) if facts.newest else None
    age_hours = (now - newest).total_seconds() / 3600 if newest else None
    # What some defect checks add: the values behind the flags, and events (not rows) counted.
    extra = {
        "accepted_transaction_types": {"unexpected_values": facts.unexpected_transaction_types},
        "accepted_device_types": {"unexpected_values": facts.unexpected_device_types},
        "duplicate_events": {"duplicate_events": duplicates},
    }
    return [
        _outcome("fact_transactions", "foreign_keys_resolve", not any(facts.unresolved.values()),
                 unresolved=facts.unresolved, unknown_member_rows=facts.unknown_members),
        _outcome("fact_transactions", "reconciles_with_raw", facts.raw_rows == fact_rows and not facts.mismatched_days,
                 raw_rows=facts.raw_rows, fact_rows=fact_rows, mismatched_days=facts.mismatched_days[:10]),
        version_key_outcome(facts.unresolved_versions),
        *[defect_outcome(check, facts, new_facts, thresholds.max_defect_share[check.name], extra.get(check.name))
          for check in DEFECT_CHECKS],
        _outcome("fact_transactions", "events_match_transactions",
                 not statistics.get("events_for_unknown_transactions", 0),
                 events_for_unknown_transactions=int(statistics.get("events_for_unknown_transactions", 0))),
        _outcome("fact_transactions", "event_match_rate", match_rate >= thresholds.min_event_match_rate,
                 match_rate=round(match_rate, 4), threshold=thresholds.min_event_match_rate,
                 facts_without_event=fact_rows - facts.with_event),
        _outcome("fact_transactions", "fresh_transactions",
                 age_hours is not None and age_hours <= thresholds.max_transaction_age_hours,
                 newest_transaction_at=facts.newest,  # future ones left out
                 age_hours=round(age_hours, 1) if age_hours is not None else None,
                 threshold_hours=thresholds.max_transaction_age_hours),
    ]


def table_outcomes(
    star: StarSchema, balance_days: list[int] | None = None, histories: dict[str, dict[str, int]] | None = None,
) -> tuple[list[CheckOutcome], dict[str, dict[str, int]]]:
    """The checks that read whole tables (the dimensions, the histories, the balance snapshot),
    their queries run at once, and the `history_measures` they used (measured here unless
    ``histories`` gives them). ``balance_days``: see `balance_outcomes`."""
    dimensions, measured, balances = concurrently(
        lambda: dimension_outcomes(star),
        lambda: histories if histories is not None else history_measures(star.tables()),
        lambda: balance_outcomes(star.fact_account_balances_daily, star.fact_transactions, balance_days),
    )
    return dimensions + history_outcomes(measured) + balances, measured


def audit_outcomes(
    star: StarSchema, facts: FactAudit, statistics: dict[str, int], thresholds: QualityThresholds, now: datetime,
    new_facts: FactAudit | None = None, *, tables: list[CheckOutcome] | None = None,
) -> list[CheckOutcome]:
    """Every check of STAR_CHECKS, once each (``new_facts``: see `fact_outcomes`; ``tables``: what
    `table_outcomes` found, measured here when not given)."""
    tables = tables if tables is not None else table_outcomes(star)[0]
    outcomes = tables + fact_outcomes(facts, statistics, thresholds, now, new_facts)
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
    "FactAudit",
    "audit_facts",
    "audit_outcomes",
    "table_outcomes",
    "run_star_checks",
]
