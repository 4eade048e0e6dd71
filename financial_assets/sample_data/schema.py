"""The source schema, exactly as production has it (see the reference `source-systems.md`).

PostgreSQL: the three CREATE TABLE statements below, verbatim in types, SERIAL keys and
REFERENCES clauses, with no NOT NULL, UNIQUE or CHECK constraint and no index beyond the
primary keys. The document store: collection ``transaction_events`` with no index beyond ``_id``
(in particular no unique index on ``transaction_id``).

For load speed the foreign keys are dropped right after the CREATE TABLEs and added back, under
their default names, once the rows are in: one bulk validation instead of a lookup per row. All
of it happens in the one transaction that also drops the old tables, so no other session ever
sees the tables without them. When fault injection adds references that point nowhere, the keys
are added back ``NOT VALID`` (the only trace: ``pg_constraint.convalidated`` is false).
"""

from __future__ import annotations

from dataclasses import dataclass

CUSTOMERS_DDL = """\
CREATE TABLE customers (
  customer_id SERIAL PRIMARY KEY,
  name        VARCHAR(100),
  email       VARCHAR(100),
  phone       VARCHAR(20),
  address     TEXT
)"""

ACCOUNTS_DDL = """\
CREATE TABLE accounts (
  account_id   SERIAL PRIMARY KEY,
  customer_id  INT REFERENCES customers(customer_id),
  account_type VARCHAR(50),
  balance      DECIMAL(12, 2),
  opened_at    TIMESTAMP
)"""

TRANSACTIONS_DDL = """\
CREATE TABLE transactions (
  transaction_id   SERIAL PRIMARY KEY,
  account_id       INT REFERENCES accounts(account_id),
  transaction_type VARCHAR(20),
  amount           DECIMAL(12, 2),
  "timestamp"      TIMESTAMP
)"""

DDL = (CUSTOMERS_DDL, ACCOUNTS_DDL, TRANSACTIONS_DDL)

# Creation order; drop in reverse.
TABLES = ("customers", "accounts", "transactions")
EVENTS_COLLECTION = "transaction_events"

COLUMNS = {
    "customers": ("customer_id", "name", "email", "phone", "address"),
    "accounts": ("account_id", "customer_id", "account_type", "balance", "opened_at"),
    "transactions": ("transaction_id", "account_id", "transaction_type", "amount", "timestamp"),
}
PRIMARY_KEYS = {"customers": "customer_id", "accounts": "account_id", "transactions": "transaction_id"}

ACCOUNT_TYPES = ("savings", "checking")
TRANSACTION_TYPES = ("deposit", "withdrawal", "transfer")
DEVICE_TYPES = ("mobile_app", "web_browser", "atm")


@dataclass(frozen=True)
class ForeignKey:
    table: str
    column: str
    references: str

    @property
    def name(self) -> str:
        # PostgreSQL's default name for an inline REFERENCES constraint.
        return f"{self.table}_{self.column}_fkey"


FOREIGN_KEYS = (
    ForeignKey("accounts", "customer_id", "customers"),
    ForeignKey("transactions", "account_id", "accounts"),
)


def quote(identifier: str) -> str:
    """A double-quoted identifier (``timestamp`` is a column name here)."""
    return '"' + identifier.replace('"', '""') + '"'


def recreate_tables(cursor) -> None:
    """Drop the three tables if they exist and create them empty, without their foreign keys.

    No CASCADE: an object of someone else's that depends on these tables makes the seed fail
    loudly rather than vanish.
    """
    cursor.execute("DROP TABLE IF EXISTS " + ", ".join(reversed(TABLES)))
    for statement in DDL:
        cursor.execute(statement)
    for key in FOREIGN_KEYS:
        cursor.execute(f"ALTER TABLE {key.table} DROP CONSTRAINT {quote(key.name)}")


def add_foreign_keys(cursor, validate: bool = True) -> None:
    """Put back the foreign keys of the DDL, checked in bulk, or ``NOT VALID`` if asked."""
    for key in FOREIGN_KEYS:
        column = PRIMARY_KEYS[key.references]
        cursor.execute(
            f"ALTER TABLE {key.table} ADD CONSTRAINT {quote(key.name)} "
            f"FOREIGN KEY ({key.column}) REFERENCES {key.references}({column})"
            + ("" if validate else " NOT VALID")
        )


def reset_sequences(cursor) -> None:
    """Point each SERIAL sequence past the largest explicit id, so later inserts go on from there."""
    for table in TABLES:
        key = PRIMARY_KEYS[table]
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence(%s, %s), COALESCE(MAX({key}), 0) + 1, false) "
            f"FROM {table}",
            (table, key),
        )
