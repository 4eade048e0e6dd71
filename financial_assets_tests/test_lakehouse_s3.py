"""The lakehouse on S3, against moto's HTTP server: the same code as the local path."""

import boto3
import pyarrow as pa
import pytest

from financial_assets.lakehouse.storage import LakehouseStorage
from financial_assets.lakehouse.tables import ManifestTable

SCHEMA = pa.schema([("id", pa.int64())])


@pytest.fixture
def s3_table(s3_bucket, moto_endpoint) -> ManifestTable:
    storage = LakehouseStorage(f"s3://{s3_bucket}/lake", s3_endpoint_url=moto_endpoint)
    return ManifestTable(storage, "raw/things")


def object_keys(bucket: str, endpoint: str) -> list[str]:
    """Keys of data objects; pyarrow leaves empty "folder/" markers after deletes, not data."""
    listing = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []) if not item["Key"].endswith("/"))


def test_committed_s3_table_reads_back_and_lists_s3_uris(s3_table, s3_bucket):
    staged = s3_table.stage()
    staged.write(pa.RecordBatch.from_pydict({"id": [1, 2, 3]}, schema=SCHEMA))
    staged.finish()
    s3_table.commit(staged, schema=SCHEMA, high_water_mark=3)

    assert s3_table.read().column("id").to_pylist() == [1, 2, 3]
    assert s3_table.manifest().high_water_mark == 3
    assert all(uri.startswith(f"s3://{s3_bucket}/lake/raw/things/part-") for uri in s3_table.file_uris())


def test_discarded_s3_write_leaves_no_object(s3_table, s3_bucket, moto_endpoint):
    staged = s3_table.stage(row_group_rows=1, file_rows=2)
    staged.write(pa.RecordBatch.from_pydict({"id": [1, 2, 3]}, schema=SCHEMA))
    staged.discard()

    assert object_keys(s3_bucket, moto_endpoint) == []


def test_failed_s3_object_write_removes_the_object(s3_bucket, moto_endpoint):
    storage = LakehouseStorage(f"s3://{s3_bucket}", s3_endpoint_url=moto_endpoint)
    with pytest.raises(RuntimeError):
        with storage.open_output("zone/file.bin") as stream:
            stream.write(b"partial")
            raise RuntimeError("network gone")

    assert object_keys(s3_bucket, moto_endpoint) == []
