"""Loads of one source table into its raw-zone Iceberg table: incremental by cursor, or full.

Everything a load writes is written as uncommitted Parquet files first and committed at the
end in one Iceberg commit that carries the high-water mark in its snapshot summary, so a failure
at any point (source down, drift, crash, a concurrent writer) leaves the raw zone as it was.

Rows PostgreSQL commits late
----------------------------
A ``SERIAL`` id is drawn when a row is inserted, not when its transaction commits: a long
transaction can commit id 1001 after a load already saw 1002 and took 1002 as its mark. A load
that only read ``id > mark`` would never see 1001. So each PostgreSQL load runs in one
REPEATABLE READ transaction (one snapshot S for the drift check, the copy and the reconciling
count) and records, next to its mark M, what S did not show (snapshot summary properties):

- ``financial-assets.pending-xids``: the transactions with an id that S did not show. That is
  S's in-progress list (``pg_snapshot_xip``, taken in the same transaction before the copy)
  *and* every id from S's ``xmax`` up to the next one to be assigned: ``xmax`` is one past the
  newest *finished* transaction, so a transaction that took its id after another that has since
  committed is unfinished yet absent from the list (measured: T2 takes xid 828, T1 takes 829
  and inserts id 1, T2 inserts id 2 and commits; a snapshot now has ``xmax`` = 829, an empty
  list, and its mark is 2).
- ``financial-assets.next-xid``: the next transaction id then; it and all later ones are unseen too.
- ``financial-assets.pending-above``: a cursor value below which none of those rows can lie.

Claim: every row with id <= M that S did not show was written by a transaction unseen by S, so
its ``xmin`` is at least the oldest unseen id, U = min(pending-xids, next-xid): the writer was
assigned its id before S (then it is in pending-xids) or after (then it is >= next-xid); a row
written under a savepoint carries its subtransaction's id, greater than its parent's; and an
unseen row updated since carries its updater's id, a transaction that acted after S (the row
committed after S), so one S did not see either.

The next incremental load reads ``id > M`` plus the *late rows*: the source rows with
``pending-above < id <= M`` whose ``xmin`` is not older than U (by PostgreSQL's ``age()``,
on its 32-bit circle), minus the ids the raw table already holds (read from the Iceberg table, files
pruned by their statistics). By the claim the candidates include every row S missed; taking
away what the raw table holds removes every row S showed, so none is loaded twice. Matching
``xmin`` exactly against S's in-progress list, the obvious test, would miss rows written under a
savepoint (no snapshot lists subtransaction ids) and the transactions above ``xmax`` shown
above; and it would load a row twice once its ``xmin`` changed after it was loaded (an UPDATE)
or when a frozen row's ``xmin`` from 2^32 transactions ago equals a pending one. The anti-join
makes a duplicate impossible whatever ``xmin`` says.

``pending-above`` bounds the search: a transaction that had no id yet at the previous load's
snapshot S' (not in its pending-xids) inserted its rows after S', so their ids are above that
load's mark M' (whose row had committed before S'). So if no transaction pending at S was pending
at S' too, the bound is M'; otherwise it stays what S' recorded (None after a full load: the
next search then reads every id up to M, once).

Invariant, after every commit: the raw table holds exactly the rows S showed, and S showed no id
above M; that is also what ``count_source_rows`` counts up to M in S, so reconciliation holds.
When an incremental load finds nothing it commits nothing, and the last snapshot S' stays the
one in force, pending list included. That is still right: the raw table still holds exactly what
S' showed, every row S' missed still has its ``xmin`` >= U' whenever it commits, and ``id > M'``
is unchanged, so the next load's search finds it.

What this rests on: ids drawn by the INSERT that writes them (the ``SERIAL`` default; ids
reserved ahead, by an explicit ``nextval`` or an ORM's pooled sequence, defeat any cursor, and
may escape the ``pending-above`` bound), rows inserted and not deleted, and a primary server (a
hot standby's snapshot lists no in-progress transaction). A row outside that shows up in the
``reconciles_with_source`` check, which counts the source up to M in the load's snapshot.
"""

from __future__ import annotations

import hashlib
import json
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
    SourceSnapshot,
    columns_to_extract,
    late_row_candidates,
    live_columns,
    source_snapshot,
    stream_batches,
)
from financial_assets.lakehouse.catalog import LakehouseCatalog
from financial_assets.lakehouse.raw_tables import (
    HIGH_WATER_MARK,
    LOAD_MODE,
    NEXT_XID,
    PENDING_ABOVE,
    PENDING_XIDS,
    ConcurrentCommitError,
    LoadMark,
    RawSchemaError,
    RawTableState,
    begin_write,
    cursor_values,
    last_load,
    open_raw_table,
    table_state,
)
from financial_assets.lakehouse.tables import CONTENT_DIGEST

PREVIEW_ROWS = 5
EVENTS_TABLE = "transaction_events"
QUARANTINE_TABLE = "transaction_events_quarantine"


class SourceResetError(RuntimeError):
    """The source's cursor went backwards: it was rebuilt, so an incremental load would miss rows."""


@dataclass
class LoadReport:
    table: str  # the raw table's identifier, e.g. raw.transactions
    mode: str  # "incremental", "full" or "snapshot"
    rows_loaded: int
    state: RawTableState | None  # the raw table after the load (None: it does not exist)
    previous_high_water_mark: int | str | None
    schema: pa.Schema
    preview: pa.Table
    committed: bool = False  # whether this load added a snapshot
    new_columns: list[str] = field(default_factory=list)
    late_rows: int = 0  # rows below the previous mark that committed after the previous load
    quarantined: int = 0
    quarantine_state: RawTableState | None = None

    @property
    def raw_rows(self) -> int:
        return self.state.row_count if self.state else 0

    @property
    def quarantined_rows(self) -> int:
        return self.quarantine_state.row_count if self.quarantine_state else 0

    @property
    def raw_and_quarantined_rows(self) -> int:
        return self.raw_rows + self.quarantined_rows

    @property
    def high_water_mark(self) -> int | str | None:
        return self.state.high_water_mark if self.state else None

    @property
    def snapshot_id(self) -> int | None:
        return self.state.snapshot_id if self.state else None


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


def _plan(mark: LoadMark | None, cursor_column: str | None, full_refresh: bool) -> tuple[bool, str]:
    incremental = (
        cursor_column is not None and not full_refresh and mark is not None and mark.high_water_mark is not None
    )
    return incremental, "incremental" if incremental else ("full" if cursor_column else "snapshot")


def load_postgres_table(
    connection: psycopg2.extensions.connection,
    contract: TableContract,
    catalog: LakehouseCatalog,
    *,
    full_refresh: bool = False,
    run_id: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> LoadReport:
    """Copy ``contract.table`` into the raw table of the same name: rows past the high-water
    mark and the rows that committed late below it (see the module's docstring), or all rows.

    Leaves ``connection`` in the load's REPEATABLE READ transaction, so that
    :func:`count_source_rows` on it counts in the load's snapshot.
    """
    # The raw table first, then the source's snapshot: so the snapshot is newer than the data
    # the table holds, and any commit after this read makes this load's commit fail.
    table = open_raw_table(catalog, contract.table)
    mark = last_load(table) if table is not None else None
    connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
    snapshot = source_snapshot(connection)  # first statement: it fixes the snapshot of all below
    columns, new_columns = columns_to_extract(contract, live_columns(connection, contract.table))
    schema = pa.schema([(c.name, c.arrow_type) for c in columns])
    incremental, mode = _plan(mark, contract.cursor_column, full_refresh)
    after = mark.high_water_mark if incremental else None
    late: list = []
    if incremental:
        _refuse_reset_source(connection, contract, after)
        late = _late_rows(connection, contract, table, mark)

    try:
        write = begin_write(catalog, contract.table, schema, table=table, replace=not incremental, run_id=run_id)
    except RawSchemaError as error:
        raise SchemaDriftError(str(error)) from error
    preview = _Preview(schema)
    high_water_mark = after
    digest = hashlib.sha256(schema.serialize()) if mode == "snapshot" else None
    try:
        for batch in stream_batches(
            connection, contract.table, columns, after=after, cursor_column=contract.cursor_column, also=late
        ):
            write.write(batch)
            preview.see(batch)
            if digest:
                digest.update(batch.serialize())
            if progress:
                progress(write.rows)
            if contract.cursor_column:
                batch_max = pc.max(batch.column(contract.cursor_column)).as_py()
                if batch_max is not None and (high_water_mark is None or batch_max > high_water_mark):
                    high_water_mark = batch_max
        committed = not (incremental and write.rows == 0)  # nothing new: the table stays as it was
        if committed:
            properties = _postgres_properties(mode, high_water_mark, snapshot, mark if incremental else None)
            if digest:
                properties[CONTENT_DIGEST] = digest.hexdigest()
            table = write.commit(properties)
        else:
            write.discard()
    except BaseException:
        write.discard()
        raise
    return LoadReport(
        table=catalog.raw_table(contract.table),
        mode=mode,
        rows_loaded=write.rows,
        state=table_state(table) if table is not None else None,
        previous_high_water_mark=after,
        schema=schema,
        preview=preview.table(),
        committed=committed,
        new_columns=new_columns,
        late_rows=len(late),
    )


def _postgres_properties(mode: str, high_water_mark, snapshot: SourceSnapshot, previous: LoadMark | None) -> dict:
    pending = snapshot.pending
    if previous is None:
        above = None  # a full load: no earlier snapshot bounds where pending rows lie
    elif set(pending) & set(previous.pending_xids):
        above = previous.pending_above  # a transaction pending then is still pending
    else:
        above = previous.high_water_mark
    return {
        HIGH_WATER_MARK: json.dumps(high_water_mark),
        LOAD_MODE: mode,
        PENDING_XIDS: json.dumps(list(pending)),
        NEXT_XID: json.dumps(snapshot.next_xid),
        PENDING_ABOVE: json.dumps(above),
    }


def _late_rows(connection, contract: TableContract, table, mark: LoadMark) -> list:
    """Cursor values below the mark of rows the last load's snapshot did not show, committed since."""
    oldest = mark.oldest_unseen_xid
    if oldest is None:  # a mark recorded without the source's snapshot: nothing to search from
        return []
    candidates = late_row_candidates(
        connection,
        contract.table,
        contract.cursor_column,
        through=mark.high_water_mark,
        above=mark.pending_above,
        oldest_unseen_xid=oldest,
    )
    if not candidates:
        return []
    loaded = cursor_values(table, contract.cursor_column, above=mark.pending_above, through=mark.high_water_mark)
    candidates = pa.array(candidates, type=loaded.type)
    return pc.filter(candidates, pc.invert(pc.is_in(candidates, value_set=loaded))).to_pylist()


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
    catalog: LakehouseCatalog,
    *,
    full_refresh: bool = False,
    run_id: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> LoadReport:
    """Read new documents into ``raw.transaction_events``; those that break the schema into
    ``raw.transaction_events_quarantine``.

    The quarantine is committed first and records the cursor it reached, so a failure between
    the two commits neither loses a quarantined document nor, on the retry, adds it twice.
    """
    events_table = open_raw_table(catalog, EVENTS_TABLE)
    mark = last_load(events_table) if events_table is not None else None
    incremental, mode = _plan(mark, "event_id", full_refresh)
    after = mark.high_water_mark if incremental else None
    quarantine_table = open_raw_table(catalog, QUARANTINE_TABLE)
    quarantine_mark = last_load(quarantine_table) if quarantine_table is not None else None
    already_quarantined_through = quarantine_mark.high_water_mark if incremental and quarantine_mark else None

    write = begin_write(catalog, EVENTS_TABLE, EVENT_SCHEMA, table=events_table, replace=not incremental, run_id=run_id)
    write_bad = begin_write(
        catalog, QUARANTINE_TABLE, QUARANTINE_SCHEMA, table=quarantine_table, replace=not incremental,
        run_id=write.run_id,
    )
    preview = _Preview(EVENT_SCHEMA)
    high_water_mark: ObjectId | None = ObjectId(after) if after else None
    new_fields: set[str] = set()
    try:
        for batch in stream_documents(collection, after=after):
            write.write(batch.events)
            write_bad.write(_not_yet_quarantined(batch.quarantined, already_quarantined_through))
            preview.see(batch.events)
            new_fields |= batch.new_fields
            if progress:
                progress(write.rows + write_bad.rows)
            if batch.max_object_id and (high_water_mark is None or batch.max_object_id > high_water_mark):
                high_water_mark = batch.max_object_id
        properties = {HIGH_WATER_MARK: json.dumps(str(high_water_mark) if high_water_mark else None), LOAD_MODE: mode}
        if write_bad.rows or not incremental:
            quarantine_table = write_bad.commit(properties)
        else:
            write_bad.discard()
        committed = not (incremental and write.rows == 0)
        if committed:
            events_table = write.commit(properties)
        else:
            write.discard()
    except BaseException:
        write.discard()
        write_bad.discard()
        raise
    return LoadReport(
        table=catalog.raw_table(EVENTS_TABLE),
        mode=mode,
        rows_loaded=write.rows,
        state=table_state(events_table) if events_table is not None else None,
        previous_high_water_mark=after,
        schema=EVENT_SCHEMA,
        preview=preview.table(),
        committed=committed,
        new_columns=sorted(new_fields),
        quarantined=write_bad.rows,
        quarantine_state=table_state(quarantine_table) if quarantine_table is not None else None,
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
    "EVENTS_TABLE",
    "QUARANTINE_TABLE",
    "ConcurrentCommitError",
    "LoadReport",
    "SchemaDriftError",
    "SourceResetError",
    "count_source_documents",
    "count_source_rows",
    "load_documents",
    "load_postgres_table",
]
