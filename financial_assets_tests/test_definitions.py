"""The code location loads, as `dagster dev` and Dagster's own tooling would load it.

`dagster definitions validate` of the workspace runs once, in test_import_graph.py, which also
checks what it imports."""

import subprocess
import sys

from financial_assets.lakehouse.tables import STAR_TABLES
from financial_assets_tests.conftest import REPO_ROOT


def test_definitions_load_with_every_raw_asset_in_the_raw_group():
    from financial_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    raw = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).group_name == "raw"}
    assert raw == {"raw_customers", "raw_accounts", "raw_transactions", "raw_transaction_events"}
    assert defs.resolve_job_def("extract_sources") is not None


def test_a_bad_setting_stops_the_cli_with_one_line_naming_it():
    completed = subprocess.run(
        [sys.executable, "-m", "financial_assets.cli", "materialize"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "FIN_MONGO_URL": "http://nope"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().startswith("financial-assets: FIN_MONGO_URL must look like")
    assert len(completed.stderr.strip().splitlines()) == 1


def test_materialize_full_refresh_configures_every_selected_raw_asset_and_the_star_schema():
    from dagster import AssetKey

    from financial_assets.operations.materialize import _full_refresh_config

    config = _full_refresh_config({AssetKey("raw_transactions"), AssetKey("fact_transactions")})

    assert config == {"ops": {
        "raw_transactions": {"config": {"full_refresh": True}},
        "star_schema": {"config": {"full_refresh": True}},
    }}


def asset_nodes():
    from financial_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    return {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}


def test_every_asset_has_an_owner_and_layer_domain_and_pii_tags():
    nodes = asset_nodes()

    assert {name: node.owners for name, node in nodes.items()} == {name: ["team:data-platform"] for name in nodes}
    assert {name: sorted({"layer", "domain", "pii"} - set(node.tags)) for name, node in nodes.items()} == {
        name: [] for name in nodes}
    assert {name for name, node in nodes.items() if node.tags["pii"] == "true"} == {
        "postgres/customers", "document_store/transaction_events", "raw_customers", "raw_transaction_events",
        "dim_customers", "dim_customers_history", "published_star_schema",
    }


def test_the_star_schemas_code_version_is_the_digest_that_forces_a_full_build():
    from financial_assets.transform import build

    nodes = asset_nodes()
    versions = {name: node.code_version for name, node in nodes.items() if node.code_version}

    assert set(versions) == {
        "raw_customers", "raw_accounts", "raw_transactions", "raw_transaction_events",
        *STAR_TABLES,
    }
    assert {versions[table] for table in STAR_TABLES} == {build._SOURCE_DIGEST[:12]}
    assert versions["raw_customers"] != versions["fact_transactions"]


def test_the_sources_are_observed_upstream_of_the_raw_zone():
    nodes = asset_nodes()

    assert {name for name, node in nodes.items() if node.is_observable} == {
        "postgres/customers", "postgres/accounts", "postgres/transactions", "document_store/transaction_events"}
    assert {name: [key.to_user_string() for key in nodes[name].parent_keys] for name in nodes if name.startswith("raw_")} == {
        "raw_customers": ["postgres/customers"], "raw_accounts": ["postgres/accounts"],
        "raw_transactions": ["postgres/transactions"], "raw_transaction_events": ["document_store/transaction_events"],
    }


def test_every_step_that_writes_the_lakehouse_claims_the_writers_pool_and_no_other_does():
    from financial_assets.definitions import defs

    pools = {assets.node_def.name: assets.node_def.pool for assets in defs.assets}

    assert pools == {
        "observe_postgres": None, "observe_document_store": None,
        "raw_customers": "lakehouse_writers", "raw_accounts": "lakehouse_writers",
        "raw_transactions": "lakehouse_writers", "raw_transaction_events": "lakehouse_writers",
        "star_schema": "lakehouse_writers", "published_star_schema": "lakehouse_writers",
        "lakehouse_maintenance": "lakehouse_writers",
    }


def test_the_automation_is_stopped_until_someone_starts_it_and_covers_every_asset():
    from dagster import DefaultSensorStatus

    from financial_assets.definitions import defs

    sensor = defs.resolve_sensor_def("automation")

    assert sensor.default_status == DefaultSensorStatus.STOPPED
    assert sensor.asset_selection.resolve(defs.resolve_asset_graph()) == set(defs.resolve_asset_graph().get_all_asset_keys())
    assert not defs.schedules


def test_the_automation_runs_the_pipeline_at_three_maintenance_at_five_and_observes_the_sources_at_half_past():
    from datetime import datetime, timedelta, timezone

    from dagster import DagsterInstance, evaluate_automation_conditions

    from financial_assets.definitions import defs

    keys = defs.resolve_asset_graph().get_all_asset_keys()
    instance = DagsterInstance.ephemeral()
    cursor, requested = None, {}
    # Half-hourly evaluations from 01:30 to 05:30 (the sensor evaluates far more often; what
    # counts is that each evaluation sees the ticks since the one before).
    start = datetime(2026, 11, 30, 1, 30, tzinfo=timezone.utc)
    for step in range(9):
        moment = start + timedelta(minutes=30 * step, seconds=30)
        result = evaluate_automation_conditions(defs, instance, evaluation_time=moment, cursor=cursor)
        cursor = result.cursor
        if step:  # the first evaluation only starts the cursor
            requested[f"{moment:%H:%M}"] = {key.to_user_string() for key in keys if result.get_num_requested(key)}

    sources = {"postgres/customers", "postgres/accounts", "postgres/transactions", "document_store/transaction_events"}
    pipeline = {"raw_customers", "raw_accounts", "raw_transactions", "raw_transaction_events",
                *STAR_TABLES, "published_star_schema"}
    assert requested == {
        "02:00": set(), "02:30": sources, "03:00": pipeline, "03:30": sources,
        "04:00": set(), "04:30": sources, "05:00": {"lakehouse_maintenance"}, "05:30": sources,
    }
