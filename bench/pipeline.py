"""End-to-end benchmark: seeded sources to a published star schema, stage by stage.

    python -m bench.pipeline [--transactions N] [--events N] [--customers N] [--repeat R]

Seeds the `bench_pipeline` databases (never `financial`), then materializes every asset, as
`make demo` does, on local Spark: full runs, each into a fresh lakehouse, then incremental runs
on the last one, each after adding 1% new transactions and events. Reports each stage's seconds
from Dagster's own step events (medians after a warm-up), the star schema's build mode, and the
document store's own cost of finding the new events (FerretDB 1.x cannot seek by `_id`: it scans
the collection). Writes `bench/results/pipeline.json`; the lakehouses are deleted afterwards.

Also recorded, for the report's "where the time goes": how long the Spark session takes to start
(paid once per process: by every CLI run, by none of the timed runs here), the first full run's
seconds (the warm-up: a cold JVM still compiling Spark's code, as in every CLI run), and the CPU that each
kind of process used during each step of the last full and the last incremental run
(`bench/resource_use.py`). `--cluster N` runs the same on a standalone Spark cluster of N workers
of one core each, started on loopback from pyspark's distribution, and writes
`bench/results/pipeline-cluster.json` instead: the side-by-side with `local[*]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from contextlib import ExitStack, closing
from datetime import datetime, timezone
from pathlib import Path

from bench.cases import default_events, package_versions, peak_rss_kib, row_count

RESULTS = Path(__file__).resolve().parent / "results"
DATABASE = "bench_pipeline"
TOTAL = "pipeline (all assets, one run)"
# A cluster's executors are JVMs of their own, sized like the local driver's share of the machine.
CLUSTER_WORKER_MEMORY = "3g"
CLUSTER_SETTINGS = {"spark.executor.memory": "2g", "spark.driver.memory": "2g",
                    "spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false",
                    "spark.ui.showConsoleProgress": "false"}


def step_windows(instance, run_id: str) -> dict[str, tuple[float, float]]:
    """Epoch seconds of each step, from its STEP_START to its STEP_SUCCESS or STEP_FAILURE."""
    started, windows = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type_value == "STEP_START":
            started[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in started:
            windows[event.step_key] = (started[event.step_key], entry.timestamp)
    return windows


def time_use(windows: dict[str, tuple[float, float]], sampler) -> dict[str, dict]:
    """Each step's wall seconds and the CPU seconds each kind of process used meanwhile."""
    return {step: {"seconds": round(until - since, 2), "cpu_seconds": sampler.cpu_between(since, until)}
            for step, (since, until) in sorted(windows.items(), key=lambda item: item[1][0])}


def append_new_rows(postgres_url: str, mongo_url: str, database: str, share: float) -> int:
    """Add ``share`` more transactions (copies of the newest ones, timestamped now) and an event
    for each, as a day of new business would: what an incremental run has to pick up."""
    import psycopg2
    import pymongo

    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM transactions")
        count = max(1, int(cursor.fetchone()[0] * share))
        cursor.execute(
            'INSERT INTO transactions (account_id, transaction_type, amount, "timestamp") '
            "SELECT account_id, transaction_type, amount, now() - interval '1 hour' FROM transactions "
            "ORDER BY transaction_id DESC LIMIT %s RETURNING transaction_id",
            (count,),
        )
        new_ids = [row[0] for row in cursor.fetchall()]
    connection.close()
    client = pymongo.MongoClient(mongo_url)
    try:
        client[database]["transaction_events"].insert_many([
            {"transaction_id": transaction_id, "device_type": "mobile_app", "ip_address": "203.0.113.7",
             "geolocation": {"country": "Kenya", "city": "Nairobi"}, "fraud_score": 0.12}
            for transaction_id in new_ids
        ], ordered=False)
    finally:
        client.close()
    return len(new_ids)


def store_scan_seconds(mongo_url: str, database: str, newest: str, repeat: int = 3) -> float:
    """Median seconds the document store takes to answer "events after the newest one" (none):
    the floor of every incremental events read on this store, whatever the reader."""
    import pymongo
    from bson import ObjectId

    with closing(pymongo.MongoClient(mongo_url)) as client:
        events = client[database]["transaction_events"]
        seconds = []
        for _ in range(repeat):
            started = time.monotonic()
            list(events.find({"_id": {"$gt": ObjectId(newest)}}))
            seconds.append(time.monotonic() - started)
    return statistics.median(seconds)


def build_mode(result) -> str:
    """How the star schema was built in this run: full or incremental, and why."""
    for materialization in result.asset_materializations_for_node("star_schema"):
        metadata = materialization.metadata
        if "build_mode" in metadata:
            return f"{metadata['build_mode'].value} ({metadata['build_mode_reason'].value})"
    return "unknown"


def ratio_beyond_store_scan(report: dict) -> float:
    """The incremental run without the document store's scan for new events, over the full run.

    The scan is counted at most as the whole events step (a separate measurement of it can come
    out longer than the step that contains it), so the ratio errs high, never low.
    """
    total = "pipeline (all assets, one run)"
    scan = min(report["document_store_scan_seconds"], report["incremental_seconds"]["raw_transaction_events"])
    return (report["incremental_seconds"][total] - scan) / report["full_seconds"][total]


def mode_summary(modes: list[str]) -> str:
    """'incremental in 3 of 3' from the build modes of the runs."""
    kinds = [mode.split(" ", 1)[0] for mode in modes]
    return ", ".join(f"{kind} in {kinds.count(kind)} of {len(kinds)}" for kind in sorted(set(kinds))) or "not recorded"


def median_stages(runs: list[dict[str, float]]) -> dict[str, float]:
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=row_count, default=200_000, help="500000, 500k, 2m (default 200k)")
    parser.add_argument("--customers", type=row_count, default=10_000)
    parser.add_argument("--events", type=row_count, default=None, help="default: 15%% of the transactions")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up (median reported)")
    parser.add_argument("--profile", action="store_true",
                        help="also print where the last full and the last incremental build spent their time, "
                        "from Spark's event log (bench/spark_profile.py)")
    parser.add_argument("--incremental-share", type=float, default=0.01,
                        help="new rows added before each incremental run (default 1%%)")
    parser.add_argument("--cluster", type=int, default=0, metavar="WORKERS",
                        help="build on a standalone Spark cluster of this many one-core workers on loopback "
                        "instead of local[*]; writes pipeline-cluster.json")
    args = parser.parse_args(argv)

    from dagster import DagsterInstance, materialize

    from bench.run import ensure_postgres_database, start_services, with_database
    from financial_assets.analytics import ANALYTICS_ASSETS
    from bench.cases import bench_catalog
    from financial_assets.lakehouse.raw_tables import high_water_mark, open_raw_table
    from financial_assets.raw import RAW_ASSETS
    from financial_assets.resources import local_pipeline_resources
    from financial_assets.sample_data.config import SeedConfig
    from financial_assets.sample_data.seed import seed_sources
    from financial_assets.settings import Settings

    start_services()
    settings = Settings.from_env()
    ensure_postgres_database(settings.postgres_url, DATABASE)
    postgres_url = with_database(settings.postgres_url, DATABASE)
    events = default_events(args.transactions) if args.events is None else args.events
    config = SeedConfig(customers=args.customers, transactions=args.transactions,
                        event_ratio=min(1.0, events / args.transactions))
    print(f"seeding {args.transactions:,} transactions...", flush=True)
    started = time.monotonic()
    report = seed_sources(postgres_url, settings.mongo_url, DATABASE, config, progress=True)
    seed_seconds = time.monotonic() - started

    from bench.resource_use import CpuSampler
    from bench.spark_profile import event_log_config
    from financial_assets.resources.spark import SparkResource
    from financial_assets.resources.star_schema_engine import LocalSparkEngine
    from financial_assets_tests.spark_cluster import SparkCluster

    modes: list[str] = []
    windows: dict[str, tuple[float, float]] = {}  # "full" / "incremental" -> the last such run's epoch seconds
    steps: dict[str, dict[str, tuple[float, float]]] = {}  # the same runs' steps
    event_log = tempfile.mkdtemp(prefix="financial-assets-bench-spark-") if args.profile else None
    spark_config = event_log_config(event_log) if event_log else {}
    cluster = None
    with ExitStack() as cleanup:
        scratch = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="financial-assets-bench-"))
        if args.cluster:
            print(f"starting a Spark cluster of {args.cluster} one-core workers...", flush=True)
            cluster = cleanup.enter_context(SparkCluster(
                Path(scratch) / "spark-cluster", workers=args.cluster, worker_cores=1,
                worker_memory=CLUSTER_WORKER_MEMORY))
            spark = SparkResource(master=cluster.master_url, config={**CLUSTER_SETTINGS, **spark_config})
        else:
            spark = SparkResource(config=spark_config)
        engine = LocalSparkEngine(spark=spark)
        sampler = cleanup.enter_context(CpuSampler())
        # The session's start is paid once per process (by every CLI run), here before the runs.
        started = time.monotonic()
        cleanup.callback(spark.session().stop)  # before the cluster it runs on
        session_start_seconds = time.monotonic() - started
        print(f"Spark session ({spark.master}) started in {session_start_seconds:.1f} s", flush=True)

        def run(lakehouse, label: str) -> dict[str, float]:
            resources = local_pipeline_resources(
                lakehouse, "bench-only-pii-key",
                postgres_url=postgres_url, mongo_url=settings.mongo_url, mongo_database=DATABASE,
                star_schema_engine=engine,
            )
            print(f"{label}...", flush=True)
            instance = DagsterInstance.ephemeral()
            started, started_at = time.monotonic(), time.time()
            result = materialize([*RAW_ASSETS, *ANALYTICS_ASSETS], resources=resources, instance=instance,
                                 raise_on_error=False,
                                 run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
            total = time.monotonic() - started
            if not result.success:
                raise SystemExit(f"bench: the {label} failed; see the Dagster output above")
            modes.append(build_mode(result))
            kind = "incremental" if "incremental" in label else "full"
            windows[kind] = (started_at, time.time())
            steps[kind] = step_windows(instance, result.run_id)
            print(f"  {total:.1f} s; star schema: {modes[-1]}", flush=True)
            return {**{step: until - since for step, (since, until) in steps[kind].items()}, TOTAL: total}

        # Full runs: each on a fresh lakehouse, the same sources. The first warms Spark up.
        full_runs, lakehouse = [], None
        for attempt in range(args.repeat + 1):
            lakehouse = bench_catalog(os.path.join(scratch, f"lakehouse-{attempt}"))
            stages = run(lakehouse, "full run (warm-up)" if attempt == 0 else f"full run {attempt}/{args.repeat}")
            if attempt:
                full_runs.append(stages)
            else:  # the JVM's first build, still compiling Spark's code: what every CLI run pays
                first_full = {name: round(stages[name], 2) for name in ("star_schema", TOTAL) if name in stages}
        # Incremental runs on the last lakehouse: each after another share of new rows.
        incremental_runs, new_transactions = [], []
        for attempt in range(args.repeat + 1):
            added = append_new_rows(postgres_url, settings.mongo_url, DATABASE, args.incremental_share)
            stages = run(lakehouse, f"incremental run after {added:,} new transactions"
                         + (" (warm-up)" if attempt == 0 else f" {attempt}/{args.repeat}"))
            if attempt:
                incremental_runs.append(stages)
                new_transactions.append(added)
        newest = high_water_mark(open_raw_table(lakehouse, "transaction_events"))
    incremental_modes = modes[-args.repeat:]
    scan = store_scan_seconds(settings.mongo_url, DATABASE, newest)

    full, incremental = median_stages(full_runs), median_stages(incremental_runs)
    load = os.getloadavg()[0]
    lines = [
        f"end-to-end pipeline: {report.rows['transactions']:,} transactions, "
        f"{report.rows['transaction_events']:,} events, {report.rows['customers']:,} customers; "
        f"{os.cpu_count()} cores, load average {load:.1f}; median of {args.repeat} runs after 1 warm-up; "
        f"seeding took {seed_seconds:.1f} s",
        f"{'stage':<34}{'full s':>10}{'incremental s':>15}",
    ]
    lines += [f"{name:<34}{full[name]:>10.2f}{incremental.get(name, 0):>15.2f}" for name in full]
    ratio = incremental[TOTAL] / full[TOTAL]
    beyond_scan = ratio_beyond_store_scan({
        "document_store_scan_seconds": scan, "incremental_seconds": incremental, "full_seconds": full})
    peak_mb = (peak_rss_kib() or 0) / 1024
    lines.append(f"star schema in the timed incremental runs: {mode_summary(incremental_modes)}")
    lines.append(f"incremental ({args.incremental_share:.0%} new rows) / full: {ratio:.2f} "
                 f"(target <= 0.10: {'met' if ratio <= 0.10 else 'MISSED'}); peak RSS {peak_mb:.0f} MB")
    lines.append(f"of which the document store's scan for new events: {scan:.2f} s (median of 3); "
                 f"the rest of the incremental run / full: {beyond_scan:.2f}")
    print("\n".join(lines))
    profiles, spark_executions = {}, {}
    if event_log:
        from dataclasses import asdict

        from bench.spark_profile import executions, read_events, table

        events = read_events(event_log)
        shutil.rmtree(event_log, ignore_errors=True)  # read: the tables below keep what it said
        for name, (since, until) in windows.items():
            found = executions(events, since, until)
            profiles[name] = table(found, since, until)
            spark_executions[name] = [asdict(execution) for execution in found]
            print(f"\nwhere the last {name} run's Spark time went:\n{profiles[name]}")
    uses = {kind: time_use(steps[kind], sampler) | time_use({TOTAL: windows[kind]}, sampler) for kind in windows}
    results = RESULTS / ("pipeline-cluster.json" if cluster else "pipeline.json")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": report.rows,
        "repeat": args.repeat,
        "statistic": "median after 1 warm-up",
        "seed_seconds": round(seed_seconds, 2),
        "full_seconds": {name: round(value, 2) for name, value in full.items()},
        "incremental_seconds": {name: round(value, 2) for name, value in incremental.items()},
        "incremental_share": args.incremental_share,
        # Each incremental run adds this many transactions, and as many events.
        "incremental_new_rows": int(statistics.median(new_transactions)),
        "incremental_ratio": round(ratio, 3),
        "incremental_build_modes": incremental_modes,
        "document_store_scan_seconds": round(scan, 2),
        "incremental_ratio_beyond_store_scan": round(beyond_scan, 3),
        "peak_rss_mb": round(peak_mb, 1),
        "load_average": load,
        "cores": os.cpu_count(),
        "versions": package_versions("dagster", "pyspark", "pyarrow", "duckdb", "pymongo", "psycopg2-binary"),
        "engine": (f"standalone Spark cluster: {args.cluster} workers of 1 core and {CLUSTER_WORKER_MEMORY} "
                   f"(executors {CLUSTER_SETTINGS['spark.executor.memory']}), on loopback") if cluster else "local[*]",
        "spark_session_start_seconds": round(session_start_seconds, 2),
        "first_full_seconds": first_full,
        "time_use": uses,
        **({"spark_profile": profiles, "spark_executions": spark_executions} if profiles else {}),
    }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
