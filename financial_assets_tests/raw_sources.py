"""Small hand-built sources in the reference schema, for raw-zone tests that need exact values."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg2

from financial_assets.sample_data import schema
from financial_assets.sources import connect_document_store

CUSTOMERS = [
    # A comma, quotes, a multi-line address, an empty string and a NULL: what CSV gets wrong.
    (1, 'Ada "The Count" Lovelace, Jr.', "ada@example.org", "+44 20 7946 0000", "12 St James's Sq\nLondon"),
    (2, "Grace Hopper", "", None, "1 Navy Yard\nArlington, VA"),
]
ACCOUNTS = [
    (10, 1, "savings", "1234567890.12", "2024-01-31 23:59:59.123456"),
    (11, 2, "checking", "0.01", "2024-02-29 00:00:00"),
]
TRANSACTIONS = [
    (100, 10, "deposit", "9999999999.99", "2025-03-01 23:30:00"),
    (101, 11, "withdrawal", "0.10", "2025-03-02 00:00:01"),
    (102, 10, "transfer", "42.00", "2025-03-02 12:00:00"),
]


def valid_event(transaction_id: int, **changes) -> dict:
    event = {
        "transaction_id": transaction_id,
        "device_type": "mobile_app",
        "ip_address": "203.0.113.9",
        "geolocation": {"country": "Kenya", "city": "Lake Susan"},
        "fraud_score": 0.42,
    }
    event.update(changes)
    return event


def create_reference_tables(postgres_url: str) -> None:
    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        schema.recreate_tables(cursor)
        schema.add_foreign_keys(cursor)
    connection.close()


def insert_transactions(postgres_url: str, rows: Iterable[tuple]) -> None:
    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.executemany(
            'INSERT INTO transactions (transaction_id, account_id, transaction_type, amount, "timestamp")'
            " VALUES (%s, %s, %s, %s, %s)",
            list(rows),
        )
    connection.close()


def load_hand_built_sources(databases) -> None:
    """The rows above into PostgreSQL, and one valid event per transaction into the store."""
    create_reference_tables(databases.postgres_url)
    with psycopg2.connect(databases.postgres_url) as connection, connection.cursor() as cursor:
        cursor.executemany("INSERT INTO customers VALUES (%s, %s, %s, %s, %s)", CUSTOMERS)
        cursor.executemany("INSERT INTO accounts VALUES (%s, %s, %s, %s, %s)", ACCOUNTS)
    connection.close()
    insert_transactions(databases.postgres_url, TRANSACTIONS)
    insert_events(databases, [valid_event(row[0]) for row in TRANSACTIONS])


def insert_events(databases, documents: list[dict]) -> None:
    with connect_document_store(databases.mongo_url, databases.mongo_database) as database:
        # Copies: insert_many writes an `_id` into the dicts it is given.
        database["transaction_events"].insert_many([dict(d) for d in documents])
