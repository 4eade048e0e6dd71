"""The star schema's checks as declared: which table, how severe, what they promise, and the
thresholds the audit is configured with.

No Spark and no Dagster import: the Dagster definitions declare their asset checks from
:data:`STAR_CHECKS` without loading PySpark; the audit itself is `financial_assets.quality.star_checks`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from financial_assets.lakehouse.tables import PUBLISHED_SCHEMAS
from financial_assets.quality.defects import (
    ACCEPTED_ACCOUNT_TYPES,
    DEFAULT_MAX_DEFECT_SHARE,
    DEFECT_CHECKS,
    DefectCheck,
)

ERROR, WARN = "ERROR", "WARN"


@dataclass(frozen=True)
class QualityThresholds:
    min_event_match_rate: float = 0.90
    max_transaction_age_hours: float = 48.0
    max_row_count_change: float = 0.5  # used by the Dagster-side anomaly check
    # Per defect check: the share of a build's new fact rows flagged above which it blocks.
    # Checks left out keep their default.
    max_defect_share: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.max_defect_share) - set(DEFAULT_MAX_DEFECT_SHARE))
        if unknown:
            raise ValueError(f"max_defect_share: no defect check named {', '.join(unknown)} "
                             f"(they are {', '.join(DEFAULT_MAX_DEFECT_SHARE)})")
        invalid = {name: share for name, share in self.max_defect_share.items() if not 0 <= share <= 1}
        if invalid:
            raise ValueError(f"max_defect_share: a share is between 0 and 1, got {invalid}")
        object.__setattr__(self, "max_defect_share", {**DEFAULT_MAX_DEFECT_SHARE, **self.max_defect_share})

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> QualityThresholds:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class CheckSpec:
    asset: str
    name: str
    severity: str  # the most severe result it can give: ERROR blocks
    description: str
    defect: DefectCheck | None = None

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


def outcome_of(specs: list[CheckSpec], asset: str, name: str, passed: bool, **metadata) -> CheckOutcome:
    """The outcome of the check ``asset``.``name`` of ``specs``, at that check's severity."""
    spec = next(s for s in specs if s.asset == asset and s.name == name)
    return CheckOutcome(asset, name, bool(passed), spec.severity, metadata)


def _defect_description(check: DefectCheck) -> str:
    return (
        f"{check.description} Source defect: flagged rows are published, their defects holding "
        f"{' or '.join(check.codes)}. WARN when any fact row is flagged; ERROR, blocking the publish, when "
        f"more than max_defect_share.{check.name} of the build's new rows are (default {check.max_share:.1%})."
    )


def _specs() -> list[CheckSpec]:
    specs = []
    for table, key in (("dim_customers", "customer_key"), ("dim_accounts", "account_key"), ("dim_dates", "date_key")):
        specs.append(CheckSpec(table, "keys_unique_and_not_null", ERROR, f"{key} is never null and never repeated."))
    for table in PUBLISHED_SCHEMAS:
        specs.append(CheckSpec(table, "schema_matches_contract", ERROR, "Columns and types are the published contract."))
    specs += [
        CheckSpec("fact_transactions", "foreign_keys_resolve", ERROR,
                  "Every date_key, account_key and customer_key has its dimension row (unknown members count)."),
        CheckSpec("dim_accounts", "accepted_account_types", ERROR,
                  f"account_type is one of {', '.join(ACCEPTED_ACCOUNT_TYPES)} (or 'unknown' for the member -1)."),
        CheckSpec("fact_transactions", "reconciles_with_raw", ERROR,
                  "Raw transactions = fact rows, and the sum of amounts per day is equal in both."),
        *[CheckSpec("fact_transactions", check.name, ERROR, _defect_description(check), check)
          for check in DEFECT_CHECKS],
        CheckSpec("fact_transactions", "events_match_transactions", WARN,
                  "No event refers to a transaction that does not exist."),
        CheckSpec("dim_customers", "emails_present", WARN, "Every customer has an email."),
        CheckSpec("fact_transactions", "event_match_rate", WARN,
                  "The share of facts that found an event is at least min_event_match_rate."),
        CheckSpec("fact_transactions", "fresh_transactions", WARN,
                  "The newest transaction is at most max_transaction_age_hours old."),
    ]
    return specs


# The histories (table, its current dimension, member key, version key) and the daily balances:
# what `financial_assets.transform.history` builds, named here so that declaring them loads no Spark.
HISTORY_TABLES = (
    ("dim_customers_history", "dim_customers", "customer_key", "customer_version_key"),
    ("dim_accounts_history", "dim_accounts", "account_key", "account_version_key"),
)
BALANCES_TABLE = "fact_account_balances_daily"


def _history_specs() -> list[CheckSpec]:
    """What keeps history: all pipeline integrity (ERROR, blocking): a history that overlaps or
    loses its current version, or a snapshot with a repeated or missing day, is our bug, never the
    source's (run by `financial_assets.quality.history_checks`)."""
    specs = []
    for table, dimension, member_key, version_key in HISTORY_TABLES:
        specs += [
            CheckSpec(table, "keys_unique_and_not_null", ERROR,
                      f"{version_key} is never null and never repeated; {member_key} is never null."),
            CheckSpec(table, "validity_intervals_do_not_overlap", ERROR,
                      f"Each {member_key}'s versions have valid_from < valid_to and never overlap; "
                      "is_current exactly when valid_to is NULL; a deleted version is closed."),
            CheckSpec(table, "one_current_version_per_live_member", ERROR,
                      f"Every {member_key} of {dimension} (the source now) has exactly one current "
                      "version; a member the source deleted has none."),
        ]
    specs += [
        CheckSpec("fact_transactions", "history_keys_resolve", ERROR,
                  "Every fact's account_version_key and customer_version_key is the version of its member valid "
                  "at its transaction_at (-1 when none is: no time, a future time, before the member's first version)."),
        CheckSpec(BALANCES_TABLE, "one_row_per_account_per_day", ERROR, "No (account_key, date_key) is repeated or NULL."),
        CheckSpec(BALANCES_TABLE, "no_gap_days", ERROR,
                  "An account has a row on every snapshot day between its first and its last."),
        CheckSpec(BALANCES_TABLE, "net_amounts_reconcile_with_facts", ERROR,
                  "Each row's transaction_count and net_signed_amount are those of its account's facts that day."),
    ]
    return specs


HISTORY_CHECKS = _history_specs()
STAR_CHECKS = _specs() + HISTORY_CHECKS
