"""What the platform expects of each source table: its columns, their Arrow types, its cursor.

The types are those of `../shared/reference/source-systems.md`. A column that disappears or
changes type breaks the contract (the load fails naming it); a new column is carried along.

Time-zone rule: the sources' ``TIMESTAMP`` columns carry no zone and the bank's applications
write UTC, so the raw zone stores them as UTC instants (``timestamp[us, tz=UTC]``).

The Arrow types are built when a load first asks for them (``TableContract.columns``, and this
module's ``UTC_TIMESTAMP``, ``MONEY``, ``GEOLOCATION`` and ``QUARANTINE_SCHEMA``): the code
location declares its assets from the contracts without loading pyarrow.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from typing import TYPE_CHECKING

from financial_assets.lazy_names import built_on_first_use

if TYPE_CHECKING:
    import pyarrow as pa


@cache
def _arrow_types() -> dict:
    """This module's Arrow types and schema, by name."""
    import pyarrow as pa

    utc_timestamp = pa.timestamp("us", tz="UTC")
    return {
        "UTC_TIMESTAMP": utc_timestamp,
        "MONEY": pa.decimal128(12, 2),
        "GEOLOCATION": pa.struct([("country", pa.string()), ("city", pa.string())]),
        "QUARANTINE_SCHEMA": pa.schema(
            [
                ("event_id", pa.string()),
                ("reason", pa.string()),
                ("document", pa.string()),
                ("quarantined_at", utc_timestamp),
            ]
        ),
    }


__getattr__ = built_on_first_use(__name__, _arrow_types)


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type a contract names: one of this module's (``MONEY``, ``UTC_TIMESTAMP``,
    ``GEOLOCATION``) or a pyarrow type without parameters (``int32``, ``string``, ``float64``)."""
    import pyarrow as pa

    types = _arrow_types()
    return types[name] if name in types else getattr(pa, name)()


@dataclass(frozen=True)
class TableContract:
    table: str
    # Each column's Arrow type by name (see `arrow_type`); `columns` holds the types themselves.
    column_types: dict[str, str]
    # The increasing key that incremental loads advance by; None means a full snapshot per run.
    cursor_column: str | None = None
    # Columns whose values are personal data: never shown in previews or logs.
    pii_columns: frozenset[str] = frozenset()
    # The column whose greatest value says how recent the table's rows are (observed upstream of
    # the raw zone): a time where the source has one.
    newest_column: str | None = None
    # What the business calls the rows' subject: the assets' `domain` tag.
    domain: str = ""

    @cached_property
    def columns(self) -> dict[str, pa.DataType]:
        """Each column's Arrow type, in the source's order."""
        return {name: arrow_type(type_name) for name, type_name in self.column_types.items()}


CUSTOMERS = TableContract(
    table="customers",
    column_types={
        "customer_id": "int32",
        "name": "string",
        "email": "string",
        "phone": "string",
        "address": "string",
    },
    pii_columns=frozenset({"name", "email", "phone", "address"}),
    newest_column="customer_id",  # customers carry no time: the newest is the last id drawn
    domain="customers",
)

ACCOUNTS = TableContract(
    table="accounts",
    column_types={
        "account_id": "int32",
        "customer_id": "int32",
        "account_type": "string",
        "balance": "MONEY",
        "opened_at": "UTC_TIMESTAMP",
    },
    newest_column="opened_at",
    domain="accounts",
)

TRANSACTIONS = TableContract(
    table="transactions",
    column_types={
        "transaction_id": "int32",
        "account_id": "int32",
        "transaction_type": "string",
        "amount": "MONEY",
        "timestamp": "UTC_TIMESTAMP",
    },
    cursor_column="transaction_id",
    newest_column="timestamp",
    domain="transactions",
)

POSTGRES_TABLES = (CUSTOMERS, ACCOUNTS, TRANSACTIONS)

# The document store's `transaction_events`, after the rules in `extract/documents.py`:
# `_id` (ObjectId) becomes the 24-hex-digit string `event_id`; `geolocation` keeps its
# structure; fields the schema does not know are kept as one JSON object in `extra_fields`.
TRANSACTION_EVENTS = TableContract(
    table="transaction_events",
    column_types={
        "event_id": "string",
        "transaction_id": "int64",
        "device_type": "string",
        "ip_address": "string",
        "geolocation": "GEOLOCATION",
        "fraud_score": "float64",
        "extra_fields": "string",
    },
    cursor_column="event_id",
    pii_columns=frozenset({"ip_address"}),
    domain="transactions",
)
