"""One SQL statement through Amazon Athena: start it, wait for it, page through its result.

No Dagster import. Dagster's Athena client reads the result's CSV file and drops its header, so
the columns' names are lost; this reads the result through Athena's own API instead, whose
metadata names the columns, and which moto's server can serve in tests.
"""

from __future__ import annotations

import time

import boto3

RUNNING = ("QUEUED", "RUNNING")


class AthenaQueryError(RuntimeError):
    """The query failed, was cancelled, or did not finish in time; the message says which."""


def run_query(sql: str, workgroup: str, *, poll_interval_s: float = 0.5, timeout_s: float = 900.0,
              client=None) -> tuple[list[str], list[tuple]]:
    """(column names, rows of strings, None for NULL) of ``sql`` run in ``workgroup``."""
    athena = client or boto3.client("athena")
    execution_id = athena.start_query_execution(QueryString=sql, WorkGroup=workgroup)["QueryExecutionId"]
    deadline = time.monotonic() + timeout_s
    while True:
        status = athena.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]["Status"]
        if status["State"] not in RUNNING:
            break
        if time.monotonic() > deadline:
            athena.stop_query_execution(QueryExecutionId=execution_id)
            raise AthenaQueryError(f"Athena query {execution_id} did not finish within {timeout_s:.0f} s; stopped it")
        time.sleep(poll_interval_s)
    if status["State"] != "SUCCEEDED":
        raise AthenaQueryError(
            f"Athena query {execution_id} {status['State'].lower()}: {status.get('StateChangeReason', 'no reason given')}"
        )
    columns: list[str] = []
    rows: list[tuple] = []
    for page in athena.get_paginator("get_query_results").paginate(QueryExecutionId=execution_id):
        if not columns:
            columns = [column["Name"] for column in page["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]]
        rows.extend(tuple(cell.get("VarCharValue") for cell in row["Data"]) for row in page["ResultSet"]["Rows"])
    # A SELECT's first row repeats the column names.
    if rows and list(rows[0]) == columns:
        rows = rows[1:]
    return columns, rows
