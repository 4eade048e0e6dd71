"""Seeded sources with every fault, through the raw zone, to a star-schema version and the analyst's query.

The faults make blocking checks fail, so the version is built and audited but never published:
these tests read the build's audit branches directly.
"""

import hashlib
import hmac
import os
import subprocess
import sys
from decimal import Decimal

import psycopg2
import pytest
from dagster import DagsterInstance, materialize

from financial_assets.analytics import ANALYTICS_ASSETS
from financial_assets.lakehouse.publication import find_build, latest_publication
from financial_assets.query.duckdb_views import ANALYST_QUERY
from financial_assets.query.duckdb_views import connect as connect_snapshots
from financial_assets.raw import RAW_ASSETS
from financial_assets_tests.conftest import TEST_PII_KEY as PII_KEY
from financial_assets_tests.conftest import forget_catalog, pipeline_resources

# From the source, the analyst's totals: every transaction, its customer if there is one.
SOURCE_TOTALS = """
SELECT COALESCE(c.name, 'Unknown customer'), lower(regexp_replace(c.email, '\\s', '', 'g')), SUM(t.amount)
FROM transactions t
LEFT JOIN accounts a ON a.account_id = t.account_id
LEFT JOIN customers c ON c.customer_id = a.customer_id
GROUP BY 1, 2
"""


def token(email: str | None) -> str | None:
    if not email:
        return None
    return hmac.new(PII_KEY.encode(), email.encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, seeded_sources, server_settings, spark):
    """The seeded sources with faults, run once through every asset, shared by this module's tests."""
    from financial_assets.lakehouse.catalog import LakehouseCatalog

    databases, report = seeded_sources
    lakehouse = tmp_path_factory.mktemp("lakehouse")
    catalog = LakehouseCatalog(f"file://{lakehouse}", server_settings.catalog_url, name=f"e2e_{lakehouse.name}")
    result = materialize(
        [*RAW_ASSETS, *ANALYTICS_ASSETS],
        resources=pipeline_resources(catalog, databases),
        raise_on_error=False,
        instance=DagsterInstance.ephemeral(),
    )
    yield databases, report, result, catalog
    forget_catalog(catalog)


def built_version(result) -> str:
    [fact] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "fact_transactions"]
    return fact.materialization.metadata["version"].value


def connect(catalog, version: str):
    """DuckDB views over the build ``version``'s audit branches (it was never published)."""
    return connect_snapshots(catalog, find_build(catalog, version).snapshots)


def test_faulty_sources_are_extracted_and_built_but_never_published(pipeline):
    _, _, result, catalog = pipeline

    assert not result.success
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} == {
        "raw_customers", "raw_accounts", "raw_transactions", "raw_transaction_events",
        "dim_customers", "dim_accounts", "dim_dates", "fact_transactions",
    }
    assert "published_star_schema" not in {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert latest_publication(catalog) is None


def test_no_source_transaction_is_lost_or_duplicated(pipeline):
    _, report, result, catalog = pipeline
    views = connect(catalog, built_version(result))

    assert views.execute("SELECT count(*), count(DISTINCT transaction_id) FROM fact_transactions").fetchone() == (
        report.rows["transactions"], report.rows["transactions"]
    )


def test_the_analyst_query_totals_equal_the_source_totals(pipeline):
    databases, _, result, catalog = pipeline
    with psycopg2.connect(databases.postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute(SOURCE_TOTALS)
        expected: dict = {}
        for name, email, total in cursor.fetchall():
            key = (name, token(email))
            expected[key] = expected.get(key, Decimal(0)) + (total or Decimal(0))
    connection.close()

    rows = connect(catalog, built_version(result)).execute(ANALYST_QUERY).fetchall()
    actual = {(name, email): total or Decimal(0) for name, email, total in rows}

    assert actual == {key: total for key, total in expected.items()}


def test_orphan_transactions_are_kept_against_the_unknown_account(pipeline):
    _, report, result, catalog = pipeline
    orphans = report.fault_keys("orphan_transactions")
    views = connect(catalog, built_version(result))
    keys = views.execute(
        f"SELECT DISTINCT account_key FROM fact_transactions WHERE transaction_id IN ({','.join(map(str, orphans))})"
    ).fetchall()

    assert keys == [(-1,)]
    fact = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "fact_transactions"]
    assert fact[0].materialization.metadata["unknown_account_rows"].value == len(orphans)


def test_duplicate_events_are_counted_and_do_not_double_count(pipeline):
    _, report, result, _ = pipeline
    [fact] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "fact_transactions"]

    assert fact.materialization.metadata["duplicate_events"].value == len(report.fault_keys("duplicate_events"))


def test_rebuilding_from_the_same_raw_data_gives_identical_tables(pipeline):
    _, _, first, catalog = pipeline
    second = materialize([ANALYTICS_ASSETS[0]], raise_on_error=False, instance=DagsterInstance.ephemeral(),
                         resources=pipeline_resources(catalog))
    snapshots = {
        run: {e.asset_key.to_user_string(): e.materialization.metadata["snapshot_id"].value
              for e in result.get_asset_materialization_events() if "branch" in e.materialization.metadata}
        for run, result in (("first", first), ("second", second))
    }
    first_rows, second_rows = (
        connect_snapshots(catalog, {t: int(s) for t, s in snapshots[run].items()}) for run in ("first", "second")
    )

    for table, snapshot in snapshots["first"].items():
        assert snapshot != snapshots["second"][table]
        ordered = f"SELECT * FROM {table} ORDER BY ALL"
        assert first_rows.execute(ordered).fetchall() == second_rows.execute(ordered).fetchall(), table


def test_extraction_alone_never_starts_a_jvm(seeded_sources, tmp_path):
    databases, _ = seeded_sources
    script = (
        "from dagster import materialize\n"
        "from financial_assets.definitions import defs\n"
        "from financial_assets.raw import RAW_ASSETS\n"
        "assert materialize(RAW_ASSETS, resources=defs.resources).success\n"
        "from pyspark import SparkContext\n"
        "print('jvm' if SparkContext._jvm is not None else 'no jvm')\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **databases.env(tmp_path)},
        capture_output=True, text=True, timeout=300,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().endswith("no jvm")


def check_metadata(result) -> dict:
    return {
        (e.event_specific_data.asset_key.to_user_string(), e.event_specific_data.check_name):
            (e.event_specific_data.passed, {k: v.value for k, v in e.event_specific_data.metadata.items()})
        for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


# Which check catches each fault class of `seed --with-faults`, and the count it must report.
FAULT_CHECKS = {
    "orphan_transactions": ("fact_transactions", "unknown_members", "facts_with_unknown_account"),
    "null_amounts": ("fact_transactions", "amounts_present_and_positive", "null_amounts"),
    "negative_amounts": ("fact_transactions", "amounts_present_and_positive", "non_positive_amounts"),
    "unknown_transaction_type": ("fact_transactions", "accepted_transaction_types", "unexpected_rows"),
    "null_timestamps": ("fact_transactions", "transaction_times_valid", "missing_timestamps"),
    "future_timestamps": ("fact_transactions", "transaction_times_valid", "future_timestamps"),
    "null_emails": ("dim_customers", "emails_present", "customers_without_email"),
    "out_of_range_fraud_score": ("fact_transactions", "fraud_scores_in_range", "out_of_range"),
    "unknown_device_type": ("fact_transactions", "accepted_device_types", "unexpected_rows"),
    "duplicate_events": ("fact_transactions", "duplicate_events", "duplicate_events"),
    "events_for_unknown_transactions": ("fact_transactions", "events_match_transactions", "events_for_unknown_transactions"),
}
QUARANTINE_FAULTS = ["string_fraud_score", "missing_geolocation", "string_transaction_id", "missing_transaction_id"]


@pytest.mark.parametrize("fault", list(FAULT_CHECKS))
def test_each_fault_class_is_flagged_by_its_check_with_the_exact_count(pipeline, fault):
    _, report, result, _ = pipeline
    asset, check, counter = FAULT_CHECKS[fault]
    passed, metadata = check_metadata(result)[(asset, check)]

    assert passed is False
    assert metadata[counter] == len(report.fault_keys(fault))


def test_orphan_accounts_are_flagged_through_their_transactions_unknown_customer(pipeline):
    _, report, result, _ = pipeline
    _, metadata = check_metadata(result)[("fact_transactions", "unknown_members")]
    orphaned = len(report.fault_keys("orphan_transactions")) + len(
        report.faults["orphan_accounts"].details["transaction_ids"]
    )

    assert metadata["facts_with_unknown_customer"] == orphaned


def test_documents_that_break_the_schema_are_flagged_by_the_quarantine_check(pipeline):
    _, report, result, _ = pipeline
    passed, metadata = check_metadata(result)[("raw_transaction_events", "no_quarantined_documents")]

    assert passed is False
    assert metadata["quarantined_this_load"] == sum(len(report.fault_keys(kind)) for kind in QUARANTINE_FAULTS)


def test_no_row_is_unaccounted_for(pipeline):
    _, _, result, _ = pipeline
    checks = check_metadata(result)

    for raw in ("raw_customers", "raw_accounts", "raw_transactions", "raw_transaction_events"):
        assert checks[(raw, "reconciles_with_source")][0] is True, raw
    assert checks[("fact_transactions", "reconciles_with_raw")][0] is True
    assert checks[("fact_transactions", "foreign_keys_resolve")][0] is True


def test_messy_emails_are_normalised_into_one_token_not_flagged(pipeline):
    _, report, result, catalog = pipeline
    clean_id, messy_id = report.faults["messy_emails"].details["same_email_as"][0]
    tokens = connect(catalog, built_version(result)).execute(
        f"SELECT customer_key, email FROM dim_customers WHERE customer_key IN ({clean_id}, {messy_id})"
    ).fetchall()

    assert len({email for _, email in tokens}) == 1 and len(tokens) == 2
