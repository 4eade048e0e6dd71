"""`financial-assets query`: SQL over the published star schema, printed for people or scripts.

Imports nothing heavy at module level and never PySpark or Dagster: locally DuckDB reads the
Parquet files PyIceberg plans, on AWS Athena reads the Glue Data Catalog's Iceberg tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from decimal import Decimal

AS_OF_HELP = (
    "read the star schema as it was published then: a published version (e.g. 20261129T061053Z-7e03d27b) "
    "or an ISO-8601 date or time (2026-11-29T06:00:00+01:00; without a zone, UTC). Locally the query runs "
    "in an in-memory DuckDB (the shared DuckDB file is not touched); on AWS Athena reads each table "
    "FOR VERSION AS OF the snapshot that publication named. Refused, with the reason, for an unknown "
    "version, a time before the first publication, or snapshots maintenance has expired."
)


def register(commands) -> None:
    parser = commands.add_parser(
        "query",
        help="run SQL on the published star schema (default: the analyst's query)",
        description="Run SQL on the published star schema: locally with DuckDB over the Parquet files of "
        "the latest publication's snapshots, on AWS with Athena. Without SQL, runs the analyst's query "
        "from the original pipeline's README.",
    )
    parser.add_argument("sql", nargs="?", help="the SQL to run (default: the analyst's query)")
    add_output_options(parser)
    parser.set_defaults(handler=run)


def add_output_options(parser) -> None:
    """How a reading command prints (``--format``, ``--limit``) and which publication it reads (``--as-of``)."""
    parser.add_argument("--format", choices=["table", "csv", "json"], default="table")
    parser.add_argument("--limit", type=int, default=20, help="rows printed as a table (default 20)")
    parser.add_argument("--as-of", metavar="VERSION|TIMESTAMP", help=AS_OF_HELP)


def _text(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, Decimal | float):
        return f"{value:,.2f}"
    return str(value)


def print_table(columns: list[str], rows: list[tuple], limit: int, out=None) -> None:
    out = out or sys.stdout  # looked up when printing: tests and callers may replace sys.stdout
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
    from financial_assets.lakehouse.catalog import CatalogUnavailableError
    from financial_assets.lakehouse.tables import ANALYST_QUERY
    from financial_assets.query.duckdb_views import ReaderError
    from financial_assets.settings import Settings

    settings = Settings.from_env()
    sql = args.sql or ANALYST_QUERY
    try:
        columns, rows, where = run_sql(settings, sql, args.as_of)
    except (ReaderError, CatalogUnavailableError) as error:
        print(f"financial-assets: {error}", file=sys.stderr)
        return 2
    emit(columns, rows, where, args.format, args.limit)
    return 0


def run_sql(settings, sql: str, as_of: str | None = None):
    """``sql`` on the published star schema (or the one current at ``as_of``): (columns, rows,
    a line saying what was read)."""
    if settings.deployment == "aws":
        return _athena(settings, sql, as_of)
    return _duckdb(settings, sql, as_of)


def emit(columns: list[str], rows: list[tuple], where: str, format: str, limit: int) -> None:
    """Rows on stdout as CSV, JSON or a table for people (with ``where`` on stderr)."""
    if format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    elif format == "json":
        json.dump([dict(zip(columns, row)) for row in rows], sys.stdout, default=str, indent=1)
        print()
    else:
        print(where, file=sys.stderr, flush=True)
        print_table(columns, rows, limit)


def _describe(publication) -> str:
    kind = "" if publication.kind == "publish" else f", {publication.kind}"
    return f"published {publication.published_at:%Y-%m-%d %H:%M:%S} UTC{kind}"


def _duckdb(settings, sql: str, as_of: str | None = None):
    """Locally: the DuckDB file, first brought onto the latest publication if it lags behind; with
    ``as_of``, an in-memory DuckDB over the publication current then."""
    import duckdb

    from financial_assets.query.catalogs import DuckDBFile, require_publication, resolve_as_of
    from financial_assets.query.duckdb_views import ReaderError, connect

    catalog = settings.catalog()
    if as_of:
        publication = resolve_as_of(catalog, as_of)
        connection = connect(catalog, publication.snapshots)
        where = f"star schema version {publication.version} as of {as_of} ({_describe(publication)}; in memory)"
    else:
        publication = require_publication(catalog)
        database = DuckDBFile(settings.duckdb_path)
        where = f"published star schema version {publication.version} ({settings.duckdb_path})"
        try:
            database.require_lakehouse(catalog)
            if not database.follows(publication):
                database.refresh(catalog, publication)
            connection = duckdb.connect(settings.duckdb_path, read_only=True)
        except duckdb.IOException:  # another process holds the file's write lock (a BI tool, a refresh)
            connection = connect(catalog, publication.snapshots)
            where = f"published star schema version {publication.version} (in memory: {settings.duckdb_path} is locked)"
    try:
        with connection:
            result = connection.execute(sql)
            return [d[0] for d in result.description], result.fetchall(), where
    except duckdb.Error as error:
        raise ReaderError(str(error).splitlines()[0]) from None


def _athena(settings, sql: str, as_of: str | None = None):
    """On AWS: Athena, on the Glue Data Catalog database whose Iceberg tables' ``main`` each
    publish moves; ``as_of`` pins each table to a snapshot."""
    from financial_assets.query.athena import run_query

    snapshots, where = None, f"Athena workgroup {settings.athena_workgroup}, database {settings.glue_database}"
    if as_of:
        from financial_assets.query.catalogs import resolve_as_of

        publication = resolve_as_of(settings.catalog(), as_of)
        snapshots = publication.snapshots
        where += f", star schema version {publication.version} as of {as_of} ({_describe(publication)})"
    columns, rows = run_query(athena_sql(sql, settings.glue_database, snapshots), settings.athena_workgroup)
    return columns, rows, where


def athena_sql(sql: str, database: str, snapshots: dict[str, int] | None = None) -> str:
    """Athena resolves unqualified names in the workgroup's default database: qualify the star
    tables with ours, and pin each to its snapshot (Iceberg time travel) when ``snapshots`` is given."""
    from financial_assets.lakehouse.tables import STAR_TABLES

    for table in STAR_TABLES:
        replacement = f'"{database}"."{table}"'
        if snapshots and table in snapshots:  # a publication older than a table does not name it
            replacement += f" FOR VERSION AS OF {int(snapshots[table])}"
        sql = re.sub(rf"(?<![\w.\"]){table}\b", lambda _match, r=replacement: r, sql)
    return sql
