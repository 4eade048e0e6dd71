"""One set of real servers for the whole suite, and a fresh pair of source databases per test.

The servers are the ones `scripts/services.sh` starts (or those named by FIN_POSTGRES_URL /
FIN_MONGO_URL); the script is idempotent, so running `pytest` alone starts them too.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

from financial_assets.lakehouse.catalog import ICEBERG_EXTENSIONS
from financial_assets.settings import Settings
from financial_assets.sources import connect_document_store
from financial_assets_tests.jvm_class_archive import suite_java_tool_options

REPO_ROOT = Path(__file__).resolve().parent.parent

# Seeded test data spans ten days, not the generator's default year: fact_transactions has a
# partition (a file per write) per day, and a build of a few thousand rows over 365 days spends
# most of its time opening and committing tiny files (writing 2,500 rows: 365 days ~10x 30 days;
# 30 days -> 10: test_history.py 50 s -> 40 s, the killed build 32 s -> 25 s).
TEST_HISTORY_DAYS = 10

# Fake AWS credentials for the whole suite, set before any JVM starts (Spark's S3FileIO reads
# them once), so that no client ever finds real ones: AWS itself is moto's server here.
os.environ.update({
    "AWS_ACCESS_KEY_ID": "moto-test-key",
    "AWS_SECRET_ACCESS_KEY": "moto-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
})
# Every JVM the suite starts (its Spark, the Glue stand-in's job runs, the CLI's) runs small jobs
# once: options and a class archive for that (jvm_class_archive.py). Benchmarks and users keep the
# JVM's defaults.
os.environ["JAVA_TOOL_OPTIONS"] = suite_java_tool_options(os.environ.get("JAVA_TOOL_OPTIONS", ""))
# Source steps that fail (a test's unreachable source) retry at once instead of after 2, 6 and
# 14 s; read when financial_assets.raw is imported, after this file.
os.environ["FIN_SOURCE_RETRY_DELAY_S"] = "0"


# `make test` runs the suite on two workers (pytest-xdist, `--dist loadfile`): each module runs
# whole on one worker, so its module-scoped builds are made once, and modules go out in collection
# order. The longest go first (seconds of a serial run, 2026-12-01) so that neither worker is left
# with one of them at the end while the other idles.
LONGEST_MODULES_FIRST = (
    "test_scale_out.py",  # 233 s: a standalone cluster and a Spark Connect server, 4 CLI runs each
    "test_incremental_build.py",  # 152
    "test_star_schema.py",  # 79
    "test_glue_engine.py",  # 70
    "test_aws_deployment.py",  # 64
    "test_end_to_end.py",  # 63
    "test_quality_gate.py",  # 58
    "test_history.py",  # 51
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules of :data:`LONGEST_MODULES_FIRST` first, in that order; the rest as collected."""
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_MODULES_FIRST.index(name) if name in LONGEST_MODULES_FIRST else len(LONGEST_MODULES_FIRST)

    items.sort(key=rank)  # stable: each module's tests keep their order


@dataclass(frozen=True)
class SourceDatabases:
    """A PostgreSQL database and a document-store database that belong to one test."""

    postgres_url: str
    mongo_url: str
    mongo_database: str

    def env(self, lakehouse_uri: str | Path, catalog_name: str | None = None) -> dict[str, str]:
        """The FIN_* variables of a CLI run on these sources; the lakehouse gets a catalog name of
        its own (derived from its location, so every run on it finds the same tables) and its
        DuckDB file inside it (not one under the working directory's var/)."""
        import hashlib

        return {
            "FIN_DUCKDB_PATH": str(Path(lakehouse_uri) / "analytics.duckdb"),
            "FIN_CATALOG_NAME": catalog_name or f"test_{hashlib.sha1(str(lakehouse_uri).encode()).hexdigest()[:12]}",
            "FIN_POSTGRES_URL": self.postgres_url,
            "FIN_MONGO_URL": self.mongo_url,
            "FIN_MONGO_DATABASE": self.mongo_database,
            "FIN_LAKEHOUSE_URI": str(lakehouse_uri),
        }


@pytest.fixture(scope="session")
def server_settings() -> Settings:
    """The shared servers, started once for the session."""
    subprocess.run([str(REPO_ROOT / "scripts" / "services.sh"), "start"], check=True)
    return Settings.from_env()


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


@contextmanager
def _fresh_databases(settings: Settings) -> Iterator[SourceDatabases]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(settings.postgres_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield SourceDatabases(
            postgres_url=_with_database(settings.postgres_url, name),
            mongo_url=settings.mongo_url,
            mongo_database=name,
        )
    finally:
        with connect_document_store(settings.mongo_url, name) as database:
            database.client.drop_database(name)
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def source_databases(server_settings: Settings) -> Iterator[SourceDatabases]:
    """Empty databases on the shared servers, dropped when the test ends."""
    with _fresh_databases(server_settings) as databases:
        yield databases


@pytest.fixture(scope="session")
def seeded_sources(server_settings: Settings):
    """Sources seeded once for the session with every fault: (databases, SeedReport).

    Read-only for the tests that share it; a test that changes sources takes `source_databases`.
    History ends today, so that the faults' "future" timestamps are in the future.
    """
    from financial_assets.sample_data.config import SeedConfig, last_complete_day
    from financial_assets.sample_data.seed import seed_sources

    with _fresh_databases(server_settings) as databases:
        report = seed_sources(
            databases.postgres_url,
            databases.mongo_url,
            databases.mongo_database,
            SeedConfig(customers=120, transactions=2500, as_of=last_complete_day(), history_days=TEST_HISTORY_DAYS,
                       with_faults=True),
        )
        yield databases, report


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto in server mode: a real HTTP AWS endpoint on loopback, shared by the session."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _moto_lists_its_modules_once()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _moto_lists_its_modules_once() -> None:
    """moto's server finds a request's backend by listing its own package directory (~170
    entries, a stat each) on every request, under a lock: ~14 s of a suite run in moto's threads
    (py-spy). The list cannot change while the server runs. If a moto release drops the
    function, the server runs as it comes."""
    from moto import backends

    if callable(getattr(backends, "list_of_moto_modules", None)):
        modules = frozenset(backends.list_of_moto_modules())
        backends.list_of_moto_modules = lambda: modules


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    """A new, empty bucket on the moto server."""
    import boto3

    name = f"lakehouse-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=name)
    return name


# The suite's Spark runs hundreds of small queries once each, on a few thousand rows, where what
# Spark does per query to run large data fast costs more than it saves. Compiling each query's
# generated Java code (Janino, then the JIT): expressions run interpreted instead, Spark's own
# fallback with the same results (Spark's tests run both). Adaptive execution's re-planning after
# each stage: test_incremental_build.py 129 s -> 107 s without it. And 200 shuffle partitions:
# with one per core, test_star_schema.py went from 110 s to 80 s. The scale-out tests' servers and
# the Glue stand-in's job runs run interpreted expressions too, set where their operators would
# set them (spark-defaults.conf, the job's --conf); the CLI on local Spark keeps Spark's defaults.
INTERPRETED_EXPRESSIONS = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}
TEST_SPARK_SETTINGS = {
    **INTERPRETED_EXPRESSIONS,
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.shuffle.partitions": "2",
}


# The Glue stand-in's jobs' ``--conf``: Iceberg's extensions, as infra/financial-assets.yaml gives
# them, and interpreted expressions, in the form Glue takes several settings in: ``a=1 --conf b=2``.
GLUE_JOB_SPARK_CONF = " --conf ".join(
    f"{key}={value}" for key, value in {"spark.sql.extensions": ICEBERG_EXTENSIONS, **INTERPRETED_EXPRESSIONS}.items())


@pytest.fixture(scope="session")
def spark():
    """The suite's one Spark session (one JVM), shared by every test that needs Spark."""
    from financial_assets.transform.session import spark_session

    session = spark_session("local[2]")  # the process's session, whichever test started it
    for key, value in TEST_SPARK_SETTINGS.items():
        session.conf.set(key, value)
    return session


@pytest.fixture
def lakehouse_catalog(server_settings: Settings, tmp_path: Path):
    """An empty lakehouse of the test's own: a catalog name of its own in the shared catalog
    database (Iceberg's SQL catalog on the local PostgreSQL) and a warehouse in ``tmp_path``."""
    with temporary_lakehouse(server_settings, tmp_path / "lakehouse") as catalog:
        yield catalog


@contextmanager
def temporary_lakehouse(server_settings: Settings, directory: Path):
    """An empty lakehouse with its warehouse in ``directory`` (`new_catalog`), forgotten on exit:
    a test's, or a module's that several tests read."""
    catalog = new_catalog(server_settings, f"file://{directory}")
    try:
        yield catalog
    finally:
        forget_catalog(catalog)


def new_catalog(server_settings: Settings, warehouse: str, **options):
    """A lakehouse at ``warehouse`` under a catalog name of its own in the suite's catalog database
    (`forget_catalog` removes it)."""
    from financial_assets.lakehouse.catalog import LakehouseCatalog

    return LakehouseCatalog(warehouse=warehouse, sql_url=server_settings.catalog_url,
                            name=f"test_{uuid.uuid4().hex[:12]}", **options)


def fork_catalog(catalog, warehouse: str):
    """A lakehouse that starts where ``catalog`` is now and then goes its own way: a new catalog
    name whose rows point at the same Iceberg metadata, and a warehouse of its own for the tables
    it creates. Iceberg never rewrites a file, so a fork's commits add files beside the shared
    ones: tests start from one expensive state (a published build) without making it again.
    `forget_catalog` removes a fork."""
    fork = replace(catalog, name=f"test_{uuid.uuid4().hex[:12]}", warehouse=warehouse)
    with psycopg2.connect(catalog.sql_url) as connection, connection.cursor() as cursor:
        for table in ("iceberg_tables", "iceberg_namespace_properties"):
            # Every column but the catalog's name, whichever of Iceberg's schema versions made the table.
            cursor.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                           "AND column_name <> 'catalog_name'", (table,))
            columns = ", ".join(name for (name,) in cursor.fetchall())
            cursor.execute(f"INSERT INTO {table} (catalog_name, {columns}) SELECT %s, {columns} FROM {table} "
                           "WHERE catalog_name = %s", (fork.name, catalog.name))
    connection.close()
    return fork


def forget_catalog(catalog) -> None:
    """Close a test catalog and remove its rows from the shared catalog database (its files go
    with tmp_path)."""
    catalog.close()
    with psycopg2.connect(catalog.sql_url) as connection, connection.cursor() as cursor:
        for table in ("iceberg_tables", "iceberg_namespace_properties"):
            cursor.execute(f"DELETE FROM {table} WHERE catalog_name = %s", (catalog.name,))
    connection.close()


TEST_PII_KEY = "test-only-pii-key"


def pipeline_resources(catalog, databases: SourceDatabases | None = None, engine=None) -> dict:
    """Resources for materializing the pipeline in tests: the suite's Spark unless ``engine`` is
    given, the sources only when ``databases`` is given."""
    from financial_assets.resources import local_pipeline_resources

    return local_pipeline_resources(
        catalog,
        TEST_PII_KEY,
        postgres_url=databases.postgres_url if databases else None,
        mongo_url=databases.mongo_url if databases else None,
        mongo_database=databases.mongo_database if databases else None,
        spark_master="local[2]",
        star_schema_engine=engine,
    )
