"""Incremental star-schema builds: new transactions' facts added to the published version's.

The raw zone is written here directly (the manifest tables the raw assets commit), so each test
controls exactly what arrived since the last publication. The promise under test: an
incremental build gives the tables and the audit a full build of the same raw zone gives.
"""

from datetime import datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pytest

from financial_assets.extract.contracts import ACCOUNTS, CUSTOMERS, TRANSACTION_EVENTS, TRANSACTIONS
from financial_assets.lakehouse.publication import publish
from financial_assets.lakehouse.storage import LakehouseStorage
from financial_assets.lakehouse.tables import ManifestTable
from financial_assets.transform import build
from financial_assets.transform.build import build_star_schema_version
from financial_assets.transform.pii import PiiPolicy
from financial_assets.transform.star_schema import TABLES

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
    """Appends rows to the raw tables the way an incremental raw load commits them."""

    KEYS = {"customers": "customer_id", "accounts": "account_id", "transactions": "transaction_id",
            "transaction_events": "event_id"}

    def __init__(self, storage: LakehouseStorage):
        self.storage = storage

    def append(self, table: str, rows: list[dict], replace: bool = False) -> None:
        schema = pa.schema(list(CONTRACTS[table].columns.items()))
        manifest_table = ManifestTable(self.storage, f"raw/{table}")
        staged = manifest_table.stage()
        staged.write(pa.RecordBatch.from_pylist(rows, schema=schema))
        staged.finish(schema=schema)
        current = manifest_table.manifest()
        marks = [r[self.KEYS[table]] for r in rows]
        if current is not None and current.high_water_mark is not None and not replace:
            marks.append(current.high_water_mark)
        manifest_table.commit(staged, schema=schema, high_water_mark=max(marks), replace=replace)


@pytest.fixture
def lakehouse(tmp_path):
    storage = LakehouseStorage(str(tmp_path / "lakehouse"))
    raw = RawZoneWriter(storage)
    raw.append("customers", [customer(1), customer(2)])
    raw.append("accounts", [account(10, 1), account(11, 2)])
    raw.append("transactions", [transaction(100, 10), transaction(101, 11, day=4)])
    raw.append("transaction_events", [event(1, 100), event(2, 101), event(3, 999)])  # 999: not yet arrived
    return storage, raw


def build_and_publish(spark, storage, name: str, **options):
    report = build_star_schema_version(spark, storage, name, POLICY, now=NOW, **options)
    publish(storage, name)
    return report


def rows(spark, storage, version: str) -> dict[str, list[tuple]]:
    return {
        table: sorted(tuple(r) for r in spark.read.parquet(storage.uri_of(f"analytics/versions/{version}/{table}")).collect())
        for table in TABLES
    }


def audit(report) -> dict:
    return {(c.asset, c.name): (c.passed, c.metadata) for c in report.checks}


def test_the_first_build_is_full_because_nothing_is_published(spark, lakehouse):
    storage, _ = lakehouse
    report = build_and_publish(spark, storage, "v1")

    assert (report.mode, report.mode_reason) == ("full", "no version has been published yet")


def test_a_build_on_top_of_a_published_version_transforms_only_the_new_transactions(spark, lakehouse):
    storage, raw = lakehouse
    build_and_publish(spark, storage, "v1")
    raw.append("transactions", [transaction(102, 10, day=5), transaction(103, 11, day=5)])
    raw.append("transaction_events", [event(4, 102)])
    report = build_and_publish(spark, storage, "v2")

    assert (report.mode, report.new_fact_rows, report.row_counts["fact_transactions"]) == ("incremental", 2, 4)


def test_an_incremental_build_gives_the_tables_and_audit_of_a_full_build(spark, lakehouse):
    storage, raw = lakehouse
    build_and_publish(spark, storage, "v1")
    raw.append("customers", [customer(3)])
    raw.append("accounts", [account(12, 3)])
    raw.append("transactions", [transaction(102, 12, day=6), transaction(103, 404, day=6), transaction(999, 10)])
    raw.append("transaction_events", [event(4, 102), event(5, 102, device="web_browser"), event(6, 5000)])
    incremental = build_star_schema_version(spark, storage, "v2", POLICY, now=NOW)
    full = build_star_schema_version(spark, storage, "v3", POLICY, now=NOW, full_refresh=True)

    assert incremental.mode == "incremental"
    assert rows(spark, storage, "v2") == rows(spark, storage, "v3")
    assert audit(incremental) == audit(full)
    assert incremental.statistics == full.statistics == {
        "duplicate_events": 1, "events_for_unknown_transactions": 1, "unknown_account_rows": 1}


def test_an_event_that_waited_for_its_transaction_is_joined_to_the_new_fact(spark, lakehouse):
    storage, raw = lakehouse
    build_and_publish(spark, storage, "v1")
    raw.append("transactions", [transaction(999, 10)])
    report = build_and_publish(spark, storage, "v2")
    fact = {r["transaction_id"]: r for r in spark.read.parquet(report.locations["fact_transactions"]).collect()}

    assert report.mode == "incremental"
    assert fact[999]["device_type"] == "atm"
    assert report.statistics["events_for_unknown_transactions"] == 0


def test_a_bad_new_row_fails_the_incremental_audit(spark, lakehouse):
    storage, raw = lakehouse
    build_and_publish(spark, storage, "v1")
    raw.append("transactions", [transaction(102, 10, amount="-1.00")])
    report = build_star_schema_version(spark, storage, "v2", POLICY, now=NOW)
    outcome = audit(report)[("fact_transactions", "amounts_present_and_positive")]

    assert report.mode == "incremental"
    assert outcome == (False, {"null_amounts": 0, "non_positive_amounts": 1})


def test_a_new_event_for_a_published_transaction_forces_a_full_build(spark, lakehouse):
    storage, raw = lakehouse
    build_and_publish(spark, storage, "v1")
    raw.append("transaction_events", [event(4, 100, device="web_browser")])
    report = build_and_publish(spark, storage, "v2")

    assert report.mode == "full"
    assert "1 new events belong to published transactions" in report.mode_reason


def test_an_account_arriving_for_a_published_transaction_forces_a_full_build(spark, lakehouse):
    storage, raw = lakehouse
    raw.append("transactions", [transaction(102, 12)])  # account 12 does not exist yet
    build_and_publish(spark, storage, "v1")
    raw.append("accounts", [account(12, 1)])
    report = build_and_publish(spark, storage, "v2")

    assert report.mode == "full"
    assert "1 published transactions belong to accounts that arrived" in report.mode_reason


def test_a_customer_arriving_for_a_published_account_forces_a_full_build(spark, lakehouse):
    storage, raw = lakehouse
    raw.append("accounts", [account(12, 3)])  # customer 3 does not exist yet
    build_and_publish(spark, storage, "v1")
    raw.append("customers", [customer(3)])
    report = build_and_publish(spark, storage, "v2")

    assert report.mode == "full"
    assert "1 accounts changed customer or were removed" in report.mode_reason


def test_an_account_that_moved_to_another_customer_forces_a_full_build(spark, lakehouse):
    storage, raw = lakehouse
    build_and_publish(spark, storage, "v1")
    raw.append("accounts", [account(10, 2), account(11, 2)], replace=True)
    report = build_and_publish(spark, storage, "v2")

    assert report.mode == "full"
    assert "1 accounts changed customer or were removed" in report.mode_reason


def test_snapshot_tables_reloaded_unchanged_still_allow_an_incremental_build(spark, lakehouse):
    storage, raw = lakehouse
    build_and_publish(spark, storage, "v1")
    raw.append("customers", [customer(1), customer(2)], replace=True)
    raw.append("accounts", [account(10, 1), account(11, 2)], replace=True)
    raw.append("transactions", [transaction(102, 10)])
    report = build_and_publish(spark, storage, "v2")

    assert (report.mode, report.new_fact_rows) == ("incremental", 1)


def test_a_reloaded_raw_table_forces_a_full_build(spark, lakehouse):
    storage, raw = lakehouse
    build_and_publish(spark, storage, "v1")
    raw.append("transactions", [transaction(100, 10), transaction(101, 11, day=4)], replace=True)
    report = build_and_publish(spark, storage, "v2")

    assert (report.mode, report.mode_reason) == ("full", "raw/transactions was reloaded since version v1")


def test_another_pii_key_forces_a_full_build(spark, lakehouse):
    storage, _ = lakehouse
    build_and_publish(spark, storage, "v1")
    report = build_star_schema_version(spark, storage, "v2", PiiPolicy(hmac_key=b"another-key"), now=NOW)

    assert report.mode == "full"
    assert "PII policy changed" in report.mode_reason


def test_changed_transform_code_forces_a_full_build(spark, lakehouse, monkeypatch):
    storage, _ = lakehouse
    build_and_publish(spark, storage, "v1")
    monkeypatch.setattr(build, "_SOURCE_DIGEST", "the code of a later release")
    report = build_and_publish(spark, storage, "v2")

    assert report.mode_reason == "the transform, its audit or the PII policy changed since version v1"


def test_full_refresh_forces_a_full_build(spark, lakehouse):
    storage, _ = lakehouse
    build_and_publish(spark, storage, "v1")
    report = build_and_publish(spark, storage, "v2", full_refresh=True)

    assert (report.mode, report.mode_reason) == ("full", "full refresh requested")


def fact_files(storage, version: str) -> list[str]:
    return [p for p in storage.list_files(f"analytics/versions/{version}/fact_transactions") if p.endswith(".parquet")]


def test_too_many_fact_files_are_compacted_by_a_full_build(spark, lakehouse, monkeypatch):
    storage, raw = lakehouse
    build_and_publish(spark, storage, "v1")
    monkeypatch.setattr(build, "MAX_FACT_FILES", len(fact_files(storage, "v1")) + 1)
    raw.append("transactions", [transaction(102, 10)])
    second = build_and_publish(spark, storage, "v2")
    raw.append("transactions", [transaction(103, 10)])
    third = build_and_publish(spark, storage, "v3")

    assert (second.mode, third.mode) == ("incremental", "full")
    assert third.mode_reason == f"compacting the {build.MAX_FACT_FILES} fact files of version v2"
    assert len(fact_files(storage, "v3")) < build.MAX_FACT_FILES


def test_reused_fact_files_outlive_the_version_they_came_from(spark, lakehouse):
    storage, raw = lakehouse
    build_and_publish(spark, storage, "v1")
    raw.append("transactions", [transaction(102, 10)])
    report = build_and_publish(spark, storage, "v2")
    for path in storage.list_files("analytics/versions/v1"):
        storage.delete(path)

    assert spark.read.parquet(report.locations["fact_transactions"]).count() == 3
