"""Deterministic clean sample data, generated in fixed-size blocks.

Determinism: every random draw comes from a numpy ``Generator`` or a ``Faker`` instance seeded
from ``numpy.random.SeedSequence(seed, spawn_key=(stream, block))``: one stream per kind of data
and one child per block of rows. Never the global random state, never the clock. Timestamps are
offsets from ``as_of``. So a seed, an as-of date and the counts give byte-identical data, with
the same library versions (Faker's word lists and numpy's distributions may change between
releases). The block sizes below are part of that contract: changing them changes the data.

Shape of the data:

* customers: Faker (en_US) names, emails derived from the name (lower case, no spaces),
  phone numbers cut to 20 characters, multi-line postal addresses. Faker costs ~150 µs a row,
  the only per-row Python work on the PostgreSQL side.
* accounts: exactly ``accounts_per_customer`` per customer, account ids in order of
  ``opened_at`` (spread over the 8 years before as-of, office hours favoured); savings (40%) or
  checking; lognormal balances; a gamma-distributed activity weight per account.
* transactions: ids in time order, ``timestamp`` spread over the ``history_days`` (365) days ending
  with the as-of day (busier by day than by night); each picks an account among those already open, weighted
  by activity, so a transaction is never before its account's ``opened_at``; deposit 30%,
  withdrawal 45%, transfer 25%; lognormal amounts in cents (always >= 0.01).
* events: exactly ``floor(transactions * event_ratio)`` of them, spread at random over the
  transactions (each block gets its exact share); device type depends on the transaction type
  (no ATM transfers); public IPv4 addresses; (country, city) from a Faker-made pool of 1,000
  pairs; fraud score from Beta(1.4, 11), rounded to 2 decimals and kept within 0.01 .. 1.00.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from enum import IntEnum

import numpy as np
import pyarrow as pa
from faker import Faker

from financial_assets.sample_data.config import SeedConfig
from financial_assets.sample_data.objectids import object_ids
from financial_assets.sample_data.schema import ACCOUNT_TYPES, DEVICE_TYPES, TRANSACTION_TYPES

# Part of the determinism contract (see the module docstring).
BLOCK_ROWS = 100_000
CUSTOMER_BLOCK_ROWS = 5_000
GEOLOCATION_POOL_SIZE = 1_000

DAY = 86_400
ACCOUNT_HISTORY_DAYS = 8 * 365
LOCALE = "en_US"
PHONE_LENGTH = 20
MAX_CENTS = 99_999_999_999  # 999,999,999.99: well inside DECIMAL(12, 2)

CUSTOMER_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int32()),
        ("name", pa.string()),
        ("email", pa.string()),
        ("phone", pa.string()),
        ("address", pa.string()),
    ]
)
ACCOUNT_SCHEMA = pa.schema(
    [
        ("account_id", pa.int32()),
        ("customer_id", pa.int32()),
        ("account_type", pa.string()),
        ("balance", pa.decimal128(12, 2)),
        ("opened_at", pa.timestamp("s")),
    ]
)
TRANSACTION_SCHEMA = pa.schema(
    [
        ("transaction_id", pa.int32()),
        ("account_id", pa.int32()),
        ("transaction_type", pa.string()),
        ("amount", pa.decimal128(12, 2)),
        ("timestamp", pa.timestamp("s")),
    ]
)

# Relative activity per hour of day (UTC), 00:00 .. 23:00.
_TRANSACTION_HOURS = np.array(
    [2, 1, 1, 1, 1, 2, 4, 7, 9, 10, 10, 11, 12, 11, 10, 10, 10, 11, 12, 12, 10, 8, 5, 3], dtype=float
)
_OPENING_HOURS = np.array(
    [1, 1, 1, 1, 1, 1, 1, 2, 6, 12, 14, 14, 12, 13, 14, 13, 12, 8, 4, 3, 3, 2, 2, 1], dtype=float
)

_SAVINGS_SHARE = 0.4
_BALANCE_LOGNORMAL = {0: (8.8, 1.4), 1: (7.5, 1.2)}  # by account type code: savings, checking
_ACTIVITY_SHAPE = 0.8

_TYPE_SHARES = np.array([0.30, 0.45, 0.25])  # deposit, withdrawal, transfer
_AMOUNT_MU = np.array([5.3, 4.0, 5.0])
_AMOUNT_SIGMA = np.array([1.1, 1.0, 1.3])

# P(device | transaction type): rows deposit, withdrawal, transfer; columns as DEVICE_TYPES.
_DEVICE_SHARES = np.array([[0.55, 0.30, 0.15], [0.45, 0.25, 0.30], [0.65, 0.35, 0.00]])
_FRAUD_BETA = (1.4, 11.0)

# First octets of public unicast IPv4 space, leaving out private, loopback, link-local,
# carrier-grade NAT, documentation and multicast ranges' /8s.
_PUBLIC_FIRST_OCTETS = np.array(
    [o for o in range(1, 224) if o not in (10, 100, 127, 169, 172, 192, 198, 203)], dtype=np.int64
)


class Stream(IntEnum):
    """Independent random streams, one per kind of data."""

    CUSTOMERS = 1
    ACCOUNTS = 2
    TRANSACTIONS = 3
    EVENTS = 4
    GEOLOCATIONS = 5
    FAULTS = 6
    CHANGES = 7


def rng(seed: int, stream: Stream, block: int = 0) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(int(stream), block))))


def faker(seed: int, stream: Stream, block: int = 0, instance: Faker | None = None) -> Faker:
    """A Faker whose own random state (not the global one) is seeded for this stream and block."""
    fake = instance if instance is not None else Faker(LOCALE)
    state = np.random.SeedSequence(seed, spawn_key=(int(stream), block)).generate_state(2, np.uint32)
    fake.seed_instance(int(state[0]) << 32 | int(state[1]))
    return fake


def day_start(day: date) -> int:
    """Epoch seconds of the day's midnight, UTC."""
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())


def history_window(config: SeedConfig) -> tuple[int, int]:
    """[start, end) of transaction history in epoch seconds: the ``history_days`` ending with as_of."""
    end = day_start(config.as_of) + DAY
    return end - config.history_days * DAY, end


def _timeline(position: np.ndarray, first_day: int, days: int, hour_weights: np.ndarray) -> np.ndarray:
    """Map positions in [0, 1) monotonically onto epoch seconds within ``days`` days."""
    scaled = position * days
    day = np.floor(scaled)
    cumulative = np.concatenate([[0.0], np.cumsum(hour_weights) / hour_weights.sum()])
    hours = np.interp(scaled - day, cumulative, np.arange(25, dtype=float))
    seconds = np.minimum(np.floor(hours * 3600), DAY - 1)
    return first_day + day.astype(np.int64) * DAY + seconds.astype(np.int64)


def _choose(shares: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Category codes for uniform draws, given each category's share."""
    return np.minimum(np.searchsorted(np.cumsum(shares), uniform, side="right"), len(shares) - 1)


def decimal_cents(cents: np.ndarray) -> pa.Array:
    """A DECIMAL(12, 2) Arrow array straight from integer cents (its unscaled value)."""
    cents = np.asarray(cents, dtype=np.int64)
    words = np.empty((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = cents >> 63  # sign extension into the high 64 bits
    return pa.Array.from_buffers(pa.decimal128(12, 2), len(cents), [None, pa.py_buffer(words)])


def _timestamps(seconds: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(seconds, dtype=np.int64).astype("datetime64[s]"), type=pa.timestamp("s"))


def _labels(labels: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.array(labels, type=pa.string()).take(pa.array(codes))


# --- customers -------------------------------------------------------------------------------

_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def _slug(text: str) -> str:
    return _NOT_ALNUM.sub("", text.lower()) or "x"


def fake_customer(fake: Faker) -> tuple[str, str, str, str]:
    """(name, email, phone, address) of one made-up person; the email follows from the name."""
    first, last = fake.first_name(), fake.last_name()
    f, l = _slug(first), _slug(last)
    pick = fake.random.random()
    if pick < 0.40:
        local = f"{f}.{l}"
    elif pick < 0.60:
        local = f"{f}{l}{fake.random.randint(1, 99)}"
    elif pick < 0.75:
        local = f"{f[0]}{l}"
    elif pick < 0.90:
        local = f"{f}_{l}{fake.random.randint(1, 9999)}"
    else:
        local = f"{l}.{f}"
    domain = fake.free_email_domain() if fake.random.random() < 0.8 else fake.domain_name()
    return f"{first} {last}", f"{local}@{domain}", fake.phone_number()[:PHONE_LENGTH], fake.address()


def customer_blocks(config: SeedConfig) -> Iterator[pa.Table]:
    """The clean customers, ids 1..customers, in blocks of CUSTOMER_BLOCK_ROWS."""
    fake = None
    for block, start in enumerate(range(0, config.customers, CUSTOMER_BLOCK_ROWS)):
        stop = min(config.customers, start + CUSTOMER_BLOCK_ROWS)
        fake = faker(config.seed, Stream.CUSTOMERS, block, fake)
        rows = [fake_customer(fake) for _ in range(start, stop)]
        names, emails, phones, addresses = zip(*rows)
        yield pa.table(
            [
                pa.array(range(start + 1, stop + 1), pa.int32()),
                pa.array(names, pa.string()),
                pa.array(emails, pa.string()),
                pa.array(phones, pa.string()),
                pa.array(addresses, pa.string()),
            ],
            schema=CUSTOMER_SCHEMA,
        )


# --- accounts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountPlan:
    """All clean accounts as columns (one int64 per account and column: a few MB per million).

    Index i holds account_id i + 1. ``opened_at`` never decreases with the index.
    """

    opened_at: np.ndarray
    customer_id: np.ndarray
    type_code: np.ndarray
    balance_cents: np.ndarray
    activity_cdf: np.ndarray

    @property
    def count(self) -> int:
        return len(self.opened_at)

    def table(self, start: int, stop: int) -> pa.Table:
        """Accounts with index start..stop-1 as an Arrow table in the accounts column order."""
        return pa.table(
            [
                pa.array(np.arange(start + 1, stop + 1), pa.int32()),
                pa.array(self.customer_id[start:stop], pa.int32()),
                _labels(ACCOUNT_TYPES, self.type_code[start:stop]),
                decimal_cents(self.balance_cents[start:stop]),
                _timestamps(self.opened_at[start:stop]),
            ],
            schema=ACCOUNT_SCHEMA,
        )

    def tables(self) -> Iterator[pa.Table]:
        for start in range(0, self.count, BLOCK_ROWS):
            yield self.table(start, min(self.count, start + BLOCK_ROWS))


def plan_accounts(config: SeedConfig) -> AccountPlan:
    random = rng(config.seed, Stream.ACCOUNTS)
    count = config.accounts
    position = (np.arange(count) + random.random(count)) / count
    first_day = day_start(config.as_of) - ACCOUNT_HISTORY_DAYS * DAY
    opened_at = _timeline(position, first_day, ACCOUNT_HISTORY_DAYS, _OPENING_HOURS)
    customer_id = random.permutation(
        np.repeat(np.arange(1, config.customers + 1, dtype=np.int64), config.accounts_per_customer)
    )
    type_code = (random.random(count) >= _SAVINGS_SHARE).astype(np.int64)
    mu = np.where(type_code == 0, _BALANCE_LOGNORMAL[0][0], _BALANCE_LOGNORMAL[1][0])
    sigma = np.where(type_code == 0, _BALANCE_LOGNORMAL[0][1], _BALANCE_LOGNORMAL[1][1])
    balance = np.clip(np.rint(np.exp(random.normal(mu, sigma)) * 100), 0, MAX_CENTS).astype(np.int64)
    activity = random.gamma(_ACTIVITY_SHAPE, size=count) + 1e-3
    return AccountPlan(opened_at, customer_id, type_code, balance, np.cumsum(activity))


# --- transactions and their events -----------------------------------------------------------


@dataclass(frozen=True)
class TransactionBlock:
    """Transactions first_id .. first_id + len - 1, and which of them have an event."""

    index: int
    first_id: int
    account_id: np.ndarray
    type_code: np.ndarray
    amount_cents: np.ndarray
    timestamp: np.ndarray
    has_event: np.ndarray

    def __len__(self) -> int:
        return len(self.timestamp)

    @property
    def transaction_id(self) -> np.ndarray:
        return np.arange(self.first_id, self.first_id + len(self), dtype=np.int64)

    def table(self) -> pa.Table:
        return pa.table(
            [
                pa.array(self.transaction_id, pa.int32()),
                pa.array(self.account_id, pa.int32()),
                _labels(TRANSACTION_TYPES, self.type_code),
                decimal_cents(self.amount_cents),
                _timestamps(self.timestamp),
            ],
            schema=TRANSACTION_SCHEMA,
        )


def transaction_block_count(config: SeedConfig) -> int:
    return -(-config.transactions // BLOCK_ROWS)


def transaction_block(config: SeedConfig, accounts: AccountPlan, index: int) -> TransactionBlock:
    start = index * BLOCK_ROWS
    stop = min(config.transactions, start + BLOCK_ROWS)
    count = stop - start
    random = rng(config.seed, Stream.TRANSACTIONS, index)

    # Stratified positions keep transaction ids in time order across blocks.
    position = (np.arange(start, stop) + random.random(count)) / config.transactions
    window_start, _ = history_window(config)
    moment = _timeline(position, window_start, config.history_days, _TRANSACTION_HOURS)

    # Accounts are sorted by opened_at, so those open at `moment` are a prefix of the cdf.
    open_accounts = np.maximum(np.searchsorted(accounts.opened_at, moment, side="right"), 1)
    target = random.random(count) * accounts.activity_cdf[open_accounts - 1]
    chosen = np.minimum(np.searchsorted(accounts.activity_cdf, target, side="right"), open_accounts - 1)
    timestamp = np.maximum(moment, accounts.opened_at[chosen])

    type_code = _choose(_TYPE_SHARES, random.random(count))
    amount = np.exp(random.normal(_AMOUNT_MU[type_code], _AMOUNT_SIGMA[type_code]))
    amount_cents = np.clip(np.rint(amount * 100), 1, MAX_CENTS).astype(np.int64)

    has_event = np.zeros(count, dtype=bool)
    events = config.events_before(stop) - config.events_before(start)
    has_event[random.choice(count, size=events, replace=False)] = True

    return TransactionBlock(index, start + 1, chosen + 1, type_code, amount_cents, timestamp, has_event)


def transaction_blocks(config: SeedConfig, accounts: AccountPlan) -> Iterator[TransactionBlock]:
    for index in range(transaction_block_count(config)):
        yield transaction_block(config, accounts, index)


def geolocation_pool(seed: int) -> list[dict[str, str]]:
    """(country, city) pairs the events draw from; Faker's cities are invented, as in production."""
    return [{"country": country, "city": city} for country, city in _geolocation_pairs(seed)]


@functools.lru_cache(maxsize=4)
def _geolocation_pairs(seed: int) -> tuple[tuple[str, str], ...]:
    # Made once per seed and process (~0.13 s of Faker calls): a seed and its fault plan each ask.
    fake = faker(seed, Stream.GEOLOCATIONS)
    return tuple((fake.country(), fake.city()) for _ in range(GEOLOCATION_POOL_SIZE))


def public_ipv4(random: np.random.Generator, count: int) -> list[str]:
    first = _PUBLIC_FIRST_OCTETS[random.integers(0, len(_PUBLIC_FIRST_OCTETS), count)]
    middle = random.integers(0, 256, (count, 2))
    last = random.integers(1, 255, count)
    return [
        f"{a}.{b}.{c}.{d}"
        for a, b, c, d in zip(first.tolist(), middle[:, 0].tolist(), middle[:, 1].tolist(), last.tolist())
    ]


def fraud_scores(random: np.random.Generator, count: int) -> np.ndarray:
    return np.clip(np.round(random.beta(*_FRAUD_BETA, size=count), 2), 0.01, 1.0)


def device_codes(random: np.random.Generator, type_code: np.ndarray) -> np.ndarray:
    cumulative = np.cumsum(_DEVICE_SHARES, axis=1)[type_code]
    return np.minimum((random.random(len(type_code))[:, None] >= cumulative).sum(axis=1), len(DEVICE_TYPES) - 1)


def event_documents(
    config: SeedConfig, block: TransactionBlock, pool: list[dict[str, str]]
) -> list[dict]:
    """The clean events of a block's transactions, as documents ready for insert_many."""
    random = rng(config.seed, Stream.EVENTS, block.index)
    selected = np.flatnonzero(block.has_event)
    count = len(selected)
    devices = device_codes(random, block.type_code[selected]).tolist()
    addresses = public_ipv4(random, count)
    places = random.integers(0, len(pool), count).tolist()
    scores = fraud_scores(random, count).tolist()
    ids = object_ids(block.timestamp[selected], config.events_before(block.first_id - 1))
    transaction_ids = (selected + block.first_id).tolist()
    return [
        {
            "_id": object_id,
            "transaction_id": transaction_id,
            "device_type": DEVICE_TYPES[device],
            "ip_address": address,
            "geolocation": pool[place],
            "fraud_score": score,
        }
        for object_id, transaction_id, device, address, place, score in zip(
            ids, transaction_ids, devices, addresses, places, scores
        )
    ]
