"""What to generate: :class:`SeedConfig`, validated on construction.

The data is a pure function of the whole configuration, in particular of ``seed`` AND ``as_of``:
every timestamp is placed relative to ``as_of`` (the last day of transaction history), so the
same seed with another as-of date gives the same shape of data shifted in time, not the same
bytes. Only the ``as_of`` default reads the clock.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone

DEFAULT_CUSTOMERS = 1000
DEFAULT_ACCOUNTS_PER_CUSTOMER = 2
DEFAULT_TRANSACTIONS = 20000
DEFAULT_SEED = 42
DEFAULT_EVENT_RATIO = 0.95
DEFAULT_HISTORY_DAYS = 365

# Guards the floor in events_before() against 0.95 * 20000 landing on 18999.999...
_EPSILON = 1e-9


def last_complete_day() -> date:
    """Yesterday in UTC: the default as-of date. History ends with a whole day, so no sample
    transaction lies in the future of the moment the data is generated."""
    return datetime.now(timezone.utc).date() - timedelta(days=1)


@dataclass(frozen=True)
class SeedConfig:
    """How much sample data to generate, and from which seed."""

    customers: int = DEFAULT_CUSTOMERS
    accounts_per_customer: int = DEFAULT_ACCOUNTS_PER_CUSTOMER
    transactions: int = DEFAULT_TRANSACTIONS
    seed: int = DEFAULT_SEED
    as_of: date = field(default_factory=last_complete_day)
    event_ratio: float = DEFAULT_EVENT_RATIO
    history_days: int = DEFAULT_HISTORY_DAYS
    with_faults: bool = False

    def __post_init__(self) -> None:
        for name in ("customers", "accounts_per_customer", "transactions", "history_days"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.as_of, date) or isinstance(self.as_of, datetime):
            raise ValueError(f"as_of must be a date, got {self.as_of!r}")
        if not 0.0 <= float(self.event_ratio) <= 1.0:
            raise ValueError(f"event_ratio must be between 0 and 1, got {self.event_ratio!r}")

    @property
    def accounts(self) -> int:
        """Clean accounts: exactly ``accounts_per_customer`` for every customer."""
        return self.customers * self.accounts_per_customer

    @property
    def events(self) -> int:
        """Clean transaction events: exactly ``floor(transactions * event_ratio)``."""
        return self.events_before(self.transactions)

    def events_before(self, transactions: int) -> int:
        """Clean events among the first ``transactions`` transactions (by transaction_id)."""
        return math.floor(transactions * float(self.event_ratio) + _EPSILON)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["as_of"] = self.as_of.isoformat()
        return values
