"""Seeded sources with every fault, through the raw zone, to a published star schema and the analyst's query.

The faults are source-data defects, a small share of the rows: the version is published with the
faulty rows kept and flagged, each defect check fails as a WARN and alerts once.
"""

import hashlib
import hmac
import json
import os
import subprocess
import sys
from decimal import Decimal

import psycopg2
import pytest
from dagster import DagsterInstance, build_sensor_context, materialize

from financial_assets.alerts import AlertCursor, AlertsResource, quality_alerts_sensor
from financial_assets.analytics import ANALYTICS_ASSETS
from financial_assets.lakehouse.publication import find_build, latest_publication
from financial_assets.lakehouse.tables import ANALYST_QUERY, STAR_TABLES
from financial_assets.query.duckdb_views import connect as connect_snapshots
from financial_assets.raw import RAW_ASSETS
from financial_assets.transform.build import MEMBER_TABLES
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
def instance(tmp_path_factory):
    """A Dagster instance with a run history (the alerts sensor reads it)."""
    with DagsterInstance.local_temp(tempdir=str(tmp_path_factory.mktemp("dagster_home"))) as instance:
        yield instance


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, seeded_sources, server_settings, spark, instance):
    """The seeded sources with faults, run once through every asset, shared by this module's tests."""
    from financial_assets.lakehouse.catalog import LakehouseCatalog

    databases, report = seeded_sources
    lakehouse = tmp_path_factory.mktemp("lakehouse")
    catalog = LakehouseCatalog(f"file://{lakehouse}", server_settings.catalog_url, name=f"e2e_{lakehouse.name}")
    result = materialize(
        [*RAW_ASSETS, *ANALYTICS_ASSETS],
        resources=pipeline_resources(catalog, databases),
        raise_on_error=False,
        instance=instance,
    )
    yield databases, report, result, catalog
    forget_catalog(catalog)


@pytest.fixture(scope="module")
def alert_log(pipeline, instance, tmp_path_factory) -> list[dict]:
    """The alert log after the sensor's tick over the pipeline's run (its cursor from the start of
    the instance's history, as if it had been watching before the run)."""
    path = tmp_path_factory.mktemp("alerts") / "alerts.jsonl"
    with build_sensor_context(instance=instance, cursor=AlertCursor(after_storage_id=0).to_json(),
                              resources={"alerts": AlertsResource(alert_log_path=str(path))}) as context:
        quality_alerts_sensor(context)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def built_version(result) -> str:
    [fact] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "fact_transactions"]
    return fact.materialization.metadata["version"].value


def connect(catalog, version: str):
    """DuckDB views over the snapshots of the build ``version``."""
    return connect_snapshots(catalog, find_build(catalog, version).snapshots)


def test_faulty_sources_are_published_with_their_defects_flagged(pipeline):
    _, _, result, catalog = pipeline

    assert result.success
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} == {
        "raw_customers", "raw_accounts", "raw_transactions", "raw_transaction_events",
        "dim_customers", "dim_accounts", "dim_dates", "dim_customers_history", "dim_accounts_history",
        "fact_transactions", "fact_account_balances_daily", "published_star_schema",
    }
    assert latest_publication(catalog).version == built_version(result)


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
        # Rewritten, except the members' tables: made of the same raw snapshots, they are kept.
        assert (snapshot == snapshots["second"][table]) == (table in MEMBER_TABLES), table
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


def check_severities(result) -> dict:
    return {
        (e.event_specific_data.asset_key.to_user_string(), e.event_specific_data.check_name):
            e.event_specific_data.severity.value
        for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


# Every fault class of `seed --with-faults`, what becomes of it, and the check that reports it with
# the exact count. All are source defects, a small share of the rows: none blocks. (Integrity
# failures, which always block, are the pipeline's own bugs: no source row can cause one; a large
# share of a defect blocks, see test_quality_gate.py.)
#   flag:       published; the source rows' facts hold the defect code; the check WARNs, counting them
#   warn:       published; not a fact row's defect (an event, a customer): the check WARNs, counting them
#   quarantine: the document cannot be represented: raw.transaction_events_quarantine, reconciled
#               (source = raw + quarantined); no_quarantined_documents WARNs (asserted below)
#   normalised: not a defect (see test_messy_emails_are_normalised_into_one_token_not_flagged)
FAULTS = {
    "orphan_transactions": ("flag", "unknown_members", "account_unknown"),
    "orphan_accounts": ("flag", "unknown_members", "customer_unknown"),  # their transactions are flagged
    "null_amounts": ("flag", "amounts_present_and_positive", "amount_missing"),
    "negative_amounts": ("flag", "amounts_present_and_positive", "amount_not_positive"),
    "unknown_transaction_type": ("flag", "accepted_transaction_types", "transaction_type_unknown"),
    "null_timestamps": ("flag", "transaction_times_valid", "time_missing"),
    "future_timestamps": ("flag", "transaction_times_valid", "time_in_future"),
    "out_of_range_fraud_score": ("flag", "fraud_scores_in_range", "fraud_score_out_of_range"),
    "unknown_device_type": ("flag", "accepted_device_types", "device_type_unknown"),
    "duplicate_events": ("flag", "duplicate_events", "event_duplicated"),
    "events_for_unknown_transactions": ("warn", "events_match_transactions", "events_for_unknown_transactions"),
    "null_emails": ("warn", "emails_present", "customers_without_email"),
    "string_fraud_score": ("quarantine", "no_quarantined_documents", None),
    "missing_geolocation": ("quarantine", "no_quarantined_documents", None),
    "string_transaction_id": ("quarantine", "no_quarantined_documents", None),
    "missing_transaction_id": ("quarantine", "no_quarantined_documents", None),
    "messy_emails": ("normalised", None, None),
}
QUARANTINE_FAULTS = [fault for fault, (fate, _, _) in FAULTS.items() if fate == "quarantine"]
FLAGGED = {fault: spec for fault, spec in FAULTS.items() if spec[0] == "flag"}
CHECK_ASSETS = {"emails_present": "dim_customers", "no_quarantined_documents": "raw_transaction_events"}


def test_the_fault_table_covers_the_whole_catalogue():
    from financial_assets.sample_data.faults import KINDS

    assert sorted(FAULTS) == sorted(KINDS)


def fault_transaction_ids(report, fault: str) -> list[int]:
    if fault == "orphan_accounts":
        return sorted(report.faults[fault].details["transaction_ids"])
    return sorted(report.fault_keys(fault))


@pytest.mark.parametrize("fault", [f for f, (fate, _, _) in FAULTS.items() if fate in ("flag", "warn")])
def test_each_fault_class_fails_its_check_as_a_warning_with_the_exact_count(pipeline, fault):
    _, report, result, _ = pipeline
    _, check, counter = FAULTS[fault]
    asset = CHECK_ASSETS.get(check, "fact_transactions")
    passed, metadata = check_metadata(result)[(asset, check)]

    assert (passed, check_severities(result)[(asset, check)]) == (False, "WARN")
    assert metadata[counter] == len(fault_transaction_ids(report, fault))


@pytest.mark.parametrize("fault", list(FLAGGED))
def test_the_published_rows_of_each_flagged_fault_are_exactly_its_source_rows(pipeline, fault):
    _, report, result, catalog = pipeline
    _, _, code = FLAGGED[fault]
    flagged = connect(catalog, built_version(result)).execute(
        f"SELECT transaction_id FROM fact_transactions WHERE contains(defects, '{code}') ORDER BY 1").fetchall()

    assert [key for (key,) in flagged] == fault_transaction_ids(report, fault)


def test_the_clean_rows_carry_no_defect(pipeline):
    _, report, result, catalog = pipeline
    faulty = {key for fault in FLAGGED for key in fault_transaction_ids(report, fault)}
    clean = connect(catalog, built_version(result)).execute(
        "SELECT count(*) FROM fact_transactions WHERE cardinality(defects) = 0").fetchone()[0]

    assert clean == report.rows["transactions"] - len(faulty)


def test_the_alert_log_holds_one_warning_per_failed_defect_check_that_says_what_to_do(pipeline, alert_log):
    from financial_assets.quality.defects import DEFECT_CHECKS

    by_check = {}
    for alert in alert_log:
        by_check.setdefault(alert["check_name"], []).append(alert)
    for check in DEFECT_CHECKS:
        [alert] = by_check[check.name]
        assert alert["severity"] == "WARN"
        assert f"financial-assets defects --check {check.name}" in alert["message"]
        assert alert["details"]["query"].startswith("SELECT * FROM fact_transactions WHERE contains(defects, ")
        assert alert["details"]["sample_transaction_ids"] and alert["details"]["max_share"] == check.max_share
    assert not [alert for alert in alert_log if alert["kind"] == "run_failed"]


def test_the_defects_command_lists_the_flagged_rows_of_the_published_version(pipeline, tmp_path, monkeypatch, capsys):
    from financial_assets.cli import main
    from financial_assets_tests.star_builds import cli_environment

    _, report, _, catalog = pipeline
    for name, value in cli_environment(catalog, tmp_path / "analytics.duckdb").items():
        monkeypatch.setenv(name, value)

    def defects(*args) -> list[dict]:
        assert main(["defects", *args, "--format", "json"]) == 0
        return json.loads(capsys.readouterr().out)

    counts = {row["code"]: row["flagged_rows"] for row in defects()}
    rows = defects("--code", "amount_missing")

    assert counts["amount_missing"] == len(report.fault_keys("null_amounts"))
    assert counts["time_too_old"] == 0
    assert [row["transaction_id"] for row in rows] == sorted(report.fault_keys("null_amounts"))
    assert all(row["amount"] is None and row["defects"] == ["amount_missing"] for row in rows)


def test_documents_that_break_the_schema_are_flagged_by_the_quarantine_check(pipeline):
    _, report, result, _ = pipeline
    passed, metadata = check_metadata(result)[("raw_transaction_events", "no_quarantined_documents")]

    assert passed is False
    assert metadata["quarantined_this_load"] == sum(len(report.fault_keys(kind)) for kind in QUARANTINE_FAULTS)


def test_no_row_is_unaccounted_for_and_every_integrity_check_passes(pipeline):
    _, _, result, _ = pipeline
    checks = check_metadata(result)

    for raw in ("raw_customers", "raw_accounts", "raw_transactions", "raw_transaction_events"):
        assert checks[(raw, "reconciles_with_source")][0] is True, raw
    assert checks[("fact_transactions", "reconciles_with_raw")][0] is True
    assert checks[("fact_transactions", "foreign_keys_resolve")][0] is True
    for table in STAR_TABLES:
        assert checks[(table, "schema_matches_contract")][0] is True, table
    for table, check in (("dim_customers_history", "validity_intervals_do_not_overlap"),
                         ("dim_accounts_history", "one_current_version_per_live_member"),
                         ("fact_transactions", "history_keys_resolve"),
                         ("fact_account_balances_daily", "net_amounts_reconcile_with_facts")):
        assert checks[(table, check)][0] is True, (table, check)


def test_messy_emails_are_normalised_into_one_token_not_flagged(pipeline):
    _, report, result, catalog = pipeline
    clean_id, messy_id = report.faults["messy_emails"].details["same_email_as"][0]
    tokens = connect(catalog, built_version(result)).execute(
        f"SELECT customer_key, email FROM dim_customers WHERE customer_key IN ({clean_id}, {messy_id})"
    ).fetchall()

    assert len({email for _, email in tokens}) == 1 and len(tokens) == 2
