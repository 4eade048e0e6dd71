"""History the sources forget, end to end: seed, materialize, apply a day of changes,
materialize again, add transactions, materialize a third time; then read what was published.

Three runs of the whole pipeline on small sources, shared by this module's tests (the suite's
servers and Spark session).
"""

from datetime import datetime, timezone
from decimal import Decimal

import psycopg2
import pytest
from dagster import materialize

from financial_assets.analytics import ANALYTICS_ASSETS
from financial_assets.lakehouse.publication import find_build, latest_publication
from financial_assets.lakehouse.tables import ANALYST_QUERY
from financial_assets.query.duckdb_views import connect
from financial_assets.raw import RAW_ASSETS
from financial_assets.sample_data.changes import apply_changes
from financial_assets.sample_data.config import SeedConfig, last_complete_day
from financial_assets.sample_data.seed import seed_sources
from financial_assets_tests.conftest import TEST_HISTORY_DAYS, _fresh_databases, pipeline_resources, temporary_lakehouse
from financial_assets_tests.test_end_to_end import SOURCE_TOTALS, token

CHANGES, CHANGES_SEED = 30, 7
CLOSED_ACCOUNT = 10_000  # an account with no transaction: one the source may delete


def _run(catalog, databases) -> str:
    result = materialize([*RAW_ASSETS, *ANALYTICS_ASSETS], resources=pipeline_resources(catalog, databases))
    assert result.success
    return latest_publication(catalog).version


def _execute(databases, statement: str, parameters=()) -> list[tuple]:
    with psycopg2.connect(databases.postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute(statement, parameters)
        rows = cursor.fetchall() if cursor.description else []
    connection.close()
    return rows


@pytest.fixture(scope="module")
def runs(server_settings, spark, tmp_path_factory):
    """(databases, catalog, [version of each run], the change report, the ids of the transactions
    added before the third run)."""
    with _fresh_databases(server_settings) as databases:
        seed_sources(databases.postgres_url, databases.mongo_url, databases.mongo_database,
                     SeedConfig(customers=40, transactions=600, as_of=last_complete_day(),
                                history_days=TEST_HISTORY_DAYS))
        _execute(databases, "INSERT INTO accounts VALUES (%s, 1, 'savings', 5.00, '2024-01-01')", (CLOSED_ACCOUNT,))
        with temporary_lakehouse(server_settings, tmp_path_factory.mktemp("lakehouse")) as catalog:
            first = _run(catalog, databases)
            report = apply_changes(databases.postgres_url, CHANGES, CHANGES_SEED)
            _execute(databases, "DELETE FROM accounts WHERE account_id = %s", (CLOSED_ACCOUNT,))
            second = _run(catalog, databases)
            # Transactions after the change: on the accounts of every customer, now.
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            added = _execute(databases, 'INSERT INTO transactions (account_id, transaction_type, amount, "timestamp") '
                             "SELECT min(account_id), 'deposit', 1.00, %s FROM accounts GROUP BY customer_id "
                             "RETURNING transaction_id", (now,))
            third = _run(catalog, databases)
            yield databases, catalog, [first, second, third], report, [row[0] for row in added]


def views(catalog, version: str):
    return connect(catalog, find_build(catalog, version).snapshots)


def rows(catalog, version: str, sql: str) -> list[tuple]:
    return views(catalog, version).execute(sql).fetchall()


@pytest.fixture(scope="module")
def changed_customers(runs) -> set[int]:
    """The customers whose current row (what analytics sees of them) the changes altered."""
    _, catalog, (first, second, _), _, _ = runs
    columns = "customer_key, name, email, phone, city, region"
    before = set(rows(catalog, first, f"SELECT {columns} FROM dim_customers"))
    after = set(rows(catalog, second, f"SELECT {columns} FROM dim_customers"))
    return {row[0] for row in before - after} & {row[0] for row in after}  # not those who left


def extraction_of(catalog, version: str) -> datetime:
    """When the customers the build ``version`` read were extracted: the changes' valid_from."""
    [(valid_from,)] = rows(catalog, version, "SELECT max(valid_from) FROM dim_customers_history")
    return valid_from


def test_changed_customers_have_an_old_version_closed_where_the_new_one_starts(runs, changed_customers):
    _, catalog, (_, second, _), _, _ = runs
    history = rows(catalog, second, "SELECT customer_key, valid_from, valid_to, is_current FROM dim_customers_history "
                   "ORDER BY customer_key, valid_from")
    versions = {key: [(f, t, c) for k, f, t, c in history if k == key] for key in changed_customers}
    changed_at = extraction_of(catalog, second)

    assert changed_customers
    for key, (old, new) in versions.items():
        assert (old[1], old[2]) == (changed_at, False), key
        assert (new[0], new[1], new[2]) == (changed_at, None, True), key


def test_unchanged_customers_keep_their_one_version(runs, changed_customers):
    _, catalog, (_, _, third), _, _ = runs
    counts = dict(rows(catalog, third, "SELECT customer_key, count(*) FROM dim_customers_history "
                       "WHERE customer_key <> -1 GROUP BY customer_key"))

    assert {key for key, versions in counts.items() if versions != 1} == changed_customers
    assert len(counts) == 40


def test_transactions_before_a_change_join_the_old_version_and_after_it_the_new(runs, changed_customers):
    _, catalog, (_, _, third), _, added = runs
    joined = rows(catalog, third, f"""
        SELECT f.transaction_id IN ({','.join(map(str, added))}) AS after_change, h.is_current, count(*)
        FROM fact_transactions f JOIN dim_customers_history h USING (customer_version_key)
        WHERE f.customer_key IN ({','.join(map(str, changed_customers))})
        GROUP BY ALL""")

    assert {(after, current) for after, current, _ in joined} == {(False, False), (True, True)}


def test_a_deleted_account_keeps_its_history_closed_and_flagged(runs):
    _, catalog, (_, second, _), _, _ = runs
    history = rows(catalog, second, "SELECT valid_to IS NOT NULL, is_current, is_deleted FROM dim_accounts_history "
                   f"WHERE account_key = {CLOSED_ACCOUNT}")

    assert history == [(True, False, True)]


def test_accounts_that_changed_type_have_two_versions(runs):
    _, catalog, (_, second, _), report, _ = runs
    switched = set(report.changed["account_type"])
    counts = dict(rows(catalog, second, "SELECT account_key, count(*) FROM dim_accounts_history GROUP BY account_key"))

    assert switched
    assert {counts[key] for key in switched} == {2}


def test_a_run_without_source_changes_writes_no_history(runs):
    _, catalog, (_, second, third), _, _ = runs
    before, after = find_build(catalog, second), find_build(catalog, third)

    for table in ("dim_customers_history", "dim_accounts_history"):
        assert after.snapshots[table] == before.snapshots[table], table
    assert after.mode == "incremental"


def test_each_live_account_has_one_balance_row_for_the_day_with_its_facts(runs):
    _, catalog, (_, _, third), _, added = runs
    [(day, accounts, rows_, balances_match, net)] = rows(catalog, third, """
        SELECT any_value(b.date_key), count(DISTINCT b.account_key), count(*),
               bool_and(b.balance IS NOT DISTINCT FROM a.balance), sum(b.net_signed_amount)
        FROM fact_account_balances_daily b JOIN dim_accounts a USING (account_key)""")
    [(live,)] = rows(catalog, third, "SELECT count(*) FROM dim_accounts WHERE account_key <> -1")

    assert (accounts, rows_, balances_match) == (live, live, True)
    assert day == int(datetime.now(timezone.utc).strftime("%Y%m%d"))
    assert net == Decimal("1.00") * len(added)  # today's facts: the deposits added


def test_the_analyst_query_still_reads_the_current_customers(runs):
    databases, catalog, (_, _, third), _, _ = runs
    expected: dict = {}
    for name, email, total in _execute(databases, SOURCE_TOTALS):
        expected[(name, token(email))] = expected.get((name, token(email)), Decimal(0)) + (total or Decimal(0))

    actual = {(name, email): total for name, email, total in rows(catalog, third, ANALYST_QUERY)}

    assert actual == expected


def test_apply_changes_is_deterministic_for_its_seed_and_the_data(server_settings):
    reports = []
    for _ in range(2):
        with _fresh_databases(server_settings) as databases:
            seed_sources(databases.postgres_url, databases.mongo_url, databases.mongo_database,
                         SeedConfig(customers=20, transactions=50, history_days=TEST_HISTORY_DAYS))
            reports.append([apply_changes(databases.postgres_url, 10, seed=3).changed for _ in range(2)])

    assert reports[0] == reports[1]
    assert reports[0][0] != reports[0][1]  # the second day starts from the first day's data


def test_the_declared_history_checks_name_the_tables_the_transform_keeps():
    from financial_assets.quality.specs import BALANCES_TABLE, HISTORY_TABLES
    from financial_assets.transform.history import BALANCES, HISTORIES

    assert HISTORY_TABLES == tuple((h.table, h.dimension, h.member_key, h.version_key) for h in HISTORIES)
    assert BALANCES_TABLE == BALANCES
