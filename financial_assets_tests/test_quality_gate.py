"""Write-Audit-Publish on clean data, end to end through Dagster: publish after success only, the
previous publication survives failures and kills. (Rollback, time travel, the DuckDB file and the
operators' commands are specified in test_query.py and test_versions_cli.py.)"""

import os
import signal
import subprocess
import sys
import time

import psycopg2
import pytest
from dagster import DagsterInstance, materialize

from financial_assets.analytics import ANALYTICS_ASSETS
from financial_assets.lakehouse.publication import (
    PublicationError,
    builds,
    find_build,
    latest_publication,
    publish,
)
from financial_assets.lakehouse.tables import ANALYST_QUERY, STAR_TABLES
from financial_assets.query.duckdb_views import connect
from financial_assets.raw import RAW_ASSETS
from financial_assets.sample_data.config import SeedConfig
from financial_assets.sample_data.seed import seed_sources
from financial_assets_tests.conftest import REPO_ROOT, TEST_HISTORY_DAYS, TEST_PII_KEY, forget_catalog, pipeline_resources


@pytest.fixture(scope="module")
def clean(server_settings, spark, tmp_path_factory):
    """Clean sources (history ending yesterday), run once through every asset and published."""
    from financial_assets.lakehouse.catalog import LakehouseCatalog
    from financial_assets_tests.conftest import _fresh_databases

    with _fresh_databases(server_settings) as databases:
        seed_sources(databases.postgres_url, databases.mongo_url, databases.mongo_database,
                     SeedConfig(customers=60, transactions=1500, history_days=TEST_HISTORY_DAYS))
        lakehouse = tmp_path_factory.mktemp("lakehouse")
        catalog = LakehouseCatalog(f"file://{lakehouse}", server_settings.catalog_url, name=f"gate_{lakehouse.name}")
        resources = pipeline_resources(catalog, databases)
        first = materialize([*RAW_ASSETS, *ANALYTICS_ASSETS], resources=resources, instance=DagsterInstance.ephemeral())
        yield databases, resources, first, catalog
        forget_catalog(catalog)


def run_all(resources, **options):
    return materialize(
        [*RAW_ASSETS, *ANALYTICS_ASSETS], resources=resources, instance=DagsterInstance.ephemeral(),
        raise_on_error=False, **options,
    )


def main_refs(catalog) -> dict[str, int]:
    iceberg = catalog.load()
    return {name: iceberg.load_table(catalog.analytics_table(name)).refs()["main"].snapshot_id for name in STAR_TABLES}


def test_clean_data_passes_every_check_and_is_published(clean):
    _, _, first, catalog = clean
    evaluations = [e.event_specific_data for e in first.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]

    assert first.success
    assert evaluations and all(e.passed for e in evaluations), [e.check_name for e in evaluations if not e.passed]
    [fact] = [e for e in first.get_asset_materialization_events() if e.asset_key.to_user_string() == "fact_transactions"]
    assert latest_publication(catalog).version == fact.materialization.metadata["version"].value


def test_publishing_moves_main_of_every_table_to_the_published_snapshots(clean):
    _, _, _, catalog = clean

    assert main_refs(catalog) == latest_publication(catalog).snapshots


def test_readers_query_the_published_snapshots(clean):
    _, _, _, catalog = clean
    rows = connect(catalog, latest_publication(catalog).snapshots).execute(ANALYST_QUERY).fetchall()

    assert rows and rows[0][2] >= rows[-1][2]


@pytest.fixture(scope="module")
def blocked(clean):
    """A run after new source transactions with NULL amounts arrived, a tenth of all rows then (far
    above the share amounts_present_and_positive tolerates: it blocks): (the publication before it,
    the run's result, its build). One blocked run serves the tests of what a block leaves behind;
    the sources stay that way for the rest of the module, whose other tests only read the clean
    publication or kill a build."""
    databases, resources, _, catalog = clean
    before = latest_publication(catalog)
    with psycopg2.connect(databases.postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO transactions (account_id, transaction_type, amount, \"timestamp\") "
            "SELECT 1, 'deposit', NULL, now() - interval '1 hour' "
            "FROM generate_series(1, (SELECT count(*) / 9 FROM transactions))"
        )
    connection.close()
    result = run_all(resources)
    return before, result, builds(catalog)[-1]


def test_a_large_share_of_a_source_defect_blocks_and_leaves_the_previous_version_published(clean, blocked):
    _, _, _, catalog = clean
    before, result, _ = blocked

    assert not result.success
    assert latest_publication(catalog) == before
    assert main_refs(catalog) == before.snapshots
    assert connect(catalog, before.snapshots).execute("SELECT count(*) FROM fact_transactions").fetchone()[0] > 0


def audit_branches(catalog) -> set[str]:
    fact = catalog.load().load_table(catalog.analytics_table("fact_transactions"))
    return {name for name in fact.refs() if name.startswith("audit_")}


def test_a_killed_build_leaves_the_previous_version_readable(clean, tmp_path):
    databases, _, _, catalog = clean
    before = latest_publication(catalog)
    started_builds = {b.version for b in builds(catalog)}
    started_branches = audit_branches(catalog)
    environment = {
        **os.environ, **databases.env(catalog.warehouse.removeprefix("file://"), catalog.name),
        "FIN_PII_HMAC_KEY": TEST_PII_KEY, "DAGSTER_HOME": str(tmp_path),
    }
    build = subprocess.Popen(
        [sys.executable, "-m", "financial_assets.cli", "materialize", "--select", "group:analytics"],
        cwd=REPO_ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    try:
        # Kill once the build has started writing its audit branch: mid-build.
        while time.monotonic() < deadline and build.poll() is None:
            if audit_branches(catalog) - started_branches:
                break
            time.sleep(0.25)  # each look reads the table's metadata: not 10 times a second beside the build
        assert build.poll() is None, "the build ended before it could be killed"
    finally:
        os.killpg(build.pid, signal.SIGKILL)
        build.wait()

    assert latest_publication(catalog) == before
    assert main_refs(catalog) == before.snapshots
    assert connect(catalog, before.snapshots).execute("SELECT count(*) FROM fact_transactions").fetchone()[0] > 0
    assert {b.version for b in builds(catalog)} == started_builds  # the half build was never audited


def test_a_build_whose_audit_failed_cannot_be_published_by_hand(clean, blocked):
    _, _, _, catalog = clean
    _, _, build = blocked

    assert not build.publishable
    with pytest.raises(PublicationError, match="failed blocking checks: fact_transactions.amounts_present_and_positive"):
        publish(catalog, build.version)
    assert find_build(catalog, build.version).branch in audit_branches(catalog)


def publish_step(catalog, version: str):
    """A run of the publish asset whose input, the `fact_transactions` output, is ``version``:
    what `star_schema` hands over in a run (here from a stand-in that builds nothing)."""
    from dagster import asset

    from financial_assets.analytics.publication import published_star_schema
    from financial_assets.resources import LakehouseResource, ReaderCatalogResource

    @asset(name="fact_transactions")
    def built() -> str:
        return version

    return materialize(
        [built, published_star_schema], instance=DagsterInstance.ephemeral(), raise_on_error=False,
        resources={"lakehouse": LakehouseResource.for_catalog(catalog), "reader_catalog": ReaderCatalogResource()},
    )


def test_publish_publishes_the_version_handed_to_it_not_the_newest_build(lakehouse_catalog):
    from financial_assets_tests.star_builds import build

    build(lakehouse_catalog, "20261130_010000_handed00", {1: ["10.00"]})
    build(lakehouse_catalog, "20261130_020000_newer000", {1: ["20.00"]})

    assert publish_step(lakehouse_catalog, "20261130_010000_handed00").success
    assert latest_publication(lakehouse_catalog).version == "20261130_010000_handed00"


def test_publish_refuses_a_blocked_version_handed_to_it(lakehouse_catalog):
    from financial_assets_tests.star_builds import build

    build(lakehouse_catalog, "20261130_010000_blocked0", {1: ["10.00"]},
          failed_checks=[("fact_transactions", "amounts_present_and_positive", "ERROR")])

    result = publish_step(lakehouse_catalog, "20261130_010000_blocked0")

    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "failed blocking checks: fact_transactions.amounts_present_and_positive" in str(failure.step_failure_data.error)
    assert latest_publication(lakehouse_catalog) is None
