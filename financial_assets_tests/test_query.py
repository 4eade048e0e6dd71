"""`financial-assets query`: DuckDB over the published snapshots' files, the DuckDB file BI tools
open, time travel with --as-of, and Athena's SQL, on real Iceberg tables in the local catalog."""

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import urlsplit

import duckdb
import pytest

from financial_assets.lakehouse.publication import rollback
from financial_assets.query.catalogs import DuckDBFile, LakehouseMismatchError, refresh_readers
from financial_assets.query.cli import athena_sql
from financial_assets.lakehouse.tables import ANALYST_QUERY
from financial_assets.query.duckdb_views import connect, local_path
from financial_assets.resources.catalog import ReaderCatalogResource
from financial_assets_tests.conftest import REPO_ROOT, forget_catalog, new_catalog
from financial_assets_tests.star_builds import build, build_and_publish, cli_environment, totals

FIRST = {1: ["10.00", "20.00"], 2: ["5.00"]}
SECOND = {1: ["100.00"], 2: ["7.50", "2.50"]}


@pytest.fixture
def duckdb_path(tmp_path):
    return tmp_path / "bi" / "analytics.duckdb"


@pytest.fixture
def query(lakehouse_catalog, duckdb_path, monkeypatch, capsys):
    """`financial-assets query ARGS...` on the test's lakehouse: (exit code, JSON rows or None, stderr)."""
    from financial_assets.cli import main

    for name, value in cli_environment(lakehouse_catalog, duckdb_path).items():
        monkeypatch.setenv(name, value)

    def run(*args):
        capsys.readouterr()
        code = main(["query", *args, "--format", "json"])
        captured = capsys.readouterr()
        return code, json.loads(captured.out) if code == 0 else None, captured.err

    return run


def analyst_totals(rows) -> dict[str, Decimal]:
    return {row["name"]: Decimal(row["total_transaction_amount"]) for row in rows}


def test_query_reads_the_latest_publication(lakehouse_catalog, query):
    build_and_publish(lakehouse_catalog, "v1", FIRST)

    code, rows, err = query()

    assert code == 0, err
    assert analyst_totals(rows) == totals(FIRST)


def test_query_reads_the_published_snapshots_not_main(lakehouse_catalog, query):
    build_and_publish(lakehouse_catalog, "v1", FIRST)
    unpublished = build(lakehouse_catalog, "v2", SECOND)
    fact = lakehouse_catalog.load().load_table(lakehouse_catalog.analytics_table("fact_transactions"))
    with fact.manage_snapshots() as manage:  # main moved by hand: no publication row says so
        manage.set_current_snapshot(snapshot_id=unpublished["fact_transactions"])

    _, rows, _ = query()

    assert analyst_totals(rows) == totals(FIRST)


def test_the_duckdb_file_holds_a_view_per_table_and_the_publication(lakehouse_catalog, query, duckdb_path):
    publication = build_and_publish(lakehouse_catalog, "v1", FIRST)

    query()

    with duckdb.connect(str(duckdb_path), read_only=True) as connection:
        views = {row[0] for row in connection.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        version, published_at = connection.execute("SELECT version, epoch_us(published_at) FROM _publication").fetchone()
    assert views == {"dim_customers", "dim_accounts", "dim_dates", "fact_transactions"}
    assert version == "v1"
    assert published_at == int(publication.published_at.timestamp() * 1_000_000)


def test_the_duckdb_file_is_brought_up_to_date_when_it_lags_behind(lakehouse_catalog, query, duckdb_path):
    build_and_publish(lakehouse_catalog, "v1", FIRST)
    query()
    second = build_and_publish(lakehouse_catalog, "v2", SECOND)

    _, rows, _ = query()

    assert analyst_totals(rows) == totals(SECOND)
    assert DuckDBFile(str(duckdb_path)).follows(second)


def test_bi_tools_read_the_published_tables_from_the_duckdb_file(lakehouse_catalog, duckdb_path):
    publication = build_and_publish(lakehouse_catalog, "v1", FIRST)

    refreshed = ReaderCatalogResource(duckdb_path=str(duckdb_path)).refresh(lakehouse_catalog, publication)

    with duckdb.connect(str(duckdb_path), read_only=True) as connection:
        rows = connection.execute(ANALYST_QUERY).fetchall()
    assert refreshed == [f"DuckDB file {duckdb_path}"]
    assert {name: total for name, _, total in rows} == totals(FIRST)


@pytest.fixture
def bi_tool(duckdb_path):
    """Another process with the DuckDB file open read-only, as a BI tool keeps it: it blocks writers."""
    duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect(str(duckdb_path)).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(duckdb_path)!r}, read_only=True); "
         "print('open', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "open"
    yield
    holder.communicate("", timeout=30)


def test_a_refresh_blocked_by_a_bi_tool_is_left_to_the_next_query(lakehouse_catalog, duckdb_path, bi_tool):
    publication = build_and_publish(lakehouse_catalog, "v1", FIRST)

    [line] = refresh_readers(lakehouse_catalog, publication, str(duckdb_path))

    assert line.startswith(f"DuckDB file {duckdb_path} NOT refreshed (IO Error: Could not set lock on file")
    assert line.endswith("the next `financial-assets query` refreshes it")


def test_query_reads_in_memory_while_a_bi_tool_blocks_the_duckdb_file(lakehouse_catalog, query, duckdb_path, bi_tool):
    build_and_publish(lakehouse_catalog, "v1", FIRST)

    code, rows, _ = query()

    assert code == 0 and analyst_totals(rows) == totals(FIRST)


@pytest.fixture
def other_lakehouse(server_settings, tmp_path):
    """A second lakehouse beside the test's own: another warehouse, another catalog name."""
    other = new_catalog(server_settings, f"file://{tmp_path / 'other-lakehouse'}")
    yield other
    forget_catalog(other)


def test_a_query_on_another_lakehouse_refuses_the_duckdb_file_of_the_first(
    lakehouse_catalog, other_lakehouse, query, duckdb_path, monkeypatch
):
    build_and_publish(lakehouse_catalog, "v1", FIRST)
    query()  # the file now follows the test's lakehouse
    build_and_publish(other_lakehouse, "w1", SECOND)
    for name, value in cli_environment(other_lakehouse, duckdb_path).items():
        monkeypatch.setenv(name, value)  # the same FIN_DUCKDB_PATH

    code, _, err = query()

    assert code == 2
    assert err.startswith(f"financial-assets: the DuckDB file {duckdb_path} (FIN_DUCKDB_PATH) follows the lakehouse "
                          f"{lakehouse_catalog.identity}, not {other_lakehouse.identity}")
    assert DuckDBFile(str(duckdb_path)).current()[0] == "v1"


def test_a_refresh_refuses_a_duckdb_file_that_follows_another_lakehouse(lakehouse_catalog, other_lakehouse, duckdb_path):
    first = build_and_publish(lakehouse_catalog, "v1", FIRST)
    refresh_readers(lakehouse_catalog, first, str(duckdb_path))
    other = build_and_publish(other_lakehouse, "w1", SECOND)

    with pytest.raises(LakehouseMismatchError, match="follows the lakehouse"):
        ReaderCatalogResource(duckdb_path=str(duckdb_path)).check(other_lakehouse)
    with pytest.raises(LakehouseMismatchError, match="follows the lakehouse"):
        refresh_readers(other_lakehouse, other, str(duckdb_path))
    assert DuckDBFile(str(duckdb_path)).follows(first)


def test_the_duckdb_file_records_the_lakehouse_it_follows(lakehouse_catalog, duckdb_path):
    publication = build_and_publish(lakehouse_catalog, "v1", FIRST)

    refresh_readers(lakehouse_catalog, publication, str(duckdb_path))

    with duckdb.connect(str(duckdb_path), read_only=True) as connection:
        [recorded] = connection.execute("SELECT lakehouse FROM _publication").fetchone()
    assert recorded == lakehouse_catalog.identity
    assert recorded == f"{lakehouse_catalog.warehouse} (catalog {lakehouse_catalog.name} in postgresql://127.0.0.1:" \
        f"{urlsplit(lakehouse_catalog.sql_url).port}/lakehouse_catalog)"


def test_on_aws_there_is_no_reader_to_refresh(lakehouse_catalog):
    publication = build_and_publish(lakehouse_catalog, "v1", FIRST)

    assert refresh_readers(lakehouse_catalog, publication, duckdb_path=None) == []


def test_the_duckdb_file_leaves_a_lakehouse_on_object_storage_alone_and_says_why(lakehouse_catalog, duckdb_path):
    from dataclasses import replace

    from financial_assets.lakehouse.publication import Publication

    on_s3 = replace(lakehouse_catalog, warehouse="s3://lakehouse")
    publication = Publication("v1", datetime.now(timezone.utc), "publish", None, {"dim_customers": 1})

    [line] = refresh_readers(on_s3, publication, str(duckdb_path))

    assert line.startswith(f"DuckDB file {duckdb_path} NOT refreshed: its views read local Parquet files")
    assert not duckdb_path.exists()


def test_an_empty_table_is_an_empty_view_with_the_columns_of_its_iceberg_schema(lakehouse_catalog):
    publication = build_and_publish(lakehouse_catalog, "v1", FIRST, with_dates=False)

    with connect(lakehouse_catalog, publication.snapshots) as connection:
        count = connection.execute("SELECT count(*) FROM dim_dates").fetchone()[0]
        columns = connection.execute("SELECT column_name, column_type FROM (DESCRIBE dim_dates)").fetchall()

    assert count == 0
    assert columns == [("date_key", "INTEGER"), ("date", "DATE"), ("is_weekend", "BOOLEAN")]


def test_a_build_can_be_read_by_its_snapshots_before_it_is_published(lakehouse_catalog):
    build_and_publish(lakehouse_catalog, "v1", FIRST)
    snapshots = build(lakehouse_catalog, "v2", SECOND)

    with connect(lakehouse_catalog, snapshots) as connection:
        rows = connection.execute(ANALYST_QUERY).fetchall()

    assert {name: total for name, _, total in rows} == totals(SECOND)


def test_views_read_local_files_by_path_without_the_file_scheme():
    assert local_path("file:///lake/analytics/a.parquet") == "/lake/analytics/a.parquet"
    assert local_path("file:/lake/analytics/a.parquet") == "/lake/analytics/a.parquet"
    assert local_path("s3://bucket/lake/a.parquet") == "s3://bucket/lake/a.parquet"


def test_a_table_with_delete_files_is_refused(lakehouse_catalog, spark, query):
    from financial_assets.lakehouse.publication import publish
    from financial_assets.transform.session import configure_session
    from financial_assets_tests.star_builds import record_test_build, star_rows, write_branches

    snapshots = write_branches(lakehouse_catalog, "v1", star_rows(FIRST))
    configure_session(spark, lakehouse_catalog)
    fact = lakehouse_catalog.spark_table(lakehouse_catalog.analytics_table("fact_transactions"))
    spark.sql(f"ALTER TABLE {fact} SET TBLPROPERTIES ('write.delete.mode' = 'merge-on-read')")
    spark.sql(f"DELETE FROM {fact}.branch_audit_v1 WHERE transaction_id = 1")
    table = lakehouse_catalog.load().load_table(lakehouse_catalog.analytics_table("fact_transactions"))
    snapshots["fact_transactions"] = table.refs()["audit_v1"].snapshot_id
    record_test_build(lakehouse_catalog, "v1", snapshots)
    publish(lakehouse_catalog, "v1")

    code, _, error = query()

    assert code == 2
    assert "has delete files" in error and len(error.strip().splitlines()) == 1


def test_a_published_file_that_has_gone_missing_is_a_one_line_error(lakehouse_catalog, query):
    publication = build_and_publish(lakehouse_catalog, "v1", FIRST)
    fact = lakehouse_catalog.load().load_table(lakehouse_catalog.analytics_table("fact_transactions"))
    [task] = fact.scan(snapshot_id=publication.snapshots["fact_transactions"]).plan_files()
    os.remove(local_path(task.file.file_path))

    code, _, error = query()

    assert code == 2
    assert error.startswith('financial-assets: DuckDB cannot create the view "fact_transactions": IO Error')
    assert len(error.strip().splitlines()) == 1


def test_query_as_of_a_version_reads_that_version(lakehouse_catalog, query):
    build_and_publish(lakehouse_catalog, "v1", FIRST)
    build_and_publish(lakehouse_catalog, "v2", SECOND)

    _, rows, _ = query("--as-of", "v1")

    assert analyst_totals(rows) == totals(FIRST)


def test_query_as_of_a_time_reads_the_publication_current_then(lakehouse_catalog, query):
    build_and_publish(lakehouse_catalog, "v1", FIRST)
    between = datetime.now(timezone.utc).astimezone(timezone(timedelta(hours=-5)))
    build_and_publish(lakehouse_catalog, "v2", SECOND)

    _, rows, _ = query("--as-of", between.isoformat())

    assert analyst_totals(rows) == totals(FIRST)


def test_query_as_of_a_time_without_zone_takes_it_as_utc(lakehouse_catalog, query):
    build_and_publish(lakehouse_catalog, "v1", FIRST)
    between = datetime.now(timezone.utc).replace(tzinfo=None)
    build_and_publish(lakehouse_catalog, "v2", SECOND)

    _, rows, _ = query("--as-of", between.isoformat())

    assert analyst_totals(rows) == totals(FIRST)


def test_query_as_of_never_touches_the_duckdb_file(lakehouse_catalog, query, duckdb_path):
    build_and_publish(lakehouse_catalog, "v1", FIRST)
    query()
    before = duckdb_path.stat().st_mtime_ns
    build_and_publish(lakehouse_catalog, "v2", SECOND)

    query("--as-of", "v1")
    query("--as-of", "v2")

    assert duckdb_path.stat().st_mtime_ns == before
    assert DuckDBFile(str(duckdb_path)).current()[0] == "v1"


def test_query_after_a_rollback_reads_the_first_publication_again(lakehouse_catalog, query):
    build_and_publish(lakehouse_catalog, "v1", FIRST)
    build_and_publish(lakehouse_catalog, "v2", SECOND)
    query()

    rollback(lakehouse_catalog, "v1")
    _, rows, _ = query()

    assert analyst_totals(rows) == totals(FIRST)


def test_query_as_of_an_unknown_version_is_refused_in_one_line(lakehouse_catalog, query):
    build_and_publish(lakehouse_catalog, "v1", FIRST)

    code, _, error = query("--as-of", "v0-nothere")

    assert code == 2
    assert error.strip() == (
        "financial-assets: --as-of 'v0-nothere' is neither a published version nor an ISO-8601 timestamp "
        "(latest published version: v1)"
    )


def test_query_as_of_a_version_built_but_never_published_is_refused(lakehouse_catalog, query):
    build_and_publish(lakehouse_catalog, "v1", FIRST)
    build(lakehouse_catalog, "v2", SECOND)

    code, _, error = query("--as-of", "v2")

    assert code == 2
    assert error.strip() == "financial-assets: version v2 was built but never published"


def test_query_as_of_a_time_before_the_first_publication_is_refused(lakehouse_catalog, query):
    publication = build_and_publish(lakehouse_catalog, "v1", FIRST)

    code, _, error = query("--as-of", "2020-01-01")

    assert code == 2
    assert error.strip() == (
        "financial-assets: nothing was published yet at 2020-01-01T00:00:00+00:00: the first publication is "
        f"v1 at {publication.published_at.isoformat()}"
    )


def test_query_before_any_publication_is_refused(lakehouse_catalog, query):
    code, _, error = query()

    assert code == 2
    assert error.startswith("financial-assets: no star schema published in") and len(error.strip().splitlines()) == 1


def test_invalid_sql_is_one_line(lakehouse_catalog, query):
    build_and_publish(lakehouse_catalog, "v1", FIRST)

    code, _, error = query("SELECT nothing FROM nowhere")

    assert code == 2
    assert error.startswith("financial-assets: Catalog Error") and len(error.strip().splitlines()) == 1


def test_the_query_command_imports_neither_pyspark_nor_dagster(lakehouse_catalog, duckdb_path):
    build_and_publish(lakehouse_catalog, "v1", FIRST)
    program = (
        "import sys\n"
        "from financial_assets.cli import main\n"
        "code = main(['query', '--format', 'csv'])\n"
        "heavy = sorted(m for m in ('pyspark', 'dagster') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    environment = {**os.environ, **cli_environment(lakehouse_catalog, duckdb_path)}

    result = subprocess.run([sys.executable, "-c", program], env=environment, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stderr
    assert "Ada Lovelace" in result.stdout


def test_athena_reads_the_tables_main_in_the_glue_database():
    sql = athena_sql(ANALYST_QUERY, "financial_data_db")

    assert '"financial_data_db"."fact_transactions" AS f' in sql
    assert '"financial_data_db"."dim_customers" AS c' in sql
    assert "FOR VERSION AS OF" not in sql


def test_athena_as_of_pins_every_table_to_the_snapshot_of_that_publication(lakehouse_catalog):
    from financial_assets.query.catalogs import resolve_as_of

    first = build_and_publish(lakehouse_catalog, "v1", FIRST)
    build_and_publish(lakehouse_catalog, "v2", SECOND)

    sql = athena_sql(ANALYST_QUERY, "financial_data_db", resolve_as_of(lakehouse_catalog, "v1").snapshots)

    fact, customers = first.snapshots["fact_transactions"], first.snapshots["dim_customers"]
    assert f'"financial_data_db"."fact_transactions" FOR VERSION AS OF {fact} AS f' in sql
    assert f'"financial_data_db"."dim_customers" FOR VERSION AS OF {customers} AS c' in sql
