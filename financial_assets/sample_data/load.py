"""Bulk loading: PostgreSQL COPY from in-memory CSV, and batched insert_many for the events.

Events go into a staging collection, written by a background thread so that the document store
and PostgreSQL work at the same time; :meth:`EventSink.publish` then renames the staging
collection over ``transaction_events``. A failed seed leaves the previous events in place.
"""

from __future__ import annotations

import io
import queue
import threading
import time
from collections.abc import Callable, Iterable

import pyarrow as pa
import pyarrow.csv as pacsv
import pymongo.database
import pymongo.errors

from financial_assets.sample_data.schema import EVENTS_COLLECTION, quote

COPY_READ_SIZE = 1 << 20
MONGO_BATCH = 10_000
_QUEUE_BLOCKS = 2  # blocks of events waiting for the writer thread: bounds memory
_NOT_IMPLEMENTED = 238  # the server error code for an unsupported option
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False)


def copy_table(cursor, table: str, data: pa.Table, freeze: bool = True) -> int:
    """COPY an Arrow table's rows into ``table`` (its columns by name); returns the row count.

    FREEZE is allowed because the seed creates the tables in the same transaction: rows land
    already frozen, so the first readers and autovacuum have no hint bits to set.
    """
    buffer = io.BytesIO()
    pacsv.write_csv(data, buffer, _CSV_OPTIONS)
    buffer.seek(0)
    columns = ", ".join(quote(name) for name in data.column_names)
    options = "FORMAT csv, FREEZE true" if freeze else "FORMAT csv"
    cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN WITH ({options})", buffer, size=COPY_READ_SIZE)
    return data.num_rows


def insert_documents(collection, documents: list[dict], batch_size: int = MONGO_BATCH) -> int:
    inserted = 0
    for start in range(0, len(documents), batch_size):
        result = collection.insert_many(documents[start : start + batch_size], ordered=False)
        inserted += len(result.inserted_ids)
    return inserted


Documents = list[dict] | Callable[[], list[dict]]


class EventSink:
    """Writes event documents to ``<name>_seeding`` on a thread; ``publish()`` swaps it in.

    ``write()`` takes a list of documents, or a function that builds one (then the thread
    builds it too, off the caller's critical path). ``on_inserted(n)`` is called from the
    thread after each batch (e.g. a progress bar's update).
    """

    def __init__(
        self,
        database: pymongo.database.Database,
        name: str = EVENTS_COLLECTION,
        batch_size: int = MONGO_BATCH,
        on_inserted: Callable[[int], object] | None = None,
    ):
        self.database = database
        self.name = name
        self.staging_name = f"{name}_seeding"
        self.batch_size = batch_size
        self.on_inserted = on_inserted or (lambda count: None)
        self.inserted = 0
        self.seconds = 0.0
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE_BLOCKS)
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread: threading.Thread | None = None

    def __enter__(self) -> EventSink:
        self.database.drop_collection(self.staging_name)
        self._thread = threading.Thread(target=self._run, name="event-sink", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._cancelled = True  # the thread skips whatever is still queued
        self._stop()
        if exc_type is not None:
            self.database.drop_collection(self.staging_name)

    def _run(self) -> None:
        staging = self.database[self.staging_name]
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None or self._cancelled:
                continue  # keep draining so that write() never blocks forever
            try:
                started = time.perf_counter()
                documents = item() if callable(item) else item
                for start in range(0, len(documents), self.batch_size):
                    if self._cancelled:
                        break
                    batch = documents[start : start + self.batch_size]
                    self.inserted += insert_documents(staging, batch, self.batch_size)
                    self.on_inserted(len(batch))
                self.seconds += time.perf_counter() - started
            except BaseException as error:  # re-raised in the caller's thread
                self._error = error

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, documents: Documents) -> None:
        self._raise_pending()
        self._queue.put(documents)

    def write_all(self, items: Iterable[Documents]) -> None:
        for item in items:
            self.write(item)

    def _stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def flush(self) -> int:
        """Wait until every document is written; returns how many were."""
        self._stop()
        self._raise_pending()
        return self.inserted

    def publish(self) -> None:
        """Replace ``name`` by the staging collection (which always exists, even if empty)."""
        self.flush()
        if self.staging_name not in self.database.list_collection_names():
            self.database.create_collection(self.staging_name)
        staging = self.database[self.staging_name]
        try:
            staging.rename(self.name, dropTarget=True)
        except pymongo.errors.OperationFailure as error:
            if error.code != _NOT_IMPLEMENTED:
                raise
            # FerretDB 1.x has no dropTarget: drop, then rename (a moment without events).
            self.database.drop_collection(self.name)
            staging.rename(self.name)
