"""DuckDB views over one publication of the star schema: no network, no DuckDB extension, no JVM.

PyIceberg plans each table's files at the snapshot the publication names (never ``main``), and
each view reads exactly those Parquet files with ``read_parquet([...], union_by_name=true)``.
That is complete only for copy-on-write tables, which ours are: a file with delete files
attached (merge-on-read) is refused, never read as if nothing had been deleted. A table whose
snapshot holds no file becomes an empty view with the columns of its Iceberg schema.

No Dagster and no Spark import: `financial-assets query` loads this module.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb

from financial_assets.lakehouse.catalog import LakehouseCatalog
from financial_assets.lakehouse.publication import Publication
from financial_assets.lakehouse.tables import STAR_TABLES


class ReaderError(LookupError):
    """The star schema cannot be read as asked; the message is one line that says why."""


def local_path(uri: str) -> str:
    """A local file's path as DuckDB opens it: ``file:///a/b`` and ``file:/a/b`` become ``/a/b``;
    other URIs (``s3://...``) are left as they are."""
    if uri.startswith("file://"):
        return uri[len("file://"):]
    if uri.startswith("file:"):
        return uri[len("file:"):]
    return uri


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def duckdb_type(iceberg_type) -> str:
    """The DuckDB type of an Iceberg type (primitive or nested)."""
    from pyiceberg import types as t

    if isinstance(iceberg_type, t.DecimalType):
        return f"DECIMAL({iceberg_type.precision},{iceberg_type.scale})"
    if isinstance(iceberg_type, t.StructType):
        fields = ", ".join(f"{_identifier(f.name)} {duckdb_type(f.field_type)}" for f in iceberg_type.fields)
        return f"STRUCT({fields})"
    if isinstance(iceberg_type, t.ListType):
        return f"{duckdb_type(iceberg_type.element_type)}[]"
    if isinstance(iceberg_type, t.MapType):
        return f"MAP({duckdb_type(iceberg_type.key_type)}, {duckdb_type(iceberg_type.value_type)})"
    primitives = {
        t.BooleanType: "BOOLEAN", t.IntegerType: "INTEGER", t.LongType: "BIGINT", t.FloatType: "FLOAT",
        t.DoubleType: "DOUBLE", t.DateType: "DATE", t.TimeType: "TIME", t.TimestampType: "TIMESTAMP",
        t.TimestamptzType: "TIMESTAMPTZ", t.TimestampNanoType: "TIMESTAMP_NS", t.TimestamptzNanoType: "TIMESTAMPTZ",
        t.StringType: "VARCHAR", t.UUIDType: "UUID", t.BinaryType: "BLOB", t.FixedType: "BLOB",
    }
    for iceberg_class, name in primitives.items():
        if isinstance(iceberg_type, iceberg_class):
            return name
    raise ReaderError(f"no DuckDB type for the Iceberg type {iceberg_type}")


def _load_star_table(catalog: LakehouseCatalog, name: str):
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return catalog.load().load_table(catalog.analytics_table(name))
    except NoSuchTableError:
        raise ReaderError(f"the star-schema table {catalog.analytics_table(name)} does not exist in {catalog!r}") from None


def missing_snapshots(catalog: LakehouseCatalog, publication: Publication) -> list[str]:
    """The star tables whose snapshot in ``publication`` no longer exists (expired by maintenance)."""
    missing = []
    for name in published_tables(publication.snapshots):
        if _load_star_table(catalog, name).snapshot_by_id(publication.snapshots[name]) is None:
            missing.append(name)
    return missing


def require_readable(catalog: LakehouseCatalog, publication: Publication) -> None:
    """ReaderError unless every table's snapshot of ``publication`` still exists."""
    missing = missing_snapshots(catalog, publication)
    if missing:
        raise ReaderError(
            f"version {publication.version} as published at {publication.published_at.isoformat()} is no longer "
            f"readable: maintenance expired its snapshots of {', '.join(missing)} (outside the retention window)"
        )


def table_files(catalog: LakehouseCatalog, name: str, snapshot_id: int) -> tuple[list[str], object]:
    """The data files of table ``name`` at ``snapshot_id`` as DuckDB opens them, and its Iceberg
    schema at that snapshot. ReaderError when the snapshot is gone or a file has deletes."""
    table = _load_star_table(catalog, name)
    snapshot = table.snapshot_by_id(snapshot_id)
    if snapshot is None:
        raise ReaderError(f"snapshot {snapshot_id} of {catalog.analytics_table(name)} no longer exists (expired by maintenance)")
    files = []
    for task in table.scan(snapshot_id=snapshot_id).plan_files():
        if task.delete_files:
            raise ReaderError(
                f"{catalog.analytics_table(name)} snapshot {snapshot_id} has delete files on {task.file.file_path}: "
                "merge-on-read tables cannot be read as plain Parquet; rewrite them copy-on-write"
            )
        files.append(local_path(task.file.file_path))
    schema = table.schemas()[snapshot.schema_id] if snapshot.schema_id is not None else table.schema()
    return sorted(files), schema


def view_sql(name: str, files: list[str], schema) -> str:
    """The view of one table: its files, or no row with the schema's columns when it has none."""
    if files:
        listed = ", ".join(_literal(path) for path in files)
        return f"CREATE OR REPLACE VIEW {_identifier(name)} AS SELECT * FROM read_parquet([{listed}], union_by_name=true)"
    columns = ", ".join(f"CAST(NULL AS {duckdb_type(f.field_type)}) AS {_identifier(f.name)}" for f in schema.fields)
    return f"CREATE OR REPLACE VIEW {_identifier(name)} AS SELECT {columns} WHERE false"


def view_statements(catalog: LakehouseCatalog, snapshots: Mapping[str, int]) -> list[str]:
    """One ``CREATE OR REPLACE VIEW`` per star table over its snapshot in ``snapshots`` (a
    publication's or a build's: ``Publication.snapshots``, ``Build.snapshots``)."""
    missing = [name for name in ORIGINAL_TABLES if name not in snapshots]
    if missing:
        raise ReaderError(f"no snapshot given for {', '.join(missing)}")
    return [view_sql(name, *table_files(catalog, name, snapshots[name])) for name in published_tables(snapshots)]


# The tables every publication names; the history tables and the balance snapshot came later, and
# a publication made before them has no view of them.
ORIGINAL_TABLES = ("dim_customers", "dim_accounts", "dim_dates", "fact_transactions")


def published_tables(snapshots: Mapping[str, int]) -> list[str]:
    """The star tables ``snapshots`` (a publication's or a build's) names, in STAR_TABLES order."""
    return [name for name in STAR_TABLES if name in snapshots]


def connect(catalog: LakehouseCatalog, snapshots: Mapping[str, int]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per star table at its snapshot in ``snapshots``."""
    statements = view_statements(catalog, snapshots)
    connection = duckdb.connect()
    create_views(connection, statements)
    return connection


def create_views(connection: duckdb.DuckDBPyConnection, statements: list[str]) -> None:
    """Run ``statements``; a view DuckDB cannot create (a file it cannot open, an ``s3://`` file
    without DuckDB's httpfs extension) is a one-line ReaderError."""
    for statement in statements:
        try:
            connection.execute(statement)
        except duckdb.Error as error:
            view = statement.split(" AS ", 1)[0].removeprefix("CREATE OR REPLACE VIEW ")
            raise ReaderError(f"DuckDB cannot create the view {view}: {str(error).splitlines()[0]}") from None
