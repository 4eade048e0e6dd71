"""The sample-data generator (`financial-assets seed`) against the real local servers."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import bson
import psycopg2
import pytest

from financial_assets.cli import main
from financial_assets.sample_data import CATALOGUE, SeedConfig, seed_sources
from financial_assets.sample_data.report import SeedReport
from financial_assets.sample_data.schema import ACCOUNT_TYPES, DEVICE_TYPES, TRANSACTION_TYPES
from financial_assets.settings import Settings
from financial_assets.sources import connect_document_store

from .conftest import SourceDatabases

AS_OF = date(2024, 6, 30)
SMALL = dict(customers=60, accounts_per_customer=3, transactions=900, as_of=AS_OF, event_ratio=0.9)
TABLE_KEYS = {"customers": "customer_id", "accounts": "account_id", "transactions": "transaction_id"}

services = pytest.mark.services


def seed(databases: SourceDatabases, **overrides) -> SeedReport:
    config = SeedConfig(**{**SMALL, **overrides})
    return seed_sources(databases.postgres_url, databases.mongo_url, databases.mongo_database, config)


def query(databases: SourceDatabases, sql: str, params=None) -> list[tuple]:
    with psycopg2.connect(databases.postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    connection.close()
    return rows


def events(databases: SourceDatabases) -> list[dict]:
    with connect_document_store(databases.mongo_url, databases.mongo_database) as database:
        return list(database.transaction_events.find().sort("_id", 1))


def collections(databases: SourceDatabases) -> list[str]:
    with connect_document_store(databases.mongo_url, databases.mongo_database) as database:
        return sorted(database.list_collection_names())


def counts(databases: SourceDatabases) -> dict[str, int]:
    result = {table: query(databases, f"SELECT count(*) FROM {table}")[0][0] for table in TABLE_KEYS}
    result["transaction_events"] = len(events(databases))
    return result


def fingerprints(databases: SourceDatabases) -> dict[str, str]:
    """A hash of each table's rows in key order, and of the event documents in _id order."""
    result = {}
    for table, key in TABLE_KEYS.items():
        [(digest,)] = query(
            databases, f"SELECT md5(string_agg(t::text, '|' ORDER BY t.{key})) FROM {table} AS t"
        )
        result[table] = digest
    digest = hashlib.sha256()
    for document in events(databases):
        digest.update(bson.encode(document))
    result["transaction_events"] = digest.hexdigest()
    return result


# --- counts, determinism, idempotence ---------------------------------------------------------


@services
def test_counts_match_the_config(source_databases):
    report = seed(source_databases)

    expected = {"customers": 60, "accounts": 180, "transactions": 900, "transaction_events": 810}
    assert counts(source_databases) == expected
    assert report.rows == expected
    assert report.clean_rows == expected
    assert report.faults == {}


@services
def test_every_customer_has_exactly_k_accounts(source_databases):
    seed(source_databases)

    per_customer = query(source_databases, "SELECT count(*) FROM accounts GROUP BY customer_id")
    assert len(per_customer) == 60
    assert {count for (count,) in per_customer} == {3}


@services
def test_same_seed_and_as_of_give_identical_data(source_databases, server_settings):
    seed(source_databases, with_faults=True)
    first = fingerprints(source_databases)
    with _fresh_databases(server_settings) as other:
        seed(other, with_faults=True)
        assert fingerprints(other) == first


_FINGERPRINT_SCRIPT = """
import hashlib, io, sys
from datetime import date
import bson, pyarrow.csv
from financial_assets.sample_data import SeedConfig, faults, generate
config = SeedConfig(customers=30, transactions=500, as_of=date(2024, 6, 30), with_faults=True)
digest = hashlib.sha256()
def add(table):
    buffer = io.BytesIO(); pyarrow.csv.write_csv(table, buffer); digest.update(buffer.getvalue())
customers = list(generate.customer_blocks(config))
accounts = generate.plan_accounts(config)
blocks = list(generate.transaction_blocks(config, accounts))
pool = generate.geolocation_pool(config.seed)
for table in [*customers, *accounts.tables(), *(block.table() for block in blocks)]:
    add(table)
documents = [d for block in blocks for d in generate.event_documents(config, block, pool)]
fault_set = faults.plan_faults(config, customers[0].slice(0, 1).to_pylist()[0], blocks[0])
for table in fault_set.tables().values():
    add(table)
for document in documents + fault_set.events:
    digest.update(bson.encode(document))
digest.update(repr(fault_set.records).encode())
print(digest.hexdigest())
"""


def test_generated_data_is_identical_across_processes():
    """No hidden dependence on hash randomisation, the clock or global random state."""
    outputs = {
        subprocess.run(
            [sys.executable, "-c", _FINGERPRINT_SCRIPT],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True, text=True, check=True,
        ).stdout
        for hash_seed in ("1", "2")
    }
    assert len(outputs) == 1


@services
def test_a_different_seed_gives_different_data(source_databases):
    seed(source_databases, seed=1)
    first = fingerprints(source_databases)
    seed(source_databases, seed=2)
    second = fingerprints(source_databases)

    assert all(first[table] != second[table] for table in first)


@services
def test_a_different_as_of_moves_the_history(source_databases):
    seed(source_databases, as_of=date(2023, 1, 31))
    [(latest,)] = query(source_databases, 'SELECT max("timestamp") FROM transactions')
    assert latest.date() == date(2023, 1, 31)


@services
def test_history_days_bound_the_transaction_history(source_databases):
    seed(source_databases, history_days=30)
    [(earliest, latest, days)] = query(
        source_databases, 'SELECT min("timestamp"), max("timestamp"), count(DISTINCT "timestamp"::date) FROM transactions')

    assert earliest >= datetime(2024, 6, 1) and latest < datetime(2024, 7, 1)  # the 30 days ending at as-of
    assert days == 30


@services
def test_reseeding_replaces_rather_than_duplicates(source_databases):
    first = seed(source_databases, with_faults=True)
    before = fingerprints(source_databases)
    second = seed(source_databases, with_faults=True)

    assert counts(source_databases) == first.rows == second.rows
    assert fingerprints(source_databases) == before
    assert collections(source_databases) == ["transaction_events"]  # no staging left behind

    seed(source_databases, customers=10, transactions=50)
    assert counts(source_databases) == {
        "customers": 10, "accounts": 30, "transactions": 50, "transaction_events": 45
    }


@services
def test_serial_sequences_continue_after_the_seeded_ids(source_databases):
    report = seed(source_databases, with_faults=True)

    [(customer_id,)] = query(
        source_databases, "INSERT INTO customers (name) VALUES ('New') RETURNING customer_id"
    )
    [(transaction_id,)] = query(
        source_databases,
        "INSERT INTO transactions (account_id, transaction_type, amount) "
        "VALUES (1, 'deposit', 1.00) RETURNING transaction_id",
    )
    assert customer_id == report.rows["customers"] + 1
    assert transaction_id == report.rows["transactions"] + 1


# --- the schema -------------------------------------------------------------------------------

REFERENCE_COLUMNS = {
    ("customers", "customer_id"): ("integer", None, None, None),
    ("customers", "name"): ("character varying", 100, None, None),
    ("customers", "email"): ("character varying", 100, None, None),
    ("customers", "phone"): ("character varying", 20, None, None),
    ("customers", "address"): ("text", None, None, None),
    ("accounts", "account_id"): ("integer", None, None, None),
    ("accounts", "customer_id"): ("integer", None, None, None),
    ("accounts", "account_type"): ("character varying", 50, None, None),
    ("accounts", "balance"): ("numeric", None, 12, 2),
    ("accounts", "opened_at"): ("timestamp without time zone", None, None, None),
    ("transactions", "transaction_id"): ("integer", None, None, None),
    ("transactions", "account_id"): ("integer", None, None, None),
    ("transactions", "transaction_type"): ("character varying", 20, None, None),
    ("transactions", "amount"): ("numeric", None, 12, 2),
    ("transactions", "timestamp"): ("timestamp without time zone", None, None, None),
}


@services
def test_schema_matches_the_reference(source_databases):
    seed(source_databases)

    columns = query(
        source_databases,
        "SELECT table_name, column_name, data_type, character_maximum_length, "
        "CASE WHEN data_type = 'numeric' THEN numeric_precision END, "
        "CASE WHEN data_type = 'numeric' THEN numeric_scale END, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
    )
    assert {(t, c): tuple(rest[:4]) for t, c, *rest in columns} == REFERENCE_COLUMNS
    for table, column, *_, nullable, default in columns:
        is_key = TABLE_KEYS[table] == column
        assert nullable == ("NO" if is_key else "YES"), (table, column)
        if is_key:  # SERIAL
            assert default == f"nextval('{table}_{column}_seq'::regclass)"
        else:
            assert default is None, (table, column)

    constraints = query(
        source_databases,
        "SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
    )
    assert constraints == [
        ("accounts", "f", "FOREIGN KEY (customer_id) REFERENCES customers(customer_id)"),
        ("accounts", "p", "PRIMARY KEY (account_id)"),
        ("customers", "p", "PRIMARY KEY (customer_id)"),
        ("transactions", "f", "FOREIGN KEY (account_id) REFERENCES accounts(account_id)"),
        ("transactions", "p", "PRIMARY KEY (transaction_id)"),
    ]
    indexes = query(source_databases, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1")
    assert indexes == [("accounts_pkey",), ("customers_pkey",), ("transactions_pkey",)]

    with connect_document_store(source_databases.mongo_url, source_databases.mongo_database) as database:
        assert database.list_collection_names() == ["transaction_events"]
        assert list(database.transaction_events.index_information()) == ["_id_"]


# --- clean data -------------------------------------------------------------------------------


@services
def test_clean_data_uses_only_accepted_values(source_databases):
    seed(source_databases)

    assert query(source_databases, "SELECT min(amount) > 0, bool_and(amount = round(amount, 2)) FROM transactions") == [
        (True, True)
    ]
    types = query(source_databases, "SELECT DISTINCT transaction_type FROM transactions ORDER BY 1")
    assert [t for (t,) in types] == sorted(TRANSACTION_TYPES)
    account_types = query(source_databases, "SELECT DISTINCT account_type FROM accounts ORDER BY 1")
    assert [t for (t,) in account_types] == sorted(ACCOUNT_TYPES)
    nulls = query(
        source_databases,
        "SELECT count(*) FILTER (WHERE name IS NULL OR email IS NULL OR phone IS NULL OR address IS NULL), "
        "count(*) FILTER (WHERE email <> lower(btrim(email)) OR email !~ '^[^@\\s]+@[^@\\s]+$'), "
        "count(*) FILTER (WHERE strpos(address, chr(10)) = 0), max(length(phone)) FROM customers",
    )
    assert nulls[0][:3] == (0, 0, 0)
    assert nulls[0][3] <= 20

    transaction_ids = {t for (t,) in query(source_databases, "SELECT transaction_id FROM transactions")}
    documents = events(source_databases)
    assert len({d["transaction_id"] for d in documents}) == len(documents)  # one event per transaction
    for document in documents:
        assert list(document) == ["_id", "transaction_id", "device_type", "ip_address", "geolocation", "fraud_score"]
        assert isinstance(document["transaction_id"], int) and document["transaction_id"] in transaction_ids
        assert document["device_type"] in DEVICE_TYPES
        assert ipaddress.IPv4Address(document["ip_address"]).is_global
        assert set(document["geolocation"]) == {"country", "city"}
        score = document["fraud_score"]
        assert isinstance(score, float) and 0.01 <= score <= 1.0 and round(score, 2) == score


@services
def test_transactions_never_precede_their_account_opening(source_databases):
    seed(source_databases, transactions=3000)

    rows = query(
        source_databases,
        'SELECT count(*) FILTER (WHERE t."timestamp" < a.opened_at), min(t."timestamp"), max(t."timestamp"), '
        "max(a.opened_at) FROM transactions t JOIN accounts a USING (account_id)",
    )
    before_opening, earliest, latest, last_opened = rows[0]
    assert before_opening == 0
    assert earliest >= datetime(2023, 7, 2) and latest < datetime(2024, 7, 1)  # the year ending at as-of
    assert last_opened < datetime(2024, 6, 30)


@services
def test_event_ids_carry_the_transaction_time_and_follow_insertion_order(source_databases):
    seed(source_databases)

    times = dict(query(source_databases, 'SELECT transaction_id, "timestamp" FROM transactions'))
    documents = events(source_databases)
    for document in documents:
        assert document["_id"].generation_time.replace(tzinfo=None) == times[document["transaction_id"]]
    counters = [int.from_bytes(d["_id"].binary[4:], "big") for d in documents]
    assert counters == list(range(len(documents)))


# --- faults -----------------------------------------------------------------------------------


def _sql(statement: str):
    def detect(databases, documents):
        return {key for (key,) in query(databases, statement, {"after_as_of": AS_OF + timedelta(days=1)})}

    return detect


def _events(predicate, key=lambda d: d["transaction_id"]):
    def detect(databases, documents):
        return {key(d) for d in documents if predicate(d, databases)}

    return detect


def _duplicates(databases, documents):
    seen = Counter(d.get("transaction_id") for d in documents if type(d.get("transaction_id")) is int)
    return {transaction_id for transaction_id, count in seen.items() if count > 1}


def _unknown_transactions(databases, documents):
    known = {t for (t,) in query(databases, "SELECT transaction_id FROM transactions")}
    return {
        d["transaction_id"] for d in documents
        if type(d.get("transaction_id")) is int and d["transaction_id"] not in known
    }


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# One independent check per fault kind: each must flag exactly the keys the report lists.
DETECTORS = {
    "orphan_transactions": _sql(
        "SELECT t.transaction_id FROM transactions t LEFT JOIN accounts a ON a.account_id = t.account_id "
        "WHERE a.account_id IS NULL"
    ),
    "null_amounts": _sql("SELECT transaction_id FROM transactions WHERE amount IS NULL"),
    "negative_amounts": _sql("SELECT transaction_id FROM transactions WHERE amount < 0"),
    "unknown_transaction_type": _sql(
        "SELECT transaction_id FROM transactions "
        "WHERE transaction_type NOT IN ('deposit', 'withdrawal', 'transfer') OR transaction_type IS NULL"
    ),
    "null_timestamps": _sql('SELECT transaction_id FROM transactions WHERE "timestamp" IS NULL'),
    "future_timestamps": _sql('SELECT transaction_id FROM transactions WHERE "timestamp" >= %(after_as_of)s'),
    "orphan_accounts": _sql(
        "SELECT a.account_id FROM accounts a LEFT JOIN customers c ON c.customer_id = a.customer_id "
        "WHERE c.customer_id IS NULL"
    ),
    "messy_emails": _sql(
        "SELECT customer_id FROM customers WHERE email <> lower(btrim(email)) OR email ~ '\\s'"
    ),
    "null_emails": _sql("SELECT customer_id FROM customers WHERE email IS NULL"),
    "string_fraud_score": _events(lambda d, _: isinstance(d.get("fraud_score"), str)),
    "out_of_range_fraud_score": _events(
        lambda d, _: _number(d.get("fraud_score")) and not 0.01 <= d["fraud_score"] <= 1.0
    ),
    "missing_geolocation": _events(lambda d, _: d.get("geolocation") is None),
    "string_transaction_id": _events(lambda d, _: isinstance(d.get("transaction_id"), str)),
    "unknown_device_type": _events(lambda d, _: d.get("device_type") not in DEVICE_TYPES),
    "duplicate_events": _duplicates,
    "events_for_unknown_transactions": _unknown_transactions,
    "missing_transaction_id": _events(lambda d, _: d.get("transaction_id") is None, key=lambda d: str(d["_id"])),
}


def test_every_fault_kind_has_a_detector():
    assert [kind.name for kind in CATALOGUE] == list(DETECTORS)


@pytest.fixture(scope="module")
def faulty_sources(server_settings) -> Iterator[tuple[SourceDatabases, SeedReport, list[dict]]]:
    """One seed with faults shared by the parametrized fault tests (they only read)."""
    with _fresh_databases(server_settings) as databases:
        report = seed(databases, with_faults=True)
        yield databases, report, events(databases)


@services
@pytest.mark.parametrize("kind", list(DETECTORS))
def test_fault_is_detectable_exactly_for_its_reported_keys(faulty_sources, kind):
    databases, report, documents = faulty_sources
    record = report.faults[kind]

    assert record.keys, "every fault kind adds at least one record"
    assert DETECTORS[kind](databases, documents) == set(record.keys)
    if record.table == "transaction_events":
        present = {str(d["_id"]) for d in documents}
        assert set(record.details["event_ids"]) <= present


@services
def test_clean_data_has_none_of_the_faults(source_databases):
    seed(source_databases)
    documents = events(source_databases)

    assert {kind: detect(source_databases, documents) for kind, detect in DETECTORS.items()} == {
        kind: set() for kind in DETECTORS
    }


@services
def test_faults_come_on_top_of_unchanged_clean_data(source_databases, server_settings):
    report = seed(source_databases, with_faults=True)
    with _fresh_databases(server_settings) as clean:
        seed(clean)
        for table, key in TABLE_KEYS.items():
            sql = f"SELECT md5(string_agg(t::text, '|' ORDER BY {key})) FROM {table} t WHERE {key} <= %s"
            limit = report.clean_rows[table]
            assert query(source_databases, sql, (limit,)) == query(clean, sql, (limit,)), table
        clean_events = events(clean)
        faulty_events = events(source_databases)
    assert [d for d in faulty_events if int.from_bytes(d["_id"].binary[4:], "big") < len(clean_events)] == clean_events
    assert len(faulty_events) - len(clean_events) == sum(
        len(r.details["event_ids"]) for r in report.faults.values() if r.table == "transaction_events"
    )


@services
def test_messy_email_pair_differs_only_by_case_and_spaces(faulty_sources):
    databases, report, _ = faulty_sources
    [[clean_id, messy_id]] = report.faults["messy_emails"].details["same_email_as"]

    emails = dict(query(databases, "SELECT customer_id, email FROM customers WHERE customer_id IN %s",
                        ((clean_id, messy_id),)))
    assert emails[clean_id] != emails[messy_id]
    assert emails[clean_id] == emails[messy_id].strip().lower()


@services
def test_orphan_accounts_carry_valid_transactions(faulty_sources):
    databases, report, _ = faulty_sources
    record = report.faults["orphan_accounts"]

    rows = query(databases, "SELECT account_id FROM transactions WHERE transaction_id IN %s",
                 (tuple(record.details["transaction_ids"]),))
    assert sorted(a for (a,) in rows) == sorted(record.keys)


# --- the command ------------------------------------------------------------------------------


@services
def test_cli_seed_prints_a_summary_and_exits_0(source_databases, monkeypatch, capsys, tmp_path):
    for name, value in source_databases.env(tmp_path / "lakehouse").items():
        monkeypatch.setenv(name, value)
    report_path = tmp_path / "report.json"

    code = main(["seed", "--customers", "20", "--transactions", "300", "--as-of", "2024-06-30",
                 "--with-faults", "--no-progress", "--report", str(report_path)])

    out = capsys.readouterr().out
    assert code == 0
    assert "customers" in out and "transactions" in out and "null_amounts" in out
    assert re.search(r"^transactions\s+316\s+16\b", out, re.MULTILINE)  # 300 clean + 16 faulty
    saved = json.loads(report_path.read_text())
    assert saved["rows"]["transactions"] == 316 and saved["clean_rows"]["transactions"] == 300
    assert set(saved["faults"]) == set(DETECTORS)
    assert counts(source_databases)["transactions"] == 316


@services
def test_cli_with_unreachable_postgres_exits_2_naming_the_problem(source_databases, monkeypatch, capsys, tmp_path):
    for name, value in source_databases.env(tmp_path / "lakehouse").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FIN_POSTGRES_URL", "postgresql://financial:secret@127.0.0.1:1/financial")

    code = main(["seed", "--no-progress"])

    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "PostgreSQL" in err and "127.0.0.1:1" in err and "unreachable" in err
    assert "secret" not in err


@pytest.mark.parametrize(
    "arguments",
    [
        ["--customers", "0"],
        ["--accounts-per-customer", "-1"],
        ["--transactions", "many"],
        ["--event-ratio", "1.5"],
        ["--event-ratio", "nan"],
        ["--seed", "-3"],
        ["--as-of", "2024-13-01"],
        ["--history-days", "0"],
    ],
)
def test_cli_rejects_invalid_arguments(arguments, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["seed", *arguments])
    assert exit_info.value.code == 2
    assert "error: argument" in capsys.readouterr().err


# --- helpers ----------------------------------------------------------------------------------


class _fresh_databases:
    """Another empty pair of source databases, like conftest's `source_databases`, for tests that
    compare two seeds side by side or share one seed across a module."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.name = f"test_{uuid.uuid4().hex[:12]}"

    def __enter__(self) -> SourceDatabases:
        self.admin = psycopg2.connect(self.settings.postgres_url)
        self.admin.autocommit = True
        with self.admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{self.name}"')
        url = urlunsplit(urlsplit(self.settings.postgres_url)._replace(path=f"/{self.name}"))
        return SourceDatabases(url, self.settings.mongo_url, self.name)

    def __exit__(self, *exc_info) -> None:
        with connect_document_store(self.settings.mongo_url, self.name) as database:
            database.client.drop_database(self.name)
        with self.admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.admin.close()
