"""A day of changes to the seeded sources: `financial-assets seed --apply-changes N`.

The sources keep only the current row, so what a day changes overwrites it: customers move
(a new address), change email or phone, accounts change balance or type (savings <-> checking),
and accounts close. The reference schema has no status column, so a closed account is a deleted
row; the foreign key from ``transactions`` allows that only for an account with no transaction,
so only those close (and a customer whose last account closed leaves: deleted too). Builds of the
star schema then see the changes the way they see production's: by comparing extractions.

Deterministic: the changes are a function of the seed and of the sources' state (their customers,
accounts and total balance), so the same command on the same data makes the same changes, and a
second run, on the data the first one changed, makes another day's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from financial_assets.sample_data.generate import PHONE_LENGTH, Stream, faker, rng
from financial_assets.sources import connect_postgres

# The kinds of change and their shares of a day's changes.
KINDS = {"move": 0.25, "email": 0.15, "phone": 0.10, "balance": 0.35, "account_type": 0.10, "close_account": 0.05}
_OTHER_TYPE = {"savings": "checking", "checking": "savings"}


@dataclass
class ChangeReport:
    """Which rows each kind of change touched: customer ids (move, email, phone, and the customers
    who left with their last account: ``customer_left``), account ids (the others)."""

    changed: dict[str, list[int]] = field(default_factory=dict)

    def summary(self) -> str:
        return "\n".join(f"  {kind:<14} {len(keys):>6,}" for kind, keys in self.changed.items())


def _state_digest(customers: list[int], accounts: list[tuple]) -> int:
    digest = hashlib.sha256(repr((customers, [(a[0], a[1], a[2], str(a[3])) for a in accounts])).encode())
    return int.from_bytes(digest.digest()[:4], "big")


def apply_changes(postgres_url: str, count: int, seed: int) -> ChangeReport:
    """Apply ``count`` changes to the customers and accounts at ``postgres_url``, in one transaction."""
    report = ChangeReport({kind: [] for kind in (*KINDS, "customer_left")})
    with connect_postgres(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT customer_id FROM customers ORDER BY customer_id")
        customers = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT account_id, customer_id, account_type, balance FROM accounts ORDER BY account_id")
        accounts = cursor.fetchall()
        cursor.execute("SELECT account_id FROM accounts a WHERE NOT EXISTS "
                       "(SELECT 1 FROM transactions t WHERE t.account_id = a.account_id) ORDER BY account_id")
        closable = [row[0] for row in cursor.fetchall()]
        if not customers or not accounts:
            return report
        day = _state_digest(customers, accounts)
        random, fake = rng(seed, Stream.CHANGES, day), faker(seed, Stream.CHANGES, day)
        kinds = list(KINDS)
        shares = np.array(list(KINDS.values()))
        for kind in random.choice(len(kinds), size=count, p=shares / shares.sum()):
            kind = kinds[kind]
            customer = customers[random.integers(len(customers))]
            position = int(random.integers(len(accounts)))
            account_id, owner_id, account_type, balance = accounts[position]
            key = account_id
            if kind == "move":
                cursor.execute("UPDATE customers SET address = %s WHERE customer_id = %s", (fake.address(), customer))
                key = customer
            elif kind == "email":
                cursor.execute("UPDATE customers SET email = %s WHERE customer_id = %s", (fake.email(), customer))
                key = customer
            elif kind == "phone":
                cursor.execute("UPDATE customers SET phone = %s WHERE customer_id = %s",
                               (fake.phone_number()[:PHONE_LENGTH], customer))
                key = customer
            elif kind == "balance":
                # A day's movements: a few percent of the balance, either way, never below zero.
                cents = int(round(float(balance or 0) * 100))
                cents = max(cents + int(random.normal(0, max(cents * 0.05, 2_000))), 0)
                cursor.execute("UPDATE accounts SET balance = %s WHERE account_id = %s", (f"{cents / 100:.2f}", key))
                accounts[position] = (account_id, owner_id, account_type, cents / 100)
            elif kind == "account_type":
                account_type = _OTHER_TYPE.get(account_type, "checking")
                cursor.execute("UPDATE accounts SET account_type = %s WHERE account_id = %s", (account_type, key))
                accounts[position] = (account_id, owner_id, account_type, balance)
            else:
                if not closable or len(accounts) == 1:
                    continue
                key = closable.pop(int(random.integers(len(closable))))
                cursor.execute("DELETE FROM accounts WHERE account_id = %s RETURNING customer_id", (key,))
                owner = cursor.fetchone()[0]
                accounts = [a for a in accounts if a[0] != key]
                if owner in customers and owner not in {a[1] for a in accounts} and len(customers) > 1:
                    cursor.execute("DELETE FROM customers WHERE customer_id = %s", (owner,))
                    customers.remove(owner)
                    report.changed["customer_left"].append(owner)
            report.changed[kind].append(key)
    return report
