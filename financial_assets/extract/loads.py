"""Loads of one source table into its raw-zone table: incremental by cursor, or full.

Everything a load writes is staged first and committed by one manifest write at the end, so a
failure at any point (source down, drift, crash) leaves the raw zone as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg2.extensions
import pyarrow as pa
import pyarrow.compute as pc
from bson.objectid import ObjectId
from psycopg2 import sql
from pymongo.collection import Collection
from pymongo.errors import OperationFailure

from financial_assets.extract.contracts import QUARANTINE_SCHEMA, TableContract
from financial_assets.extract.documents import EVENT_SCHEMA, stream_documents
from financial_assets.extract.postgres import (
    SchemaDriftError,
    columns_to_extract,
    live_columns,
    stream_batches,
)
from financial_assets.lakehouse.tables import ManifestTable, StagedFiles, TableManifest

PREVIEW_ROWS = 5


class SourceResetError(RuntimeError):
    """The source's cursor went backwards: it was rebuilt, so an incremental load would miss rows."""


@dataclass
class LoadReport:
    table: str
    mode: str  # "incremental", "full" or "snapshot"
    rows_loaded: int
    manifest: TableManifest | None
    previous_high_water_mark: int | str | None
    schema: pa.Schema
    preview: pa.Table
    new_columns: list[str] = field(default_factory=list)
    quarantined: int = 0
    quarantine_manifest: TableManifest | None = None

    @property
    def raw_and_quarantined_rows(self) -> int:
        raw = self.manifest.row_count if self.manifest else 0
        return raw + (self.quarantine_manifest.row_count if self.quarantine_manifest else 0)

    @property
    def high_water_mark(self) -> int | str | None:
        return self.manifest.high_water_mark if self.manifest else None


class _Preview:
    """Keeps the first rows a load saw."""

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self.batches: list[pa.RecordBatch] = []
        self.rows = 0

    def see(self, batch: pa.RecordBatch) -> None:
        if self.rows < PREVIEW_ROWS and batch.num_rows:
            taken = batch.slice(0, PREVIEW_ROWS - self.rows)
            self.batches.append(taken)
            self.rows += taken.num_rows

    def table(self) -> pa.Table:
        return pa.Table.from_batches(self.batches, schema=self.schema)


def _plan(table: ManifestTable, cursor_column: str | None, full_refresh: bool):
    current = table.manifest()
    incremental = (
        cursor_column is not None
        and not full_refresh
        and current is not None
        and current.high_water_mark is not None
    )
    mode = "incremental" if incremental else ("full" if cursor_column else "snapshot")
    return current, incremental, mode


def _commit(
    table: ManifestTable,
    staged: StagedFiles,
    current: TableManifest | None,
    incremental: bool,
    schema: pa.Schema,
    high_water_mark,
) -> TableManifest | None:
    if incremental and staged.rows == 0:
        return current  # nothing new: the table is left exactly as it was
    return table.commit(
        staged,
        schema=schema,
        high_water_mark=high_water_mark,
        replace=not incremental,
        expected_version=current.version if current else 0,
    )


def load_postgres_table(
    connection: psycopg2.extensions.connection,
    contract: TableContract,
    table: ManifestTable,
    *,
    full_refresh: bool = False,
    run_id: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> LoadReport:
    """Copy ``contract.table`` into ``table``: rows past the high-water mark, or all of them."""
    # One snapshot for the drift check, the copy and the count that reconciles them.
    connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
    current, incremental, mode = _plan(table, contract.cursor_column, full_refresh)
    after = current.high_water_mark if incremental else None
    columns, new_columns = columns_to_extract(contract, live_columns(connection, contract.table))
    schema = pa.schema([(c.name, c.arrow_type) for c in columns])
    if incremental:
        _refuse_reset_source(connection, contract, after)

    staged = table.stage(run_id)
    preview = _Preview(schema)
    high_water_mark = after
    try:
        for batch in stream_batches(
            connection, contract.table, columns, after=after, cursor_column=contract.cursor_column
        ):
            staged.write(batch)
            preview.see(batch)
            if progress:
                progress(staged.rows)
            if contract.cursor_column:
                batch_max = pc.max(batch.column(contract.cursor_column)).as_py()
                if batch_max is not None and (high_water_mark is None or batch_max > high_water_mark):
                    high_water_mark = batch_max
        staged.finish(schema=None if incremental else schema)
        manifest = _commit(table, staged, current, incremental, schema, high_water_mark)
    except BaseException:
        staged.discard()
        raise
    return LoadReport(
        table=contract.table,
        mode=mode,
        rows_loaded=staged.rows,
        manifest=manifest,
        previous_high_water_mark=after,
        schema=schema,
        preview=preview.table(),
        new_columns=new_columns,
    )


def count_source_rows(connection, contract: TableContract, high_water_mark) -> int:
    """Source rows up to the high-water mark (all of them for a snapshot table).

    On the load's connection, this counts in the load's own snapshot: what raw (+ quarantined)
    must add up to. A separate pass, so that reconciling costs the check, not the extraction.
    """
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(contract.table))
    if contract.cursor_column:
        if high_water_mark is None:
            return 0
        query = sql.SQL("{} WHERE {} <= {}").format(
            query, sql.Identifier(contract.cursor_column), sql.Literal(high_water_mark)
        )
    with connection.cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchone()[0]


def _refuse_reset_source(connection, contract: TableContract, high_water_mark) -> None:
    query = sql.SQL("SELECT max({}) FROM {}").format(
        sql.Identifier(contract.cursor_column), sql.Identifier(contract.table)
    )
    with connection.cursor() as cursor:
        cursor.execute(query)
        (source_max,) = cursor.fetchone()
    if source_max is None or source_max < high_water_mark:
        raise SourceResetError(
            f"{contract.table}: the source's greatest {contract.cursor_column} ({source_max}) is "
            f"below the raw zone's high-water mark ({high_water_mark}); the source was rebuilt, "
            "so load it again with full_refresh"
        )


def load_documents(
    collection: Collection,
    events: ManifestTable,
    quarantine: ManifestTable,
    *,
    full_refresh: bool = False,
    run_id: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> LoadReport:
    """Read new documents into ``events``; those that break the schema into ``quarantine``.

    The quarantine is committed first and records the cursor it reached, so a crash between
    the two commits neither loses a quarantined document nor, on the retry, adds it twice.
    """
    current, incremental, mode = _plan(events, "event_id", full_refresh)
    after = current.high_water_mark if incremental else None
    quarantine_current = quarantine.manifest()
    already_quarantined_through = (
        quarantine_current.high_water_mark if incremental and quarantine_current else None
    )

    staged = events.stage(run_id)
    staged_bad = quarantine.stage(staged.run_id)
    preview = _Preview(EVENT_SCHEMA)
    high_water_mark: ObjectId | None = ObjectId(after) if after else None
    new_fields: set[str] = set()
    try:
        for batch in stream_documents(collection, after=after):
            staged.write(batch.events)
            staged_bad.write(_not_yet_quarantined(batch.quarantined, already_quarantined_through))
            preview.see(batch.events)
            new_fields |= batch.new_fields
            if progress:
                progress(staged.rows + staged_bad.rows)
            if batch.max_object_id and (high_water_mark is None or batch.max_object_id > high_water_mark):
                high_water_mark = batch.max_object_id
        staged.finish(schema=None if incremental else EVENT_SCHEMA)
        staged_bad.finish(schema=None if incremental else QUARANTINE_SCHEMA)
        mark = str(high_water_mark) if high_water_mark else None
        quarantine_manifest = quarantine_current
        if staged_bad.rows or not incremental:
            quarantine_manifest = quarantine.commit(
                staged_bad, schema=QUARANTINE_SCHEMA, high_water_mark=mark, replace=not incremental
            )
        manifest = _commit(events, staged, current, incremental, EVENT_SCHEMA, mark)
    except BaseException:
        staged.discard()
        staged_bad.discard()
        raise
    return LoadReport(
        table="transaction_events",
        mode=mode,
        rows_loaded=staged.rows,
        manifest=manifest,
        previous_high_water_mark=after,
        schema=EVENT_SCHEMA,
        preview=preview.table(),
        new_columns=sorted(new_fields),
        quarantined=staged_bad.rows,
        quarantine_manifest=quarantine_manifest,
    )


def collection_size(collection: Collection) -> int:
    """Documents in the collection, from its statistics rather than by reading them.

    `$collStats` is metadata on MongoDB and DocumentDB and a table count on FerretDB (whose
    `count` command, behind `estimated_document_count`, reads every document); one row per shard.
    """
    try:
        return sum(int(stats.get("count", 0)) for stats in collection.aggregate([{"$collStats": {"count": {}}}]))
    except OperationFailure:
        return collection.estimated_document_count()


def count_source_documents(collection: Collection, high_water_mark: str | None, loaded: int) -> int:
    """Documents up to the high-water mark, for comparison with the ``loaded`` raw + quarantined rows.

    Every loaded row came from its own document at or below the mark, so when the collection
    holds exactly ``loaded`` documents, that is also the count below the mark, and the
    collection's statistics settle it without reading a document. Only when the two differ
    (documents written since the load, or missed by it) is the exact count run; FerretDB 1.x
    scans the collection for that.
    """
    size = collection_size(collection)
    if size == loaded or not high_water_mark:
        return size
    return collection.count_documents({"_id": {"$lte": ObjectId(high_water_mark)}})


def _not_yet_quarantined(rows: pa.RecordBatch, through: str | None) -> pa.RecordBatch:
    if through is None or rows.num_rows == 0:
        return rows
    # ObjectId hex strings of equal length order like the ids themselves.
    keep = pc.or_kleene(pc.is_null(rows.column("event_id")), pc.greater(rows.column("event_id"), through))
    return rows.filter(pc.fill_null(keep, True))


__all__ = [
    "LoadReport",
    "SchemaDriftError",
    "SourceResetError",
    "count_source_documents",
    "count_source_rows",
    "load_documents",
    "load_postgres_table",
]
