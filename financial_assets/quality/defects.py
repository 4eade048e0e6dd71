"""The catalogue of source-data defects: the codes a fact's ``defects`` may hold, the checks that
count them and the share of a build's new rows above which each check blocks.

Pure Python (no Spark, no Dagster): the transform flags rows with these codes
(`financial_assets.transform.star_schema`), the audit counts them
(`financial_assets.quality.star_checks`), and `financial-assets defects` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

# The reference's value sets (the original README's schema comments).
ACCEPTED_TRANSACTION_TYPES = ("deposit", "withdrawal", "transfer")
ACCEPTED_ACCOUNT_TYPES = ("savings", "checking")
ACCEPTED_DEVICE_TYPES = ("mobile_app", "web_browser", "atm")

# Earlier than this, a timestamp is a placeholder (the epoch, 1900-01-01, 0001-01-01), not a
# transaction the bank's systems recorded.
OLDEST_PLAUSIBLE_TIME = datetime(1980, 1, 1, tzinfo=timezone.utc)

# Every code a fact's `defects` may hold, in the order they appear there: what is wrong with the
# source row. The README's table of defect codes is this one.
DEFECTS = {
    "amount_missing": "amount is NULL (it stays NULL: sums skip it)",
    "amount_not_positive": "amount is zero or negative (amounts are positive, the type gives the direction)",
    "time_missing": "timestamp is NULL (date_key is -1)",
    "time_in_future": "timestamp is later than the build that loaded the row",
    "time_too_old": f"timestamp is before {OLDEST_PLAUSIBLE_TIME:%Y-%m-%d}: a placeholder, not a real time",
    "account_unknown": "account_id is NULL or matches no account (account_key and customer_key are -1)",
    "customer_unknown": "the account is known, its customer is not (customer_key is -1)",
    "transaction_type_unknown": "transaction_type is not deposit, withdrawal or transfer (signed_amount is NULL)",
    "device_type_unknown": "the event's device_type is not mobile_app, web_browser or atm",
    "fraud_score_out_of_range": "the event's fraud_score is outside 0..1",
    "event_duplicated": "the transaction has several events; the latest written is used",
}


@dataclass(frozen=True)
class DefectCheck:
    """A source-defect check: the fact rows flagged with any of ``codes`` (a row holds at most one
    code of a check: they exclude each other), and by default the share of a build's new rows
    above which they block the publish."""

    name: str
    codes: tuple[str, ...]
    max_share: float
    description: str


# Every code belongs to exactly one check. Amounts are what analysts sum: broken amounts block
# earliest. Event attributes (device, score, duplicates) only describe a transaction, and the
# event feed is the noisier source: more is tolerated there.
DEFECT_CHECKS = (
    DefectCheck("amounts_present_and_positive", ("amount_missing", "amount_not_positive"), 0.005,
                "Every amount is present and above zero (the type gives the direction)."),
    DefectCheck("transaction_times_valid", ("time_missing", "time_in_future", "time_too_old"), 0.01,
                f"Every transaction has a timestamp, none in the future, none a placeholder before "
                f"{OLDEST_PLAUSIBLE_TIME.year}."),
    DefectCheck("unknown_members", ("account_unknown", "customer_unknown"), 0.01,
                "Every transaction's account exists, and so does the account's customer (else the fact "
                "points at the unknown member -1)."),
    DefectCheck("accepted_transaction_types", ("transaction_type_unknown",), 0.01,
                f"transaction_type is one of {', '.join(ACCEPTED_TRANSACTION_TYPES)}."),
    DefectCheck("accepted_device_types", ("device_type_unknown",), 0.05,
                f"device_type is one of {', '.join(ACCEPTED_DEVICE_TYPES)}, or null without an event."),
    DefectCheck("fraud_scores_in_range", ("fraud_score_out_of_range",), 0.05,
                "Every fraud score is between 0 and 1."),
    DefectCheck("duplicate_events", ("event_duplicated",), 0.05,
                "Every transaction has at most one event (of several, the latest written is used)."),
)
CHECK_OF_CODE = {code: check for check in DEFECT_CHECKS for code in check.codes}
assert sorted(CHECK_OF_CODE) == sorted(DEFECTS), "every defect code belongs to exactly one check"
DEFAULT_MAX_DEFECT_SHARE = {check.name: check.max_share for check in DEFECT_CHECKS}


def defect_query(codes) -> str:
    """The SQL listing the fact rows flagged with any of ``codes`` (DuckDB and Athena alike)."""
    unknown = [code for code in codes if code not in DEFECTS]
    if unknown:
        raise ValueError(f"no defect code {', '.join(unknown)} (they are {', '.join(DEFECTS)})")
    condition = " OR ".join(f"contains(defects, '{code}')" for code in codes)
    return f"SELECT * FROM fact_transactions WHERE {condition} ORDER BY transaction_id"


# Flagged rows per code (codes no row holds are left out).
DEFECT_COUNTS_QUERY = (
    "SELECT code, count(*) AS flagged_rows FROM fact_transactions CROSS JOIN UNNEST(defects) AS t(code) "
    "GROUP BY code ORDER BY code"
)
