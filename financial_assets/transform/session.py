"""The process's one Spark session, created on first use. No Dagster import."""

from __future__ import annotations

import os

from pyspark.sql import SparkSession

# Sized for a small machine: a handful of shuffle partitions instead of 200, no UI.
LOCAL_DEFAULTS = {
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "4g",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}


def spark_session(master: str = "local[*]", remote: str | None = None,
                  config: dict[str, str] | None = None, app_name: str = "financial_assets") -> SparkSession:
    """The active session, or a new one: local, a cluster (``master``) or Spark Connect (``remote``).

    Only the first call in a process decides the settings; later calls share that session.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(app_name)
    if remote:
        builder = builder.remote(remote)
    else:
        # Bind the driver to loopback: a laptop or CI box has no business listening elsewhere.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.master(master)
    for key, value in {**(LOCAL_DEFAULTS if not remote else {}), **(config or {})}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    if not remote:
        session.sparkContext.setLogLevel("ERROR")
    return session
