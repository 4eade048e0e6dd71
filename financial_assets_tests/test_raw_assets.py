"""The four raw assets in Dagster: metadata, retries on a source that is down, secrets kept out."""


import psycopg2
import pytest
from dagster import DagsterInstance, materialize

from financial_assets.lakehouse.raw_tables import open_raw_table, read_arrow
from financial_assets.raw import RAW_ASSETS
from financial_assets.resources import DocumentStoreResource, LakehouseResource, PostgresResource
from financial_assets_tests import raw_sources
from financial_assets_tests.conftest import forget_catalog, new_catalog
from financial_assets_tests.raw_sources import valid_event

# Trust authentication on the test server accepts any password, so a URL can carry one that
# must then never show up in logs or metadata.
PASSWORD = "not-a-real-password-7f3a"


def resources(databases, catalog, postgres_url=None):
    return {
        "postgres": PostgresResource(url=postgres_url or databases.postgres_url, connect_timeout_s=2),
        "document_store": DocumentStoreResource(
            url=databases.mongo_url, database=databases.mongo_database, timeout_s=2
        ),
        "lakehouse": LakehouseResource.for_catalog(catalog),
    }


def with_password(url: str) -> str:
    return url.replace("financial@", f"financial:{PASSWORD}@", 1)


@pytest.fixture
def sources(source_databases):
    raw_sources.load_hand_built_sources(source_databases)
    raw_sources.insert_events(source_databases, [valid_event("not an int")])
    return source_databases


def materialization_metadata(result, asset_name: str) -> dict:
    [event] = [
        e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset_name]
    ]
    return event.materialization.metadata


def test_every_raw_asset_reports_rows_bytes_schema_snapshot_high_water_mark_and_preview(sources, lakehouse_catalog):
    result = materialize(RAW_ASSETS, resources=resources(sources, lakehouse_catalog))
    assert result.success

    for name, rows in [("raw_customers", 2), ("raw_accounts", 2), ("raw_transactions", 3), ("raw_transaction_events", 3)]:
        metadata = materialization_metadata(result, name)
        table = open_raw_table(lakehouse_catalog, name.removeprefix("raw_"))
        assert metadata["dagster/row_count"].value == rows, name
        assert metadata["bytes"].value > 0 and metadata["files"].value == 1, name
        assert metadata["dagster/column_schema"].schema.columns, name
        assert "high_water_mark" in metadata and "preview" in metadata, name
        assert metadata["snapshot_id"].value == str(table.current_snapshot().snapshot_id), name
        assert metadata["table"].value == f"raw.{name.removeprefix('raw_')}", name
        assert metadata["location"].value == table.location(), name
    assert materialization_metadata(result, "raw_transactions")["high_water_mark"].value == "102"
    assert materialization_metadata(result, "raw_transaction_events")["quarantined_rows"].value == 1


def test_the_preview_masks_personal_data(sources, lakehouse_catalog):
    result = materialize(RAW_ASSETS[:1], resources=resources(sources, lakehouse_catalog))
    preview = materialization_metadata(result, "raw_customers")["preview"].value

    assert "Lovelace" not in preview and "ada@example.org" not in preview
    assert "•••" in preview


def test_full_refresh_is_run_config(sources, lakehouse_catalog):
    materialize(RAW_ASSETS[2:3], resources=resources(sources, lakehouse_catalog))
    result = materialize(
        RAW_ASSETS[2:3],
        resources=resources(sources, lakehouse_catalog),
        run_config={"ops": {"raw_transactions": {"config": {"full_refresh": True}}}},
    )

    assert materialization_metadata(result, "raw_transactions")["load_mode"].value == "full"


def test_an_unreachable_source_fails_after_retries_and_leaves_the_raw_zone_untouched(sources, lakehouse_catalog):
    materialize(RAW_ASSETS[2:3], resources=resources(sources, lakehouse_catalog))
    before = open_raw_table(lakehouse_catalog, "transactions").metadata
    down = with_password("postgresql://financial@127.0.0.1:9/financial")  # nothing listens on port 9

    result = materialize(
        RAW_ASSETS[2:3],
        resources=resources(sources, lakehouse_catalog, postgres_url=down),
        raise_on_error=False,
        instance=DagsterInstance.ephemeral(),
    )

    assert not result.success
    assert "Exceeded max_retries of 3" in result.failure_data_for_node("raw_transactions").error.message
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 3
    reason = retries[0].event_specific_data.error.cause.message
    assert "PostgreSQL at postgresql://financial:***@127.0.0.1:9/financial is unreachable" in reason
    assert PASSWORD not in reason
    assert open_raw_table(lakehouse_catalog, "transactions").metadata == before


def test_the_source_steps_retry_after_the_delay_the_environment_sets():
    # conftest sets FIN_SOURCE_RETRY_DELAY_S=0 before the raw assets are defined.
    policies = {asset.key.path[-1]: asset.op.retry_policy for asset in RAW_ASSETS}

    assert {name: (policy.max_retries, policy.delay) for name, policy in policies.items()} == {
        "raw_customers": (3, 0),
        "raw_accounts": (3, 0),
        "raw_transactions": (3, 0),
        "raw_transaction_events": (3, 0),
    }


def test_passwords_never_reach_logs_or_metadata(sources, lakehouse_catalog):
    instance = DagsterInstance.ephemeral()
    result = materialize(
        RAW_ASSETS,
        resources=resources(sources, lakehouse_catalog, postgres_url=with_password(sources.postgres_url)),
        instance=instance,
    )
    assert result.success

    logged = "\n".join(str(entry) for entry in instance.all_logs(result.run_id))
    assert PASSWORD not in logged
    assert "financial:***@" in logged  # the URL is still shown, redacted


@pytest.fixture
def s3_catalog(server_settings, s3_bucket, moto_endpoint):
    catalog = new_catalog(server_settings, f"s3://{s3_bucket}/lakehouse", s3_endpoint_url=moto_endpoint,
                          region="us-east-1")
    yield catalog
    forget_catalog(catalog)


def test_raw_zone_on_s3_through_moto(sources, s3_catalog):
    result = materialize(RAW_ASSETS, resources=resources(sources, s3_catalog))
    assert result.success

    table = open_raw_table(s3_catalog, "transactions")
    assert read_arrow(table).num_rows == 3
    assert table.location().startswith(f"{s3_catalog.warehouse}/")
    assert materialization_metadata(result, "raw_transactions")["location"].value == table.location()


def test_a_row_written_below_the_high_water_mark_after_a_load_is_picked_up_by_the_next(sources, lakehouse_catalog):
    assert materialize(RAW_ASSETS[2:3], resources=resources(sources, lakehouse_catalog)).success
    # Written after the load's snapshot with an id below its mark: the next load searches for it.
    raw_sources.insert_transactions(sources.postgres_url, [(50, 10, "deposit", "1.00", "2025-03-01 10:00:00")])

    result = materialize(RAW_ASSETS[2:3], resources=resources(sources, lakehouse_catalog))

    [check] = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert (check.check_name, check.passed) == ("reconciles_with_source", True)
    assert materialization_metadata(result, "raw_transactions")["late_rows"].value == 1
    assert (check.metadata["source_rows"].value, check.metadata["raw_rows"].value) == (4, 4)


def test_a_source_that_lost_a_loaded_row_fails_the_reconciliation(sources, lakehouse_catalog):
    assert materialize(RAW_ASSETS[2:3], resources=resources(sources, lakehouse_catalog)).success
    with psycopg2.connect(sources.postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute("DELETE FROM transactions WHERE transaction_id = 101")
    connection.close()

    result = materialize(
        RAW_ASSETS[2:3], resources=resources(sources, lakehouse_catalog), raise_on_error=False,
        instance=DagsterInstance.ephemeral(),
    )

    [check] = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert (check.check_name, check.passed) == ("reconciles_with_source", False)
    assert (check.metadata["source_rows"].value, check.metadata["raw_rows"].value) == (2, 3)
    assert not result.success  # blocking: nothing downstream would run


def test_the_raw_assets_are_iceberg_tables_from_their_sources():
    kinds = {asset.key.path[-1]: asset.specs_by_key[asset.key].kinds for asset in RAW_ASSETS}

    assert kinds == {
        "raw_customers": {"postgres", "iceberg"},
        "raw_accounts": {"postgres", "iceberg"},
        "raw_transactions": {"postgres", "iceberg"},
        "raw_transaction_events": {"mongodb", "iceberg"},
    }
