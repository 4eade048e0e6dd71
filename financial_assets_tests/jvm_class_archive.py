"""The JVM options of every JVM the test suite starts, and a class-data archive that spares them
a third of a cold start's CPU.

The suite starts ~20 JVMs (its own Spark per worker, every CLI run's driver, the Glue stand-in's
job runs, the Connect server, the cluster's executors), most of them to run a few small jobs
once, and each loads and verifies ~18,000 classes. A dynamic class-data-sharing archive
(JDK 13+: ``-XX:ArchiveClassesAtExit``, then ``-XX:SharedArchiveFile``) holds Spark's classes
parsed and verified, mapped read-only into every JVM whose class path starts with the one that
wrote it: every ``spark-submit`` of this pyspark (drivers, the Connect server) and the
cluster's daemons and executors (their launcher gives them the same class path), not a driver
whose SPARK_CONF_DIR holds files (a non-empty directory on the class path turns sharing off:
the scale-out test's cluster runs). A cold JVM running the workload below: 27.5 -> 18.9 CPU s.

``make test`` builds it once (``python -m financial_assets_tests.jvm_class_archive``, ~1 minute:
a small Iceberg workload on local Spark, then the JVM writes what it loaded) into
``$FIN_CACHE_DIR/jvm/``, beside the Ivy cache; a new JDK, pyspark or set of options builds a new one. Without it
(``pytest`` alone on a fresh clone) the suite runs the same, only slower. Users' and the
benchmarks' JVMs never see any of this: it lives in the test package.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from financial_assets.settings import cache_dir

# C1 only: the suite's JVMs run small jobs once, where C1's quick compilation beats C2's peak speed
# (a small Iceberg write-and-read workload: 40 s instead of 65 s). C1 alone shrinks the code
# cache to 48 MB, which the suite's Spark (a class per generated query) filled within a minute
# ("CodeCache is full. Compiler has been disabled"); the tiered JVM's 240 MB is not enough
# either, hence 512 MB. The serial collector: on heaps this small and 2 cores, G1's concurrent
# threads and write barriers cost more than its short pauses save (the workload below:
# 15.1 -> 11.5 CPU s with the archive, 22.2 -> 19.8 without).
SUITE_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:ReservedCodeCacheSize=512m", "-XX:+UseSerialGC")
# A JVM whose class path does not match the archive (Spark's launcher, a driver with a
# SPARK_CONF_DIR of its own) ignores it; without these it would say so on its stdout, which
# Spark's launcher script reads.
_QUIET_SHARING = "-Xlog:cds=off,cds+dynamic=off"


def archive_path() -> Path:
    """Where the archive of this JDK, this pyspark and :data:`SUITE_JVM_OPTIONS` is kept."""
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else shutil.which("java")
    identity = [os.path.realpath(java or "java"), version("pyspark"), *SUITE_JVM_OPTIONS]
    key = hashlib.sha256("|".join(identity).encode()).hexdigest()[:16]
    return Path(cache_dir()) / "jvm" / f"spark-classes-{key}.jsa"


def suite_java_tool_options(existing: str = "") -> str:
    """JAVA_TOOL_OPTIONS for the suite: ``existing``, :data:`SUITE_JVM_OPTIONS`, and the archive
    if it has been built (naming a missing one would turn off the JDK's own archive too)."""
    archive = archive_path()
    sharing = [f"-XX:SharedArchiveFile={archive}", _QUIET_SHARING] if archive.is_file() else []
    return " ".join([existing, *SUITE_JVM_OPTIONS, *sharing]).strip()


def _workload(spark, warehouse: str) -> None:
    """What the suite's JVMs load classes for: Iceberg DDL, partitioned writes, MERGE, branches,
    joins, windows, aggregates, checkpoints."""
    spark.conf.set("spark.sql.catalog.archive", "org.apache.iceberg.spark.SparkCatalog")
    spark.conf.set("spark.sql.catalog.archive.type", "hadoop")
    spark.conf.set("spark.sql.catalog.archive.warehouse", warehouse)
    spark.sql("CREATE TABLE archive.db.facts (id BIGINT, account STRING, amount DECIMAL(18, 2), at TIMESTAMP) "
              "USING iceberg PARTITIONED BY (days(at)) TBLPROPERTIES ('format-version' = '2')")
    spark.sql("INSERT INTO archive.db.facts SELECT id, CAST(id % 7 AS STRING), CAST(id / 3 AS DECIMAL(18, 2)), "
              "TIMESTAMP '2026-01-01 00:00:00' + make_interval(0, 0, 0, CAST(id % 5 AS INT)) FROM range(2000)")
    spark.sql("ALTER TABLE archive.db.facts CREATE BRANCH audit")
    spark.sql("MERGE INTO archive.db.facts.branch_audit AS t USING (SELECT id, 'x' AS account, 1.00 AS amount, "
              "TIMESTAMP '2026-01-02 00:00:00' AS at FROM range(1990, 2010)) AS s ON t.id = s.id "
              "WHEN MATCHED THEN UPDATE SET amount = s.amount WHEN NOT MATCHED THEN INSERT *")
    facts = spark.read.option("branch", "audit").table("archive.db.facts").localCheckpoint()
    accounts = spark.range(7).selectExpr("CAST(id AS STRING) AS account", "id * 10 AS customer")
    (facts.join(accounts, "account", "left")
     .selectExpr("*", "row_number() OVER (PARTITION BY account ORDER BY at, id) AS n",
                 "sum(amount) OVER (PARTITION BY customer) AS balance")
     .groupBy("customer").agg({"amount": "sum", "n": "max", "balance": "max"}).collect())
    spark.sql("SELECT * FROM archive.db.facts.snapshots").collect()


def build() -> Path:
    """Builds the archive unless it exists; another process building it meanwhile is waited for."""
    target = archive_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        started = time.monotonic()
        print(f"building the test suite's JVM class archive (once, ~1 minute): {target}", flush=True)
        partial = target.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        # In a process of its own: the JVM writes the archive when it exits, and it must be the
        # driver's JVM alone (JAVA_TOOL_OPTIONS would also reach Spark's launcher JVM).
        environment = {**os.environ, "JAVA_TOOL_OPTIONS": " ".join(SUITE_JVM_OPTIONS)}
        subprocess.run([sys.executable, __file__, "--write", str(partial)], env=environment, check=True)
        if not partial.is_file():
            raise RuntimeError(f"the JVM wrote no class archive at {partial}")
        partial.rename(target)
        print(f"built {target} ({target.stat().st_size / 2**20:.0f} MB) in {time.monotonic() - started:.0f} s",
              flush=True)
        return target


def _write(partial: Path) -> None:
    """Runs the workload in a JVM that writes what it loaded to ``partial`` when it exits."""
    from financial_assets.transform.session import spark_session

    spark = spark_session("local[2]", app_name="test suite's JVM class archive", config={
        "spark.driver.extraJavaOptions": f"-XX:ArchiveClassesAtExit={partial} {_QUIET_SHARING}"})
    gateway_jvm = spark.sparkContext._gateway.proc  # pyspark's own handle on the JVM it started
    with tempfile.TemporaryDirectory() as warehouse:
        _workload(spark, f"file://{warehouse}")
        spark.stop()
    # The JVM exits when its stdin closes; killing it (what pyspark does at exit) would lose the archive.
    gateway_jvm.stdin.close()
    gateway_jvm.wait(timeout=600)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write"]:
        _write(Path(sys.argv[2]))
    else:
        build()
