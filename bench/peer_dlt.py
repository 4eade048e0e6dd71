"""The peer stack a user might pick instead: dlt to Parquet, then the star schema as DuckDB SQL.

    make bench        (installs .venv-dlt from bench/peer-requirements.txt, then runs this), or
    .venv-dlt/bin/python -m bench.peer_dlt --database bench_pipeline --mongo-database bench_pipeline

dlt gets its own virtualenv (`.venv-dlt`, ignored by git) because its pins may conflict with
Dagster's. This module imports nothing from `financial_assets` but two modules of the standard
library only: `settings` and `lakehouse.tables` (the star tables' names and the analyst's query).
The sources must already be seeded (`.venv-bench/bin/python -m bench.pipeline`).

Each run, in a fresh temp dir:
1. dlt extracts PostgreSQL `customers`, `accounts`, `transactions` (the `sql_database` source,
   `--backend connectorx`, the default, or `pyarrow`: at 500 k transactions connectorx took
   0.7 s against pyarrow's 1.7 s, but it ignores `chunk_size`, reading each table whole, and
   types DECIMAL(12, 2) as DECIMAL(38, 10), which the SQL casts back) and the `transaction_events` collection (a plain dlt
   resource yielding Arrow tables built from pymongo batches: dlt 1.x ships no MongoDB source,
   the verified one is fetched with `dlt init mongodb`, which needs GitHub) to the `filesystem`
   destination as Parquet;
2. DuckDB runs `bench/peer_star_schema.sql` over those files and COPYs the four tables to Parquet;
3. DuckDB runs the analyst's query over the output Parquet.
One warm-up run, then `--repeat` timed runs; the median per stage goes to
`bench/results/peer.json`. Checks: fact rows == `count(*) FROM transactions`, and the analyst
query's total == `sum(amount) FROM transactions`. Exit 1 if either fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from bench.cases import peak_rss_kib
from financial_assets.lakehouse.tables import ANALYST_QUERY

# No telemetry, and no network calls of dlt's own.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
SQL_FILE = HERE / "peer_star_schema.sql"
# What the peer's SQL builds: the original pipeline's four tables. It keeps no history and no daily
# balances (ours do), so the comparison leaves that work to our side alone.
PEER_TABLES = ("dim_customers", "dim_accounts", "dim_dates", "fact_transactions")
RESULTS = HERE / "results" / "peer.json"
POSTGRES_TABLES = ("customers", "accounts", "transactions")
COLLECTION = "transaction_events"
MONGO_BATCH = 50_000
_BLOCK = 64  # SHA-256's block size, for HMAC


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def source_stats(postgres_url: str, mongo_url: str, mongo_database: str) -> dict:
    import psycopg2
    import pymongo

    connection = psycopg2.connect(postgres_url)
    try:
        with connection.cursor() as cursor:
            stats = {}
            for table in POSTGRES_TABLES:
                cursor.execute(f"SELECT count(*) FROM {table}")
                stats[table] = cursor.fetchone()[0]
            cursor.execute("SELECT sum(amount) FROM transactions")
            stats["sum_amount"] = cursor.fetchone()[0]
    finally:
        connection.close()
    client = pymongo.MongoClient(mongo_url)
    try:
        stats[COLLECTION] = client[mongo_database][COLLECTION].count_documents({})
    finally:
        client.close()
    return stats


# --- stage 1: dlt ---------------------------------------------------------------------------


def events_resource(mongo_url: str, mongo_database: str):
    """transaction_events as Arrow tables of MONGO_BATCH documents each (a plain dlt resource)."""
    import dlt
    import pyarrow as pa
    import pymongo

    schema = pa.schema([
        ("event_id", pa.string()),
        ("transaction_id", pa.int64()),
        ("device_type", pa.string()),
        ("ip_address", pa.string()),
        ("geolocation", pa.struct([("country", pa.string()), ("city", pa.string())])),
        ("fraud_score", pa.float64()),
    ])

    def to_table(documents: list[dict]) -> pa.Table:
        columns = {name: [] for name in schema.names}
        for document in documents:
            columns["event_id"].append(str(document["_id"]))
            columns["transaction_id"].append(document.get("transaction_id"))
            columns["device_type"].append(document.get("device_type"))
            columns["ip_address"].append(document.get("ip_address"))
            geolocation = document.get("geolocation")
            columns["geolocation"].append(
                {"country": geolocation.get("country"), "city": geolocation.get("city")}
                if isinstance(geolocation, dict) else None
            )
            columns["fraud_score"].append(document.get("fraud_score"))
        return pa.Table.from_pydict(columns, schema=schema)

    @dlt.resource(name=COLLECTION, write_disposition="replace")
    def transaction_events():
        client = pymongo.MongoClient(mongo_url)
        try:
            batch = []
            for document in client[mongo_database][COLLECTION].find({}, batch_size=10_000):
                batch.append(document)
                if len(batch) >= MONGO_BATCH:
                    yield to_table(batch)
                    batch = []
            if batch:
                yield to_table(batch)
        finally:
            client.close()

    return transaction_events


def dlt_extract(workdir: Path, postgres_url: str, mongo_url: str, mongo_database: str,
                backend: str) -> tuple[dict[str, float], Path]:
    import dlt
    from dlt.sources.sql_database import sql_database

    raw = workdir / "raw"
    pipelines_dir = workdir / "dlt_pipelines"
    seconds = {}

    def pipeline(name: str):
        return dlt.pipeline(
            pipeline_name=name,
            destination=dlt.destinations.filesystem(bucket_url=str(raw)),
            dataset_name="raw",
            pipelines_dir=str(pipelines_dir),
            progress=None,
        )

    # SQLAlchemy 2.1 maps postgresql:// to psycopg 3; the venv has psycopg2.
    sqlalchemy_url = postgres_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    started = time.perf_counter()
    source = sql_database(credentials=sqlalchemy_url, table_names=list(POSTGRES_TABLES), backend=backend,
                          chunk_size=100_000)
    pipeline("peer_postgres").run(source, loader_file_format="parquet", write_disposition="replace")
    seconds["dlt postgres (3 tables)"] = time.perf_counter() - started

    started = time.perf_counter()
    pipeline("peer_mongodb").run(events_resource(mongo_url, mongo_database), loader_file_format="parquet")
    seconds["dlt mongodb (events)"] = time.perf_counter() - started
    return seconds, raw / "raw"


# --- stage 2 and 3: DuckDB ------------------------------------------------------------------


def parquet_glob(directory: Path) -> str:
    return str(directory / "*.parquet")


def duckdb_build(raw: Path, out: Path, hmac_key: bytes) -> float:
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    inner, outer = hmac_pads(hmac_key)
    started = time.perf_counter()
    connection = duckdb.connect()
    try:
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute("SET VARIABLE inner_pad = unhex($1)", [inner.hex()])
        connection.execute("SET VARIABLE outer_pad = unhex($1)", [outer.hex()])
        for table in (*POSTGRES_TABLES, COLLECTION):
            connection.execute(
                f"CREATE VIEW raw_{table} AS SELECT * FROM read_parquet('{parquet_glob(raw / table)}')"
            )
        connection.execute(SQL_FILE.read_text().replace("__OUT__", str(out)))
    finally:
        connection.close()
    return time.perf_counter() - started


def run_analyst_query(out: Path, query: str) -> tuple[float, list, int]:
    import duckdb

    started = time.perf_counter()
    connection = duckdb.connect()
    try:
        for table in PEER_TABLES:
            connection.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{out}/{table}.parquet')")
        rows = connection.execute(query).fetchall()
        seconds = time.perf_counter() - started
        fact_rows = connection.execute("SELECT count(*) FROM fact_transactions").fetchone()[0]
    finally:
        connection.close()
    return seconds, rows, fact_rows


def star_row_counts(out: Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    return {table: pq.ParquetFile(out / f"{table}.parquet").metadata.num_rows for table in PEER_TABLES}


def raw_row_counts(raw: Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    return {
        table: sum(pq.ParquetFile(path).metadata.num_rows for path in sorted((raw / table).glob("*.parquet")))
        for table in (*POSTGRES_TABLES, COLLECTION)
    }


def one_run(args, postgres_url: str, mongo_url: str, query: str) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="financial-assets-peer-"))
    try:
        before = source_stats(postgres_url, mongo_url, args.mongo_database)
        total_started = time.perf_counter()
        stages, raw = dlt_extract(workdir, postgres_url, mongo_url, args.mongo_database, args.backend)
        stages["duckdb star schema"] = duckdb_build(raw, workdir / "star", args.hmac_key.encode())
        seconds, rows, fact_rows = run_analyst_query(workdir / "star", query)
        stages["analyst query"] = seconds
        stages["total"] = time.perf_counter() - total_started
        after = source_stats(postgres_url, mongo_url, args.mongo_database)
        analyst_total = sum((row[2] for row in rows), Decimal(0)) if rows else Decimal(0)
        return {
            "stages": stages,
            "source": before,
            "source_changed_during_run": before != after,
            "raw_rows": raw_row_counts(raw),
            "star_rows": star_row_counts(workdir / "star"),
            "fact_rows": fact_rows,
            "analyst_rows": len(rows),
            "analyst_total": analyst_total,
            "top_row": rows[0] if rows else None,
        }
    finally:
        if args.keep:
            log(f"peer_dlt: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for package in ("dlt", "duckdb", "pyarrow", "connectorx", "sqlalchemy", "psycopg2-binary", "pymongo"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peer_dlt", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="bench_pipeline", help="PostgreSQL database (default bench_pipeline)")
    parser.add_argument("--mongo-database", default="bench_pipeline")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up (median reported)")
    parser.add_argument("--backend", choices=("pyarrow", "connectorx"), default="connectorx",
                        help="dlt sql_database backend (default connectorx: the faster here)")
    parser.add_argument("--hmac-key", default="bench-only-pii-key", help="the e-mail HMAC key (bench only)")
    parser.add_argument("--keep", action="store_true", help="keep each run's temp dir")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.database in ("financial", "postgres") or args.mongo_database == "financialdb":
        raise SystemExit("peer_dlt: refusing the default databases; use the bench ones")

    sys.path.insert(0, str(REPO_ROOT))
    from urllib.parse import urlsplit, urlunsplit

    from financial_assets.settings import Settings  # pure: no Dagster, no Spark

    settings = Settings.from_env()
    postgres_url = urlunsplit(urlsplit(settings.postgres_url)._replace(path=f"/{args.database}"))
    mongo_url = settings.mongo_url
    query = ANALYST_QUERY

    runs = []
    for attempt in range(args.repeat + 1):
        label = "warm-up" if attempt == 0 else f"run {attempt}/{args.repeat}"
        log(f"peer_dlt: {label} (backend {args.backend})...")
        result = one_run(args, postgres_url, mongo_url, query)
        log("  " + ", ".join(f"{name} {value:.2f} s" for name, value in result["stages"].items()))
        if attempt:
            runs.append(result)

    stage_names = list(runs[0]["stages"])
    median = {name: statistics.median(run["stages"][name] for run in runs) for name in stage_names}
    low = {name: min(run["stages"][name] for run in runs) for name in stage_names}
    high = {name: max(run["stages"][name] for run in runs) for name in stage_names}
    last = runs[-1]
    source = last["source"]
    checks = {
        "fact_rows == source transactions": last["fact_rows"] == source["transactions"],
        "analyst total == sum(amount) in PostgreSQL": last["analyst_total"] == source["sum_amount"],
        "raw rows == source rows": all(last["raw_rows"][t] == source[t] for t in last["raw_rows"]),
    }
    failures_any_run = [
        i + 1 for i, run in enumerate(runs)
        if run["fact_rows"] != run["source"]["transactions"] or run["analyst_total"] != run["source"]["sum_amount"]
    ]
    peak = (peak_rss_kib() or 0) / 1024

    lines = [
        f"peer stack (dlt {versions()['dlt']} + DuckDB {versions()['duckdb']}): "
        f"{source['transactions']:,} transactions, {source[COLLECTION]:,} events, "
        f"{source['customers']:,} customers; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
        f"median of {args.repeat} runs after 1 warm-up; sql_database backend {args.backend}",
        f"{'stage':<28}{'seconds':>10}{'min-max':>16}",
    ]
    lines += [f"{name:<28}{median[name]:>10.2f}{low[name]:>8.2f}-{high[name]:<7.2f}" for name in stage_names]
    lines.append(f"peak RSS {peak:.0f} MB (VmHWM of this process, all runs)")
    lines.append(f"fact_transactions rows {last['fact_rows']:,}; source transactions {source['transactions']:,}")
    lines.append(f"analyst query total {last['analyst_total']}; PostgreSQL sum(amount) {source['sum_amount']} "
                 f"({last['analyst_rows']:,} rows)")
    for name, ok in checks.items():
        lines.append(f"check {name}: {'ok' if ok else 'FAILED'}")
    if any(run["source_changed_during_run"] for run in runs):
        lines.append("warning: the sources changed during a run (another process writing to them)")
    print("\n".join(lines))

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "database": args.database,
        "mongo_database": args.mongo_database,
        "backend": args.backend,
        "mongodb_source": "plain dlt resource yielding Arrow tables from pymongo batches "
                          f"of {MONGO_BATCH:,} (dlt ships no MongoDB source)",
        "repeat": args.repeat,
        "statistic": "median after 1 warm-up",
        "stages_seconds": {name: round(value, 3) for name, value in median.items()},
        "stages_min_max": {name: [round(low[name], 3), round(high[name], 3)] for name in stage_names},
        "rows": {
            "source": {k: v for k, v in source.items() if k != "sum_amount"},
            "raw": last["raw_rows"],
            "star": last["star_rows"],
        },
        "verification": {
            "fact_rows": last["fact_rows"],
            "source_transactions": source["transactions"],
            "analyst_total": str(last["analyst_total"]),
            "postgres_sum_amount": str(source["sum_amount"]),
            "checks": checks,
            "runs_failing_a_check": failures_any_run,
        },
        "peak_rss_mb": round(peak, 1),
        "versions": versions(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg()[0],
    }, indent=1) + "\n")
    log(f"peer_dlt: wrote {args.output}")
    return 0 if all(checks.values()) and not failures_any_run else 1


if __name__ == "__main__":
    raise SystemExit(main())
