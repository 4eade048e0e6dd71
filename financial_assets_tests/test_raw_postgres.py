"""Extracting PostgreSQL tables into raw Iceberg tables: exact types, incremental loads, drift,
one commit per load, and rows that PostgreSQL commits late."""

import json
import os
from datetime import datetime, timezone
from decimal import Decimal
from urllib.parse import urlsplit

import psycopg2
import pyarrow as pa
import pytest

from financial_assets.extract.contracts import ACCOUNTS, CUSTOMERS, TRANSACTIONS
from financial_assets.extract.loads import (
    ConcurrentCommitError,
    SchemaDriftError,
    SourceResetError,
    count_source_rows,
    load_postgres_table,
)
from financial_assets.lakehouse.raw_tables import (
    HIGH_WATER_MARK,
    LOAD_MODE,
    PENDING_XIDS,
    open_raw_table,
    read_arrow,
)
from financial_assets.lakehouse.tables import CONTENT_DIGEST
from financial_assets.sources import connect_postgres
from financial_assets_tests import raw_sources


@pytest.fixture
def sources(source_databases):
    raw_sources.load_hand_built_sources(source_databases)
    return source_databases


def load(sources, contract, catalog, **options):
    with connect_postgres(sources.postgres_url) as connection:
        return load_postgres_table(connection, contract, catalog, **options)


def load_and_count(sources, contract, catalog, **options):
    """A load, and the source's count up to its mark in the load's own snapshot."""
    with connect_postgres(sources.postgres_url) as connection:
        report = load_postgres_table(connection, contract, catalog, **options)
        return report, count_source_rows(connection, contract, report.high_water_mark)


def raw(catalog, table: str) -> pa.Table:
    return read_arrow(open_raw_table(catalog, table))


def raw_rows(catalog, table: str) -> list[dict]:
    return raw(catalog, table).sort_by(f"{table.rstrip('s')}_id").to_pylist()


def raw_ids(catalog) -> list[int]:
    return sorted(raw(catalog, "transactions").column("transaction_id").to_pylist())


def execute(sources, statement: str) -> None:
    with psycopg2.connect(sources.postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute(statement)
    connection.close()


def files_on_disk(table) -> set[str]:
    root = urlsplit(table.location()).path
    return {
        f"file://{os.path.join(folder, name)}"
        for folder, _, names in os.walk(os.path.join(root, "data"))
        for name in names
    }


def files_in_table(table) -> set[str]:
    return {task.file.file_path for task in table.scan().plan_files()}


# -- types --------------------------------------------------------------------------------------


def test_money_stays_decimal_12_2_to_the_cent(sources, lakehouse_catalog):
    load(sources, TRANSACTIONS, lakehouse_catalog)
    table = raw(lakehouse_catalog, "transactions")

    assert table.schema.field("amount").type == pa.decimal128(12, 2)
    assert sorted(table.column("amount").to_pylist()) == [
        Decimal("0.10"), Decimal("42.00"), Decimal("9999999999.99")
    ]


def test_timestamps_become_utc_instants_with_microseconds(sources, lakehouse_catalog):
    load(sources, ACCOUNTS, lakehouse_catalog)
    rows = raw_rows(lakehouse_catalog, "accounts")

    assert raw(lakehouse_catalog, "accounts").schema.field("opened_at").type == pa.timestamp("us", tz="UTC")
    assert rows[0]["opened_at"] == datetime(2024, 1, 31, 23, 59, 59, 123456, tzinfo=timezone.utc)


def test_the_iceberg_schema_has_the_raw_zone_types(sources, lakehouse_catalog):
    load(sources, TRANSACTIONS, lakehouse_catalog)
    schema = open_raw_table(lakehouse_catalog, "transactions").schema()

    assert {f.name: str(f.field_type) for f in schema.fields} == {
        "transaction_id": "int",
        "account_id": "int",
        "transaction_type": "string",
        "amount": "decimal(12, 2)",
        "timestamp": "timestamptz",
    }


def test_text_survives_commas_quotes_newlines_and_keeps_empty_apart_from_null(sources, lakehouse_catalog):
    load(sources, CUSTOMERS, lakehouse_catalog)
    rows = raw_rows(lakehouse_catalog, "customers")

    assert [tuple(r.values()) for r in rows] == raw_sources.CUSTOMERS
    assert rows[1]["email"] == "" and rows[1]["phone"] is None


# -- loads and their commits ----------------------------------------------------------------------


def test_first_load_of_transactions_records_the_high_water_mark_in_its_snapshot(sources, lakehouse_catalog):
    report = load(sources, TRANSACTIONS, lakehouse_catalog)
    summary = open_raw_table(lakehouse_catalog, "transactions").current_snapshot().summary

    assert (report.mode, report.rows_loaded, report.high_water_mark) == ("full", 3, 102)
    assert (json.loads(summary[HIGH_WATER_MARK]), summary[LOAD_MODE]) == (102, "full")
    assert isinstance(json.loads(summary[PENDING_XIDS]), list)


def test_second_load_without_new_rows_commits_nothing(sources, lakehouse_catalog):
    first = load(sources, TRANSACTIONS, lakehouse_catalog)
    second = load(sources, TRANSACTIONS, lakehouse_catalog)

    assert (second.mode, second.rows_loaded, second.committed) == ("incremental", 0, False)
    assert second.snapshot_id == first.snapshot_id
    assert len(open_raw_table(lakehouse_catalog, "transactions").snapshots()) == 1


def test_new_rows_arrive_on_the_next_load_as_one_append(sources, lakehouse_catalog):
    load(sources, TRANSACTIONS, lakehouse_catalog)
    raw_sources.insert_transactions(
        sources.postgres_url, [(103, 11, "deposit", "5.00", "2025-03-03 09:00:00")]
    )
    report = load(sources, TRANSACTIONS, lakehouse_catalog)
    snapshot = open_raw_table(lakehouse_catalog, "transactions").current_snapshot()

    assert (report.mode, report.rows_loaded, report.high_water_mark) == ("incremental", 1, 103)
    assert (snapshot.summary.operation.value, snapshot.summary["added-records"]) == ("append", "1")
    assert raw_ids(lakehouse_catalog) == [100, 101, 102, 103]


def test_full_refresh_replaces_the_rows_in_one_commit(sources, lakehouse_catalog):
    load(sources, TRANSACTIONS, lakehouse_catalog)
    versions_before = len(open_raw_table(lakehouse_catalog, "transactions").metadata.metadata_log)
    execute(sources, "DELETE FROM transactions WHERE transaction_id = 101")
    report = load(sources, TRANSACTIONS, lakehouse_catalog, full_refresh=True)
    table = open_raw_table(lakehouse_catalog, "transactions")

    assert (report.mode, report.rows_loaded, report.raw_rows) == ("full", 2, 2)
    assert raw_ids(lakehouse_catalog) == [100, 102]
    assert len(table.metadata.metadata_log) == versions_before + 1  # one commit: no reader saw it empty


def test_snapshot_tables_are_replaced_on_every_load(sources, lakehouse_catalog):
    load(sources, CUSTOMERS, lakehouse_catalog)
    execute(sources, "UPDATE customers SET name = 'Grace B. Hopper' WHERE customer_id = 2")
    report = load(sources, CUSTOMERS, lakehouse_catalog)

    assert (report.mode, report.raw_rows) == ("snapshot", 2)
    assert raw_rows(lakehouse_catalog, "customers")[1]["name"] == "Grace B. Hopper"


def content_digest(catalog, table: str) -> str | None:
    return open_raw_table(catalog, table).current_snapshot().summary.get(CONTENT_DIGEST)


def test_a_snapshot_reload_of_the_same_rows_records_the_same_content_digest(sources, lakehouse_catalog):
    load(sources, CUSTOMERS, lakehouse_catalog)
    first = content_digest(lakehouse_catalog, "customers")
    load(sources, CUSTOMERS, lakehouse_catalog)

    assert first is not None
    assert content_digest(lakehouse_catalog, "customers") == first


def test_a_changed_row_changes_the_content_digest(sources, lakehouse_catalog):
    load(sources, CUSTOMERS, lakehouse_catalog)
    first = content_digest(lakehouse_catalog, "customers")
    execute(sources, "UPDATE customers SET phone = '+1 555 0199' WHERE customer_id = 2")
    load(sources, CUSTOMERS, lakehouse_catalog)

    assert content_digest(lakehouse_catalog, "customers") != first


def test_a_rebuilt_source_is_refused_rather_than_silently_skipped(sources, lakehouse_catalog):
    load(sources, TRANSACTIONS, lakehouse_catalog)
    execute(sources, "DELETE FROM transactions WHERE transaction_id > 100")

    with pytest.raises(SourceResetError, match="full_refresh"):
        load(sources, TRANSACTIONS, lakehouse_catalog)


def test_a_dropped_column_fails_the_load_naming_it(sources, lakehouse_catalog):
    execute(sources, "ALTER TABLE accounts DROP COLUMN balance")

    with pytest.raises(SchemaDriftError, match=r"accounts\.balance: column missing"):
        load(sources, ACCOUNTS, lakehouse_catalog)


def test_a_retyped_column_fails_the_load_naming_it_and_both_types(sources, lakehouse_catalog):
    execute(sources, "ALTER TABLE transactions ALTER COLUMN amount TYPE DECIMAL(14, 4)")

    with pytest.raises(SchemaDriftError, match=r"transactions\.amount.*decimal128\(12, 2\).*decimal128\(14, 4\)"):
        load(sources, TRANSACTIONS, lakehouse_catalog)


def test_a_failed_load_leaves_the_raw_zone_as_it_was(sources, lakehouse_catalog):
    load(sources, TRANSACTIONS, lakehouse_catalog)
    table = open_raw_table(lakehouse_catalog, "transactions")
    before = (table.current_snapshot().snapshot_id, files_on_disk(table))
    execute(sources, "ALTER TABLE transactions DROP COLUMN transaction_type")

    with pytest.raises(SchemaDriftError):
        load(sources, TRANSACTIONS, lakehouse_catalog)
    table = open_raw_table(lakehouse_catalog, "transactions")
    assert (table.current_snapshot().snapshot_id, files_on_disk(table)) == before


def test_a_failed_first_load_creates_no_table(sources, lakehouse_catalog):
    def source_goes_down(rows):
        raise ConnectionError("source lost mid-copy")

    with pytest.raises(ConnectionError):
        load(sources, TRANSACTIONS, lakehouse_catalog, progress=source_goes_down)

    assert open_raw_table(lakehouse_catalog, "transactions") is None


def test_progress_is_reported_with_the_rows_read_so_far(sources, lakehouse_catalog):
    seen = []
    load(sources, TRANSACTIONS, lakehouse_catalog, progress=seen.append)

    assert seen == [3]


def test_a_new_column_is_carried_along_and_reported(sources, lakehouse_catalog):
    execute(sources, "ALTER TABLE customers ADD COLUMN segment TEXT DEFAULT 'retail'")
    report = load(sources, CUSTOMERS, lakehouse_catalog)

    assert report.new_columns == ["segment"]
    assert [r["segment"] for r in raw_rows(lakehouse_catalog, "customers")] == ["retail", "retail"]


def test_a_column_added_between_incremental_loads_joins_the_table_schema_with_its_first_rows(
    sources, lakehouse_catalog
):
    load(sources, TRANSACTIONS, lakehouse_catalog)
    execute(sources, "ALTER TABLE transactions ADD COLUMN channel TEXT")
    execute(sources, "INSERT INTO transactions VALUES (103, 10, 'deposit', 1.00, '2025-03-04', 'branch')")
    report = load(sources, TRANSACTIONS, lakehouse_catalog)
    table = open_raw_table(lakehouse_catalog, "transactions")

    assert report.new_columns == ["channel"]
    assert str(table.schema().find_field("channel").field_type) == "string"
    rows = raw_rows(lakehouse_catalog, "transactions")
    assert [r["channel"] for r in rows] == [None, None, None, "branch"]


def test_a_load_overtaken_by_another_writer_fails_and_leaves_no_file(sources, lakehouse_catalog):
    load(sources, TRANSACTIONS, lakehouse_catalog)
    raw_sources.insert_transactions(sources.postgres_url, [(103, 11, "deposit", "5.00", "2025-03-03 09:00:00")])

    def another_load_commits_first(rows):
        load(sources, TRANSACTIONS, lakehouse_catalog)

    with pytest.raises(ConcurrentCommitError, match="another writer committed"):
        load(sources, TRANSACTIONS, lakehouse_catalog, progress=another_load_commits_first)
    table = open_raw_table(lakehouse_catalog, "transactions")
    assert raw_ids(lakehouse_catalog) == [100, 101, 102, 103]  # the other load's rows, once
    assert files_on_disk(table) == files_in_table(table)


def test_the_source_count_in_the_loads_snapshot_equals_the_raw_rows(sources, lakehouse_catalog):
    report, source_rows = load_and_count(sources, TRANSACTIONS, lakehouse_catalog)

    assert source_rows == report.raw_rows == 3


# -- rows PostgreSQL commits late -------------------------------------------------------------------


class Session:
    """A connection of its own, with a transaction kept open until ``commit``."""

    def __init__(self, sources):
        self.connection = psycopg2.connect(sources.postgres_url)

    def execute(self, statement: str):
        with self.connection.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchone() if cursor.description else None

    def insert_transaction(self) -> int:
        """A row whose id the SERIAL sequence assigns."""
        return self.execute(
            "INSERT INTO transactions (account_id, transaction_type, amount, \"timestamp\")"
            " VALUES (10, 'deposit', 1.00, '2025-03-05') RETURNING transaction_id"
        )[0]

    def commit(self) -> None:
        self.connection.commit()
        self.connection.close()


@pytest.fixture
def serial_sources(sources):
    """The hand-built sources, with the SERIAL sequence past their explicit ids."""
    execute(sources, "SELECT setval('transactions_transaction_id_seq', 102)")
    return sources


def test_a_row_committed_after_a_load_passed_its_id_arrives_on_the_next_load(serial_sources, lakehouse_catalog):
    load(serial_sources, TRANSACTIONS, lakehouse_catalog)
    slow, fast = Session(serial_sources), Session(serial_sources)
    late_id = slow.insert_transaction()  # 103, not committed yet
    fast_id = fast.insert_transaction()  # 104
    fast.commit()

    first = load(serial_sources, TRANSACTIONS, lakehouse_catalog)
    slow.commit()
    second, source_rows = load_and_count(serial_sources, TRANSACTIONS, lakehouse_catalog)

    assert (first.rows_loaded, first.high_water_mark) == (1, fast_id)
    assert (second.rows_loaded, second.late_rows, second.high_water_mark) == (1, 1, fast_id)
    assert raw_ids(lakehouse_catalog) == [100, 101, 102, late_id, fast_id]
    assert source_rows == second.raw_rows == 5


@pytest.mark.parametrize("meanwhile", ["nothing else arrives", "other rows arrive"])
def test_a_transaction_still_open_at_the_next_load_is_picked_up_once_it_commits(
    serial_sources, lakehouse_catalog, meanwhile
):
    load(serial_sources, TRANSACTIONS, lakehouse_catalog)
    slow, fast = Session(serial_sources), Session(serial_sources)
    late_id = slow.insert_transaction()
    fast.insert_transaction()
    fast.commit()
    load(serial_sources, TRANSACTIONS, lakehouse_catalog)
    if meanwhile == "other rows arrive":
        other = Session(serial_sources)
        other.insert_transaction()
        other.commit()

    while_open = load(serial_sources, TRANSACTIONS, lakehouse_catalog)
    slow.commit()
    after_commit, source_rows = load_and_count(serial_sources, TRANSACTIONS, lakehouse_catalog)

    assert while_open.late_rows == 0
    assert (after_commit.rows_loaded, after_commit.late_rows) == (1, 1)
    ids = raw_ids(lakehouse_catalog)
    assert late_id in ids and len(ids) == len(set(ids))
    assert source_rows == after_commit.raw_rows == len(ids)


def test_a_transaction_that_got_its_xid_after_one_that_committed_is_not_missed(serial_sources, lakehouse_catalog):
    # The early transaction takes its xid first and commits first, so the snapshot's xmax stops
    # at it: the slow one (greater xid, lower row id) is in progress but not in pg_snapshot_xip.
    load(serial_sources, TRANSACTIONS, lakehouse_catalog)
    early, slow = Session(serial_sources), Session(serial_sources)
    early.execute("SELECT pg_current_xact_id()")
    late_id = slow.insert_transaction()
    early_id = early.insert_transaction()
    early.commit()

    load(serial_sources, TRANSACTIONS, lakehouse_catalog)
    slow.commit()
    report = load(serial_sources, TRANSACTIONS, lakehouse_catalog)

    assert late_id < early_id and report.late_rows == 1
    assert raw_ids(lakehouse_catalog) == [100, 101, 102, late_id, early_id]


def test_a_row_written_under_a_savepoint_and_committed_late_is_not_missed(serial_sources, lakehouse_catalog):
    # The row's xmin is the subtransaction's id, which no snapshot's in-progress list shows.
    load(serial_sources, TRANSACTIONS, lakehouse_catalog)
    slow, fast = Session(serial_sources), Session(serial_sources)
    slow.execute("SAVEPOINT before_insert")
    late_id = slow.insert_transaction()
    slow.execute("RELEASE SAVEPOINT before_insert")
    fast.insert_transaction()
    fast.commit()

    load(serial_sources, TRANSACTIONS, lakehouse_catalog)
    slow.commit()
    report = load(serial_sources, TRANSACTIONS, lakehouse_catalog)

    assert report.late_rows == 1 and late_id in raw_ids(lakehouse_catalog)


def test_a_row_updated_after_it_was_loaded_is_not_loaded_again(serial_sources, lakehouse_catalog):
    load(serial_sources, TRANSACTIONS, lakehouse_catalog)
    slow, fast = Session(serial_sources), Session(serial_sources)
    late_id = slow.insert_transaction()
    fast_id = fast.insert_transaction()
    fast.commit()
    load(serial_sources, TRANSACTIONS, lakehouse_catalog)
    # Its new version's xmin is newer than the pending transaction: a candidate, already loaded.
    execute(serial_sources, f"UPDATE transactions SET amount = 2.00 WHERE transaction_id = {fast_id}")
    slow.commit()

    report = load(serial_sources, TRANSACTIONS, lakehouse_catalog)

    assert report.late_rows == 1
    assert raw_ids(lakehouse_catalog) == [100, 101, 102, late_id, fast_id]
