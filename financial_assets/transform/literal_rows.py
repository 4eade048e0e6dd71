"""Rows made of literals, in the JVM, by one SQL statement.

A row built with PySpark's functions costs a call into the JVM per function per column (``lit``,
``when``, ``cast``, ``alias``: ~8 per column); a build makes such rows for every dimension and
history, before any job runs. One ``SELECT`` of literals is one call, for the same rows. A Python
list given to ``createDataFrame`` would instead become a Python RDD: every scan of it waits for
Python workers (about a second per query, locally and on Glue).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType


def sql_literal(value: object) -> str:
    """``value`` (None, a bool, an int or a str) as a Spark SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise TypeError(f"no SQL literal for {type(value).__name__} {value!r}")


def quoted(name: str) -> str:
    """``name`` as a Spark SQL identifier (backquoted, a backquote in it doubled)."""
    return "`" + name.replace("`", "``") + "`"


def literal_rows(spark: SparkSession, schema: StructType, values: dict, rows: int) -> DataFrame:
    """``rows`` (0 or 1) rows with ``schema``'s columns, in its order and types: ``values``'s
    values, NULL in every other column, each column nullable (as if from a nullable schema)."""
    if rows not in (0, 1):
        raise ValueError(f"literal_rows makes 0 or 1 rows, not {rows}")
    unknown = set(values) - set(schema.fieldNames())
    if unknown:
        raise ValueError(f"no column {sorted(unknown)} in {schema.simpleString()}")
    # IF on the range's id, not the bare literal: a literal column would be NOT NULL.
    columns = ", ".join(
        f"CAST(IF(id = 0, {sql_literal(values.get(field.name))}, NULL) AS {field.dataType.simpleString()}) "
        f"AS {quoted(field.name)}"
        for field in schema
    )
    return spark.sql(f"SELECT {columns} FROM range({rows})")
