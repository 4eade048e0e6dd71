"""What the platform expects of each source table: its columns, their Arrow types, its cursor.

The types are those of `../shared/reference/source-systems.md`. A column that disappears or
changes type breaks the contract (the load fails naming it); a new column is carried along.

Time-zone rule: the sources' ``TIMESTAMP`` columns carry no zone and the bank's applications
write UTC, so the raw zone stores them as UTC instants (``timestamp[us, tz=UTC]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")
MONEY = pa.decimal128(12, 2)


@dataclass(frozen=True)
class TableContract:
    table: str
    columns: dict[str, pa.DataType]
    # The increasing key that incremental loads advance by; None means a full snapshot per run.
    cursor_column: str | None = None
    # Columns whose values are personal data: never shown in previews or logs.
    pii_columns: frozenset[str] = frozenset()
    # The column whose greatest value says how recent the table's rows are (observed upstream of
    # the raw zone): a time where the source has one.
    newest_column: str | None = None
    # What the business calls the rows' subject: the assets' `domain` tag.
    domain: str = ""


CUSTOMERS = TableContract(
    table="customers",
    columns={
        "customer_id": pa.int32(),
        "name": pa.string(),
        "email": pa.string(),
        "phone": pa.string(),
        "address": pa.string(),
    },
    pii_columns=frozenset({"name", "email", "phone", "address"}),
    newest_column="customer_id",  # customers carry no time: the newest is the last id drawn
    domain="customers",
)

ACCOUNTS = TableContract(
    table="accounts",
    columns={
        "account_id": pa.int32(),
        "customer_id": pa.int32(),
        "account_type": pa.string(),
        "balance": MONEY,
        "opened_at": UTC_TIMESTAMP,
    },
    newest_column="opened_at",
    domain="accounts",
)

TRANSACTIONS = TableContract(
    table="transactions",
    columns={
        "transaction_id": pa.int32(),
        "account_id": pa.int32(),
        "transaction_type": pa.string(),
        "amount": MONEY,
        "timestamp": UTC_TIMESTAMP,
    },
    cursor_column="transaction_id",
    newest_column="timestamp",
    domain="transactions",
)

POSTGRES_TABLES = (CUSTOMERS, ACCOUNTS, TRANSACTIONS)

# The document store's `transaction_events`, after the rules in `extract/documents.py`:
# `_id` (ObjectId) becomes the 24-hex-digit string `event_id`; `geolocation` keeps its
# structure; fields the schema does not know are kept as one JSON object in `extra_fields`.
GEOLOCATION = pa.struct([("country", pa.string()), ("city", pa.string())])
TRANSACTION_EVENTS = TableContract(
    table="transaction_events",
    columns={
        "event_id": pa.string(),
        "transaction_id": pa.int64(),
        "device_type": pa.string(),
        "ip_address": pa.string(),
        "geolocation": GEOLOCATION,
        "fraud_score": pa.float64(),
        "extra_fields": pa.string(),
    },
    cursor_column="event_id",
    pii_columns=frozenset({"ip_address"}),
    domain="transactions",
)

QUARANTINE_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("reason", pa.string()),
        ("document", pa.string()),
        ("quarantined_at", UTC_TIMESTAMP),
    ]
)
