"""The fault catalogue: bad records that ``financial-assets seed --with-faults`` adds.

Faults come ON TOP of the clean data: the clean rows are exactly those of the same seed without
faults, and the faulty ones get the ids after them (customers, accounts, transactions) or the
ObjectId counters after the clean events. Each faulty record breaks one rule only, copying
everything else from a valid record, so a check for one rule flags exactly the keys that the
report lists for that kind (``SeedReport.faults[kind].keys``). Counts are small and fixed;
which records are copied or targeted follows from the seed.

=================================  ===================  ===============================================
kind                               table (key)          what is wrong
=================================  ===================  ===============================================
orphan_transactions                transactions (id)    account_id matches no account: 2 dangling ids, 1 NULL
null_amounts                       transactions (id)    amount is NULL
negative_amounts                   transactions (id)    amount is below zero
unknown_transaction_type           transactions (id)    transaction_type is 'refund' or 'chargeback'
null_timestamps                    transactions (id)    "timestamp" is NULL
future_timestamps                  transactions (id)    "timestamp" is after the as-of day
orphan_accounts                    accounts (id)        customer_id matches no customer: 2 dangling ids, 1 NULL;
                                                        each has one (valid) transaction, listed in
                                                        details["transaction_ids"]
messy_emails                       customers (id)       email with upper case and surrounding or inner spaces;
                                                        details["same_email_as"] pairs [clean id, messy id]
                                                        whose emails differ only by case and surrounding spaces
null_emails                        customers (id)       email is NULL
string_fraud_score                 events (tx id)       fraud_score is a string, e.g. "0.42"
out_of_range_fraud_score           events (tx id)       fraud_score outside 0.01 .. 1.00 (1.7 and -0.25)
missing_geolocation                events (tx id)       no geolocation field (one document), or null (another)
string_transaction_id              events (tx id)       transaction_id is a string such as "17" (an existing id)
unknown_device_type                events (tx id)       device_type is 'smartwatch' or 'MOBILE_APP'
duplicate_events                   events (tx id)       a second event, with another _id and other values, for a
                                                        transaction that already has one
events_for_unknown_transactions    events (tx id)       transaction_id matches no transaction
missing_transaction_id             events (_id)         no transaction_id field (one document), or null (another)
=================================  ===================  ===============================================

Event faults other than ``duplicate_events`` and ``events_for_unknown_transactions`` target
transactions that have no clean event, so they add no duplicates (unless fewer than 10 such
transactions exist, e.g. with ``--event-ratio 1``). For every event fault,
``details["event_ids"]`` lists the hex ``_id``s of the documents added.

Faulty accounts and transactions make PostgreSQL hold references that point nowhere, which the
reference DDL's foreign keys forbid; with faults, the foreign keys are therefore added back
``NOT VALID`` after the load (see ``schema.py``). NULL references are valid either way.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

import numpy as np
import pyarrow as pa

from financial_assets.sample_data import generate
from financial_assets.sample_data.config import SeedConfig
from financial_assets.sample_data.objectids import object_ids
from financial_assets.sample_data.report import FaultRecord
from financial_assets.sample_data.schema import ACCOUNT_TYPES, DEVICE_TYPES, EVENTS_COLLECTION, TRANSACTION_TYPES


@dataclass(frozen=True)
class FaultKind:
    name: str
    table: str
    key: str
    description: str


CATALOGUE: tuple[FaultKind, ...] = (
    FaultKind("orphan_transactions", "transactions", "transaction_id",
              "transactions whose account_id matches no account (dangling id or NULL)"),
    FaultKind("null_amounts", "transactions", "transaction_id", "transactions with a NULL amount"),
    FaultKind("negative_amounts", "transactions", "transaction_id", "transactions with an amount below zero"),
    FaultKind("unknown_transaction_type", "transactions", "transaction_id",
              "transactions whose type is not deposit, withdrawal or transfer"),
    FaultKind("null_timestamps", "transactions", "transaction_id", "transactions with a NULL timestamp"),
    FaultKind("future_timestamps", "transactions", "transaction_id",
              "transactions dated after the as-of day"),
    FaultKind("orphan_accounts", "accounts", "account_id",
              "accounts whose customer_id matches no customer (dangling id or NULL)"),
    FaultKind("messy_emails", "customers", "customer_id",
              "emails with upper case and surrounding or inner spaces"),
    FaultKind("null_emails", "customers", "customer_id", "customers with a NULL email"),
    FaultKind("string_fraud_score", EVENTS_COLLECTION, "transaction_id",
              "events whose fraud_score is a string"),
    FaultKind("out_of_range_fraud_score", EVENTS_COLLECTION, "transaction_id",
              "events whose fraud_score is outside 0.01 .. 1.00"),
    FaultKind("missing_geolocation", EVENTS_COLLECTION, "transaction_id",
              "events without a geolocation (field absent or null)"),
    FaultKind("string_transaction_id", EVENTS_COLLECTION, "transaction_id",
              "events whose transaction_id is a string"),
    FaultKind("unknown_device_type", EVENTS_COLLECTION, "transaction_id",
              "events whose device_type is not mobile_app, web_browser or atm"),
    FaultKind("duplicate_events", EVENTS_COLLECTION, "transaction_id",
              "a second event, with another _id, for a transaction that already has one"),
    FaultKind("events_for_unknown_transactions", EVENTS_COLLECTION, "transaction_id",
              "events whose transaction_id matches no transaction"),
    FaultKind("missing_transaction_id", EVENTS_COLLECTION, "_id",
              "events without a transaction_id (field absent or null)"),
)
KINDS = {kind.name: kind for kind in CATALOGUE}

# Dangling references start this far above the largest id in use.
_DANGLING_GAP = 1000


@dataclass
class FaultSet:
    """Rows to load after the clean ones, and what each fault kind affected."""

    customers: list[dict] = field(default_factory=list)
    accounts: list[dict] = field(default_factory=list)
    transactions: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    records: dict[str, FaultRecord] = field(default_factory=dict)

    def tables(self) -> dict[str, pa.Table]:
        """The PostgreSQL rows as Arrow tables in the schema's column order."""
        return {
            "customers": pa.Table.from_pylist(self.customers, schema=generate.CUSTOMER_SCHEMA),
            "accounts": pa.Table.from_pylist(self.accounts, schema=generate.ACCOUNT_SCHEMA),
            "transactions": pa.Table.from_pylist(self.transactions, schema=generate.TRANSACTION_SCHEMA),
        }

    def _record(self, name: str, keys: list, **details) -> None:
        kind = KINDS[name]
        self.records[name] = FaultRecord(name, kind.description, kind.table, kind.key, tuple(keys), details)


def _naive(epoch_seconds: int) -> datetime:
    return datetime.fromtimestamp(int(epoch_seconds), timezone.utc).replace(tzinfo=None)


def _money(cents: int) -> Decimal:
    return Decimal(int(cents)).scaleb(-2)


class _Builder:
    """Hands out the next ids and ObjectId counters after the clean data."""

    def __init__(self, config: SeedConfig, first_customer: dict, first_block: generate.TransactionBlock):
        self.config = config
        self.random = generate.rng(config.seed, generate.Stream.FAULTS)
        self.fake = generate.faker(config.seed, generate.Stream.FAULTS)
        self.first_customer = first_customer
        self.block = first_block
        self.faults = FaultSet()
        self.next_customer = config.customers + 1
        self.next_account = config.accounts + 1
        self.next_transaction = config.transactions + 1
        self.next_event = config.events
        self.window_end = generate.history_window(config)[1]
        self.places = generate.geolocation_pool(config.seed)

    # PostgreSQL rows ------------------------------------------------------------------------

    def customer(self, **overrides) -> int:
        name, email, phone, address = generate.fake_customer(self.fake)
        row = {"customer_id": self.next_customer, "name": name, "email": email, "phone": phone, "address": address}
        row.update(overrides)
        self.faults.customers.append(row)
        self.next_customer += 1
        return row["customer_id"]

    def account(self, customer_id: int | None) -> int:
        type_code = int(self.random.integers(0, len(ACCOUNT_TYPES)))
        opened = self.window_end - int(self.random.integers(400, 1500)) * generate.DAY
        row = {
            "account_id": self.next_account,
            "customer_id": customer_id,
            "account_type": ACCOUNT_TYPES[type_code],
            "balance": _money(self.random.integers(1_000, 5_000_000)),
            "opened_at": _naive(opened),
        }
        self.faults.accounts.append(row)
        self.next_account += 1
        return row["account_id"]

    def transaction(self, **overrides) -> int:
        """A copy of a random clean transaction of the first block, with a new id and the overrides."""
        source = int(self.random.integers(0, len(self.block)))
        row = {
            "transaction_id": self.next_transaction,
            "account_id": int(self.block.account_id[source]),
            "transaction_type": TRANSACTION_TYPES[int(self.block.type_code[source])],
            "amount": _money(self.block.amount_cents[source]),
            "timestamp": _naive(self.block.timestamp[source]),
        }
        row.update(overrides)
        self.faults.transactions.append(row)
        self.next_transaction += 1
        return row["transaction_id"]

    # Events ---------------------------------------------------------------------------------

    def event(self, transaction_id, when: int, drop: tuple[str, ...] = (), **overrides) -> dict:
        random = self.random
        type_code = np.array([int(random.integers(0, len(TRANSACTION_TYPES)))])
        (object_id,) = object_ids(np.array([when]), self.next_event)
        self.next_event += 1
        pool = self.places
        document = {
            "_id": object_id,
            "transaction_id": transaction_id,
            "device_type": DEVICE_TYPES[int(generate.device_codes(random, type_code)[0])],
            "ip_address": generate.public_ipv4(random, 1)[0],
            "geolocation": dict(pool[int(random.integers(0, len(pool)))]),
            "fraud_score": float(generate.fraud_scores(random, 1)[0]),
        }
        document.update(overrides)
        for name in drop:
            del document[name]
        self.faults.events.append(document)
        return document


def plan_faults(
    config: SeedConfig, first_customer: dict, first_block: generate.TransactionBlock
) -> FaultSet:
    """Every fault of the catalogue, in its order, for the clean data of ``config``.

    ``first_customer`` is clean customer 1 (a dict of its columns) and ``first_block`` the first
    block of clean transactions, whose rows the faulty ones copy or point at.
    """
    b = _Builder(config, first_customer, first_block)
    faults = b.faults
    block = first_block

    # Customers ------------------------------------------------------------------------------
    clean_email = first_customer["email"]
    twin = b.customer(name=first_customer["name"], email=f"  {clean_email.title()} ")
    name, email, _, _ = generate.fake_customer(b.fake)
    upper = b.customer(name=name, email=email.upper())
    name, email, _, _ = generate.fake_customer(b.fake)
    local, domain = email.split("@", 1)
    inner = b.customer(name=name, email=f"{local[:1].upper()}{local[1:]} @ {domain}")
    faults._record("messy_emails", [twin, upper, inner], same_email_as=[[first_customer["customer_id"], twin]])
    faults._record("null_emails", [b.customer(email=None) for _ in range(2)])

    # Accounts -------------------------------------------------------------------------------
    dangling_customer = b.next_customer - 1 + _DANGLING_GAP
    orphans = [b.account(dangling_customer), b.account(dangling_customer + 1), b.account(None)]
    orphan_transactions = [b.transaction(account_id=account) for account in orphans]
    faults._record("orphan_accounts", orphans, transaction_ids=orphan_transactions)

    # Transactions ---------------------------------------------------------------------------
    dangling_account = b.next_account - 1 + _DANGLING_GAP
    faults._record(
        "orphan_transactions",
        [
            b.transaction(account_id=dangling_account),
            b.transaction(account_id=dangling_account + 1),
            b.transaction(account_id=None),
        ],
    )
    faults._record("null_amounts", [b.transaction(amount=None) for _ in range(2)])
    faults._record(
        "negative_amounts",
        [b.transaction(amount=-_money(b.random.integers(100, 50_000))) for _ in range(2)],
    )
    faults._record(
        "unknown_transaction_type",
        [b.transaction(transaction_type=kind) for kind in ("refund", "chargeback")],
    )
    faults._record("null_timestamps", [b.transaction(timestamp=None) for _ in range(2)])
    faults._record(
        "future_timestamps",
        [
            b.transaction(timestamp=_naive(b.window_end + days * generate.DAY + 3_600 * 9))
            for days in (2, 30)
        ],
    )

    # Events ---------------------------------------------------------------------------------
    ids = block.transaction_id
    without_event = b.random.permutation(ids[~block.has_event]).tolist()
    with_event = b.random.permutation(ids[block.has_event]).tolist()
    # Fall back to transactions that have an event (documented) when too few lack one.
    targets = itertools.cycle(without_event + with_event)

    def target() -> tuple[int, int]:
        transaction_id = next(targets)
        return transaction_id, int(block.timestamp[transaction_id - block.first_id])

    def record_events(name: str, documents: list[dict], key=lambda d: d["transaction_id"]) -> None:
        faults._record(name, [key(d) for d in documents], event_ids=[str(d["_id"]) for d in documents])

    documents = []
    for score in (0.42, 0.07):
        transaction_id, when = target()
        documents.append(b.event(transaction_id, when, fraud_score=f"{score:.2f}"))
    record_events("string_fraud_score", documents)

    documents = []
    for score in (1.7, -0.25):
        transaction_id, when = target()
        documents.append(b.event(transaction_id, when, fraud_score=score))
    record_events("out_of_range_fraud_score", documents)

    transaction_id, when = target()
    documents = [b.event(transaction_id, when, drop=("geolocation",))]
    transaction_id, when = target()
    documents.append(b.event(transaction_id, when, geolocation=None))
    record_events("missing_geolocation", documents)

    documents = []
    for _ in range(2):
        transaction_id, when = target()
        documents.append(b.event(str(transaction_id), when))
    faults._record(
        "string_transaction_id",
        [d["transaction_id"] for d in documents],
        event_ids=[str(d["_id"]) for d in documents],
    )

    documents = []
    for device in ("smartwatch", "MOBILE_APP"):
        transaction_id, when = target()
        documents.append(b.event(transaction_id, when, device_type=device))
    record_events("unknown_device_type", documents)

    if with_event:
        documents = []
        for transaction_id in with_event[:2]:
            when = int(block.timestamp[transaction_id - block.first_id])
            documents.append(b.event(transaction_id, when))
    else:  # no clean event to duplicate (event ratio 0): add both copies
        transaction_id, when = target()
        documents = [b.event(transaction_id, when), b.event(transaction_id, when)]
    faults._record(
        "duplicate_events",
        sorted({d["transaction_id"] for d in documents}),
        event_ids=[str(d["_id"]) for d in documents],
    )

    unknown = b.next_transaction - 1 + _DANGLING_GAP
    documents = [b.event(unknown + offset, b.window_end - 1) for offset in range(2)]
    record_events("events_for_unknown_transactions", documents)

    documents = [
        b.event(None, b.window_end - 1, drop=("transaction_id",)),
        b.event(None, b.window_end - 1),
    ]
    record_events("missing_transaction_id", documents, key=lambda d: str(d["_id"]))

    faults.records = {kind.name: faults.records[kind.name] for kind in CATALOGUE}
    return faults
