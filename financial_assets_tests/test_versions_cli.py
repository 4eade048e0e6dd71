"""`financial-assets versions` and `financial-assets rollback VERSION`, on real builds and
publications in the local Iceberg catalog."""

import duckdb
import pytest

from financial_assets.lakehouse.publication import latest_publication, publications
from financial_assets.query.catalogs import DuckDBFile
from financial_assets_tests.star_builds import build, build_and_publish, cli_environment

AMOUNTS = {1: ["10.00", "20.00"], 2: ["5.00"]}
OTHER = {1: ["1.00"], 2: ["2.00"]}


@pytest.fixture
def duckdb_path(tmp_path):
    return tmp_path / "analytics.duckdb"


@pytest.fixture
def cli(lakehouse_catalog, duckdb_path, monkeypatch, capsys):
    """`financial-assets ARGS...` on the test's lakehouse: (exit code, stdout, stderr)."""
    from financial_assets.cli import main

    for name, value in cli_environment(lakehouse_catalog, duckdb_path).items():
        monkeypatch.setenv(name, value)

    def run(*args):
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def listed(output: str) -> dict[str, list[str]]:
    """version -> the words of its line in `financial-assets versions`."""
    return {line.split()[0]: line.split() for line in output.splitlines()[1:]}


def test_versions_lists_builds_newest_first(lakehouse_catalog, cli):
    for version in ("v1", "v2", "v3"):
        build_and_publish(lakehouse_catalog, version, AMOUNTS)

    _, out, _ = cli("versions")

    assert list(listed(out)) == ["v3", "v2", "v1"]


def test_versions_shows_the_state_of_each_build(lakehouse_catalog, cli):
    build_and_publish(lakehouse_catalog, "v1", AMOUNTS)
    build_and_publish(lakehouse_catalog, "v2", AMOUNTS)
    build_and_publish(lakehouse_catalog, "v3", AMOUNTS)
    build(lakehouse_catalog, "v4", AMOUNTS, failed_checks=[("fact_transactions", "foreign_keys_resolve", "ERROR")])
    build(lakehouse_catalog, "v5", AMOUNTS)

    _, out, _ = cli("versions", "--keep", "2")

    states = {version: words[4] for version, words in listed(out).items()}
    assert states == {"v5": "built", "v4": "blocked", "v3": "PUBLISHED", "v2": "kept", "v1": "retired"}


def test_versions_shows_built_at_mode_fact_rows_and_failed_checks(lakehouse_catalog, cli):
    build(lakehouse_catalog, "v1", AMOUNTS, failed_checks=[
        ("fact_transactions", "foreign_keys_resolve", "ERROR"), ("fact_transactions", "event_match_rate", "WARN"),
    ])

    _, out, _ = cli("versions")

    [line] = out.splitlines()[1:]
    version, built_date, built_time, mode, state, fact_rows, *failed = line.split()
    assert (version, mode, state, fact_rows) == ("v1", "full", "blocked", "3")
    assert " ".join(failed) == "fact_transactions.foreign_keys_resolve, fact_transactions.event_match_rate (warn)"
    assert len(built_date) == 10 and len(built_time) == 8


def test_rollback_publishes_the_kept_version_again(lakehouse_catalog, cli):
    first = build_and_publish(lakehouse_catalog, "v1", AMOUNTS)
    build_and_publish(lakehouse_catalog, "v2", OTHER)

    code, out, _ = cli("rollback", "v1")

    current = latest_publication(lakehouse_catalog)
    assert code == 0 and out.startswith("readers now see version v1")
    assert (current.version, current.kind, current.snapshots) == ("v1", "rollback", first.snapshots)


def test_rollback_refreshes_the_duckdb_file(lakehouse_catalog, cli, duckdb_path):
    build_and_publish(lakehouse_catalog, "v1", AMOUNTS)
    build_and_publish(lakehouse_catalog, "v2", OTHER)
    cli("query")

    cli("rollback", "v1")

    assert DuckDBFile(str(duckdb_path)).follows(latest_publication(lakehouse_catalog))
    with duckdb.connect(str(duckdb_path), read_only=True) as connection:
        assert connection.execute("SELECT sum(amount) FROM fact_transactions").fetchone()[0] == 35


def test_rollback_to_a_version_outside_the_window_is_refused_in_one_line(lakehouse_catalog, cli):
    build_and_publish(lakehouse_catalog, "v1", AMOUNTS)
    build_and_publish(lakehouse_catalog, "v2", AMOUNTS)
    build_and_publish(lakehouse_catalog, "v3", AMOUNTS)

    code, _, err = cli("rollback", "v1", "--keep", "2")

    assert code == 2
    assert err == "financial-assets: v1 is not a kept earlier publication (kept: v2)\n"
    assert latest_publication(lakehouse_catalog).version == "v3"


def test_rollback_to_a_version_whose_snapshots_expired_is_refused_in_one_line(lakehouse_catalog, cli):
    from datetime import datetime, timezone

    from financial_assets.maintenance.lakehouse import expire_snapshots, tidy_refs

    build_and_publish(lakehouse_catalog, "v1", AMOUNTS)
    build_and_publish(lakehouse_catalog, "v2", OTHER)
    tidy_refs(lakehouse_catalog, keep=1)
    expire_snapshots(lakehouse_catalog, older_than=datetime.now(timezone.utc))
    count = len(publications(lakehouse_catalog))

    code, _, err = cli("rollback", "v1")

    assert code == 2
    assert err.startswith("financial-assets: version v1 as published at ") and "maintenance expired" in err
    assert len(err.splitlines()) == 1 and len(publications(lakehouse_catalog)) == count
