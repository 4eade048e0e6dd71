"""`financial-assets seed`: replace the sources' data with generated sample data."""

from __future__ import annotations

import argparse
from datetime import date

from financial_assets.sample_data.config import (
    DEFAULT_ACCOUNTS_PER_CUSTOMER,
    DEFAULT_CUSTOMERS,
    DEFAULT_EVENT_RATIO,
    DEFAULT_HISTORY_DAYS,
    DEFAULT_SEED,
    DEFAULT_TRANSACTIONS,
    SeedConfig,
    last_complete_day,
)

DESCRIPTION = """\
Drop and re-create the PostgreSQL tables customers, accounts and transactions and the document
collection transaction_events, and fill them with generated data. Connections come from
FIN_POSTGRES_URL, FIN_MONGO_URL and FIN_MONGO_DATABASE. The data is deterministic: the same
--seed AND --as-of (and counts) give byte-identical data. --with-faults adds the documented set
of bad records (financial_assets/sample_data/faults.py) on top of the clean data.

With --apply-changes N, nothing is re-created: N changes of a day are applied to the customers and
accounts already there (moves, new emails and phones, balances, account types, closed accounts),
deterministic for --seed and the data they start from; the counts and --as-of are then ignored."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def register(commands) -> argparse.ArgumentParser:
    """Add the `seed` subcommand to an argparse subparsers object."""
    parser = commands.add_parser(
        "seed",
        help="replace the sources' data with deterministic sample data",
        description=DESCRIPTION,
    )
    parser.add_argument("--customers", type=_positive_int, default=DEFAULT_CUSTOMERS, metavar="N",
                        help="customers to generate (default: %(default)s)")
    parser.add_argument("--accounts-per-customer", type=_positive_int, default=DEFAULT_ACCOUNTS_PER_CUSTOMER,
                        metavar="K", help="accounts per customer (default: %(default)s)")
    parser.add_argument("--transactions", type=_positive_int, default=DEFAULT_TRANSACTIONS, metavar="N",
                        help="transactions to generate (default: %(default)s)")
    parser.add_argument("--seed", type=_seed, default=DEFAULT_SEED, metavar="S", help="random seed (default: %(default)s)")
    parser.add_argument("--as-of", type=_date, default=None, metavar="YYYY-MM-DD",
                        help="last day of transaction history (default: yesterday, the last complete UTC day)")
    parser.add_argument("--history-days", type=_positive_int, default=DEFAULT_HISTORY_DAYS, metavar="D",
                        help="days of transaction history, ending with the as-of day (default: %(default)s)")
    parser.add_argument("--event-ratio", type=_ratio, default=DEFAULT_EVENT_RATIO, metavar="R",
                        help="share of transactions that have an event document (default: %(default)s)")
    parser.add_argument("--with-faults", action="store_true",
                        help="add the catalogue of bad records on top of the clean data")
    parser.add_argument("--report", metavar="PATH", default=None,
                        help="also write the seed report (counts, faults and their keys) as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--apply-changes", type=_positive_int, default=None, metavar="N",
                        help="instead of seeding, apply N changes of a day to the existing customers and accounts")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from financial_assets.sample_data.seed import seed_sources
    from financial_assets.settings import Settings

    settings = Settings.from_env()
    if args.apply_changes:
        from financial_assets.sample_data.changes import apply_changes

        changes = apply_changes(settings.postgres_url, args.apply_changes, args.seed)
        print(f"Applied {args.apply_changes} changes with seed {args.seed} to PostgreSQL:")
        print(changes.summary())
        return 0
    config = SeedConfig(
        customers=args.customers,
        accounts_per_customer=args.accounts_per_customer,
        transactions=args.transactions,
        seed=args.seed,
        as_of=args.as_of or last_complete_day(),
        history_days=args.history_days,
        event_ratio=args.event_ratio,
        with_faults=args.with_faults,
    )
    report = seed_sources(
        settings.postgres_url,
        settings.mongo_url,
        settings.mongo_database,
        config,
        progress=not args.no_progress,
    )
    print(
        f"Seeded {settings.mongo_database} and PostgreSQL with seed {config.seed}, "
        f"as of {config.as_of.isoformat()}, in {report.seconds['total']:.1f} s:"
    )
    print(report.summary())
    if args.report:
        report.write_json(args.report)
        print(f"Report written to {args.report}")
    return 0
