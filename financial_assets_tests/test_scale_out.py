"""The same star-schema build, by configuration only, on a standalone Spark cluster and through
Spark Connect, with the lakehouse on S3 (moto's server), so that no executor reads the driver's
files.

Each engine gets its own sources and lakehouse and two runs of the unchanged CLI,
`financial-assets materialize` in a process of its own (this process's Spark session is local):
a full build, then, after new transactions, an incremental one; both audited and published.
The servers come from the pyspark package's own distribution (`spark_cluster.py`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass

import boto3
import psycopg2
import pytest

from financial_assets.lakehouse.catalog import LakehouseCatalog
from financial_assets_tests.conftest import INTERPRETED_EXPRESSIONS, REPO_ROOT, TEST_PII_KEY, _fresh_databases
from financial_assets_tests.spark_cluster import ConnectServer, SparkCluster

pytestmark = [pytest.mark.cluster, pytest.mark.services]

NEW_TRANSACTIONS = 25  # what arrives between the two runs: the incremental build's new facts
# Five days of history, not the suite's 30: a day is a fact partition, so a file and its S3 requests
# per write; on a 2-core machine each CLI run takes ~30% less.
HISTORY_DAYS = 5


@dataclass(frozen=True)
class Runs:
    """Two CLI runs on one lakehouse: a full build, then an incremental one."""

    catalog: LakehouseCatalog
    source_transactions: int
    logs: tuple[str, str]  # each run's Dagster log (INFO)


def materialize(environment: dict[str, str]) -> str:
    """`financial-assets materialize` of the raw zone and the analytics (build, checks, publish);
    its Dagster log."""
    completed = subprocess.run(
        [sys.executable, "-m", "financial_assets.cli", "materialize", "--select", "group:raw or group:analytics",
         "--log-level", "INFO"],
        env=environment, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stderr


def add_transactions(postgres_url: str, count: int) -> None:
    """``count`` deposits of today on existing accounts, as the bank's application inserts them."""
    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            'INSERT INTO transactions (account_id, transaction_type, amount, "timestamp") '
            "SELECT account_id, 'deposit', 10.00, date_trunc('day', now() AT TIME ZONE 'UTC') "
            "FROM accounts ORDER BY account_id LIMIT %s", (count,))
    connection.close()


def run_twice(server_settings, moto_endpoint: str, tmp_path, engine: dict[str, str]) -> Runs:
    """Seeds sources of its own, a bucket for the lakehouse, and runs the CLI twice on ``engine``'s
    variables (FIN_SPARK_MASTER or FIN_SPARK_REMOTE), new transactions in between."""
    from financial_assets.sample_data.config import SeedConfig
    from financial_assets.sample_data.seed import seed_sources
    from financial_assets.settings import Settings

    bucket = f"lakehouse-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    with _fresh_databases(server_settings) as sources:
        report = seed_sources(sources.postgres_url, sources.mongo_url, sources.mongo_database,
                              SeedConfig(customers=40, transactions=600, history_days=HISTORY_DAYS))
        environment = {
            **{name: value for name, value in os.environ.items() if name != "DAGSTER_HOME"},  # an ephemeral instance
            **sources.env(f"s3://{bucket}"),
            "FIN_DUCKDB_PATH": str(tmp_path / "analytics.duckdb"),
            "FIN_S3_ENDPOINT_URL": moto_endpoint,
            "FIN_PII_HMAC_KEY": TEST_PII_KEY,
            **engine,
        }
        first = materialize(environment)
        add_transactions(sources.postgres_url, NEW_TRANSACTIONS)
        second = materialize(environment)
    return Runs(Settings.from_env(environment).catalog(), report.rows["transactions"] + NEW_TRANSACTIONS,
                (first, second))


# ------------------------------------------------------------------ a standalone cluster


@dataclass(frozen=True)
class ClusterRuns(Runs):
    applications: list[dict]  # the master's record of each run's Spark application, in order


# The operator's settings for the cluster's applications, where spark-submit reads them: sized for
# this cluster's 1 GB workers and tiny data (docs/scale-out.md sizes real ones), whose expressions
# run interpreted as in the suite's own Spark (conftest.py: Spark's generated code costs more
# than it saves here). Adaptive execution stays on: without it the cluster's 4 shuffle partitions
# are never coalesced, and the module took 190 s instead of 176.
SPARK_DEFAULTS = {"spark.executor.memory": "768m", "spark.sql.shuffle.partitions": "4", **INTERPRETED_EXPRESSIONS}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A master and two workers of 1 core and 1 GB each, every one its own JVM on 127.0.0.1."""
    with SparkCluster(tmp_path_factory.mktemp("spark-cluster"), workers=2, worker_cores=1, worker_memory="1g") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def cluster_runs(cluster, server_settings, moto_endpoint, tmp_path_factory) -> ClusterRuns:
    conf_dir = tmp_path_factory.mktemp("spark-conf")
    (conf_dir / "spark-defaults.conf").write_text("".join(f"{key} {value}\n" for key, value in SPARK_DEFAULTS.items()))
    before = {app["id"] for app in cluster.status()["completedapps"]}
    runs = run_twice(server_settings, moto_endpoint, tmp_path_factory.mktemp("cluster-runs"), {
        "FIN_SPARK_MASTER": cluster.master_url,
        "SPARK_CONF_DIR": str(conf_dir),
        "SPARK_LOCAL_IP": "127.0.0.1",  # where the executors reach the driver: the cluster is on loopback
    })
    completed = sorted(cluster.status()["completedapps"], key=lambda app: app["starttime"])
    return ClusterRuns(**vars(runs), applications=[app for app in completed if app["id"] not in before])


def published_builds(catalog: LakehouseCatalog) -> list[tuple[str, str]]:
    """(mode, version) of each build, in order, and the published version last."""
    from financial_assets.lakehouse.publication import builds, latest_publication

    return [(build.mode, build.version) for build in sorted(builds(catalog), key=lambda build: build.built_at)] + [
        ("published", latest_publication(catalog).version)]


def assert_full_then_incremental_then_published(runs: Runs) -> None:
    from financial_assets.lakehouse.publication import find_build, latest_publication

    (first_mode, _), (second_mode, second), (_, published) = published_builds(runs.catalog)
    build = find_build(runs.catalog, second)

    assert (first_mode, second_mode, published) == ("full", "incremental", second)
    assert build.row_counts["fact_transactions"] == runs.source_transactions
    assert not build.failed_blocking_checks
    assert all(location.startswith("s3://") for location in table_locations(runs.catalog))
    assert latest_publication(runs.catalog).snapshots == build.snapshots


def table_locations(catalog: LakehouseCatalog) -> list[str]:
    iceberg = catalog.load()
    return [iceberg.load_table(identifier).location()
            for namespace in (catalog.raw_namespace, catalog.analytics_namespace)
            for identifier in iceberg.list_tables(namespace)]


def test_the_cluster_builds_full_then_incrementally_and_publishes_on_s3(cluster_runs):
    assert_full_then_incremental_then_published(cluster_runs)


def test_each_cluster_run_is_one_application_that_ran_tasks_on_both_workers_executors(cluster, cluster_runs):
    finished_tasks = {
        application["id"]: {worker: sum(log.read_text(errors="replace").count("Finished task") for log in logs)
                            for worker, logs in cluster.executor_logs(application["id"]).items()}
        for application in cluster_runs.applications
    }

    assert len(finished_tasks) == 2
    for application, by_worker in finished_tasks.items():
        assert sorted(by_worker) == [1, 2], application
        assert all(tasks > 0 for tasks in by_worker.values()), (application, by_worker)


def test_the_cluster_session_starts_with_the_run_while_the_sources_are_extracted(cluster_runs):
    assert all("the Spark session started with the run, in the background" in log for log in cluster_runs.logs)


def test_the_cluster_runs_take_the_operators_spark_defaults(cluster_runs):
    assert [app["memoryperexecutor"] for app in cluster_runs.applications] == [768, 768]


# ------------------------------------------------------------------ Spark Connect


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory, request):
    """A Spark Connect server on 127.0.0.1 with the Iceberg runtime jars this project resolved."""
    from financial_assets.transform.session import resolved_jars

    if resolved_jars() is None:  # a fresh clone: the suite's local session resolves them into the Ivy cache
        request.getfixturevalue("spark")
    jars = resolved_jars()
    with ConnectServer(tmp_path_factory.mktemp("spark-connect"), jars=jars,
                       config={"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "2g",
                               **INTERPRETED_EXPRESSIONS}) as server:
        yield server


@dataclass(frozen=True)
class ConnectRuns(Runs):
    server_jobs: tuple[int, int]  # Spark jobs the Connect server had run, before and after


@pytest.fixture(scope="module")
def connect_runs(connect_server, server_settings, moto_endpoint, tmp_path_factory) -> ConnectRuns:
    before = connect_server.succeeded_jobs()
    runs = run_twice(server_settings, moto_endpoint, tmp_path_factory.mktemp("connect-runs"),
                     {"FIN_SPARK_REMOTE": connect_server.url})
    return ConnectRuns(**vars(runs), server_jobs=(before, connect_server.succeeded_jobs()))


def test_spark_connect_builds_full_then_incrementally_and_publishes_on_s3(connect_runs):
    assert_full_then_incremental_then_published(connect_runs)


def test_the_spark_connect_builds_ran_their_jobs_in_the_servers_spark(connect_runs):
    before, after = connect_runs.server_jobs

    assert before == 0 and after > 0
