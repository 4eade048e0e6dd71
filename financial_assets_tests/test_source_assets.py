"""The sources, observed upstream of the raw zone: row counts and newest values, from the real
PostgreSQL and document store."""

from datetime import datetime, timezone

import numpy as np
from dagster import AssetKey, DagsterInstance, Definitions

from financial_assets.automation.jobs import observe_sources_job
from financial_assets.resources import DocumentStoreResource, PostgresResource
from financial_assets.sample_data.objectids import object_ids
from financial_assets.source_assets import SOURCE_ASSETS, SOURCE_KEYS
from financial_assets.sources import connect_document_store
from financial_assets_tests.raw_sources import insert_events, insert_transactions, load_hand_built_sources, valid_event


def observe_sources(databases) -> dict[AssetKey, dict]:
    """Run the `observe_sources` job on ``databases``; each source's recorded observation metadata."""
    defs = Definitions(
        assets=SOURCE_ASSETS,
        jobs=[observe_sources_job],
        resources={
            "postgres": PostgresResource(url=databases.postgres_url),
            "document_store": DocumentStoreResource(url=databases.mongo_url, database=databases.mongo_database),
        },
    )
    instance = DagsterInstance.ephemeral()
    assert defs.resolve_job_def("observe_sources").execute_in_process(instance=instance).success
    recorded = {}
    for key in SOURCE_KEYS.values():
        [record] = instance.fetch_observations(key, limit=1).records
        observation = record.asset_observation
        recorded[key] = {
            "rows": observation.metadata["dagster/row_count"].value,
            "newest": observation.metadata["newest"].value,
            "data_version": observation.tags["dagster/data_version"],
        }
    return recorded


def utc(*fields) -> float:
    """The instant, as the seconds a timestamp metadata value holds."""
    return datetime(*fields, tzinfo=timezone.utc).timestamp()


def test_observing_the_sources_records_each_ones_row_count_and_newest_value(source_databases):
    load_hand_built_sources(source_databases)
    # Events whose _id carries a known second (an ObjectId starts with the second it was made).
    with connect_document_store(source_databases.mongo_url, source_databases.mongo_database) as database:
        database["transaction_events"].delete_many({})
    made = np.array([utc(2025, 3, 2, 12, 0, 5), utc(2025, 3, 1, 23, 30)], dtype=np.int64)
    insert_events(source_databases, [
        valid_event(101, _id=newest) for newest in object_ids(made[:1], first_counter=2)
    ] + [valid_event(100, _id=older) for older in object_ids(made[1:], first_counter=1)])

    observed = observe_sources(source_databases)

    def rows_and_newest(table: str) -> tuple:
        return observed[SOURCE_KEYS[table]]["rows"], observed[SOURCE_KEYS[table]]["newest"]

    assert rows_and_newest("customers") == (2, 2)  # customers carry no time: the newest id
    assert rows_and_newest("accounts") == (2, utc(2024, 2, 29))
    assert rows_and_newest("transactions") == (3, utc(2025, 3, 2, 12))
    assert rows_and_newest("transaction_events") == (2, utc(2025, 3, 2, 12, 0, 5))


def test_an_appended_row_changes_the_sources_data_version(source_databases):
    load_hand_built_sources(source_databases)
    before = observe_sources(source_databases)
    insert_transactions(source_databases.postgres_url, [(103, 10, "deposit", "5.00", "2025-03-03 08:00:00")])
    after = observe_sources(source_databases)

    transactions = SOURCE_KEYS["transactions"]
    assert after[transactions]["data_version"] != before[transactions]["data_version"]
    assert after[SOURCE_KEYS["customers"]]["data_version"] == before[SOURCE_KEYS["customers"]]["data_version"]
