"""Stream a PostgreSQL table into Arrow record batches through COPY, in bounded memory.

The server renders rows as CSV (``COPY ... TO STDOUT``), a thread pumps them into a pipe, and
Arrow's multi-threaded CSV reader parses the other end into typed batches. Memory holds a
few blocks of CSV and one batch, whatever the table's size.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import psycopg2.extensions
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg2 import sql

from financial_assets.extract.contracts import TableContract


PIPE_BYTES = 1 << 20
XID_MODULUS = 1 << 32  # a row's `xmin` is a 32-bit transaction id; snapshots give 64-bit ones


class SchemaDriftError(RuntimeError):
    """A source column the contract needs disappeared or changed type."""


@dataclass(frozen=True)
class LiveColumn:
    name: str
    arrow_type: pa.DataType
    # How the column is selected: some types are cast so that COPY's text is parseable.
    select_expression: sql.Composable


@dataclass(frozen=True)
class SourceSnapshot:
    """The transactions PostgreSQL had not committed when a load's snapshot was taken.

    ``xmin``, ``xmax`` and ``in_progress`` are the snapshot's own (64-bit ``xid8`` values):
    every transaction below ``xmin`` had finished, ``in_progress`` lists the unfinished ones below
    ``xmax`` (top-level transactions only: no subtransaction ids), and every id from ``xmax`` up
    counts as unfinished. ``next_xid`` is the next id to be assigned, read just after the
    snapshot was taken.
    """

    xmin: int
    xmax: int
    in_progress: tuple[int, ...]
    next_xid: int

    @property
    def pending(self) -> tuple[int, ...]:
        """Every transaction id assigned by the time the snapshot was taken whose rows it does
        not show: those in progress below ``xmax``, and every id from ``xmax`` to ``next_xid``.

        The second part matters: ``xmax`` is one past the newest *finished* transaction, so a
        transaction that got its id after another one that has since committed is in progress
        but absent from ``in_progress``.
        """
        return tuple(sorted(set(self.in_progress) | set(range(self.xmax, self.next_xid))))


# The snapshot must be the transaction's first: under REPEATABLE READ the first statement fixes
# the snapshot every later statement (the copy, the counts) sees. `age(xid)` measures from the
# next transaction id, read once per transaction at its first call, here: right after the snapshot.
# (xid values 0-2 are special, so the reference id is at least 3.)
_SNAPSHOT_QUERY = """
SELECT pg_snapshot_xmin(s)::text::bigint,
       pg_snapshot_xmax(s)::text::bigint,
       ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(s) AS x ORDER BY 1),
       greatest(pg_snapshot_xmax(s)::text::bigint % 4294967296, 3),
       age(greatest(pg_snapshot_xmax(s)::text::bigint % 4294967296, 3)::text::xid)
FROM pg_current_snapshot() AS s
"""


def source_snapshot(connection: psycopg2.extensions.connection) -> SourceSnapshot:
    """Take the transaction's snapshot now (call it first in a REPEATABLE READ transaction)."""
    with connection.cursor() as cursor:
        cursor.execute(_SNAPSHOT_QUERY)
        xmin, xmax, in_progress, reference, age = cursor.fetchone()
    next_xid = xmax - xmax % XID_MODULUS + reference + age
    return SourceSnapshot(xmin=xmin, xmax=xmax, in_progress=tuple(in_progress), next_xid=max(next_xid, xmax))


def late_row_candidates(
    connection: psycopg2.extensions.connection,
    table: str,
    cursor_column: str,
    *,
    through,
    above=None,
    oldest_unseen_xid: int,
) -> list:
    """Cursor values in ``above < cursor <= through`` whose row was written by a transaction no
    older than ``oldest_unseen_xid``: a superset of the rows that an earlier snapshot, whose
    oldest unseen transaction that was, did not show (a subtransaction's id is greater than its
    parent's, so rows written under a savepoint are in too).

    Transaction ids are compared by ``age()``, PostgreSQL's own distance back from the next
    transaction id on the 32-bit circle: ``xmin`` is not older when its age is not greater (a
    row frozen so long ago that its age wraps comes out a candidate too, which the caller's
    anti-join drops). ``age`` is integer arithmetic, where ``xmin::text::bigint`` would format
    and parse every row: 2.5 times faster on a scan of 2M rows.
    """
    query = sql.SQL(
        "SELECT {cursor} FROM {table} WHERE {cursor} <= {through}{above}"
        " AND age(xmin) <= age({oldest}::text::xid)"
    ).format(
        cursor=sql.Identifier(cursor_column),
        table=sql.Identifier(table),
        through=sql.Literal(through),
        above=sql.SQL(" AND {} > {}").format(sql.Identifier(cursor_column), sql.Literal(above))
        if above is not None
        else sql.SQL(""),
        oldest=sql.Literal(oldest_unseen_xid % XID_MODULUS),
    )
    with connection.cursor() as cursor:
        cursor.execute(query)
        return [row[0] for row in cursor.fetchall()]


def _arrow_type(data_type: str, precision: int | None, scale: int | None) -> tuple[pa.DataType, str]:
    """The Arrow type of a PostgreSQL column and the cast (if any) that COPY needs for it."""
    mapping = {
        "smallint": pa.int16(),
        "integer": pa.int32(),
        "bigint": pa.int64(),
        "real": pa.float32(),
        "double precision": pa.float64(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "character varying": pa.string(),
        "character": pa.string(),
        "text": pa.string(),
        "timestamp without time zone": pa.timestamp("us", tz="UTC"),
    }
    if data_type in mapping:
        return mapping[data_type], ""
    if data_type == "timestamp with time zone":
        return pa.timestamp("us", tz="UTC"), "utc"
    if data_type == "numeric" and precision is not None and precision <= 38:
        return pa.decimal128(precision, scale or 0), ""
    # Anything else (unbounded numeric, json, uuid, arrays...) travels as its text form.
    return pa.string(), "text"


def live_columns(connection: psycopg2.extensions.connection, table: str) -> list[LiveColumn]:
    """The table's columns as the server has them now, in table order."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT column_name, data_type, numeric_precision, numeric_scale
            FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = %s
            ORDER BY ordinal_position
            """,
            (table,),
        )
        rows = cursor.fetchall()
    if not rows:
        raise SchemaDriftError(f"source table {table!r} does not exist")
    columns = []
    for name, data_type, precision, scale in rows:
        arrow_type, cast = _arrow_type(data_type, precision, scale)
        identifier = sql.Identifier(name)
        if cast == "utc":
            expression = sql.SQL("({} AT TIME ZONE 'UTC')").format(identifier)
        elif cast == "text":
            expression = sql.SQL("{}::text").format(identifier)
        else:
            expression = identifier
        columns.append(LiveColumn(name, arrow_type, expression))
    return columns


def columns_to_extract(
    contract: TableContract, live: list[LiveColumn]
) -> tuple[list[LiveColumn], list[str]]:
    """The contract's columns in contract order, then any new ones; and the new ones' names.

    Raises SchemaDriftError naming the first contract column that is gone or retyped.
    """
    by_name = {column.name: column for column in live}
    for name, expected in contract.columns.items():
        if name not in by_name:
            raise SchemaDriftError(f"{contract.table}.{name}: column missing from the source")
        if by_name[name].arrow_type != expected:
            raise SchemaDriftError(
                f"{contract.table}.{name}: source type changed, expected {expected}, "
                f"found {by_name[name].arrow_type}"
            )
    new = [column for column in live if column.name not in contract.columns]
    ordered = [by_name[name] for name in contract.columns] + new
    return ordered, [column.name for column in new]


def _csv_reader_options(columns: list[LiveColumn], block_size: int):
    # COPY's CSV writes NULL as an empty unquoted field and '' as a quoted one: keep them apart.
    parse_types = {
        column.name: pa.timestamp("us") if pa.types.is_timestamp(column.arrow_type) else column.arrow_type
        for column in columns
    }
    read = pacsv.ReadOptions(column_names=[c.name for c in columns], block_size=block_size)
    parse = pacsv.ParseOptions(newlines_in_values=True)
    convert = pacsv.ConvertOptions(
        column_types=parse_types,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
    )
    return read, parse, convert


def stream_batches(
    connection: psycopg2.extensions.connection,
    table: str,
    columns: list[LiveColumn],
    *,
    after: int | None = None,
    cursor_column: str | None = None,
    also: Sequence = (),
    block_size: int = 1 << 20,
) -> Iterator[pa.RecordBatch]:
    """Record batches of ``table``'s rows: those with ``cursor_column > after`` if given, and
    those whose cursor value is in ``also`` (rows below the mark that committed late)."""
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(c.select_expression for c in columns), sql.Identifier(table)
    )
    if after is not None:
        condition = sql.SQL("{} > {}").format(sql.Identifier(cursor_column), sql.Literal(after))
        if also:
            condition = sql.SQL("{} OR {} = ANY({})").format(
                condition, sql.Identifier(cursor_column), sql.Literal(list(also))
            )
        query = sql.SQL("{} WHERE {}").format(query, condition)
    copy = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(query).as_string(connection)
    schema = pa.schema([(c.name, c.arrow_type) for c in columns])

    read_fd, write_fd = os.pipe()
    try:
        # 1 MiB of pipe instead of 64 KiB: COPY keeps streaming while a row group is encoded.
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (AttributeError, OSError):
        pass
    failure: list[BaseException] = []

    def pump() -> None:
        try:
            with os.fdopen(write_fd, "wb", buffering=1 << 20) as sink, connection.cursor() as cursor:
                cursor.execute("SET LOCAL TimeZone = 'UTC'")
                cursor.copy_expert(copy, sink, size=1 << 20)
        except BaseException as error:  # re-raised in the reading thread
            failure.append(error)

    pumper = threading.Thread(target=pump, name=f"copy-{table}", daemon=True)
    pumper.start()
    # Buffered to whole blocks: unbuffered, each read returns what the pipe holds (a few
    # thousand rows), and the per-batch overhead dominates.
    source = os.fdopen(read_fd, "rb", buffering=block_size)
    try:
        try:
            reader = pacsv.open_csv(source, *_csv_reader_options(columns, block_size))
        except pa.ArrowInvalid as error:
            if "Empty CSV file" in str(error):
                reader = None  # no rows to load
            else:
                raise
        if reader is not None:
            for batch in reader:
                yield pa.RecordBatch.from_arrays(
                    [array.cast(field.type) for array, field in zip(batch.columns, schema)],
                    schema=schema,
                )
    finally:
        # Closing our end first makes a pump still writing fail fast instead of blocking.
        source.close()
        pumper.join()
    if failure:
        raise failure[0]
