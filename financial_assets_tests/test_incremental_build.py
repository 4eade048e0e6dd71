"""Incremental star-schema builds: new transactions' facts appended to the published ones.

The raw zone is written here directly (Iceberg appends and overwrites, as the raw loads commit
them), so each test controls exactly what arrived since the last publication. The promise under
test: an incremental build gives the tables and the audit a full build of the same raw zone gives.
"""

from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pytest

from financial_assets.extract.contracts import ACCOUNTS, CUSTOMERS, TRANSACTION_EVENTS, TRANSACTIONS
from financial_assets.lakehouse.catalog import TABLE_PROPERTIES
from financial_assets.lakehouse.publication import publish
from financial_assets.lakehouse.star_builds import build_and_record, next_build_plan
from financial_assets.lakehouse.tables import CONTENT_DIGEST, STAR_TABLES
from financial_assets.quality.defects import DEFAULT_MAX_DEFECT_SHARE
from financial_assets.quality.specs import QualityThresholds
from financial_assets.transform import build
from financial_assets.transform.pii import PiiPolicy
from financial_assets_tests.conftest import forget_catalog, fork_catalog, temporary_lakehouse

POLICY = PiiPolicy(hmac_key=b"test-only-pii-key")
NOW = datetime(2025, 3, 10, tzinfo=timezone.utc)
CONTRACTS = {c.table: c for c in (CUSTOMERS, ACCOUNTS, TRANSACTIONS, TRANSACTION_EVENTS)}


def at(day: int) -> datetime:
    return datetime(2025, 3, day, 12, tzinfo=timezone.utc)


def event_id(n: int) -> str:
    return f"{n:024x}"


def customer(n: int) -> dict:
    return {"customer_id": n, "name": f"Customer {n}", "email": f"c{n}@example.org", "phone": "+1 555 0100",
            "address": "1 Main St\nLake Susan, KS 12345"}


def account(n: int, customer_id: int) -> dict:
    return {"account_id": n, "customer_id": customer_id, "account_type": "savings",
            "balance": Decimal("10.00"), "opened_at": at(1)}


def transaction(n: int, account_id: int, day: int = 3, amount: str = "5.00") -> dict:
    return {"transaction_id": n, "account_id": account_id, "transaction_type": "deposit",
            "amount": Decimal(amount), "timestamp": at(day)}


def event(n: int, transaction_id: int, device: str = "atm") -> dict:
    return {"event_id": event_id(n), "transaction_id": transaction_id, "device_type": device,
            "ip_address": "203.0.113.1", "geolocation": {"country": "Kenya", "city": "Nairobi"},
            "fraud_score": 0.1, "extra_fields": None}


class RawZoneWriter:
    """Commits rows to the raw Iceberg tables the way the raw loads do: an incremental load
    appends, a full or snapshot load replaces the rows in one commit."""

    def __init__(self, catalog):
        self.catalog = catalog

    def append(self, table: str, rows: list[dict], replace: bool = False, digest: str | None = None) -> None:
        """``digest``: the content digest a snapshot load records (none by default)."""
        schema = pa.schema(list(CONTRACTS[table].columns.items()))
        iceberg = self.catalog.load().create_table_if_not_exists(
            self.catalog.raw_table(table), schema=schema, properties=TABLE_PROPERTIES)
        data = pa.Table.from_pylist(rows, schema=schema)
        summary = {CONTENT_DIGEST: digest} if digest else {}
        if replace:
            iceberg.overwrite(data, snapshot_properties=summary)
        else:
            iceberg.append(data, snapshot_properties=summary)


@pytest.fixture(scope="module")
def raw_zone(server_settings, tmp_path_factory):
    """The raw zone every test starts from, loaded once; tests take forks of it."""
    with temporary_lakehouse(server_settings, tmp_path_factory.mktemp("lakehouse")) as catalog:
        raw = RawZoneWriter(catalog)
        raw.append("customers", [customer(1), customer(2)])
        raw.append("accounts", [account(10, 1), account(11, 2)])
        raw.append("transactions", [transaction(100, 10), transaction(101, 11, day=4)])
        raw.append("transaction_events", [event(1, 100), event(2, 101), event(3, 999)])  # 999: not yet arrived
        yield catalog


@pytest.fixture(scope="module")
def published_v1(raw_zone, spark, tmp_path_factory):
    """The raw zone with version v1 built from it (a full build) and published, made once:
    (catalog, v1's build report); tests take forks of it."""
    catalog = fork_catalog(raw_zone, f"file://{tmp_path_factory.mktemp('lakehouse')}")
    report = build_and_publish(spark, catalog, "v1")
    yield catalog, report
    forget_catalog(catalog)


@contextmanager
def forked(catalog, directory):
    fork = fork_catalog(catalog, f"file://{directory / 'lakehouse'}")
    try:
        yield fork, RawZoneWriter(fork)
    finally:
        forget_catalog(fork)


@pytest.fixture
def lakehouse(raw_zone, tmp_path):
    """The test's own lakehouse holding the standard raw zone, nothing built: (catalog, raw writer)."""
    with forked(raw_zone, tmp_path) as lakehouse:
        yield lakehouse


@pytest.fixture
def after_v1(published_v1, tmp_path):
    """The test's own lakehouse where v1 of the standard raw zone is published: (catalog, raw
    writer, v1's build report)."""
    catalog, v1 = published_v1
    with forked(catalog, tmp_path) as (fork, raw):
        yield fork, raw, v1


@pytest.fixture(scope="module")
def one_new_transaction(published_v1, spark, tmp_path_factory):
    """v1 published, then one new transaction (102, on a published account, day 3), built into v2
    (audited, not published), made once: (catalog, v1's report, v2's report). Tests only read it."""
    catalog, v1 = published_v1
    with forked(catalog, tmp_path_factory.mktemp("one-new-transaction")) as (fork, raw):
        raw.append("transactions", [transaction(102, 10)])
        yield fork, v1, build_and_record(spark, fork, "v2", POLICY, TOLERANT, now=NOW)


@pytest.fixture(scope="module")
def members_reloaded(published_v1, spark, tmp_path_factory):
    """As `one_new_transaction`, but with customers and accounts reloaded first (new snapshots, the
    same rows, no content digest) and v2 published: (catalog, v2's report). Tests only read it."""
    catalog, _ = published_v1
    with forked(catalog, tmp_path_factory.mktemp("members-reloaded")) as (fork, raw):
        raw.append("customers", [customer(1), customer(2)], replace=True)
        raw.append("accounts", [account(10, 1), account(11, 2)], replace=True)
        raw.append("transactions", [transaction(102, 10)])
        yield fork, build_and_publish(spark, fork, "v2")


# These tests are about what an incremental build reuses. With their few rows, any source defect
# (an unknown account, a duplicate event) is a large share of the new rows and would block the
# publish they build on: here the gate tolerates every share (test_quality_gate.py tests the gate).
TOLERANT = QualityThresholds(max_defect_share=dict.fromkeys(DEFAULT_MAX_DEFECT_SHARE, 1.0))


def build_and_publish(spark, catalog, name: str, **options):
    report = build_and_record(spark, catalog, name, POLICY, TOLERANT, now=NOW, **options)
    publish(catalog, name)
    return report


def planned(spark, catalog, policy=POLICY, **options) -> tuple[str, str]:
    """(mode, reason) of the build that would run now: what these tests are about, without the
    cost of writing and auditing it."""
    plan = next_build_plan(spark, catalog, policy, **options)
    return plan.mode, plan.reason


def branch_table(spark, catalog, report, table: str) -> list[tuple]:
    """One table of a build, as its audit branch holds it."""
    return sorted(tuple(r) for r in spark.read.option("versionAsOf", report.snapshots[table])
                  .table(catalog.spark_table(catalog.analytics_table(table))).collect())


def branch_rows(spark, catalog, report) -> dict[str, list[tuple]]:
    """Every table of a build, as its audit branch holds it."""
    return {table: branch_table(spark, catalog, report, table) for table in STAR_TABLES}


def audit(report) -> dict:
    return {(c.asset, c.name): (c.passed, c.metadata) for c in report.checks}


# What a defect check says about the build's new rows (its gate): an incremental build has fewer.
BUILD_GATE = {"new_rows", "new_flagged_rows", "share_of_new_rows", "what_to_do"}


def version_audit(report) -> dict:
    """The audit of the version the build made, whichever way it was built."""
    return {key: (passed, {k: v for k, v in metadata.items() if k not in BUILD_GATE})
            for key, (passed, metadata) in audit(report).items()}


def test_the_first_build_is_full_because_nothing_is_published(spark, lakehouse):
    catalog, _ = lakehouse

    assert planned(spark, catalog) == ("full", "no version has been published yet")


def test_the_published_first_build_was_full_because_nothing_was_published(published_v1):
    _, v1 = published_v1

    assert (v1.mode, v1.mode_reason) == ("full", "no version has been published yet")


def test_a_build_on_top_of_a_published_version_transforms_only_the_new_transactions(one_new_transaction):
    _, _, v2 = one_new_transaction

    assert (v2.mode, v2.new_fact_rows, v2.row_counts["fact_transactions"]) == ("incremental", 1, 3)


@pytest.fixture(scope="module")
def arrivals_built_both_ways(published_v1, spark, tmp_path_factory):
    """v1 published, then a customer, an account, transactions (one of an unknown account, one the
    waiting event 3 belongs to) and events (a duplicate, one of an unknown transaction) arrive;
    built incrementally (v2) and then as a full build (v3) of the same raw zone, made once:
    (catalog, v2's report, v3's report). Tests only read it."""
    catalog, _ = published_v1
    with forked(catalog, tmp_path_factory.mktemp("arrivals")) as (fork, raw):
        raw.append("customers", [customer(3)])
        raw.append("accounts", [account(12, 3)])
        raw.append("transactions", [transaction(102, 12, day=6), transaction(103, 404, day=6), transaction(999, 10)])
        raw.append("transaction_events", [event(4, 102), event(5, 102, device="web_browser"), event(6, 5000)])
        incremental = build_and_record(spark, fork, "v2", POLICY, now=NOW)
        yield fork, incremental, build_and_record(spark, fork, "v3", POLICY, now=NOW, full_refresh=True)


def test_an_incremental_build_gives_the_tables_of_a_full_build(spark, arrivals_built_both_ways):
    catalog, incremental, full = arrivals_built_both_ways

    assert incremental.mode == "incremental"
    assert branch_rows(spark, catalog, incremental) == branch_rows(spark, catalog, full)


def test_an_incremental_build_gives_the_audit_and_statistics_of_a_full_build(arrivals_built_both_ways):
    _, incremental, full = arrivals_built_both_ways

    assert version_audit(incremental) == version_audit(full)
    assert incremental.statistics == full.statistics == {
        "duplicate_events": 1, "events_for_unknown_transactions": 1, "unknown_account_rows": 1}


def test_an_event_that_waited_for_its_transaction_is_joined_to_the_new_fact(spark, published_v1,
                                                                          arrivals_built_both_ways):
    _, v1 = published_v1
    catalog, incremental, _ = arrivals_built_both_ways
    fact = {r[0]: r for r in branch_table(spark, catalog, incremental, "fact_transactions")}

    assert v1.statistics["events_for_unknown_transactions"] == 1  # event 3, of transaction 999
    assert incremental.mode == "incremental"
    assert fact[999][8] == "atm"  # device_type: event 3's
    assert incremental.statistics["events_for_unknown_transactions"] == 1  # event 6 alone, of transaction 5000


def test_a_bad_new_row_fails_the_incremental_audit(spark, after_v1):
    catalog, raw, _ = after_v1
    raw.append("transactions", [transaction(102, 10, amount="-1.00")])
    report = build_and_record(spark, catalog, "v2", POLICY, now=NOW)
    [outcome] = [c for c in report.checks if c.name == "amounts_present_and_positive"]

    assert report.mode == "incremental"
    assert (outcome.passed, outcome.severity) == (False, "ERROR")  # 1 of 1 new row: above any share
    assert (outcome.metadata["amount_not_positive"], outcome.metadata["share_of_new_rows"]) == (1, 1.0)
    assert outcome.metadata["sample_transaction_ids"] == [102]


def test_a_new_event_for_a_published_transaction_forces_a_full_build(spark, after_v1):
    catalog, raw, _ = after_v1
    raw.append("transaction_events", [event(4, 100, device="web_browser")])
    mode, reason = planned(spark, catalog)

    assert mode == "full"
    assert "1 new events belong to published transactions" in reason


@pytest.fixture(scope="module")
def published_with_unknown_members(raw_zone, spark, tmp_path_factory):
    """The standard raw zone plus a transaction of account 12 and an account (13) of customer 3,
    neither of which exists yet, built and published once: the catalog. Tests take forks of it."""
    with forked(raw_zone, tmp_path_factory.mktemp("unknown-members")) as (catalog, raw):
        raw.append("transactions", [transaction(102, 12)])
        raw.append("accounts", [account(13, 3)])
        build_and_publish(spark, catalog, "v1")
        yield catalog


def test_an_account_arriving_for_a_published_transaction_forces_a_full_build(spark, published_with_unknown_members,
                                                                             tmp_path):
    with forked(published_with_unknown_members, tmp_path) as (catalog, raw):
        raw.append("accounts", [account(12, 1)])
        mode, reason = planned(spark, catalog)

    assert mode == "full"
    assert "1 published transactions belong to accounts that arrived" in reason


def test_a_customer_arriving_for_a_published_account_forces_a_full_build(spark, published_with_unknown_members,
                                                                         tmp_path):
    with forked(published_with_unknown_members, tmp_path) as (catalog, raw):
        raw.append("customers", [customer(3)])
        mode, reason = planned(spark, catalog)

    assert mode == "full"
    assert "1 accounts changed customer or were removed" in reason


def test_an_account_that_moved_to_another_customer_forces_a_full_build(spark, after_v1):
    catalog, raw, _ = after_v1
    raw.append("accounts", [account(10, 2), account(11, 2)], replace=True)
    mode, reason = planned(spark, catalog)

    assert mode == "full"
    assert "1 accounts changed customer or were removed" in reason


def test_snapshot_tables_reloaded_unchanged_still_allow_an_incremental_build(members_reloaded):
    _, v2 = members_reloaded

    assert (v2.mode, v2.new_fact_rows) == ("incremental", 1)


BALANCES = "fact_account_balances_daily"
MEMBERS = ("dim_customers", "dim_accounts", "dim_customers_history", "dim_accounts_history")


def test_members_whose_raw_snapshots_are_the_published_ones_are_kept_as_published(one_new_transaction):
    _, v1, v2 = one_new_transaction

    assert v2.mode == "incremental"
    assert {table: v2.snapshots[table] for table in MEMBERS} == {table: v1.snapshots[table] for table in MEMBERS}


def test_members_reloaded_with_the_content_digest_the_published_build_read_are_kept(spark, after_v1):
    catalog, raw, _ = after_v1

    def reload_members():
        raw.append("customers", [customer(1), customer(2)], replace=True, digest="customers 1 and 2")
        raw.append("accounts", [account(10, 1), account(11, 2)], replace=True, digest="accounts 10 and 11")

    reload_members()
    v2 = build_and_publish(spark, catalog, "v2")  # v1 read loads without a digest: compared
    reload_members()
    raw.append("transactions", [transaction(102, 10)])
    v3 = build_and_publish(spark, catalog, "v3")

    assert {table: v3.snapshots[table] for table in MEMBERS} == {table: v2.snapshots[table] for table in MEMBERS}


def test_kept_members_give_the_tables_and_audit_of_members_compared_again(spark, one_new_transaction, members_reloaded):
    kept, v1, with_kept = one_new_transaction
    compared, with_compared = members_reloaded
    tables = [branch_rows(spark, kept, with_kept), branch_rows(spark, compared, with_compared)]
    for rows in tables:  # each balance row says when its accounts were extracted, and these were not at once
        rows[BALANCES] = [row[:4] + row[5:] for row in rows[BALANCES]]

    assert with_compared.snapshots["dim_customers"] != v1.snapshots["dim_customers"]
    assert tables[0] == tables[1]
    assert version_audit(with_kept) == version_audit(with_compared)


def test_a_reloaded_raw_table_forces_a_full_build(spark, after_v1):
    catalog, raw, _ = after_v1
    raw.append("transactions", [transaction(100, 10), transaction(101, 11, day=4)], replace=True)

    assert planned(spark, catalog) == ("full", "raw transactions was reloaded or rewritten since version v1")


def test_another_pii_key_forces_a_full_build(spark, after_v1):
    catalog, _, _ = after_v1
    mode, reason = planned(spark, catalog, PiiPolicy(hmac_key=b"another-key"))

    assert mode == "full"
    assert "PII policy changed" in reason


def test_changed_transform_code_forces_a_full_build(spark, after_v1, monkeypatch):
    catalog, _, _ = after_v1
    monkeypatch.setattr(build, "_SOURCE_DIGEST", "the code of a later release")

    assert planned(spark, catalog) == ("full", "the transform, its audit or the PII policy changed since version v1")


def test_full_refresh_forces_a_full_build(spark, after_v1):
    catalog, _, _ = after_v1

    assert planned(spark, catalog, full_refresh=True) == ("full", "full refresh requested")


def fact_files(catalog, snapshot_id: int) -> set[str]:
    table = catalog.load().load_table(catalog.analytics_table("fact_transactions"))
    return {task.file.file_path for task in table.scan(snapshot_id=snapshot_id).plan_files()}


def test_an_incremental_build_appends_new_fact_files_and_copies_none(one_new_transaction):
    catalog, first, second = one_new_transaction
    before, after = fact_files(catalog, first.snapshots["fact_transactions"]), fact_files(catalog, second.snapshots["fact_transactions"])

    assert before < after
    assert len(after - before) == 1


def test_a_transaction_committed_late_below_the_published_mark_forces_a_full_build(spark, after_v1):
    catalog, raw, _ = after_v1
    raw.append("transactions", [transaction(99, 10)])  # a long transaction's lower id, committed after v1
    report = build_and_publish(spark, catalog, "v2")

    assert report.mode == "full"
    assert "1 transactions committed late, below the published greatest id 101" in report.mode_reason
    assert report.row_counts["fact_transactions"] == 3


def test_a_build_leaves_main_where_it_was_until_it_is_published(one_new_transaction):
    catalog, first, _ = one_new_transaction
    fact = catalog.load().load_table(catalog.analytics_table("fact_transactions"))

    assert fact.refs()["main"].snapshot_id == first.snapshots["fact_transactions"]
    assert "audit_v2" in fact.refs()
