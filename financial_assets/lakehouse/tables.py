"""Parquet tables whose committed state is a single manifest object.

A table is a folder of Parquet files plus ``_manifest.json``. Writers put new files beside the
old ones, then replace the manifest in one write; readers read the files the manifest lists.
So a crash mid-write leaves only unlisted files, never a half-visible load, and the manifest
carries the load's high-water mark, which therefore advances exactly when the data lands.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from financial_assets.lakehouse.storage import LakehouseStorage

MANIFEST = "_manifest.json"


def parquet_options(schema: pa.Schema) -> dict:
    """Dictionaries only where they pay (strings); delta encoding for integers and timestamps,
    which dictionaries bloat: files 2.5x smaller and faster to write. Spark, DuckDB and Athena
    read both encodings."""
    return {
        "compression": "zstd",
        "use_dictionary": [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)],
        "column_encoding": {
            f.name: "DELTA_BINARY_PACKED" for f in schema if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)
        },
    }


class ConcurrentCommitError(RuntimeError):
    """Another writer committed the table between this writer's read and its commit."""


@dataclass(frozen=True)
class DataFile:
    name: str
    rows: int
    bytes: int
    run_id: str


@dataclass(frozen=True)
class TableManifest:
    table: str
    version: int
    files: tuple[DataFile, ...]
    columns: tuple[tuple[str, str], ...]
    high_water_mark: int | str | None
    committed_at: str
    extra: dict = field(default_factory=dict)

    @property
    def row_count(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> TableManifest:
        raw = json.loads(data)
        return cls(
            table=raw["table"],
            version=raw["version"],
            files=tuple(DataFile(**f) for f in raw["files"]),
            columns=tuple((name, type_) for name, type_ in raw["columns"]),
            high_water_mark=raw["high_water_mark"],
            committed_at=raw["committed_at"],
            extra=raw.get("extra", {}),
        )


class StagedFiles:
    """Parquet files written for one run and not yet committed.

    Batches are grouped into row groups of ``row_group_rows`` and files of ``file_rows``, so
    memory holds at most one row group whatever the size of the load.
    """

    def __init__(self, table: ManifestTable, run_id: str, row_group_rows: int, file_rows: int):
        self._table = table
        self.run_id = run_id
        self._row_group_rows = row_group_rows
        self._file_rows = file_rows
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._stream = None
        self._stream_context = None
        self._current: str | None = None
        self._current_rows = 0
        self.files: list[DataFile] = []
        self.schema: pa.Schema | None = None
        self.committed = False

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files) + self._current_rows + self._pending_rows

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if self.schema is None:
            self.schema = batch.schema
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
        self._writer.write_table(table, row_group_size=len(table))
        self._current_rows += len(table)
        self._pending, self._pending_rows = [], 0
        if self._current_rows >= self._file_rows:
            self._close_file()

    def _open_file(self) -> None:
        self._current = f"part-{self.run_id}-{len(self.files):05d}.parquet"
        self._stream_context = self._table.storage.open_output(self._table.file_path(self._current))
        self._stream = self._stream_context.__enter__()
        self._writer = pq.ParquetWriter(self._stream, self.schema, **parquet_options(self.schema))

    def _close_file(self) -> None:
        self._writer.close()
        self._stream_context.__exit__(None, None, None)
        self.files.append(
            DataFile(
                name=self._current,
                rows=self._current_rows,
                bytes=self._table.storage.size(self._table.file_path(self._current)),
                run_id=self.run_id,
            )
        )
        self._writer = self._stream = self._stream_context = self._current = None
        self._current_rows = 0

    def finish(self, schema: pa.Schema | None = None) -> list[DataFile]:
        """Write what is buffered and close the open file; the files are then complete.

        Given a ``schema``, a run that saw no rows still writes one empty file, so that a
        table replaced by an empty load keeps its columns for readers.
        """
        if schema is not None and self.schema is None and not self.files:
            self.schema = schema
            self._open_file()
        self._flush_row_group()
        if self._writer is not None:
            self._close_file()
        return self.files

    def discard(self) -> None:
        """Remove everything this run wrote, unless it was committed; the table stays as it was."""
        if self.committed:
            return
        if self._stream_context is not None:
            try:
                self._writer.close()
            finally:
                self._stream_context.__exit__(RuntimeError, RuntimeError("discarded"), None)
        for data_file in self.files:
            self._table.storage.delete(self._table.file_path(data_file.name))
        self.files = []


class ManifestTable:
    """A lakehouse table at ``relpath`` (for example ``raw/transactions``)."""

    def __init__(self, storage: LakehouseStorage, relpath: str):
        self.storage = storage
        self.relpath = relpath.strip("/")
        self.name = self.relpath.rsplit("/", 1)[-1]

    def file_path(self, name: str) -> str:
        return f"{self.relpath}/{name}"

    def manifest(self) -> TableManifest | None:
        data = self.storage.read_bytes(self.file_path(MANIFEST))
        return TableManifest.from_json(data) if data is not None else None

    def file_uris(self, manifest: TableManifest | None = None) -> list[str]:
        """The committed files, as URIs any reader (Spark, DuckDB, pyarrow) takes: those of
        ``manifest`` when given (one already read), else of the current one."""
        manifest = manifest or self.manifest()
        return [self.storage.uri_of(self.file_path(f.name)) for f in manifest.files] if manifest else []

    def read(self) -> pa.Table:
        """The committed rows (for tests and small tables)."""
        manifest = self.manifest()
        if manifest is None or not manifest.files:
            return pa.table({})
        tables = [
            pq.read_table(self.storage.path(self.file_path(f.name)), filesystem=self.storage.fs)
            for f in manifest.files
        ]
        return pa.concat_tables(tables, promote_options="default")

    def stage(self, run_id: str | None = None, row_group_rows: int = 262_144,
              file_rows: int = 4_194_304) -> StagedFiles:
        return StagedFiles(self, run_id or uuid.uuid4().hex[:12], row_group_rows, file_rows)

    def commit(
        self,
        staged: StagedFiles,
        *,
        schema: pa.Schema,
        high_water_mark: int | str | None,
        replace: bool = False,
        expected_version: int | None = None,
        extra: dict | None = None,
    ) -> TableManifest:
        """Make the staged files part of the table in one manifest write.

        ``replace`` drops the previously committed files (a full refresh); they are deleted
        only after the new manifest is in place. ``expected_version`` is the version the
        writer read before it started; a different one means a concurrent writer committed.
        """
        current = self.manifest()
        current_version = current.version if current else 0
        if expected_version is not None and current_version != expected_version:
            raise ConcurrentCommitError(
                f"{self.relpath} moved from version {expected_version} to {current_version} "
                "during this load; rerun it"
            )
        kept = () if replace or current is None else current.files
        manifest = TableManifest(
            table=self.relpath,
            version=current_version + 1,
            files=tuple(kept) + tuple(staged.files),
            columns=tuple((f.name, str(f.type)) for f in schema),
            high_water_mark=high_water_mark,
            committed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            extra=extra or {},
        )
        self.storage.write_bytes(self.file_path(MANIFEST), manifest.to_json())
        staged.committed = True
        if replace and current is not None:
            for old in current.files:
                self.storage.delete(self.file_path(old.name))
        return manifest
