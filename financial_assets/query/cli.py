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
    from financial_assets.query.duckdb_views import ANALYST_QUERY, NoStarSchemaError
    from financial_assets.settings import Settings

    settings = Settings.from_env()
    sql = args.sql or ANALYST_QUERY
    try:
        if settings.deployment == "aws":
            columns, rows, where = _athena(settings, sql)
        else:
            columns, rows, where = _duckdb(settings, sql)
    except NoStarSchemaError as error:
        print(f"financial-assets: {error}", file=sys.stderr)
        return 2
    if args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    elif args.format == "json":
        json.dump([dict(zip(columns, row)) for row in rows], sys.stdout, default=str, indent=1)
        print()
    else:
        print(where, file=sys.stderr, flush=True)
        print_table(columns, rows, args.limit)
    return 0


def _duckdb(settings, sql: str):
    """The local DuckDB file, first brought onto the published version if it lags behind."""
    import duckdb

    from financial_assets.query.catalogs import DuckDBCatalog
    from financial_assets.query.duckdb_views import require_publication

    publication = require_publication(settings.lakehouse_storage())
    version = publication.version
    if _duckdb_version(settings.duckdb_path) != version:
        DuckDBCatalog(settings.duckdb_path).publish(publication)
    with duckdb.connect(settings.duckdb_path, read_only=True) as connection:
        result = connection.execute(sql)
        return [d[0] for d in result.description], result.fetchall(), (
            f"published star schema version {version} ({settings.duckdb_path})"
        )


def _duckdb_version(path: str) -> str | None:
    import os

    import duckdb

    if not os.path.exists(path):
        return None
    with duckdb.connect(path, read_only=True) as connection:
        try:
            return connection.execute("SELECT version FROM _publication").fetchone()[0]
        except duckdb.CatalogException:
            return None


def _athena(settings, sql: str):
    """Athena, through Dagster's AthenaClientResource, on the Glue Data Catalog database."""
    from dagster_aws.athena import AthenaClientResource

    client = AthenaClientResource(workgroup=settings.athena_workgroup).get_client()
    rows = client.execute_query(_in_database(sql, settings.glue_database), fetch_results=True)
    header, *body = rows or [()]
    return list(header), body, f"Athena workgroup {settings.athena_workgroup}, database {settings.glue_database}"


def _in_database(sql: str, database: str) -> str:
    """Athena resolves unqualified table names in the workgroup's default database: qualify ours."""
    import re

    from financial_assets.transform.star_schema import TABLES

    for table in TABLES:
        sql = re.sub(rf"(?<![\w.\"]){table}\b", f'"{database}"."{table}"', sql)
    return sql
