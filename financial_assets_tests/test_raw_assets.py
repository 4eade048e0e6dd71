"""The four raw assets in Dagster: metadata, retries on a source that is down, secrets kept out."""

import pytest
from dagster import DagsterInstance, materialize

from financial_assets.raw import RAW_ASSETS
from financial_assets.resources import DocumentStoreResource, LakehouseResource, PostgresResource
from financial_assets.lakehouse.storage import LakehouseStorage
from financial_assets.lakehouse.tables import ManifestTable
from financial_assets_tests import raw_sources
from financial_assets_tests.raw_sources import valid_event

# Trust authentication on the test server accepts any password, so a URL can carry one that
# must then never show up in logs or metadata.
PASSWORD = "not-a-real-password-7f3a"


def resources(databases, lakehouse_uri, postgres_url=None, s3_endpoint_url=None):
    return {
        "postgres": PostgresResource(url=postgres_url or databases.postgres_url, connect_timeout_s=2),
        "document_store": DocumentStoreResource(
            url=databases.mongo_url, database=databases.mongo_database, timeout_s=2
        ),
        "lakehouse": LakehouseResource(uri=str(lakehouse_uri), s3_endpoint_url=s3_endpoint_url),
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


def test_every_raw_asset_reports_rows_bytes_schema_high_water_mark_and_preview(sources, tmp_path):
    result = materialize(RAW_ASSETS, resources=resources(sources, tmp_path))
    assert result.success

    for name, rows in [("raw_customers", 2), ("raw_accounts", 2), ("raw_transactions", 3), ("raw_transaction_events", 3)]:
        metadata = materialization_metadata(result, name)
        assert metadata["dagster/row_count"].value == rows, name
        assert metadata["bytes"].value > 0, name
        assert metadata["dagster/column_schema"].schema.columns, name
        assert "high_water_mark" in metadata and "preview" in metadata, name
    assert materialization_metadata(result, "raw_transactions")["high_water_mark"].value == "102"
    assert materialization_metadata(result, "raw_transaction_events")["quarantined_rows"].value == 1


def test_the_preview_masks_personal_data(sources, tmp_path):
    result = materialize(RAW_ASSETS[:1], resources=resources(sources, tmp_path))
    preview = materialization_metadata(result, "raw_customers")["preview"].value

    assert "Lovelace" not in preview and "ada@example.org" not in preview
    assert "•••" in preview


def test_full_refresh_is_run_config(sources, tmp_path):
    materialize(RAW_ASSETS[2:3], resources=resources(sources, tmp_path))
    result = materialize(
        RAW_ASSETS[2:3],
        resources=resources(sources, tmp_path),
        run_config={"ops": {"raw_transactions": {"config": {"full_refresh": True}}}},
    )

    assert materialization_metadata(result, "raw_transactions")["load_mode"].value == "full"


def test_an_unreachable_source_fails_after_retries_and_leaves_the_raw_zone_untouched(sources, tmp_path):
    materialize(RAW_ASSETS[2:3], resources=resources(sources, tmp_path))
    table = ManifestTable(LakehouseStorage(str(tmp_path)), "raw/transactions")
    before = table.manifest()
    down = with_password("postgresql://financial@127.0.0.1:9/financial")  # nothing listens on port 9

    result = materialize(
        RAW_ASSETS[2:3],
        resources=resources(sources, tmp_path, postgres_url=down),
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
    assert table.manifest() == before


def test_passwords_never_reach_logs_or_metadata(sources, tmp_path):
    instance = DagsterInstance.ephemeral()
    result = materialize(
        RAW_ASSETS,
        resources=resources(sources, tmp_path, postgres_url=with_password(sources.postgres_url)),
        instance=instance,
    )
    assert result.success

    logged = "\n".join(str(entry) for entry in instance.all_logs(result.run_id))
    assert PASSWORD not in logged
    assert "financial:***@" in logged  # the URL is still shown, redacted


def test_raw_zone_on_s3_through_moto(sources, s3_bucket, moto_endpoint):
    uri = f"s3://{s3_bucket}/lakehouse"
    result = materialize(RAW_ASSETS, resources=resources(sources, uri, s3_endpoint_url=moto_endpoint))
    assert result.success

    storage = LakehouseStorage(uri, s3_endpoint_url=moto_endpoint)
    assert ManifestTable(storage, "raw/transactions").read().num_rows == 3
    assert materialization_metadata(result, "raw_transactions")["location"].value == f"{uri}/raw/transactions"


def test_a_row_that_arrives_below_the_high_water_mark_fails_the_reconciliation(sources, tmp_path):
    assert materialize(RAW_ASSETS[2:3], resources=resources(sources, tmp_path)).success
    # A late commit of a lower SERIAL id: the cursor has passed it, so the raw zone misses it.
    raw_sources.insert_transactions(sources.postgres_url, [(50, 10, "deposit", "1.00", "2025-03-01 10:00:00")])

    result = materialize(
        RAW_ASSETS[2:3], resources=resources(sources, tmp_path), raise_on_error=False,
        instance=DagsterInstance.ephemeral(),
    )

    [check] = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert (check.check_name, check.passed) == ("reconciles_with_source", False)
    assert (check.metadata["source_rows"].value, check.metadata["raw_rows"].value) == (4, 3)
    assert not result.success  # blocking: nothing downstream would run
