"""Raw Iceberg tables written without a JVM: what readers see before, during and after a write."""

import json
import os
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from financial_assets.lakehouse.raw_tables import (
    HIGH_WATER_MARK,
    LOAD_MODE,
    ConcurrentCommitError,
    begin_write,
    high_water_mark,
    last_load,
    open_raw_table,
    read_arrow,
    row_count,
    table_state,
)

SCHEMA = pa.schema([("id", pa.int64()), ("label", pa.string())])


def batch(start: int, count: int) -> pa.RecordBatch:
    ids = list(range(start, start + count))
    return pa.RecordBatch.from_pydict({"id": ids, "label": [f"row {i}" for i in ids]}, schema=SCHEMA)


def things(catalog):
    return open_raw_table(catalog, "things")


def start(catalog, *, replace: bool = False, **sizes):
    return begin_write(catalog, "things", SCHEMA, table=things(catalog), replace=replace, **sizes)


def write(catalog, first: int, count: int, *, replace: bool = False):
    load = start(catalog, replace=replace)
    load.write(batch(first, count))
    return load.commit({HIGH_WATER_MARK: json.dumps(first + count - 1), LOAD_MODE: "test"})


def ids(catalog) -> list[int]:
    return sorted(read_arrow(things(catalog)).column("id").to_pylist())


def data_folder(table) -> str:
    return os.path.join(urlsplit(table.location()).path, "data")


def files_on_disk(table) -> set[str]:
    folder = data_folder(table)
    return {f"file://{folder}/{name}" for name in os.listdir(folder)} if os.path.isdir(folder) else set()


def test_a_first_write_creates_the_table_with_format_version_2_and_no_commit_retries(lakehouse_catalog):
    table = write(lakehouse_catalog, 0, 3)

    assert table.name() == ("raw", "things")
    assert table.format_version == 2
    assert table.properties["commit.retry.num-retries"] == "0"


def test_finished_but_uncommitted_files_are_not_read(lakehouse_catalog):
    write(lakehouse_catalog, 0, 10)
    load = start(lakehouse_catalog)
    load.write(batch(10, 5))
    load.finish()

    assert ids(lakehouse_catalog) == list(range(10))
    assert high_water_mark(things(lakehouse_catalog)) == 9
    load.discard()


def test_commit_appends_and_advances_the_high_water_mark_with_the_data(lakehouse_catalog):
    write(lakehouse_catalog, 0, 10)
    table = write(lakehouse_catalog, 10, 5)
    snapshot = table.current_snapshot()

    assert snapshot.summary.operation.value == "append"
    assert json.loads(snapshot.summary[HIGH_WATER_MARK]) == 14
    assert (row_count(table), ids(lakehouse_catalog)) == (15, list(range(15)))


def test_the_mark_is_found_behind_snapshots_that_carry_none(lakehouse_catalog):
    write(lakehouse_catalog, 0, 10)
    table = things(lakehouse_catalog)
    table.overwrite(table.scan().to_arrow())  # maintenance (a compaction): no mark in its summary

    assert high_water_mark(things(lakehouse_catalog)) == 9
    assert last_load(things(lakehouse_catalog)).load_mode == "test"


def test_discard_removes_what_the_run_wrote_even_mid_file(lakehouse_catalog):
    table = write(lakehouse_catalog, 0, 3)
    before = files_on_disk(table)
    load = start(lakehouse_catalog, row_group_rows=2, file_rows=2)
    load.write(batch(3, 5))
    load.write(batch(8, 1))  # leaves one file open mid-write
    load.discard()

    assert files_on_disk(things(lakehouse_catalog)) == before
    assert ids(lakehouse_catalog) == [0, 1, 2]


def test_large_loads_are_split_into_row_groups_and_files(lakehouse_catalog):
    load = start(lakehouse_catalog, row_group_rows=100, file_rows=300)
    for first in range(0, 1000, 50):
        load.write(batch(first, 50))
    paths = load.finish()
    load.commit({HIGH_WATER_MARK: "999"})

    files = [pq.ParquetFile(urlsplit(path).path).metadata for path in paths]
    assert [f.num_rows for f in files] == [300, 300, 300, 100]
    assert [f.num_row_groups for f in files] == [3, 3, 3, 1]
    assert row_count(things(lakehouse_catalog)) == 1000


def test_files_carry_iceberg_field_ids_and_the_tuned_encodings(lakehouse_catalog):
    table = write(lakehouse_catalog, 0, 100)
    [path] = [task.file.file_path for task in table.scan().plan_files()]
    parquet = pq.ParquetFile(urlsplit(path).path)
    column = parquet.metadata.row_group(0).column

    assert [f.field_id for f in table.schema().fields] == [
        int(parquet.schema_arrow.field(name).metadata[b"PARQUET:field_id"]) for name in ("id", "label")
    ]
    assert "DELTA_BINARY_PACKED" in column(0).encodings
    assert any("DICTIONARY" in encoding for encoding in column(1).encodings)
    assert column(0).compression == "ZSTD"


def test_replace_keeps_only_the_new_rows(lakehouse_catalog):
    write(lakehouse_catalog, 0, 10)
    table = write(lakehouse_catalog, 100, 2, replace=True)

    assert ids(lakehouse_catalog) == [100, 101]
    assert [s.summary.operation.value for s in table.snapshots()] == ["append", "delete", "append"]


def test_an_empty_replacing_load_empties_the_table_and_keeps_its_columns(lakehouse_catalog):
    write(lakehouse_catalog, 0, 3)
    table = start(lakehouse_catalog, replace=True).commit({HIGH_WATER_MARK: "null"})

    assert read_arrow(table).num_rows == 0
    assert read_arrow(table).column_names == ["id", "label"]
    assert high_water_mark(table) is None


def test_a_commit_over_a_newer_snapshot_is_refused_and_its_files_deleted(lakehouse_catalog):
    write(lakehouse_catalog, 0, 1)
    load = start(lakehouse_catalog)
    load.write(batch(1, 1))
    write(lakehouse_catalog, 2, 1)  # another writer got in first

    with pytest.raises(ConcurrentCommitError, match="another writer committed"):
        load.commit({HIGH_WATER_MARK: "1"})
    table = things(lakehouse_catalog)
    assert ids(lakehouse_catalog) == [0, 2]
    assert files_on_disk(table) == {task.file.file_path for task in table.scan().plan_files()}


def test_two_first_loads_race_and_one_of_them_is_refused(lakehouse_catalog):
    first = begin_write(lakehouse_catalog, "things", SCHEMA, table=None, replace=True)
    second = begin_write(lakehouse_catalog, "things", SCHEMA, table=None, replace=True)
    first.write(batch(0, 1))
    second.write(batch(1, 1))
    first.commit({HIGH_WATER_MARK: "0"})

    with pytest.raises(ConcurrentCommitError):
        second.commit({HIGH_WATER_MARK: "1"})
    assert ids(lakehouse_catalog) == [0]


def test_a_new_column_joins_the_schema_in_the_commit_that_brings_it(lakehouse_catalog):
    write(lakehouse_catalog, 0, 2)
    wider = SCHEMA.append(pa.field("channel", pa.string()))
    load = begin_write(lakehouse_catalog, "things", wider, table=things(lakehouse_catalog), replace=False)
    load.write(pa.RecordBatch.from_pydict({"id": [2], "label": ["x"], "channel": ["branch"]}, schema=wider))
    assert "channel" not in [f.name for f in things(lakehouse_catalog).schema().fields]
    load.commit({HIGH_WATER_MARK: "2"})

    rows = read_arrow(things(lakehouse_catalog)).sort_by("id").to_pylist()
    assert [r["channel"] for r in rows] == [None, None, "branch"]


def test_the_state_comes_from_the_snapshot_summary(lakehouse_catalog):
    table = write(lakehouse_catalog, 0, 7)
    state = table_state(table)

    assert (state.identifier, state.row_count, state.files, state.high_water_mark) == ("raw.things", 7, 1, 6)
    assert state.bytes > 0 and state.snapshot_id == table.current_snapshot().snapshot_id
    assert state.location == table.location()
