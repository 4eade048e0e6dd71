"""The lakehouse as it runs on AWS: Iceberg tables in the Glue Data Catalog, files on S3, against
moto's HTTP server (Glue and S3 on one loopback endpoint).

The same `LakehouseCatalog` as in production (kind ``glue``, an ``s3://`` warehouse), with only
the endpoint overridden: PyIceberg's Glue catalog (the raw zone, publication, readers) and
Spark's Iceberg ``GlueCatalog`` with ``S3FileIO`` (the star-schema build in AWS Glue) open the
same tables. The two Glue databases are created as infra/financial-assets.yaml creates them,
each with its S3 location, so every table lands under the prefix the IAM policies grant.

What moto does not model, so is not shown here: Glue's optimistic lock on ``VersionId`` (moto
accepts any update; the conflict test shows the check every Iceberg writer makes against the
table's current metadata first), Lake Formation, KMS encryption and IAM.
"""

import uuid

import boto3
import pyarrow as pa
import pytest
from pyiceberg.exceptions import ValidationException

from financial_assets.lakehouse.catalog import TABLE_PROPERTIES, LakehouseCatalog

ROWS = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("name", pa.string())])


@pytest.fixture
def aws_catalog(moto_endpoint, s3_bucket) -> LakehouseCatalog:
    """A lakehouse on moto: the Glue databases ``<db>_raw`` and ``<db>`` located at
    ``s3://<bucket>/raw`` and ``s3://<bucket>/analytics``, as the stack creates them."""
    database = f"financial_data_db_{uuid.uuid4().hex[:8]}"
    catalog = LakehouseCatalog(
        warehouse=f"s3://{s3_bucket}",
        name=f"aws_{uuid.uuid4().hex[:8]}",
        raw_namespace=f"{database}_raw",
        analytics_namespace=database,
        s3_endpoint_url=moto_endpoint,
        region="us-east-1",
    )
    glue = boto3.client("glue", endpoint_url=moto_endpoint)
    for name, prefix in ((catalog.raw_namespace, "raw"), (catalog.analytics_namespace, "analytics")):
        glue.create_database(DatabaseInput={"Name": name, "LocationUri": f"s3://{s3_bucket}/{prefix}"})
    return catalog


@pytest.fixture
def raw_things(aws_catalog):
    """A raw-zone table PyIceberg created and loaded once: ids 1..3, high-water mark 3."""
    table = aws_catalog.load().create_table(
        aws_catalog.raw_table("things"), schema=ROWS, properties=TABLE_PROPERTIES
    )
    table.append(pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]}, schema=ROWS),
                 snapshot_properties={"high_water_mark": "3"})
    return aws_catalog.load().load_table(aws_catalog.raw_table("things"))


def in_spark(spark, catalog: LakehouseCatalog):
    """Register ``catalog`` in the session, as `configure_session` does on every engine."""
    for key, value in catalog.spark_conf().items():
        spark.conf.set(key, value)
    return spark


def ids(frame) -> list[int]:
    return sorted(row["id"] for row in frame.collect())


# ------------------------------------------------------------------ (a) PyIceberg's Glue catalog


def test_pyiceberg_registers_a_format_v2_iceberg_table_in_glue_under_its_databases_location(
    aws_catalog, s3_bucket, moto_endpoint
):
    table = aws_catalog.load().create_table(aws_catalog.raw_table("customers"), schema=ROWS, properties=TABLE_PROPERTIES)
    registered = boto3.client("glue", endpoint_url=moto_endpoint).get_table(
        DatabaseName=aws_catalog.raw_namespace, Name="customers")["Table"]

    assert table.metadata.format_version == 2  # what Athena reads
    assert table.location() == f"s3://{s3_bucket}/raw/customers"
    assert registered["Parameters"]["table_type"].upper() == "ICEBERG"
    assert registered["Parameters"]["metadata_location"].startswith(f"s3://{s3_bucket}/raw/customers/metadata/")


def test_pyiceberg_appends_rows_with_a_snapshot_property_and_reads_them_back(raw_things, s3_bucket):
    [snapshot] = raw_things.snapshots()

    assert raw_things.scan().to_arrow().sort_by("id").to_pydict() == {"id": [1, 2, 3], "name": ["a", "b", "c"]}
    assert snapshot.summary["high_water_mark"] == "3"
    assert all(task.file.file_path.startswith(f"s3://{s3_bucket}/raw/things/data/")
               for task in raw_things.scan().plan_files())


def test_every_append_is_a_snapshot_that_stays_readable(raw_things):
    raw_things.append(pa.table({"id": [4], "name": ["d"]}, schema=ROWS), snapshot_properties={"high_water_mark": "4"})
    first, second = raw_things.snapshots()

    assert second.parent_snapshot_id == first.snapshot_id
    assert [s.summary["high_water_mark"] for s in (first, second)] == ["3", "4"]
    assert raw_things.scan(snapshot_id=first.snapshot_id).to_arrow().num_rows == 3
    assert raw_things.scan().to_arrow().num_rows == 4


def test_an_overwrite_that_would_discard_another_writers_commit_is_refused(aws_catalog, raw_things):
    stale = aws_catalog.load().load_table(aws_catalog.raw_table("things"))
    raw_things.append(pa.table({"id": [4], "name": ["d"]}, schema=ROWS))

    # The commit finds main moved in Glue, retries on the new metadata, and sees rows it never read.
    with pytest.raises(ValidationException):
        stale.overwrite(pa.table({"id": [9], "name": ["z"]}, schema=ROWS))

    current = aws_catalog.load().load_table(aws_catalog.raw_table("things"))
    assert sorted(current.scan().to_arrow().column("id").to_pylist()) == [1, 2, 3, 4]


# ------------------------------------------------------------------ (b) Spark's Iceberg GlueCatalog with S3FileIO


def test_spark_reads_through_the_glue_catalog_the_table_pyiceberg_wrote(spark, aws_catalog, raw_things):
    spark = in_spark(spark, aws_catalog)

    rows = spark.table(aws_catalog.spark_table(aws_catalog.raw_table("things"))).collect()

    assert sorted((row["id"], row["name"]) for row in rows) == [(1, "a"), (2, "b"), (3, "c")]


def test_spark_writes_a_day_partitioned_v2_table_that_pyiceberg_reads(spark, aws_catalog, s3_bucket):
    spark = in_spark(spark, aws_catalog)
    events = aws_catalog.spark_table(aws_catalog.analytics_table("events"))

    spark.sql(f"CREATE TABLE {events} (id BIGINT, ts TIMESTAMP) USING iceberg PARTITIONED BY (days(ts)) "
              "TBLPROPERTIES ('format-version'='2')")
    spark.sql(f"INSERT INTO {events} VALUES (1, TIMESTAMP '2026-11-29 10:00:00 UTC'), (2, TIMESTAMP '2026-11-30 09:00:00 UTC')")

    table = aws_catalog.load().load_table(aws_catalog.analytics_table("events"))
    [field] = table.spec().fields
    files = [task.file.file_path for task in table.scan().plan_files()]
    assert (table.metadata.format_version, str(field.transform)) == (2, "day")
    assert table.location() == f"s3://{s3_bucket}/analytics/events"
    assert sorted(path.split("/")[-2] for path in files) == ["ts_day=2026-11-29", "ts_day=2026-11-30"]
    assert table.scan().to_arrow().num_rows == 2


def test_a_branch_write_leaves_main_as_it_was_until_main_is_fast_forwarded(spark, aws_catalog):
    spark = in_spark(spark, aws_catalog)
    events = aws_catalog.spark_table(aws_catalog.analytics_table("events"))
    spark.sql(f"CREATE TABLE {events} (id BIGINT, ts TIMESTAMP) USING iceberg PARTITIONED BY (days(ts)) "
              "TBLPROPERTIES ('format-version'='2')")
    spark.sql(f"INSERT INTO {events} VALUES (1, TIMESTAMP '2026-11-29 10:00:00 UTC')")
    spark.sql(f"ALTER TABLE {events} CREATE BRANCH audit")

    spark.sql("SELECT CAST(2 AS BIGINT) AS id, TIMESTAMP '2026-11-30 09:00:00 UTC' AS ts") \
        .writeTo(aws_catalog.spark_table(aws_catalog.analytics_table("events"), branch="audit")).append()

    assert ids(spark.table(events)) == [1]
    assert ids(spark.table(aws_catalog.spark_table(aws_catalog.analytics_table("events"), branch="audit"))) == [1, 2]
    spark.sql(f"CALL {aws_catalog.name}.system.fast_forward('{aws_catalog.analytics_table('events')}', 'main', 'audit')")
    assert ids(spark.table(events)) == [1, 2]
    main = aws_catalog.load().load_table(aws_catalog.analytics_table("events"))
    assert main.current_snapshot().snapshot_id == main.refs()["audit"].snapshot_id
