"""Manifest tables: what readers see before, during and after a write."""

import os

import pyarrow as pa
import pytest

from financial_assets.lakehouse.storage import LakehouseStorage
from financial_assets.lakehouse.tables import ConcurrentCommitError, ManifestTable

SCHEMA = pa.schema([("id", pa.int64()), ("label", pa.string())])


def batch(start: int, count: int) -> pa.RecordBatch:
    ids = list(range(start, start + count))
    return pa.RecordBatch.from_pydict({"id": ids, "label": [f"row {i}" for i in ids]}, schema=SCHEMA)


def write(table: ManifestTable, start: int, count: int, *, replace: bool = False):
    staged = table.stage()
    staged.write(batch(start, count))
    staged.finish()
    return table.commit(staged, schema=SCHEMA, high_water_mark=start + count - 1, replace=replace)


@pytest.fixture
def table(tmp_path) -> ManifestTable:
    return ManifestTable(LakehouseStorage(str(tmp_path)), "raw/things")


def test_finished_but_uncommitted_files_are_not_read(table):
    write(table, 0, 10)
    staged = table.stage()
    staged.write(batch(10, 5))
    staged.finish()

    assert table.read().num_rows == 10
    assert table.manifest().high_water_mark == 9


def test_commit_appends_and_advances_the_high_water_mark_with_the_data(table):
    write(table, 0, 10)
    manifest = write(table, 10, 5)

    assert manifest.version == 2
    assert manifest.row_count == 15
    assert manifest.high_water_mark == 14
    assert sorted(table.read().column("id").to_pylist()) == list(range(15))


def test_discard_removes_what_the_run_wrote(table, tmp_path):
    write(table, 0, 3)
    before = sorted(os.listdir(tmp_path / "raw" / "things"))
    staged = table.stage(row_group_rows=2, file_rows=2)
    staged.write(batch(3, 5))
    staged.write(batch(8, 1))  # leaves one file open mid-write
    staged.discard()

    assert sorted(os.listdir(tmp_path / "raw" / "things")) == before
    assert table.read().num_rows == 3


def test_open_files_are_hidden_until_complete(table, tmp_path):
    staged = table.stage(row_group_rows=1, file_rows=100)
    staged.write(batch(0, 3))
    visible = [n for n in os.listdir(tmp_path / "raw" / "things") if not n.startswith(".")]

    assert visible == []
    staged.discard()


def test_large_loads_are_split_into_row_groups_and_files(table):
    staged = table.stage(row_group_rows=100, file_rows=300)
    for start in range(0, 1000, 50):
        staged.write(batch(start, 50))
    files = staged.finish()
    table.commit(staged, schema=SCHEMA, high_water_mark=999)

    assert [f.rows for f in files] == [300, 300, 300, 100]
    assert table.read().num_rows == 1000


def test_replace_keeps_only_the_new_files_and_deletes_the_old_ones(table, tmp_path):
    first = write(table, 0, 10)
    write(table, 100, 2, replace=True)

    assert sorted(table.read().column("id").to_pylist()) == [100, 101]
    assert not (tmp_path / "raw" / "things" / first.files[0].name).exists()


def test_a_commit_over_a_newer_version_is_refused(table):
    write(table, 0, 1)
    staged = table.stage()
    staged.write(batch(1, 1))
    staged.finish()
    write(table, 2, 1)  # another writer got in first

    with pytest.raises(ConcurrentCommitError, match="version 1 to 2"):
        table.commit(staged, schema=SCHEMA, high_water_mark=1, expected_version=1)


def test_a_failed_object_write_leaves_nothing(tmp_path):
    storage = LakehouseStorage(str(tmp_path))
    with pytest.raises(RuntimeError):
        with storage.open_output("zone/file.bin") as stream:
            stream.write(b"partial")
            raise RuntimeError("disk on fire")

    assert os.listdir(tmp_path / "zone") == []


def test_an_empty_replacing_load_keeps_the_columns_in_one_empty_file(table):
    write(table, 0, 3)
    staged = table.stage()
    staged.finish(schema=SCHEMA)
    manifest = table.commit(staged, schema=SCHEMA, high_water_mark=None, replace=True)

    assert [f.rows for f in manifest.files] == [0]
    assert table.read().schema == SCHEMA and table.read().num_rows == 0
