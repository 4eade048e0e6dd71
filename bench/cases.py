"""The benchmark's cases, and the runner that executes one of them in its own process.

A case is either a Python case, run as ``python -m bench.cases NAME CONTEXT_JSON`` in a fresh
interpreter, or a command case (psql), run directly. For a Python case the child imports what
the case needs, then times the case alone (connecting, reading every row and writing Parquet),
checks that the Parquet files it wrote hold as many rows as it read, and writes
``{"rows", "seconds", "cpu_seconds", "peak_rss_kib", ...}`` as JSON to the context's
``result_path``; the peak RSS is that of the whole process (imports included), read from /proc
at its end (see :func:`peak_rss_kib`). A command case's peak RSS is sampled by the parent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

PG = "transactions"
DOC = "transaction_events"

# What a prepared Python case returns when run: rows read, and the Parquet files written.
RunResult = tuple[int, list[str]]


@dataclass(frozen=True)
class Case:
    name: str
    source: str  # PG or DOC: which source's row count the case must reproduce
    baseline: str | None  # the case it is compared with (ratio = seconds / baseline's seconds)
    description: str
    # Python cases: context -> a zero-argument callable that does the timed work.
    prepare: Callable[[dict], Callable[[], RunResult]] | None = None
    # Command cases: context -> argv.
    command: Callable[[dict], list[str]] | None = None
    # Importable modules the case needs beyond the project's own dependencies (the `bench`
    # extra); a case whose modules are missing is skipped, not failed.
    requires: tuple[str, ...] = ()

    def missing(self) -> list[str]:
        import importlib.util

        return [module for module in self.requires if importlib.util.find_spec(module) is None]


# --- PostgreSQL -----------------------------------------------------------------------------

SELECT_TRANSACTIONS = "SELECT * FROM transactions"


def bench_catalog(output_dir: str):
    """A lakehouse of the run's own: its warehouse in ``output_dir``, a catalog name of its own
    in the local catalog database."""
    import uuid

    from financial_assets.lakehouse.catalog import LakehouseCatalog
    from financial_assets.settings import Settings

    return LakehouseCatalog(f"file://{output_dir}", Settings.from_env().catalog_url, name=f"bench_{uuid.uuid4().hex[:12]}")


def committed_files(catalog, *names: str) -> list[str]:
    """The data files the raw tables ``names`` hold now, as local paths."""
    from financial_assets.lakehouse.raw_tables import open_raw_table

    return [
        task.file.file_path.removeprefix("file://").removeprefix("file:")
        for name in names if (table := open_raw_table(catalog, name)) is not None
        for task in table.scan().plan_files()
    ]


def _pg_extract_ours(ctx: dict) -> Callable[[], RunResult]:
    from financial_assets.extract.contracts import TRANSACTIONS
    from financial_assets.extract.loads import load_postgres_table
    from financial_assets.sources import connect_postgres

    def run() -> RunResult:
        catalog = bench_catalog(ctx["output_dir"])
        with connect_postgres(ctx["postgres_url"]) as connection:
            report = load_postgres_table(connection, TRANSACTIONS, catalog, full_refresh=True)
        if report.raw_rows != report.rows_loaded:
            raise RuntimeError("the committed snapshot does not hold the rows the load reported")
        return report.rows_loaded, committed_files(catalog, "transactions")

    return run


def _psql_path() -> str:
    import shutil
    from pathlib import Path

    found = shutil.which("psql")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"), reverse=True)
    if candidates:
        return str(candidates[0])
    raise FileNotFoundError("psql not found (install the Debian package postgresql-client)")


def _pg_psql_copy_limit(ctx: dict) -> list[str]:
    copy = rf"\copy ({SELECT_TRANSACTIONS}) TO '/dev/null' WITH (FORMAT csv)"
    return [_psql_path(), "-X", "-v", "ON_ERROR_STOP=1", "-d", ctx["postgres_url"], "-c", copy]


def _pg_pandas_naive(ctx: dict) -> Callable[[], RunResult]:
    import pandas
    import sqlalchemy

    url = ctx["postgres_url"].replace("postgresql://", "postgresql+psycopg2://", 1)
    path = os.path.join(ctx["output_dir"], "transactions.parquet")

    def run() -> RunResult:
        engine = sqlalchemy.create_engine(url)
        try:
            frame = pandas.read_sql(SELECT_TRANSACTIONS, engine)
        finally:
            engine.dispose()
        frame.to_parquet(path)
        return len(frame), [path]

    return run


def _pg_connectorx(ctx: dict) -> Callable[[], RunResult]:
    import connectorx
    import pyarrow.parquet as pq

    path = os.path.join(ctx["output_dir"], "transactions.parquet")

    def run() -> RunResult:
        table = connectorx.read_sql(ctx["postgres_url"], SELECT_TRANSACTIONS, return_type="arrow")
        pq.write_table(table, path)
        return table.num_rows, [path]

    return run


# --- document store -------------------------------------------------------------------------


def _doc_extract_ours(ctx: dict) -> Callable[[], RunResult]:
    from financial_assets.extract.loads import load_documents
    from financial_assets.sources import connect_document_store

    def run() -> RunResult:
        catalog = bench_catalog(ctx["output_dir"])
        with connect_document_store(ctx["mongo_url"], ctx["mongo_database"]) as database:
            report = load_documents(database[DOC], catalog, full_refresh=True)
        # Quarantined documents were read too; the bench seeds clean data, so there are none.
        return (report.rows_loaded + report.quarantined,
                committed_files(catalog, "transaction_events", "transaction_events_quarantine"))

    return run


def objectid_hex(column):
    """pymongoarrow's ObjectId column as 24-hex-digit strings (our ``event_id``), vectorised."""
    import numpy as np
    import pyarrow as pa

    storage = column.combine_chunks()
    if isinstance(storage, pa.ExtensionArray):
        storage = storage.storage  # fixed_size_binary(12)
    count = len(storage)
    if storage.null_count:
        raise ValueError("documents without an ObjectId _id")
    raw = np.frombuffer(storage.buffers()[1], dtype=np.uint8)
    raw = raw[storage.offset * 12 : (storage.offset + count) * 12].reshape(count, 12)
    digits = np.frombuffer(b"".join(b"%02x" % value for value in range(256)), dtype=np.uint8)
    text = digits.reshape(256, 2)[raw].reshape(count * 24)
    offsets = np.arange(0, (count + 1) * 24, 24, dtype=np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))


def _doc_pymongoarrow(ctx: dict) -> Callable[[], RunResult]:
    # pymongoarrow's wheels are built against one pyarrow release; a neighbouring one warns at
    # import ("pyarrow.lib.X size changed") although the calls used here work.
    warnings.filterwarnings("ignore", message=r"pyarrow\.lib\.\w+ size changed")
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pymongo
    from pymongoarrow.api import Schema, find_arrow_all
    from pymongoarrow.types import ObjectIdType

    from financial_assets.extract.documents import EVENT_SCHEMA

    schema = Schema(
        {
            "_id": ObjectIdType(),
            "transaction_id": pa.int64(),
            "device_type": pa.string(),
            "ip_address": pa.string(),
            "geolocation": EVENT_SCHEMA.field("geolocation").type,
            "fraud_score": pa.float64(),
        }
    )
    path = os.path.join(ctx["output_dir"], "transaction_events.parquet")

    def run() -> RunResult:
        client = pymongo.MongoClient(ctx["mongo_url"])
        try:
            found = find_arrow_all(client[ctx["mongo_database"]][DOC], {}, schema=schema)
        finally:
            client.close()
        # The same columns and types as ours: _id as the hex event_id, an (empty) extra_fields.
        table = pa.table(
            [
                objectid_hex(found.column("_id")),
                *(found.column(name) for name in EVENT_SCHEMA.names[1:-1]),
                pa.nulls(found.num_rows, pa.string()),
            ],
            schema=EVENT_SCHEMA,
        )
        pq.write_table(table, path)
        return table.num_rows, [path]

    return run


def _doc_pymongo_pandas(ctx: dict) -> Callable[[], RunResult]:
    import pandas
    import pymongo

    path = os.path.join(ctx["output_dir"], "transaction_events.parquet")

    def run() -> RunResult:
        client = pymongo.MongoClient(ctx["mongo_url"])
        try:
            documents = list(client[ctx["mongo_database"]][DOC].find())
        finally:
            client.close()
        frame = pandas.DataFrame(documents)
        frame["_id"] = frame["_id"].astype(str)  # Parquet has no ObjectId
        frame.to_parquet(path)
        return len(frame), [path]

    return run


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case(
            "pg_extract_ours",
            PG,
            "pg_psql_copy_limit",
            "load_postgres_table(TRANSACTIONS, full_refresh=True) into an Iceberg table",
            prepare=_pg_extract_ours,
        ),
        Case(
            "pg_psql_copy_limit",
            PG,
            None,
            r"psql \copy (SELECT * FROM transactions) TO '/dev/null' (CSV): the physical limit",
            command=_pg_psql_copy_limit,
        ),
        Case(
            "pg_pandas_naive",
            PG,
            "pg_extract_ours",
            "pandas.read_sql(SQLAlchemy engine) + DataFrame.to_parquet",
            prepare=_pg_pandas_naive,
            requires=("pandas", "sqlalchemy"),
        ),
        Case(
            "pg_connectorx",
            PG,
            "pg_extract_ours",
            "connectorx.read_sql(return_type='arrow') + pyarrow.parquet.write_table",
            prepare=_pg_connectorx,
            requires=("connectorx",),
        ),
        Case(
            "doc_extract_ours",
            DOC,
            "doc_pymongoarrow",
            "load_documents(full_refresh=True) into Iceberg tables (events + quarantine)",
            prepare=_doc_extract_ours,
        ),
        Case(
            "doc_pymongoarrow",
            DOC,
            "doc_extract_ours",
            "pymongoarrow find_arrow_all with our schema + write_table",
            prepare=_doc_pymongoarrow,
            requires=("pymongoarrow",),
        ),
        Case(
            "doc_pymongo_pandas",
            DOC,
            "doc_extract_ours",
            "list(collection.find()) -> pandas.DataFrame -> to_parquet",
            prepare=_doc_pymongo_pandas,
            requires=("pandas",),
        ),
    )
}


def machine_cpu_seconds() -> float | None:
    """CPU time the whole machine has spent busy (all cores, all processes) since boot."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...
    busy = sum(int(fields[i]) for i in (1, 2, 3, 6, 7, 8))
    return busy / os.sysconf("SC_CLK_TCK")


def package_versions(*packages: str) -> dict[str, str | None]:
    """Python's version and each package's installed one (None when not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def row_count(text: str) -> int:
    """A row count as `make bench SCALE=` takes it: 500000, 500k, 2m or 10M."""
    multiplier = {"k": 1_000, "m": 1_000_000}.get(text.strip()[-1:].lower(), 1)
    digits = text.strip()[:-1] if multiplier > 1 else text.strip()
    try:
        return int(float(digits) * multiplier)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a row count: {text!r} (say 500000, 500k or 2m)") from None


def default_events(transactions: int) -> int:
    """Events seeded when not told: 15% of the transactions (2m -> 300k). The document store
    writes and reads 20-35 k documents/s here, PostgreSQL ten times that."""
    return int(transactions * 0.15)


def peak_rss_kib(pid: int | str = "self") -> int | None:
    """The peak RSS (VmHWM) of the process's current program image, in KiB.

    Not ``getrusage``'s ``ru_maxrss``: on Linux that one carries over, through fork and exec,
    the parent's RSS at the time of the fork, so every child of a big parent looks big. The
    high-water mark of /proc's VmHWM starts afresh with the program that exec loads.
    """
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def child_main(argv: list[str]) -> int:
    """``python -m bench.cases NAME CONTEXT_JSON``: run one Python case once."""
    name, ctx = argv[0], json.loads(argv[1])
    case = CASES[name]
    if case.prepare is None:
        raise SystemExit(f"{name} is a command case, not run through bench.cases")
    run = case.prepare(ctx)  # imports and setup: not timed
    machine_started = machine_cpu_seconds()
    started, cpu_started = time.perf_counter(), time.process_time()
    rows, files = run()
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started  # all threads of this process
    machine_ended = machine_cpu_seconds()

    import pyarrow.parquet as pq

    written = sum(pq.read_metadata(path).num_rows for path in files)
    if written != rows:
        raise RuntimeError(f"{name}: read {rows} rows but its Parquet files hold {written}")
    result = {
        "rows": rows,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "machine_cpu_seconds": (
            machine_ended - machine_started if machine_started is not None and machine_ended is not None else None
        ),
        "peak_rss_kib": peak_rss_kib(),
        "files": len(files),
        "output_bytes": sum(os.path.getsize(path) for path in files),
    }
    with open(ctx["result_path"], "w") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
