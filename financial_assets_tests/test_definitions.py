"""The code location loads, as `dagster dev` and Dagster's own tooling would load it."""

import subprocess
import sys

from financial_assets_tests.conftest import REPO_ROOT


def test_definitions_load_with_every_raw_asset_in_the_raw_group():
    from financial_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    raw = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).group_name == "raw"}
    assert raw == {"raw_customers", "raw_accounts", "raw_transactions", "raw_transaction_events"}
    assert defs.resolve_job_def("extract_sources") is not None


def test_dagster_validates_the_workspace():
    completed = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


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
