"""Extracting PostgreSQL tables into the raw zone: exact types, incremental loads, drift."""

from datetime import datetime, timezone
from decimal import Decimal

import psycopg2
import pyarrow as pa
import pytest

from financial_assets.extract.contracts import ACCOUNTS, CUSTOMERS, TRANSACTIONS
from financial_assets.extract.loads import SchemaDriftError, SourceResetError, load_postgres_table
from financial_assets.lakehouse.storage import LakehouseStorage
from financial_assets.lakehouse.tables import ManifestTable
from financial_assets.sources import connect_postgres
from financial_assets_tests import raw_sources


@pytest.fixture
def sources(source_databases):
    raw_sources.load_hand_built_sources(source_databases)
    return source_databases


@pytest.fixture
def lakehouse(tmp_path) -> LakehouseStorage:
    return LakehouseStorage(str(tmp_path / "lakehouse"))


def load(sources, contract, lakehouse, **options):
    with connect_postgres(sources.postgres_url) as connection:
        return load_postgres_table(
            connection, contract, ManifestTable(lakehouse, f"raw/{contract.table}"), **options
        )


def raw_rows(lakehouse, table: str) -> list[dict]:
    return ManifestTable(lakehouse, f"raw/{table}").read().sort_by(
        f"{table.rstrip('s')}_id"
    ).to_pylist()


def execute(sources, statement: str) -> None:
    with psycopg2.connect(sources.postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute(statement)
    connection.close()


def test_money_stays_decimal_12_2_to_the_cent(sources, lakehouse):
    load(sources, TRANSACTIONS, lakehouse)
    table = ManifestTable(lakehouse, "raw/transactions").read()

    assert table.schema.field("amount").type == pa.decimal128(12, 2)
    assert sorted(table.column("amount").to_pylist()) == [
        Decimal("0.10"), Decimal("42.00"), Decimal("9999999999.99")
    ]


def test_timestamps_become_utc_instants_with_microseconds(sources, lakehouse):
    load(sources, ACCOUNTS, lakehouse)
    rows = raw_rows(lakehouse, "accounts")

    assert ManifestTable(lakehouse, "raw/accounts").read().schema.field("opened_at").type == pa.timestamp(
        "us", tz="UTC"
    )
    assert rows[0]["opened_at"] == datetime(2024, 1, 31, 23, 59, 59, 123456, tzinfo=timezone.utc)


def test_text_survives_commas_quotes_newlines_and_keeps_empty_apart_from_null(sources, lakehouse):
    load(sources, CUSTOMERS, lakehouse)
    rows = raw_rows(lakehouse, "customers")

    assert [tuple(r.values()) for r in rows] == raw_sources.CUSTOMERS
    assert rows[1]["email"] == "" and rows[1]["phone"] is None


def test_first_load_of_transactions_records_the_high_water_mark(sources, lakehouse):
    report = load(sources, TRANSACTIONS, lakehouse)

    assert (report.mode, report.rows_loaded, report.high_water_mark) == ("full", 3, 102)


def test_second_load_without_new_rows_adds_nothing(sources, lakehouse):
    first = load(sources, TRANSACTIONS, lakehouse)
    second = load(sources, TRANSACTIONS, lakehouse)

    assert (second.mode, second.rows_loaded) == ("incremental", 0)
    assert second.manifest == first.manifest


def test_new_rows_arrive_on_the_next_load_and_only_they_are_read(sources, lakehouse):
    load(sources, TRANSACTIONS, lakehouse)
    raw_sources.insert_transactions(
        sources.postgres_url, [(103, 11, "deposit", "5.00", "2025-03-03 09:00:00")]
    )
    report = load(sources, TRANSACTIONS, lakehouse)

    assert (report.mode, report.rows_loaded, report.high_water_mark) == ("incremental", 1, 103)
    assert [r["transaction_id"] for r in raw_rows(lakehouse, "transactions")] == [100, 101, 102, 103]


def test_full_refresh_rebuilds_the_table_from_scratch(sources, lakehouse):
    load(sources, TRANSACTIONS, lakehouse)
    execute(sources, "DELETE FROM transactions WHERE transaction_id = 101")
    report = load(sources, TRANSACTIONS, lakehouse, full_refresh=True)

    assert (report.mode, report.rows_loaded, report.manifest.row_count) == ("full", 2, 2)


def test_snapshot_tables_are_replaced_on_every_load(sources, lakehouse):
    load(sources, CUSTOMERS, lakehouse)
    execute(sources, "UPDATE customers SET name = 'Grace B. Hopper' WHERE customer_id = 2")
    report = load(sources, CUSTOMERS, lakehouse)

    assert (report.mode, report.manifest.row_count) == ("snapshot", 2)
    assert raw_rows(lakehouse, "customers")[1]["name"] == "Grace B. Hopper"


def test_a_rebuilt_source_is_refused_rather_than_silently_skipped(sources, lakehouse):
    load(sources, TRANSACTIONS, lakehouse)
    execute(sources, "DELETE FROM transactions WHERE transaction_id > 100")

    with pytest.raises(SourceResetError, match="full_refresh"):
        load(sources, TRANSACTIONS, lakehouse)


def test_a_dropped_column_fails_the_load_naming_it(sources, lakehouse):
    execute(sources, "ALTER TABLE accounts DROP COLUMN balance")

    with pytest.raises(SchemaDriftError, match=r"accounts\.balance: column missing"):
        load(sources, ACCOUNTS, lakehouse)


def test_a_retyped_column_fails_the_load_naming_it_and_both_types(sources, lakehouse):
    execute(sources, "ALTER TABLE transactions ALTER COLUMN amount TYPE DECIMAL(14, 4)")

    with pytest.raises(SchemaDriftError, match=r"transactions\.amount.*decimal128\(12, 2\).*decimal128\(14, 4\)"):
        load(sources, TRANSACTIONS, lakehouse)


def test_a_failed_load_leaves_the_raw_zone_as_it_was(sources, lakehouse):
    load(sources, TRANSACTIONS, lakehouse)
    table = ManifestTable(lakehouse, "raw/transactions")
    before = (table.manifest(), sorted(lakehouse.list_files("raw/transactions")))
    execute(sources, "ALTER TABLE transactions DROP COLUMN transaction_type")

    with pytest.raises(SchemaDriftError):
        load(sources, TRANSACTIONS, lakehouse)
    assert (table.manifest(), sorted(lakehouse.list_files("raw/transactions"))) == before


def test_a_new_column_is_carried_along_and_reported(sources, lakehouse):
    execute(sources, "ALTER TABLE customers ADD COLUMN segment TEXT DEFAULT 'retail'")
    report = load(sources, CUSTOMERS, lakehouse)

    assert report.new_columns == ["segment"]
    assert [r["segment"] for r in raw_rows(lakehouse, "customers")] == ["retail", "retail"]
