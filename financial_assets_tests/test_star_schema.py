"""The star-schema rules, on small hand-built raw tables (pure PySpark, no servers)."""

import hashlib
import hmac
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from financial_assets.transform.pii import PiiPolicy
from financial_assets.transform.star_schema import RawTables, build_star_schema, event_statistics

KEY = b"test-only-pii-key"
POLICY = PiiPolicy(hmac_key=KEY)

CUSTOMERS = "customer_id int, name string, email string, phone string, address string"
ACCOUNTS = "account_id int, customer_id int, account_type string, balance decimal(12,2), opened_at timestamp"
TRANSACTIONS = "transaction_id int, account_id int, transaction_type string, amount decimal(12,2), timestamp timestamp"
EVENTS = (
    "event_id string, transaction_id bigint, device_type string, ip_address string, "
    "geolocation struct<country:string,city:string>, fraud_score double, extra_fields string"
)


def frame(spark, rows: list, schema):
    """``rows`` (tuples or dicts; a struct's value too) as a DataFrame held by the JVM, sent as Arrow:
    a list given to ``createDataFrame`` is a Python RDD that Python worker processes evaluate."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    struct = schema if isinstance(schema, StructType) else StructType.fromDDL(schema)

    def as_dict(values, of: StructType) -> dict:
        named = values if isinstance(values, dict) else dict(zip(of.names, values))
        return {field.name: as_dict(named[field.name], field.dataType)
                if isinstance(field.dataType, StructType) and named[field.name] is not None else named[field.name]
                for field in of.fields}

    table = pa.Table.from_pylist([as_dict(row, struct) for row in rows], schema=to_arrow_schema(struct))
    return spark.createDataFrame(table, struct)


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2025, 3, day, hour, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def star(spark):
    customers = [
        (1, "Ada Lovelace", "ada@example.org", "+1 (555) 010-4477", "12 Main St\nLake Susan, KS 12345"),
        (2, "Ada Again", "  ADA@Example.org ", None, "PSC 1234, Box 5678\nAPO AE 09876"),
    ]
    accounts = [
        (10, 1, "savings", Decimal("100.00"), at(1, 9)),
        (11, 99, "checking", Decimal("5.00"), at(2)),  # its customer does not exist
    ]
    transactions = [
        (100, 10, "deposit", Decimal("50.00"), at(3)),
        (101, 10, "withdrawal", Decimal("20.00"), at(3, 23)),
        (102, 11, "transfer", Decimal("7.50"), at(5)),
        (103, 404, "deposit", Decimal("1.00"), at(5)),  # its account does not exist
        (104, 10, "refund", Decimal("2.00"), None),  # unknown type, no timestamp
    ]
    events = [
        ("000000000000000000000001", 100, "atm", "203.0.113.1", ("Kenya", "Nairobi"), 0.10, None),
        ("000000000000000000000003", 100, "web_browser", "203.0.113.2", ("Kenya", "Mombasa"), 0.30, None),
        ("000000000000000000000002", 101, "mobile_app", "203.0.113.3", ("Peru", "Lima"), 0.20, None),
        ("000000000000000000000004", 999, "atm", "203.0.113.4", ("Chad", "Abeche"), 0.90, None),
    ]
    raw = RawTables(
        customers=frame(spark, customers, CUSTOMERS),
        accounts=frame(spark, accounts, ACCOUNTS),
        transactions=frame(spark, transactions, TRANSACTIONS),
        transaction_events=frame(spark, events, EVENTS),
    )
    schema = build_star_schema(raw, POLICY)
    tables = {name: {row[0]: row.asDict() for row in table.collect()} for name, table in schema.tables().items()}
    tables["statistics"] = event_statistics(raw.transactions, raw.transaction_events)
    return tables


def test_every_transaction_becomes_a_fact_none_dropped(star):
    assert sorted(star["fact_transactions"]) == [100, 101, 102, 103, 104]


def test_a_transaction_with_an_unknown_account_points_at_the_unknown_members(star):
    fact = star["fact_transactions"][103]

    assert (fact["account_key"], fact["customer_key"]) == (-1, -1)
    assert star["dim_accounts"][-1]["account_type"] == "unknown"
    assert star["dim_customers"][-1]["name"] == "Unknown customer"


def test_an_account_with_an_unknown_customer_points_at_the_unknown_customer(star):
    assert star["dim_accounts"][11]["customer_key"] == -1
    assert star["fact_transactions"][102]["customer_key"] == -1


def test_signed_amount_is_in_for_deposits_and_out_for_withdrawals_and_transfers(star):
    facts = star["fact_transactions"]

    assert facts[100]["signed_amount"] == Decimal("50.00")
    assert facts[101]["signed_amount"] == Decimal("-20.00")
    assert facts[102]["signed_amount"] == Decimal("-7.50")
    assert facts[104]["signed_amount"] is None  # 'refund' has no known direction
    assert facts[104]["amount"] == Decimal("2.00")


def test_the_latest_written_event_wins_when_a_transaction_has_several(star):
    fact = star["fact_transactions"][100]

    assert (fact["device_type"], fact["fraud_score"], fact["city"]) == ("web_browser", 0.30, "Mombasa")


def test_duplicate_events_and_events_for_unknown_transactions_are_counted(star):
    assert star["statistics"] == {"duplicate_events": 1, "events_for_unknown_transactions": 1}


def test_a_transaction_without_an_event_keeps_null_event_columns(star):
    fact = star["fact_transactions"][102]

    assert (fact["device_type"], fact["fraud_score"], fact["country"]) == (None, None, None)


def test_date_keys_are_utc_days_and_missing_timestamps_get_the_unknown_date(star):
    facts = star["fact_transactions"]

    assert facts[101]["date_key"] == 20250303  # 23:00 UTC stays on the 3rd
    assert facts[104]["date_key"] == -1
    assert -1 in star["dim_dates"]


def test_the_calendar_runs_from_the_first_opening_to_the_last_transaction_without_gaps(star):
    keys = sorted(k for k in star["dim_dates"] if k != -1)

    assert keys == [20250301, 20250302, 20250303, 20250304, 20250305]  # the 4th had no activity


def test_calendar_attributes(star):
    day = star["dim_dates"][20250302]

    assert day["date"] == date(2025, 3, 2)
    assert (day["year"], day["quarter"], day["month"], day["month_name"], day["day"]) == (2025, 1, 3, "March", 2)
    assert (day["weekday"], day["weekday_name"], day["iso_week"], day["is_weekend"]) == (7, "Sunday", 9, True)
    assert star["dim_dates"][20250303]["is_weekend"] is False


def test_accounts_carry_their_opening_date_key(star):
    assert star["dim_accounts"][10]["opened_date_key"] == 20250301


def test_emails_are_hmac_tokens_of_the_normalised_address(star):
    expected = hmac.new(KEY, b"ada@example.org", hashlib.sha256).hexdigest()

    assert star["dim_customers"][1]["email"] == expected


def test_emails_differing_only_by_case_and_spaces_get_one_token(star):
    assert star["dim_customers"][1]["email"] == star["dim_customers"][2]["email"]


def test_no_clear_email_phone_or_street_reaches_the_dimension(star):
    customers = star["dim_customers"]
    text = repr(customers)

    assert "@" not in text and "Main St" not in text and "010-4477" not in text
    assert customers[1]["phone"] == "*********77"
    assert (customers[1]["city"], customers[1]["region"]) == ("Lake Susan", "KS")
    assert (customers[2]["city"], customers[2]["region"]) == (None, "AE")


def test_clear_text_needs_an_explicit_opt_in(spark):
    with pytest.raises(ValueError, match="FIN_PII_HMAC_KEY"):
        PiiPolicy()

    customers = frame(spark, [(1, "A", "a@x.org", "123", "1 St\nX, KS 12345")], CUSTOMERS)
    accounts = frame(spark, [], ACCOUNTS)
    raw = RawTables(customers, accounts, frame(spark, [], TRANSACTIONS), frame(spark, [], EVENTS))
    row = build_star_schema(raw, PiiPolicy(clear_text=True)).dim_customers.where("customer_key = 1").first()

    assert (row["email"], row["phone"], row["address"]) == ("a@x.org", "123", "1 St\nX, KS 12345")


def test_the_unknown_member_is_made_in_the_jvm_not_read_from_python(spark):
    from financial_assets.transform.star_schema import _with_unknown_member

    dimension = spark.range(0).selectExpr("id AS customer_key", "CAST(NULL AS STRING) AS name")
    with_unknown = _with_unknown_member(dimension, {"customer_key": -1, "name": "Unknown customer"})
    # Rows from a Python list are a Python RDD, scanned as "ExistingRDD" by Python workers in every query.
    plan = with_unknown._jdf.queryExecution().executedPlan().toString()

    assert "ExistingRDD" not in plan
    assert [tuple(row) for row in with_unknown.collect()] == [(-1, "Unknown customer")]
    assert all(field.nullable for field in with_unknown.schema)


def test_a_published_table_that_drifts_from_its_contract_fails_the_schema_check(spark):
    from financial_assets.quality.star_checks import _schema

    drifted = frame(spark, [(1, "x", 2.0)], "date_key int, date string, year double")
    outcome = _schema("dim_dates", drifted)

    assert outcome.passed is False
    assert "date date" in outcome.metadata["missing"] and "date string" in outcome.metadata["unexpected"]


# --- the audit's checks failing, each on a star schema broken in exactly one way -----------------

@pytest.fixture(scope="module")
def audit(spark):
    """run_star_checks on the clean module schema with one table replaced, by check name."""
    from datetime import datetime as dt

    from financial_assets.quality.specs import QualityThresholds
    from financial_assets.quality.star_checks import run_star_checks
    from financial_assets.transform.star_schema import StarSchema

    customers = frame(spark, [
        (1, "Ada", "ada@example.org", "123", "1 St\nX, KS 12345")], CUSTOMERS)
    accounts = frame(spark, [(10, 1, "savings", Decimal("1.00"), at(1))], ACCOUNTS)
    transactions = frame(spark, [(100, 10, "deposit", Decimal("5.00"), at(2))], TRANSACTIONS)
    events = frame(spark, [
        ("000000000000000000000001", 100, "atm", "203.0.113.1", ("Kenya", "Nairobi"), 0.1, None)], EVENTS)
    raw = RawTables(customers, accounts, transactions, events)
    # Held as computed rows, as a build's audit reads the written tables: each check's query then
    # plans over small tables instead of the whole transform again.
    built = build_star_schema(raw, POLICY)
    clean = StarSchema(**{name: table.localCheckpoint() for name, table in built.tables().items()})
    now = dt(2025, 3, 2, 18, tzinfo=timezone.utc)

    def outcomes(thresholds=QualityThresholds(), raw_tables=raw, **replaced) -> dict:
        star = StarSchema(**{**clean.tables(), **replaced})
        return {(o.asset, o.name): o for o in run_star_checks(star, raw_tables, {}, thresholds, now=now)}

    return clean, raw, outcomes


def test_the_clean_audit_passes_every_check(audit):
    _, _, outcomes = audit
    failed = [key for key, outcome in outcomes().items() if not outcome.passed]

    assert failed == []


def test_a_repeated_dimension_key_fails_keys_unique_and_not_null(audit):
    clean, _, outcomes = audit
    outcome = outcomes(dim_customers=clean.dim_customers.unionByName(clean.dim_customers))[
        ("dim_customers", "keys_unique_and_not_null")]

    assert outcome.passed is False and outcome.metadata["duplicate_keys"] == 2


def test_a_fact_key_without_its_dimension_row_fails_foreign_keys_resolve(audit):
    clean, _, outcomes = audit
    outcome = outcomes(dim_accounts=clean.dim_accounts.where("account_key != 10"))[
        ("fact_transactions", "foreign_keys_resolve")]

    assert outcome.passed is False and outcome.metadata["unresolved"]["account_key"] == 1


def test_an_unknown_account_type_fails_accepted_account_types(audit):
    from pyspark.sql import functions as F

    clean, _, outcomes = audit
    odd = clean.dim_accounts.withColumn("account_type", F.when(F.col("account_key") == 10, "crypto").otherwise(F.col("account_type")))
    outcome = outcomes(dim_accounts=odd)[("dim_accounts", "accepted_account_types")]

    assert outcome.passed is False and outcome.metadata["unexpected_values"] == {"crypto": 1}


def test_a_fact_that_lost_a_row_fails_reconciles_with_raw(audit):
    clean, _, outcomes = audit
    outcome = outcomes(fact_transactions=clean.fact_transactions.limit(0))[("fact_transactions", "reconciles_with_raw")]

    assert outcome.passed is False and (outcome.metadata["raw_rows"], outcome.metadata["fact_rows"]) == (1, 0)


def test_too_few_facts_with_an_event_fail_event_match_rate(audit, spark):
    _, raw, outcomes = audit
    no_events = RawTables(raw.customers, raw.accounts, raw.transactions, frame(spark, [], EVENTS))
    outcome = outcomes(
        raw_tables=no_events,
        fact_transactions=build_star_schema(no_events, POLICY).fact_transactions,
    )[("fact_transactions", "event_match_rate")]

    assert outcome.passed is False and outcome.metadata["match_rate"] == 0.0


def test_an_old_newest_transaction_fails_fresh_transactions(audit):
    from financial_assets.quality.specs import QualityThresholds

    _, _, outcomes = audit
    outcome = outcomes(QualityThresholds(max_transaction_age_hours=1))[("fact_transactions", "fresh_transactions")]

    assert outcome.passed is False and outcome.metadata["age_hours"] == 6.0


# --- source defects: flagged rows, kept; thresholds decide WARN or a blocking ERROR ---------------

def test_each_fact_carries_the_codes_of_what_is_wrong_in_its_source_row(star):
    defects = {key: fact["defects"] for key, fact in star["fact_transactions"].items()}

    assert defects == {
        100: ["event_duplicated"],
        101: [],
        102: ["customer_unknown"],
        103: ["account_unknown"],
        104: ["time_missing", "transaction_type_unknown"],
    }


def test_bad_amounts_and_implausible_times_are_flagged_and_kept_as_they_are(spark):
    accounts = frame(spark, [(10, 1, "savings", Decimal("1.00"), at(1))], ACCOUNTS)
    transactions = frame(spark, [
        (1, 10, "deposit", None, at(2)),
        (2, 10, "deposit", Decimal("-3.00"), at(2)),
        (3, 10, "deposit", Decimal("4.00"), datetime(2031, 1, 1, tzinfo=timezone.utc)),
        (4, 10, "deposit", Decimal("5.00"), datetime(1970, 1, 1, tzinfo=timezone.utc)),
    ], TRANSACTIONS)
    customers = frame(spark, [(1, "A", "a@x.org", "123", "1 St\nX, KS 12345")], CUSTOMERS)
    raw = RawTables(customers, accounts, transactions, frame(spark, [], EVENTS))
    facts = {r["transaction_id"]: (r["amount"], r["defects"])
             for r in build_star_schema(raw, POLICY, as_of=at(10)).fact_transactions.collect()}

    assert facts == {
        1: (None, ["amount_missing"]),
        2: (Decimal("-3.00"), ["amount_not_positive"]),
        3: (Decimal("4.00"), ["time_in_future"]),
        4: (Decimal("5.00"), ["time_too_old"]),
    }


def flagged(frame, code: str):
    """``frame`` with its one fact flagged ``code`` (as if the source row had that defect)."""
    from pyspark.sql import functions as F

    return frame.withColumn("defects", F.array(F.lit(code)))


def test_a_defect_above_its_share_of_the_new_rows_fails_its_check_as_a_blocking_error(audit):
    clean, _, outcomes = audit
    outcome = outcomes(fact_transactions=flagged(clean.fact_transactions, "amount_missing"))[
        ("fact_transactions", "amounts_present_and_positive")]

    assert (outcome.passed, outcome.severity) == (False, "ERROR")
    assert outcome.metadata["amount_missing"] == 1 and outcome.metadata["share_of_new_rows"] == 1.0
    assert outcome.metadata["max_share"] == 0.005


def test_a_defect_within_its_share_fails_its_check_as_a_warning_that_says_what_to_do(audit):
    from financial_assets.quality.specs import QualityThresholds

    clean, _, outcomes = audit
    lenient = QualityThresholds(max_defect_share={"amounts_present_and_positive": 1.0})
    outcome = outcomes(lenient, fact_transactions=flagged(clean.fact_transactions, "amount_missing"))[
        ("fact_transactions", "amounts_present_and_positive")]

    assert (outcome.passed, outcome.severity) == (False, "WARN")
    assert outcome.metadata["sample_transaction_ids"] == [100]
    assert outcome.metadata["query"] == (
        "SELECT * FROM fact_transactions WHERE contains(defects, 'amount_missing') "
        "OR contains(defects, 'amount_not_positive') ORDER BY transaction_id")
    assert "1 of this build's 1 new rows = 100.00%, within max_defect_share.amounts_present_and_positive = " \
        "100.00%" in outcome.metadata["what_to_do"]
    assert "financial-assets defects --check amounts_present_and_positive" in outcome.metadata["what_to_do"]


def test_a_threshold_for_a_check_that_does_not_exist_is_refused():
    from financial_assets.quality.specs import QualityThresholds

    with pytest.raises(ValueError, match="no defect check named amounts"):
        QualityThresholds(max_defect_share={"amounts": 0.1})



# The history checks on their own (the clean audit above runs them with every other check).
def history_outcome(clean, name: str, **replaced):
    from financial_assets.quality.history_checks import history_measures, history_outcomes

    return {(o.asset, o.name): o for o in history_outcomes(history_measures({**clean.tables(), **replaced}))}[name]


def test_overlapping_versions_of_a_member_fail_validity_intervals_do_not_overlap(audit):
    from pyspark.sql import functions as F

    clean, _, _ = audit
    # A second open version of customer 1, from an hour after its first: both current, overlapping.
    later = clean.dim_customers_history.where("customer_key = 1").withColumn(
        "valid_from", F.col("valid_from") + F.expr("INTERVAL 1 HOUR")).withColumn("customer_version_key", F.lit(7))
    outcome = history_outcome(clean, ("dim_customers_history", "validity_intervals_do_not_overlap"),
                              dim_customers_history=clean.dim_customers_history.unionByName(later))

    assert outcome.passed is False and outcome.metadata["overlapping_versions"] == 1


def test_a_live_member_without_a_current_version_fails_one_current_version_per_live_member(audit):
    from pyspark.sql import functions as F

    clean, _, _ = audit
    closed = clean.dim_accounts_history.withColumn("is_current", F.col("account_key") == -1)
    outcome = history_outcome(clean, ("dim_accounts_history", "one_current_version_per_live_member"),
                              dim_accounts_history=closed)

    assert outcome.passed is False and outcome.metadata["live_without_one_current"] == 1


def test_a_fact_pointing_at_no_valid_version_fails_history_keys_resolve(audit):
    from pyspark.sql import functions as F

    clean, _, outcomes = audit
    unknown = clean.fact_transactions.withColumn("customer_version_key", F.lit(-1).cast("bigint"))
    outcome = outcomes(fact_transactions=unknown)[("fact_transactions", "history_keys_resolve")]

    assert outcome.passed is False and outcome.metadata["unresolved_rows"] == {
        "account_version_key": 0, "customer_version_key": 1}


def test_broadcasting_the_events_gives_the_same_facts_without_shuffling_the_transactions(spark, audit):
    from financial_assets.transform.history import HISTORIES
    from financial_assets.transform.star_schema import build_fact_transactions

    clean, raw, _ = audit
    histories = {spec.table: clean.tables()[spec.table] for spec in HISTORIES}
    now = datetime(2025, 3, 2, 18, tzinfo=timezone.utc)
    # No join broadcast on size alone, as with tables too large for Spark's threshold.
    with_threshold = spark.conf.get("spark.sql.autoBroadcastJoinThreshold")
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    try:
        facts = {broadcast: build_fact_transactions(raw.transactions, clean.dim_accounts, raw.transaction_events,
                                                    histories, as_of=now, broadcast_events=broadcast)
                 for broadcast in (False, True)}
        plans = {broadcast: frame._jdf.queryExecution().executedPlan().toString() for broadcast, frame in facts.items()}
        rows = {broadcast: sorted(map(tuple, frame.collect())) for broadcast, frame in facts.items()}
    finally:
        spark.conf.set("spark.sql.autoBroadcastJoinThreshold", with_threshold)

    assert rows[True] == rows[False]
    assert plans[True].count("SortMergeJoin") == plans[False].count("SortMergeJoin") - 1
    assert plans[True].count("BroadcastHashJoin") == plans[False].count("BroadcastHashJoin") + 1


def balance_outcome(clean, balances, name: str):
    from financial_assets.quality.history_checks import balance_outcomes

    return {o.name: o for o in balance_outcomes(balances, clean.fact_transactions)}[name]


def test_an_account_missing_a_snapshot_day_fails_no_gap_days(audit, spark):
    clean, _, _ = audit
    [row] = clean.fact_account_balances_daily.collect()
    days = [row.asDict() | changes for changes in (
        {"date_key": 20250301}, {"date_key": 20250302, "account_key": 11}, {"date_key": 20250303})]
    outcome = balance_outcome(clean, frame(spark, days, clean.fact_account_balances_daily.schema),
                              "no_gap_days")

    assert outcome.passed is False and outcome.metadata == {"accounts_with_gaps": 1, "missing_days": 1}


def test_a_day_whose_net_amount_differs_from_its_facts_fails_net_amounts_reconcile_with_facts(audit):
    from pyspark.sql import functions as F

    clean, _, _ = audit
    wrong = clean.fact_account_balances_daily.withColumn("net_signed_amount", F.lit(Decimal("999.00")))
    outcome = balance_outcome(clean, wrong, "net_amounts_reconcile_with_facts")

    assert outcome.passed is False and outcome.metadata["mismatched_rows"] == 1
