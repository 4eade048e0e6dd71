"""Raw-zone tables as Apache Iceberg tables, written without a JVM.

A load streams Arrow batches into Parquet files of our own making (the encodings of
:func:`parquet_options`, row groups of bounded size) straight into the table's data folder
through the table's FileIO, then commits them with PyIceberg's ``add_files`` in one Iceberg
commit whose snapshot summary also carries the load's high-water mark. So:

- Readers (PyIceberg, Spark, Athena) see a load whole or not at all: files that are written but
  not committed are listed in no snapshot, and a failed load deletes them (:meth:`RawTableWrite.discard`).
- The mark advances exactly when the data lands: it is a property of the snapshot that adds the
  rows (:data:`HIGH_WATER_MARK`), read back by walking ``main``'s ancestry to the newest snapshot
  that carries it, so maintenance snapshots (compaction) in between are passed over.
- An incremental load appends (operation ``append``); a full load replaces every row in the same
  commit (a ``delete`` of all files, then the ``append``: two snapshots, one commit, and ``main``
  moves from the old rows to the new in one step).
- Commits are optimistic: a load plans against the snapshot it read its mark from, and the
  catalog refuses the commit if ``main`` moved meanwhile. Raw tables are created with
  ``commit.retry.num-retries = 0`` because PyIceberg would otherwise re-apply an append on top of
  the other writer's snapshot, and two loads that planned from the same mark would both land:
  the same rows twice. The refused load raises :class:`ConcurrentCommitError` and is simply run
  again (it then plans from the new mark).
- Files carry Iceberg field ids (``PARQUET:field_id``), so they are resolved by id, like files
  Spark writes, whatever later renames happen. A source column the table lacks is added to the
  table's schema (``union_by_name``) in the same commit as the first rows that carry it.

No Dagster import; the catalog is a :class:`~financial_assets.lakehouse.catalog.LakehouseCatalog`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.exceptions import (
    CommitFailedException,
    NoSuchTableError,
    TableAlreadyExistsError,
    ValidationException,
)
from pyiceberg.expressions import AlwaysTrue, And, GreaterThan, LessThanOrEqual
from pyiceberg.io import load_file_io
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.schema import Schema
from pyiceberg.table import Table, Transaction
from pyiceberg.table.locations import load_location_provider
from pyiceberg.table.snapshots import Snapshot, ancestors_of
from pyiceberg.types import NestedField, StructType

from financial_assets.lakehouse.catalog import TABLE_PROPERTIES, LakehouseCatalog

# Snapshot summary properties a load writes (values are JSON).
HIGH_WATER_MARK = "financial-assets.high-water-mark"
LOAD_MODE = "financial-assets.load-mode"  # "incremental", "full" or "snapshot"
# PostgreSQL sources only (see `financial_assets.extract.loads`): the transactions the load's
# snapshot did not show (assigned ones), the next transaction id then (it and every later one are
# unseen too), and a cursor value below which none of their rows can lie.
PENDING_XIDS = "financial-assets.pending-xids"
NEXT_XID = "financial-assets.next-xid"
PENDING_ABOVE = "financial-assets.pending-above"
RUN_ID = "financial-assets.run-id"

COMMIT_RETRIES = "commit.retry.num-retries"
RAW_TABLE_PROPERTIES = {**TABLE_PROPERTIES, COMMIT_RETRIES: "0"}

ROW_GROUP_ROWS = 262_144
FILE_ROWS = 4_194_304


def parquet_options(schema: pa.Schema) -> dict:
    """Dictionaries only where they pay (strings); delta encoding for integers and timestamps,
    which dictionaries bloat: files 2.5x smaller and faster to write. Spark (Iceberg 1.10+ reads
    DELTA_BINARY_PACKED vectorized), DuckDB and Athena read both encodings."""
    return {
        "compression": "zstd",
        "use_dictionary": [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)],
        "column_encoding": {
            f.name: "DELTA_BINARY_PACKED" for f in schema if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)
        },
    }


class ConcurrentCommitError(RuntimeError):
    """Another writer committed the table between this load's planning and its commit."""


class RawSchemaError(ValueError):
    """The load's columns cannot be merged into the table's schema (a column changed type)."""


# -- reading a raw table's state --------------------------------------------------------------


@dataclass(frozen=True)
class LoadMark:
    """What the newest load on ``main`` recorded in its snapshot summary."""

    snapshot_id: int
    high_water_mark: int | str | None
    load_mode: str | None
    pending_xids: tuple[int, ...] = ()
    next_xid: int | None = None
    pending_above: int | None = None

    @property
    def oldest_unseen_xid(self) -> int | None:
        """The oldest transaction whose rows the load's snapshot did not show (None: unknown)."""
        unseen = [*self.pending_xids, *([self.next_xid] if self.next_xid is not None else [])]
        return min(unseen) if unseen else None


@dataclass(frozen=True)
class RawTableState:
    """A raw table as its current snapshot describes it (no data file is read)."""

    identifier: str
    location: str
    snapshot_id: int | None
    row_count: int
    bytes: int
    files: int
    high_water_mark: int | str | None


def _summary_json(summary: Mapping[str, str], key: str, default=None):
    raw = summary.get(key)
    return default if raw is None else json.loads(raw)


def last_load(table: Table) -> LoadMark | None:
    """The newest snapshot of ``main`` (it or an ancestor) that carries a high-water mark."""
    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        summary = snapshot.summary
        if summary is not None and summary.get(HIGH_WATER_MARK) is not None:
            return LoadMark(
                snapshot_id=snapshot.snapshot_id,
                high_water_mark=_summary_json(summary, HIGH_WATER_MARK),
                load_mode=summary.get(LOAD_MODE),
                pending_xids=tuple(_summary_json(summary, PENDING_XIDS, [])),
                next_xid=_summary_json(summary, NEXT_XID),
                pending_above=_summary_json(summary, PENDING_ABOVE),
            )
    return None


def high_water_mark(table: Table) -> int | str | None:
    """The high-water mark of the newest load on ``main`` (None: no load recorded one)."""
    mark = last_load(table)
    return mark.high_water_mark if mark else None


def _summary_int(snapshot: Snapshot | None, key: str) -> int:
    if snapshot is None or snapshot.summary is None:
        return 0
    return int(snapshot.summary.get(key) or 0)


def row_count(table: Table) -> int:
    """Rows in the current snapshot (its summary's ``total-records``; 0 without a snapshot)."""
    return _summary_int(table.current_snapshot(), "total-records")


def table_state(table: Table) -> RawTableState:
    snapshot = table.current_snapshot()
    return RawTableState(
        identifier=".".join(table.name()),
        location=table.location(),
        snapshot_id=snapshot.snapshot_id if snapshot else None,
        row_count=_summary_int(snapshot, "total-records"),
        bytes=_summary_int(snapshot, "total-files-size"),
        files=_summary_int(snapshot, "total-data-files"),
        high_water_mark=high_water_mark(table),
    )


def read_arrow(table: Table, snapshot_id: int | None = None) -> pa.Table:
    """The table's rows at ``snapshot_id`` (default: the current snapshot), for tests and small tables."""
    return table.scan(snapshot_id=snapshot_id).to_arrow()


def cursor_values(table: Table, column: str, *, above=None, through=None) -> pa.Array:
    """The values of ``column`` in ``above < column <= through`` (either bound optional), read
    from the current snapshot; files whose statistics exclude the range are skipped."""
    bounds = [
        *([GreaterThan(column, above)] if above is not None else []),
        *([LessThanOrEqual(column, through)] if through is not None else []),
    ]
    row_filter = AlwaysTrue() if not bounds else bounds[0] if len(bounds) == 1 else And(*bounds)
    values = table.scan(row_filter=row_filter, selected_fields=(column,)).to_arrow().column(column)
    return values.combine_chunks() if values.num_chunks else pa.array([], values.type)


def open_raw_table(catalog: LakehouseCatalog, name: str) -> Table | None:
    """The raw table ``name`` as committed now, or None when no load has created it yet."""
    try:
        return catalog.load().load_table(catalog.raw_table(name))
    except NoSuchTableError:
        return None


# -- writing ----------------------------------------------------------------------------------


def iceberg_ready(schema: pa.Schema) -> pa.Schema:
    """``schema`` with the integer types Iceberg lacks widened (8/16-bit → 32-bit)."""
    return pa.schema([_iceberg_ready_field(f) for f in schema], metadata=schema.metadata)


def _iceberg_ready_field(field: pa.Field) -> pa.Field:
    type_ = field.type
    if pa.types.is_int8(type_) or pa.types.is_int16(type_) or pa.types.is_uint8(type_) or pa.types.is_uint16(type_):
        type_ = pa.int32()
    elif pa.types.is_struct(type_):
        type_ = pa.struct([_iceberg_ready_field(child) for child in type_])
    return field.with_type(type_)


def _with_field_ids(schema: pa.Schema, iceberg: Schema) -> pa.Schema:
    """``schema`` with each field's Iceberg id as ``PARQUET:field_id`` (struct children too)."""

    def field_with_id(field: pa.Field, iceberg_field: NestedField) -> pa.Field:
        type_ = field.type
        if pa.types.is_struct(type_):
            struct: StructType = iceberg_field.field_type
            type_ = pa.struct([field_with_id(child, struct.field_by_name(child.name)) for child in type_])
        return pa.field(field.name, type_, field.nullable, metadata={b"PARQUET:field_id": str(iceberg_field.field_id).encode()})

    return pa.schema([field_with_id(f, iceberg.find_field(f.name)) for f in schema])


class RawTableWrite:
    """One load's uncommitted write to one raw table: Parquet files, then one commit.

    Batches are grouped into row groups of ``row_group_rows`` and files of ``file_rows``, so
    memory holds at most one row group whatever the size of the load. Use :func:`begin_write`.
    """

    def __init__(
        self,
        catalog: LakehouseCatalog,
        identifier: str,
        transaction: Transaction,
        io,
        schema: pa.Schema,
        *,
        replace: bool,
        replaces_rows: bool,
        run_id: str,
        row_group_rows: int,
        file_rows: int,
    ):
        self._catalog = catalog
        self.identifier = identifier
        self._transaction = transaction
        self._io = io
        metadata = transaction.table_metadata
        self._locations = load_location_provider(metadata.location, metadata.properties)
        self.schema = schema  # what the batches look like
        self._file_schema = _with_field_ids(iceberg_ready(schema), metadata.schema())
        # The writer takes the batches as they are when only the field ids differ.
        self._widen = not self._file_schema.equals(schema, check_metadata=False)
        self._replace = replace
        self._replaces_rows = replaces_rows
        self.run_id = run_id
        self._row_group_rows = row_group_rows
        self._file_rows = file_rows
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._stream = None
        self._current: str | None = None
        self._current_rows = 0
        self._written_rows = 0
        self.files: list[str] = []
        self.bytes = 0
        self.committed: bool | None = False  # None: the commit's outcome is unknown

    @property
    def rows(self) -> int:
        return self._written_rows + self._current_rows + self._pending_rows

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= self._row_group_rows:
            self._flush_row_group()

    def _flush_row_group(self) -> None:
        if not self._pending:
            return
        if self._writer is None:
            self._open_file()
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        if self._widen:
            table = table.cast(self._file_schema)
        self._writer.write_table(table, row_group_size=len(table))
        self._current_rows += len(table)
        self._pending, self._pending_rows = [], 0
        if self._current_rows >= self._file_rows:
            self._close_file()

    def _open_file(self) -> None:
        name = f"{self.run_id}-{uuid.uuid4().hex[:8]}-{len(self.files):05d}.parquet"
        self._current = self._locations.new_data_location(name)
        self._stream = self._io.new_output(self._current).create()
        self._writer = pq.ParquetWriter(self._stream, self._file_schema, **parquet_options(self._file_schema))

    def _close_file(self) -> None:
        self._writer.close()
        self.bytes += self._stream.tell()
        self._stream.close()
        self.files.append(self._current)
        self._written_rows += self._current_rows
        self._writer = self._stream = self._current = None
        self._current_rows = 0

    def finish(self) -> list[str]:
        """Write what is buffered and close the open file; the files are then complete."""
        self._flush_row_group()
        if self._writer is not None:
            self._close_file()
        return self.files

    def discard(self) -> None:
        """Delete every file this write made, unless it was (or may have been) committed; the
        table stays as it was."""
        if self.committed is not False:
            return
        if self._writer is not None:
            try:
                self._writer.close()
                self._stream.close()
            except Exception:  # a half-written file: deleted below all the same
                pass
            self.files.append(self._current)
            self._writer = self._stream = self._current = None
        for path in self.files:
            try:
                self._io.delete(path)
            except FileNotFoundError:
                pass
        self.files = []
        self._pending, self._pending_rows, self._current_rows, self._written_rows = [], 0, 0, 0

    def commit(self, properties: Mapping[str, str]) -> Table:
        """Commit the files, with ``properties`` in the snapshot summary, in one Iceberg commit.

        A replacing write also drops every row committed before. If the commit is refused the
        files are deleted and nothing is committed; refused because another writer moved
        ``main``, it raises :class:`ConcurrentCommitError`. An error whose outcome is unknown
        (the catalog may have applied the commit) leaves the files alone: deleting them could
        break a committed table, while an orphan file harms nothing. Returns the table as committed.
        """
        try:
            self.finish()
            snapshot_properties = {**properties, RUN_ID: self.run_id}
            if self._replace and self._replaces_rows:
                self._transaction.delete(AlwaysTrue(), snapshot_properties=snapshot_properties)
            if self.files:
                self._transaction.add_files(
                    self.files, snapshot_properties=snapshot_properties, check_duplicate_files=False
                )
        except BaseException:
            self.discard()
            raise
        try:
            committed = self._transaction.commit_transaction()
        except (CommitFailedException, TableAlreadyExistsError) as error:
            self.discard()
            raise ConcurrentCommitError(
                f"{self.identifier}: another writer committed while this load ran, so nothing of it "
                f"was committed; run it again ({error})"
            ) from error
        except ValidationException:
            self.discard()
            raise
        except BaseException:
            self.committed = None  # unknown: discard() must not delete what may be committed
            raise
        self.committed = True
        # The committed metadata as the catalog returned it (a created table comes back staged).
        return Table(
            identifier=committed.name(),
            metadata=committed.metadata,
            metadata_location=committed.metadata_location,
            io=committed.io,
            catalog=committed.catalog,
        )


def begin_write(
    catalog: LakehouseCatalog,
    name: str,
    schema: pa.Schema,
    *,
    table: Table | None,
    replace: bool,
    run_id: str | None = None,
    row_group_rows: int = ROW_GROUP_ROWS,
    file_rows: int = FILE_ROWS,
) -> RawTableWrite:
    """Start a write of rows shaped like ``schema`` to the raw table ``name``.

    ``table`` is the table as the load read it when it planned (its mark), or None when it did
    not exist: the commit succeeds only if ``main`` is still where it was then. A table that does
    not exist is created by the write's own commit (from ``schema``, with
    :data:`RAW_TABLE_PROPERTIES`), so a failed first load leaves no table behind. Columns of
    ``schema`` the table lacks are added to its schema in the same commit; one whose type
    differs from the table's raises :class:`RawSchemaError`.
    """
    loaded = catalog.load()
    identifier = catalog.raw_table(name)
    schema_for_iceberg = iceberg_ready(schema)
    if table is None:
        transaction = loaded.create_table_transaction(
            identifier, schema=schema_for_iceberg, properties=RAW_TABLE_PROPERTIES
        )
        metadata = transaction.table_metadata
        io = load_file_io({**loaded.properties, **metadata.properties}, metadata.location)
        replaces_rows = False
    else:
        if table.properties.get(COMMIT_RETRIES) != RAW_TABLE_PROPERTIES[COMMIT_RETRIES]:
            _refuse_commit_retries(table, identifier)
        transaction = table.transaction()
        _add_missing_columns(transaction, schema_for_iceberg, identifier)
        io = table.io
        replaces_rows = _summary_int(table.current_snapshot(), "total-data-files") > 0
    return RawTableWrite(
        catalog,
        identifier,
        transaction,
        io,
        schema,
        replace=replace,
        replaces_rows=replaces_rows,
        run_id=run_id or uuid.uuid4().hex[:12],
        row_group_rows=row_group_rows,
        file_rows=file_rows,
    )


def _refuse_commit_retries(table: Table, identifier: str) -> None:
    """A table created elsewhere: make its commits fail rather than retry over another writer's
    snapshot (a metadata-only commit: no snapshot). ``table`` is updated in place."""
    planned = table.metadata.current_snapshot_id
    with table.transaction() as settings:
        settings.set_properties({COMMIT_RETRIES: RAW_TABLE_PROPERTIES[COMMIT_RETRIES]})
    if table.metadata.current_snapshot_id != planned:
        raise ConcurrentCommitError(f"{identifier}: another writer committed while this load planned; run it again")


def _add_missing_columns(transaction: Transaction, schema: pa.Schema, identifier: str) -> None:
    current = transaction.table_metadata.schema()
    names = {field.name for field in current.fields}
    if all(field.name in names for field in schema) and _same_types(schema, current):
        return
    try:
        with transaction.update_schema() as update:
            update.union_by_name(schema)
    except ValueError as error:  # pyiceberg's ValidationError is a ValueError
        raise RawSchemaError(f"{identifier}: the load's columns do not fit the table's schema: {error}") from error


def _same_types(schema: pa.Schema, iceberg: Schema) -> bool:
    existing = schema_to_pyarrow(iceberg, include_field_ids=False)
    for field in schema:
        theirs = existing.field(field.name).type
        if not _equivalent(field.type, theirs):
            return False
    return True


def _equivalent(ours: pa.DataType, theirs: pa.DataType) -> bool:
    def normal(type_: pa.DataType) -> pa.DataType:
        if pa.types.is_large_string(type_):
            return pa.string()
        if pa.types.is_large_binary(type_):
            return pa.binary()
        if pa.types.is_struct(type_):
            return pa.struct([pa.field(f.name, normal(f.type)) for f in type_])
        return type_

    return normal(ours).equals(normal(theirs))


__all__ = [
    "HIGH_WATER_MARK",
    "LOAD_MODE",
    "NEXT_XID",
    "PENDING_ABOVE",
    "PENDING_XIDS",
    "RAW_TABLE_PROPERTIES",
    "RUN_ID",
    "ConcurrentCommitError",
    "LoadMark",
    "RawSchemaError",
    "RawTableState",
    "RawTableWrite",
    "begin_write",
    "cursor_values",
    "high_water_mark",
    "last_load",
    "open_raw_table",
    "parquet_options",
    "read_arrow",
    "row_count",
    "table_state",
]
