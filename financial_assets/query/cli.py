"""`financial-assets query`: SQL over the star schema, printed for people or scripts."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from decimal import Decimal


def register(commands) -> None:
    parser = commands.add_parser(
        "query",
        help="run SQL on the star schema with DuckDB (default: the analyst's query)",
        description="Run SQL on the published star schema with DuckDB. Without SQL, runs the "
        "analyst's query from the original pipeline's README.",
    )
    parser.add_argument("sql", nargs="?", help="the SQL to run (default: the analyst's query)")
    parser.add_argument("--format", choices=["table", "csv", "json"], default="table")
    parser.add_argument("--limit", type=int, default=20, help="rows printed as a table (default 20)")
    parser.set_defaults(handler=run)


def _text(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, Decimal | float):
        return f"{value:,.2f}"
    return str(value)


def print_table(columns: list[str], rows: list[tuple], limit: int, out=sys.stdout) -> None:
    shown = [[_text(v) for v in row] for row in rows[:limit]]
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row[i], int | float | Decimal) or row[i] is None for row in rows) for i in range(len(columns))]

    def line(cells):
        return "  ".join(cell.rjust(w) if num else cell.ljust(w) for cell, w, num in zip(cells, widths, numeric))

    print(line(columns), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in shown:
        print(line(row), file=out)
    more = len(rows) - len(shown)
    print(f"({len(rows)} rows{f', {more} not shown' if more > 0 else ''})", file=out)


def run(args: argparse.Namespace) -> int:
    from financial_assets.lakehouse.storage import LakehouseStorage
    from financial_assets.query.duckdb_views import ANALYST_QUERY, NoStarSchemaError, connect, published_version
    from financial_assets.settings import Settings

    settings = Settings.from_env()
    storage = LakehouseStorage(settings.lakehouse_uri, s3_endpoint_url=settings.s3_endpoint_url)
    try:
        version = published_version(storage)
    except NoStarSchemaError as error:
        print(f"financial-assets: {error}", file=sys.stderr)
        return 2
    result = connect(storage, version).execute(args.sql or ANALYST_QUERY)
    columns = [d[0] for d in result.description]
    rows = result.fetchall()
    if args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    elif args.format == "json":
        json.dump([dict(zip(columns, row)) for row in rows], sys.stdout, default=str, indent=1)
        print()
    else:
        print(f"published star schema version {version}", file=sys.stderr)
        print_table(columns, rows, args.limit)
    return 0
