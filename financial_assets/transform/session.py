"""The process's one Spark session, created on first use, and the settings every engine shares.

No Dagster import. Production is AWS Glue 6.0 (Spark 4.1.1, Iceberg 1.11.0); `pyspark` is pinned to
the same release, and :data:`ENGINE_SETTINGS` are set explicitly on both engines, so that a default
that differs between Spark releases or between Glue and a laptop can never change a result.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from financial_assets.lakehouse.catalog import (
    ICEBERG_AWS_BUNDLE,
    ICEBERG_EXTENSIONS,
    ICEBERG_SPARK_RUNTIME,
    POSTGRES_JDBC,
    LakehouseCatalog,
)
from financial_assets.settings import DEFAULT_SPARK_MASTER, cache_dir

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# What the transform's results depend on, identical locally and in Glue (`configure_session`):
# ANSI SQL (a bad cast, an overflow or a division by zero fails the build instead of writing
# NULL; Spark 4 and Glue 6.0 default to it, Spark 3.5 did not), UTC days, microsecond timestamps.
ENGINE_SETTINGS = {
    "spark.sql.ansi.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.storeAssignmentPolicy": "ANSI",
}

# Spark 4 records each PySpark call's Python call site in the JVM, for the "DataFrame query
# context" of error messages: a walk of the Python stack and four py4j round trips around every
# `F.col`, `select` or `alias`, thousands per build. Off in the sessions this process starts (a
# static setting: only at the start; a Spark Connect client keeps its server's): over a quarter
# less driver-side Python (test_incremental_build.py alone: 126 -> 111 s, its Python 29.8 -> 21.3
# CPU s). Errors keep their message and the JVM's trace, not the Python line.
DRIVER_SETTINGS = {"spark.python.sql.dataFrameDebugging.enabled": "false"}

# Sized for a small machine: a handful of shuffle partitions instead of 200, no UI. Spark in this
# process only: a cluster's sessions keep Spark's defaults and the operator's spark-defaults.conf
# (SPARK_CONF_DIR), which settings given here would override (docs/scale-out.md).
LOCAL_DEFAULTS = {
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "4g",
}

# JVM artifacts from Maven Central, resolved by Spark's Ivy into a folder this project owns
# (never ~/.m2, whose partial entries break resolution): the first session downloads, later reuse.
JVM_PACKAGES = (ICEBERG_SPARK_RUNTIME, ICEBERG_AWS_BUNDLE, POSTGRES_JDBC)


def ivy_cache_dir() -> str:
    """``$FIN_CACHE_DIR/ivy`` (`financial_assets.settings.cache_dir`)."""
    return str(Path(cache_dir()) / "ivy")


def _resolved_jars_file() -> Path:
    """Where the jars Ivy resolved for :data:`JVM_PACKAGES` are listed (one file per package set)."""
    packages = hashlib.sha256(",".join(JVM_PACKAGES).encode()).hexdigest()[:16]
    return Path(ivy_cache_dir()) / f"resolved-{packages}.txt"


def resolved_jars() -> str | None:
    """The jars of an earlier resolution of :data:`JVM_PACKAGES`, if each is still in the cache.

    Given to the JVM as ``spark.jars``, they spare every later start Ivy's resolution (seconds,
    even when nothing is downloaded); any file missing, and the next start resolves again.
    """
    try:
        jars = _resolved_jars_file().read_text().split()
    except OSError:
        return None
    if jars and all(Path(urlsplit(jar).path).is_file() for jar in jars):
        return ",".join(jars)
    return None


def _remember_resolved_jars(session: SparkSession) -> None:
    jars = session.sparkContext.getConf().get("spark.jars", "")
    if jars:
        target = _resolved_jars_file()
        partial = target.with_suffix(f".{os.getpid()}.tmp")  # another process may be writing it too
        partial.write_text("\n".join(jars.split(",")) + "\n")
        partial.replace(target)


def is_local_master(master: str) -> bool:
    """``local``, ``local[4]``, ``local[*]``...: Spark in this process, no cluster."""
    return master == "local" or master.startswith("local[")


def session_config(remote: bool = False, master: str = DEFAULT_SPARK_MASTER) -> dict[str, str]:
    """What a session needs from its start: the Iceberg runtime, which this process's driver
    ships to a cluster's executors (a Connect server is given it by its operator, Glue by
    ``--datalake-formats iceberg``), :data:`DRIVER_SETTINGS`, and :data:`LOCAL_DEFAULTS` for Spark
    in this process."""
    if remote:
        return dict(ENGINE_SETTINGS)
    jars = resolved_jars()
    return {
        **ENGINE_SETTINGS,
        **DRIVER_SETTINGS,
        **(LOCAL_DEFAULTS if is_local_master(master) else {}),
        **({"spark.jars": jars} if jars else {"spark.jars.packages": ",".join(JVM_PACKAGES)}),
        "spark.jars.ivy": ivy_cache_dir(),
        "spark.sql.extensions": ICEBERG_EXTENSIONS,
    }


def configure_session(spark: SparkSession, catalog: LakehouseCatalog) -> None:
    """Settings the transform depends on, and the lakehouse's catalog, on any engine's session."""
    for key, value in {**ENGINE_SETTINGS, **catalog.spark_conf()}.items():
        spark.conf.set(key, value)


def spark_session(master: str = DEFAULT_SPARK_MASTER, remote: str | None = None,
                  config: dict[str, str] | None = None, app_name: str = "financial_assets") -> SparkSession:
    """The active session, or a new one: local, a cluster (``master``) or Spark Connect (``remote``).

    Only the first call in a process decides the settings; later calls share that session.
    PySpark is imported here, not with this module, so that its settings can be read (by the
    Dagster definitions, say) without loading it.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(app_name)
    if remote:
        builder = builder.remote(remote)
    else:
        if is_local_master(master):
            # Bind the driver to loopback: a laptop or CI box has no business listening elsewhere.
            # A cluster's executors must reach the driver: there SPARK_LOCAL_IP is the operator's.
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python workers run this interpreter (the virtualenv's), not whichever python3 is on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.master(master)
    with _ivy_resolution_lock() if not remote and resolved_jars() is None else contextlib.nullcontext():
        # Read inside the lock: the process that held it may have resolved the jars meanwhile.
        settings = {**session_config(remote=bool(remote), master=master), **(config or {})}
        for key, value in settings.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        if not remote:
            session.sparkContext.setLogLevel("ERROR")
            if settings.get("spark.jars.packages") == ",".join(JVM_PACKAGES):
                _remember_resolved_jars(session)
    return session


def spark_session_exists() -> bool:
    """Whether this process already has a Spark session, classic or Spark Connect; imports no
    PySpark when none was imported (then there is none)."""
    if "pyspark" not in sys.modules:
        return False
    from pyspark import SparkContext

    if SparkContext._active_spark_context is not None:
        return True
    connect = sys.modules.get("pyspark.sql.connect.session")
    return connect is not None and connect.SparkSession._get_default_session() is not None


@contextlib.contextmanager
def _ivy_resolution_lock() -> Iterator[None]:
    """One Ivy resolution at a time in the project's cache: processes starting Spark together on
    a fresh machine (`dagster dev` and the CLI, a test's CLI run and the suite's session) would
    write the same files; the others wait, then start from the jars the first one resolved."""
    import fcntl

    folder = Path(ivy_cache_dir())
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".resolution.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
