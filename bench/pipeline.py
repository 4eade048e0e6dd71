"""End-to-end benchmark: seeded sources to a published star schema, stage by stage.

    python -m bench.pipeline [--transactions N] [--events N] [--customers N]

Seeds the `bench_pipeline` databases (never `financial`), then materializes every asset once,
as `make demo` does, on local Spark, into a fresh lakehouse, and reports each stage's seconds
from Dagster's own step events. Writes `bench/results/pipeline.json`. A benchmark, not a test:
one run, on whatever else the machine is doing (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "pipeline.json"
DATABASE = "bench_pipeline"


def step_seconds(instance, run_id: str) -> dict[str, float]:
    """Wall seconds of each step, from its STEP_START to its STEP_SUCCESS or STEP_FAILURE."""
    started, seconds = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type_value == "STEP_START":
            started[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in started:
            seconds[event.step_key] = entry.timestamp - started[event.step_key]
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=None, help="default: half the transactions")
    args = parser.parse_args(argv)

    from dagster import DagsterInstance, materialize

    from bench.run import ensure_postgres_database, start_services, with_database
    from financial_assets.analytics import ANALYTICS_ASSETS
    from financial_assets.analytics.engines import LocalSparkEngine
    from financial_assets.raw import RAW_ASSETS
    from financial_assets.resources import (
        DocumentStoreResource,
        LakehouseResource,
        PiiPolicyResource,
        PostgresResource,
        ReaderCatalogResource,
        SparkResource,
    )
    from financial_assets.sample_data.config import SeedConfig
    from financial_assets.sample_data.seed import seed_sources
    from financial_assets.settings import Settings

    start_services()
    settings = Settings.from_env()
    ensure_postgres_database(settings.postgres_url, DATABASE)
    postgres_url = with_database(settings.postgres_url, DATABASE)
    events = args.transactions // 2 if args.events is None else args.events
    config = SeedConfig(customers=args.customers, transactions=args.transactions,
                        event_ratio=min(1.0, events / args.transactions))
    print(f"seeding {args.transactions:,} transactions...", flush=True)
    started = time.monotonic()
    report = seed_sources(postgres_url, settings.mongo_url, DATABASE, config, progress=True)
    stages = {"seed sources": time.monotonic() - started}

    lakehouse = tempfile.mkdtemp(prefix="financial-assets-bench-")
    resources = {
        "postgres": PostgresResource(url=postgres_url),
        "document_store": DocumentStoreResource(url=settings.mongo_url, database=DATABASE),
        "lakehouse": LakehouseResource(uri=lakehouse),
        "pii": PiiPolicyResource(hmac_key="bench-only-pii-key"),
        "star_schema_engine": LocalSparkEngine(spark=SparkResource()),
        "reader_catalog": ReaderCatalogResource(duckdb_path=os.path.join(lakehouse, "analytics.duckdb")),
    }
    print("materializing every asset...", flush=True)
    started = time.monotonic()
    instance = DagsterInstance.ephemeral()
    result = materialize([*RAW_ASSETS, *ANALYTICS_ASSETS], resources=resources, instance=instance,
                         raise_on_error=False,
                         run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    pipeline_seconds = time.monotonic() - started
    stages.update(step_seconds(instance, result.run_id))
    stages["pipeline (all assets, one run)"] = pipeline_seconds

    load = os.getloadavg()[0]
    lines = [
        f"end-to-end pipeline: {report.rows['transactions']:,} transactions, "
        f"{report.rows['transaction_events']:,} events, {report.rows['customers']:,} customers; "
        f"{os.cpu_count()} cores, load average {load:.1f}; one run",
        f"{'stage':<34}{'seconds':>10}",
    ]
    lines += [f"{name:<34}{seconds:>10.2f}" for name, seconds in stages.items()]
    lines.append(f"run {'succeeded' if result.success else 'FAILED'}; lakehouse {lakehouse}")
    print("\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": report.rows,
        "stages_seconds": {name: round(seconds, 2) for name, seconds in stages.items()},
        "success": result.success,
        "load_average": load,
    }, indent=1) + "\n")
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
