"""Write-Audit-Publish on clean data: publish after success only, old versions survive failures,
kills and rollbacks."""

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
    built_versions,
    publish,
    published,
    rollback,
)
from financial_assets.lakehouse.storage import LakehouseStorage
from financial_assets.query.duckdb_views import ANALYST_QUERY, connect, published_version
from financial_assets.raw import RAW_ASSETS
from financial_assets.sample_data.config import SeedConfig
from financial_assets.sample_data.seed import seed_sources
from financial_assets_tests.conftest import REPO_ROOT, TEST_PII_KEY, pipeline_resources


@pytest.fixture(scope="module")
def clean(server_settings, spark, tmp_path_factory):
    """Clean sources (history ending yesterday), run once through every asset and published."""
    from financial_assets_tests.conftest import _fresh_databases

    with _fresh_databases(server_settings) as databases:
        seed_sources(databases.postgres_url, databases.mongo_url, databases.mongo_database,
                     SeedConfig(customers=60, transactions=1500))
        lakehouse = tmp_path_factory.mktemp("lakehouse")
        resources = pipeline_resources(lakehouse, databases)
        first = materialize([*RAW_ASSETS, *ANALYTICS_ASSETS], resources=resources, instance=DagsterInstance.ephemeral())
        yield databases, resources, first, LakehouseStorage(str(lakehouse))


def run_all(resources, **options):
    return materialize(
        [*RAW_ASSETS, *ANALYTICS_ASSETS], resources=resources, instance=DagsterInstance.ephemeral(),
        raise_on_error=False, **options,
    )


def test_clean_data_passes_every_check_and_is_published(clean):
    _, _, first, storage = clean
    evaluations = [e.event_specific_data for e in first.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]

    assert first.success
    assert evaluations and all(e.passed for e in evaluations), [e.check_name for e in evaluations if not e.passed]
    [fact] = [e for e in first.get_asset_materialization_events() if e.asset_key.to_user_string() == "fact_transactions"]
    assert published(storage).version == fact.materialization.metadata["version"].value


def test_readers_query_the_published_version(clean):
    _, _, _, storage = clean
    rows = connect(storage, published_version(storage)).execute(ANALYST_QUERY).fetchall()

    assert rows and rows[0][2] >= rows[-1][2]


def test_a_failing_blocking_check_leaves_the_previous_version_published(clean):
    databases, resources, _, storage = clean
    before = published(storage)
    with psycopg2.connect(databases.postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO transactions (account_id, transaction_type, amount, \"timestamp\") "
            "SELECT 1, 'refund', 5.00, now() - interval '1 hour'"
        )
    try:
        result = run_all(resources)
        assert not result.success
        assert published(storage) == before
        assert connect(storage, published_version(storage)).execute("SELECT count(*) FROM fact_transactions").fetchone()[0] > 0
    finally:
        with psycopg2.connect(databases.postgres_url) as connection, connection.cursor() as cursor:
            cursor.execute("DELETE FROM transactions WHERE transaction_type = 'refund'")
        run_all(resources, run_config={"ops": {"raw_transactions": {"config": {"full_refresh": True}}}})


def test_a_killed_build_leaves_the_previous_version_readable(clean, tmp_path):
    databases, _, _, storage = clean
    before = published(storage)
    started_versions = {b.version for b in built_versions(storage)}
    environment = {
        **os.environ, **databases.env(storage.uri), "FIN_PII_HMAC_KEY": TEST_PII_KEY, "DAGSTER_HOME": str(tmp_path),
    }
    build = subprocess.Popen(
        [sys.executable, "-m", "financial_assets.cli", "materialize", "--select", "group:analytics"],
        cwd=REPO_ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    versions_folder = os.path.join(storage.uri, "analytics", "versions")
    deadline = time.monotonic() + 180
    try:
        # Kill once the new version's first table is being written: mid-build.
        while time.monotonic() < deadline and build.poll() is None:
            if set(os.listdir(versions_folder)) - started_versions:
                break
            time.sleep(0.05)
        assert build.poll() is None, "the build ended before it could be killed"
    finally:
        os.killpg(build.pid, signal.SIGKILL)
        build.wait()

    assert published(storage) == before
    assert connect(storage, before.version).execute("SELECT count(*) FROM fact_transactions").fetchone()[0] > 0
    assert {b.version for b in built_versions(storage)} == started_versions  # the half build is not a version


def test_rollback_points_readers_back_at_the_previous_version(clean):
    _, resources, _, storage = clean
    older = published(storage).version
    assert run_all(resources).success
    newer = published(storage).version

    assert rollback(storage, older).version == older
    assert published_version(storage) == older
    assert newer in published(storage).history
    assert rollback(storage, newer).version == newer


def test_rollback_to_a_version_that_is_not_kept_is_refused(clean):
    _, _, _, storage = clean

    with pytest.raises(PublicationError, match="not a kept earlier publication"):
        rollback(storage, "19990101T000000Z-nothere")


def test_only_the_last_few_published_versions_are_kept(clean):
    _, resources, _, storage = clean
    for _ in range(2):
        assert run_all(resources, run_config={"ops": {"published_star_schema": {"config": {"keep": 2}}}}).success
    current = published(storage)

    assert len(current.history) == 1
    remaining = {b.version for b in built_versions(storage)}
    assert {current.version, *current.history} <= remaining
    assert all(v >= current.history[-1] for v in remaining)


def test_a_version_whose_audit_failed_cannot_be_published_by_hand(clean):
    _, _, _, storage = clean
    version = built_versions(storage)[-1].version
    build_file = f"analytics/versions/{version}/_build.json"
    original = storage.read_bytes(build_file)
    storage.write_bytes(build_file, original.replace(b'"passed": true', b'"passed": false', 1))
    try:
        with pytest.raises(PublicationError, match="failed blocking checks"):
            publish(storage, version)
    finally:
        storage.write_bytes(build_file, original)


def test_the_duckdb_file_follows_the_publication(clean):
    import duckdb

    _, resources, _, storage = clean
    path = resources["reader_catalog"].duckdb_path
    with duckdb.connect(path, read_only=True) as connection:
        version = connection.execute("SELECT version FROM _publication").fetchone()[0]
        facts = connection.execute("SELECT count(*) FROM fact_transactions").fetchone()[0]

    assert version == published(storage).version
    assert facts == connect(storage, version).execute("SELECT count(*) FROM fact_transactions").fetchone()[0]


def test_operators_list_versions_and_roll_back_from_the_command_line(clean, monkeypatch, capsys):
    from financial_assets.cli import main

    _, resources, _, storage = clean
    monkeypatch.setenv("FIN_LAKEHOUSE_URI", storage.uri)
    monkeypatch.setenv("FIN_DUCKDB_PATH", resources["reader_catalog"].duckdb_path)
    current = published(storage)

    assert main(["versions"]) == 0
    listing = capsys.readouterr().out
    assert f"{current.version}" in listing and "PUBLISHED" in listing

    assert main(["rollback", current.history[0]]) == 0
    assert published_version(storage) == current.history[0]
    assert main(["rollback", current.version]) == 0
    assert main(["rollback", "19990101T000000Z-nothere"]) == 2
