"""`financial-assets defects`: the published fact rows flagged with source-data defects.

Without a code, one row per defect code: its check, how many published rows hold it, what it
means. With ``--code`` or ``--check``, the flagged rows themselves (fact columns only: keys, no
personal data). Read like `financial-assets query` (DuckDB locally, Athena on AWS), with the same
``--format`` and ``--as-of``.
"""

from __future__ import annotations

import argparse
import sys

from financial_assets.quality.defects import CHECK_OF_CODE, DEFECT_CHECKS, DEFECT_COUNTS_QUERY, DEFECTS, defect_query
from financial_assets.query.cli import add_output_options


def register(commands) -> None:
    parser = commands.add_parser(
        "defects",
        help="list the published fact rows flagged with source-data defects, by defect code",
        description="Source rows with something wrong in them are published with the codes of what is wrong in "
        "fact_transactions.defects. Without options: the number of flagged rows per code. With --code or "
        "--check: those rows. Exclude flagged rows from your own queries with cardinality(defects) = 0.",
    )
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--code", action="append", choices=list(DEFECTS), help="list the rows with this code "
                        "(repeatable)")
    chosen.add_argument("--check", choices=[check.name for check in DEFECT_CHECKS],
                        help="list the rows with any code of this check")
    add_output_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from financial_assets.lakehouse.catalog import CatalogUnavailableError
    from financial_assets.query.cli import emit, run_sql
    from financial_assets.query.duckdb_views import ReaderError
    from financial_assets.settings import Settings

    settings = Settings.from_env()
    codes = args.code or ([*next(c for c in DEFECT_CHECKS if c.name == args.check).codes] if args.check else None)
    try:
        if codes:
            columns, rows, where = run_sql(settings, defect_query(codes), args.as_of)
        else:
            _, counted, where = run_sql(settings, DEFECT_COUNTS_QUERY, args.as_of)
            flagged = {code: int(count) for code, count in counted}
            columns = ["code", "check", "flagged_rows", "meaning"]
            rows = [(code, CHECK_OF_CODE[code].name, flagged.pop(code, 0), meaning) for code, meaning in DEFECTS.items()]
            # A code this code base does not know (written by another version): shown, not hidden.
            rows += [(code, None, count, "unknown code") for code, count in sorted(flagged.items())]
    except (ReaderError, CatalogUnavailableError) as error:
        print(f"financial-assets: {error}", file=sys.stderr)
        return 2
    emit(columns, rows, where, args.format, args.limit)
    return 0
