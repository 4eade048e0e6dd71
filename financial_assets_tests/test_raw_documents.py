"""Extracting `transaction_events` against an explicit schema, with a quarantine for misfits."""

import json
from datetime import datetime, timezone

import pyarrow as pa
import pytest
from bson.objectid import ObjectId

from financial_assets.extract.contracts import GEOLOCATION
from financial_assets.extract.documents import split_documents
from financial_assets.extract.loads import ConcurrentCommitError, count_source_documents, load_documents
from financial_assets.lakehouse.raw_tables import HIGH_WATER_MARK, open_raw_table, read_arrow, row_count
from financial_assets.sources import connect_document_store
from financial_assets_tests import raw_sources
from financial_assets_tests.raw_sources import valid_event

# Each misfit, and the reason its quarantine row must give.
MISFITS = {
    "transaction_id as a string": (valid_event("17"), "transaction_id: expected integer, got str"),
    "transaction_id missing": (
        {k: v for k, v in valid_event(1).items() if k != "transaction_id"},
        "transaction_id: missing",
    ),
    "fraud_score as a string": (valid_event(1, fraud_score="0.42"), "fraud_score: expected finite number, got str"),
    "fraud_score null": (valid_event(1, fraud_score=None), "fraud_score: null"),
    "geolocation missing": (
        {k: v for k, v in valid_event(1).items() if k != "geolocation"},
        "geolocation: missing",
    ),
    "geolocation without city": (valid_event(1, geolocation={"country": "Kenya"}), "geolocation.city: expected string, got missing"),
    "geolocation as a string": (valid_event(1, geolocation="Kenya"), "geolocation: expected object, got str"),
    "device_type as a number": (valid_event(1, device_type=3), "device_type: expected string, got int"),
    "transaction_id as a boolean": (valid_event(True), "transaction_id: expected integer, got bool"),
}


def load(databases, catalog, **options):
    with connect_document_store(databases.mongo_url, databases.mongo_database) as database:
        return load_documents(database["transaction_events"], catalog, **options)


def raw_events(catalog):
    return read_arrow(open_raw_table(catalog, "transaction_events"))


def raw_quarantine(catalog):
    return read_arrow(open_raw_table(catalog, "transaction_events_quarantine"))


@pytest.mark.parametrize("misfit", list(MISFITS))
def test_a_document_that_breaks_the_schema_is_quarantined_with_its_reason(misfit):
    document, reason = MISFITS[misfit]
    document = {"_id": ObjectId(), **document}
    batch = split_documents([document])

    assert batch.events.num_rows == 0
    quarantined = batch.quarantined.to_pylist()[0]
    assert quarantined["reason"] == reason
    assert quarantined["event_id"] == str(document["_id"])
    assert json.loads(quarantined["document"])["_id"] == {"$oid": str(document["_id"])}


def test_every_problem_of_a_document_is_named():
    document = {"_id": ObjectId(), "transaction_id": "x", "device_type": None}
    reason = split_documents([document]).quarantined.column("reason")[0].as_py()

    assert reason.split("; ") == [
        "transaction_id: expected integer, got str",
        "device_type: null",
        "ip_address: missing",
        "fraud_score: missing",
        "geolocation: missing",
    ]


def test_values_outside_the_reference_domain_are_not_quarantined():
    # Domains are the asset checks' business: the raw zone keeps what fits the types.
    batch = split_documents([{"_id": ObjectId(), **valid_event(1, device_type="kiosk", fraud_score=1.7)}])

    assert batch.events.num_rows == 1 and batch.quarantined.num_rows == 0


def test_objectid_becomes_its_hex_string_and_geolocation_keeps_its_structure(source_databases, lakehouse_catalog):
    raw_sources.insert_events(source_databases, [valid_event(7)])
    load(source_databases, lakehouse_catalog)
    table = raw_events(lakehouse_catalog)

    assert table.schema.field("geolocation").type == GEOLOCATION
    row = table.to_pylist()[0]
    assert len(row["event_id"]) == 24 and ObjectId(row["event_id"])
    assert row["geolocation"] == {"country": "Kenya", "city": "Lake Susan"}
    assert table.schema.field("transaction_id").type == pa.int64()
    assert table.schema.field("event_id").type == pa.string()
    assert table.schema.field("extra_fields").type == pa.string()


def test_integer_fraud_scores_are_widened_to_float(source_databases, lakehouse_catalog):
    raw_sources.insert_events(source_databases, [valid_event(1, fraud_score=1)])
    load(source_databases, lakehouse_catalog)

    assert raw_events(lakehouse_catalog).column("fraud_score").to_pylist() == [1.0]


def test_unknown_fields_are_carried_in_extra_fields_and_reported(source_databases, lakehouse_catalog):
    raw_sources.insert_events(
        source_databases,
        [valid_event(1, channel="branch", geolocation={"country": "Kenya", "city": "Nairobi", "zip": "00100"})],
    )
    report = load(source_databases, lakehouse_catalog)

    assert report.new_columns == ["channel", "geolocation.zip"]
    assert json.loads(raw_events(lakehouse_catalog).column("extra_fields")[0].as_py()) == {
        "channel": "branch", "geolocation.zip": "00100"
    }


def test_quarantined_and_valid_documents_add_up_to_the_source(source_databases, lakehouse_catalog):
    misfits = [document for document, _ in MISFITS.values()]
    raw_sources.insert_events(source_databases, [valid_event(1), valid_event(2), *misfits])
    report = load(source_databases, lakehouse_catalog)

    assert (report.rows_loaded, report.quarantined) == (2, len(MISFITS))
    assert row_count(open_raw_table(lakehouse_catalog, "transaction_events_quarantine")) == len(MISFITS)


def test_second_load_without_new_documents_adds_nothing(source_databases, lakehouse_catalog):
    raw_sources.insert_events(source_databases, [valid_event(1), valid_event("2")])
    first = load(source_databases, lakehouse_catalog)
    second = load(source_databases, lakehouse_catalog)

    assert (second.mode, second.rows_loaded, second.quarantined, second.committed) == ("incremental", 0, 0, False)
    assert second.snapshot_id == first.snapshot_id
    assert second.quarantine_state == first.quarantine_state
    assert row_count(open_raw_table(lakehouse_catalog, "transaction_events_quarantine")) == 1


def test_new_documents_arrive_on_the_next_load(source_databases, lakehouse_catalog):
    raw_sources.insert_events(source_databases, [valid_event(1)])
    load(source_databases, lakehouse_catalog)
    raw_sources.insert_events(source_databases, [valid_event(2), valid_event("3")])
    report = load(source_databases, lakehouse_catalog)

    assert (report.rows_loaded, report.quarantined) == (1, 1)
    assert sorted(raw_events(lakehouse_catalog).column("transaction_id").to_pylist()) == [1, 2]


def test_full_refresh_rebuilds_events_and_quarantine(source_databases, lakehouse_catalog):
    raw_sources.insert_events(source_databases, [valid_event(1), valid_event("2")])
    load(source_databases, lakehouse_catalog)
    report = load(source_databases, lakehouse_catalog, full_refresh=True)

    assert (report.mode, report.raw_rows, report.quarantined_rows) == ("full", 1, 1)


def test_a_failure_between_the_two_commits_neither_loses_nor_repeats_quarantined_documents(
    source_databases, lakehouse_catalog
):
    raw_sources.insert_events(source_databases, [valid_event(1), valid_event("2")])
    load(source_databases, lakehouse_catalog)
    raw_sources.insert_events(source_databases, [valid_event(3), valid_event("4")])

    def compaction_commits_to_the_events_table(rows):
        # Maintenance rewrites the events while the load reads: the quarantine commit (first)
        # succeeds, the events commit (second) is refused.
        table = open_raw_table(lakehouse_catalog, "transaction_events")
        table.overwrite(table.scan().to_arrow())

    with pytest.raises(ConcurrentCommitError):
        load(source_databases, lakehouse_catalog, progress=compaction_commits_to_the_events_table)
    assert row_count(open_raw_table(lakehouse_catalog, "transaction_events_quarantine")) == 2
    load(source_databases, lakehouse_catalog)

    assert sorted(raw_events(lakehouse_catalog).column("transaction_id").to_pylist()) == [1, 3]
    assert row_count(open_raw_table(lakehouse_catalog, "transaction_events_quarantine")) == 2


def test_each_table_records_the_cursor_it_reached_in_its_snapshot(source_databases, lakehouse_catalog):
    raw_sources.insert_events(source_databases, [valid_event(1), valid_event("2")])
    report = load(source_databases, lakehouse_catalog)

    for name in ("transaction_events", "transaction_events_quarantine"):
        summary = open_raw_table(lakehouse_catalog, name).current_snapshot().summary
        assert json.loads(summary[HIGH_WATER_MARK]) == report.high_water_mark


def source_count(databases, report) -> int:
    with connect_document_store(databases.mongo_url, databases.mongo_database) as database:
        return count_source_documents(
            database["transaction_events"], report.high_water_mark, report.raw_and_quarantined_rows
        )


def test_the_source_count_equals_what_was_loaded_and_quarantined(source_databases, lakehouse_catalog):
    raw_sources.insert_events(source_databases, [valid_event(1), valid_event("2"), valid_event(3)])
    report = load(source_databases, lakehouse_catalog)

    assert source_count(source_databases, report) == 3 == report.raw_and_quarantined_rows


def test_documents_written_after_the_load_are_not_counted_against_it(source_databases, lakehouse_catalog):
    raw_sources.insert_events(source_databases, [valid_event(1), valid_event(2)])
    report = load(source_databases, lakehouse_catalog)
    raw_sources.insert_events(source_databases, [valid_event(3)])

    assert source_count(source_databases, report) == 2


def test_a_document_that_arrives_below_the_high_water_mark_is_counted(source_databases, lakehouse_catalog):
    raw_sources.insert_events(source_databases, [valid_event(1), valid_event(2)])
    report = load(source_databases, lakehouse_catalog)
    # Written late, with an `_id` from before the load: the next incremental read will never see it.
    late = {"_id": ObjectId.from_datetime(datetime(2020, 1, 1, tzinfo=timezone.utc)), **valid_event(3)}
    raw_sources.insert_events(source_databases, [late])

    assert source_count(source_databases, report) == 3 != report.raw_and_quarantined_rows


# What the raw zone does with each document fault of `seed --with-faults`.
QUARANTINED_FAULTS = ["string_fraud_score", "missing_geolocation", "string_transaction_id", "missing_transaction_id"]
LOADED_FAULTS = ["out_of_range_fraud_score", "unknown_device_type", "duplicate_events", "events_for_unknown_transactions"]


@pytest.fixture
def seeded_with_faults(source_databases, lakehouse_catalog):
    from datetime import date

    from financial_assets.sample_data.config import SeedConfig
    from financial_assets.sample_data.seed import seed_sources

    report = seed_sources(
        source_databases.postgres_url,
        source_databases.mongo_url,
        source_databases.mongo_database,
        SeedConfig(customers=20, transactions=300, as_of=date(2026, 1, 31), with_faults=True),
    )
    return report, load(source_databases, lakehouse_catalog)


@pytest.mark.parametrize("kind", QUARANTINED_FAULTS)
def test_each_schema_breaking_seed_fault_is_quarantined_exactly(seeded_with_faults, lakehouse_catalog, kind):
    report, _ = seeded_with_faults
    quarantined_ids = set(raw_quarantine(lakehouse_catalog).column("event_id").to_pylist())

    assert set(report.faults[kind].details["event_ids"]) <= quarantined_ids


@pytest.mark.parametrize("kind", LOADED_FAULTS)
def test_each_value_level_seed_fault_reaches_the_raw_zone_for_the_checks(seeded_with_faults, lakehouse_catalog, kind):
    report, _ = seeded_with_faults
    loaded = set(raw_events(lakehouse_catalog).column("event_id").to_pylist())

    assert set(report.faults[kind].details["event_ids"]) <= loaded


def test_every_seeded_document_is_either_loaded_or_quarantined(seeded_with_faults):
    report, load_report = seeded_with_faults
    schema_faults = sum(len(report.faults[kind].details["event_ids"]) for kind in QUARANTINED_FAULTS)

    assert load_report.quarantined == schema_faults
    assert load_report.rows_loaded + load_report.quarantined == report.rows["transaction_events"]
