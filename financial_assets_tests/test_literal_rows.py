"""Rows of literals made by one SQL statement (`financial_assets.transform.literal_rows`): the
unknown members and the empty histories of every build."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pyspark.sql import types as T

from financial_assets.transform.literal_rows import literal_rows

SCHEMA = T.StructType([
    T.StructField("key", T.LongType(), nullable=False), T.StructField("name", T.StringType()),
    T.StructField("odd name", T.StringType()), T.StructField("balance", T.DecimalType(12, 2)),
    T.StructField("opened_at", T.TimestampType()), T.StructField("is_open", T.BooleanType()),
    T.StructField("tags", T.ArrayType(T.StringType())),
])


def test_a_row_holds_the_given_values_and_null_in_every_other_column(spark):
    row = literal_rows(spark, SCHEMA, {"key": -1, "name": "Unknown", "is_open": False}, rows=1).collect()

    assert [r.asDict() for r in row] == [{"key": -1, "name": "Unknown", "odd name": None, "balance": None,
                                          "opened_at": None, "is_open": False, "tags": None}]


def test_the_columns_have_the_schemas_names_order_and_types_all_nullable(spark):
    frame = literal_rows(spark, SCHEMA, {"key": -1, "balance": 3}, rows=1)

    assert [(f.name, f.dataType, f.nullable) for f in frame.schema] == [
        (f.name, f.dataType, True) for f in SCHEMA]
    assert frame.first()["balance"] == Decimal("3.00")


def test_text_with_quotes_and_backslashes_arrives_as_it_was(spark):
    text = "O'Brien \\ \"the\" `unknown`"

    assert literal_rows(spark, SCHEMA, {"name": text}, rows=1).first()["name"] == text


def test_zero_rows_is_an_empty_frame_of_the_schema(spark):
    frame = literal_rows(spark, SCHEMA, {}, rows=0)

    assert frame.count() == 0
    assert [f.name for f in frame.schema] == SCHEMA.fieldNames()


def test_a_value_for_a_column_the_schema_lacks_is_refused(spark):
    with pytest.raises(ValueError, match="no column \\['balanse'\\]"):
        literal_rows(spark, SCHEMA, {"balanse": 3}, rows=1)
