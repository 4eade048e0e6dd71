"""``python -m bench.run``: benchmark the raw-zone extraction against its peers and limits.

Seeds PostgreSQL database ``bench`` and document-store database ``bench`` (never the default
``financial`` / ``financialdb``) with the project's sample-data generator, runs every case in a
fresh process (one warm-up, then ``--repeat`` timed runs), prints a table and writes
``bench/results/latest.json``. Progress goes to stderr, the report to stdout.

Exit status: 0 when every case ran and read every row; 1 when a case failed (a case that read
fewer rows than the source holds is a failure, not a result); 2 on a usage or setup error.
Missing a target is reported, not an error: this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pymongo.errors

from bench.cases import (
    CASES,
    DOC,
    PG,
    Case,
    default_events,
    machine_cpu_seconds,
    package_versions,
    peak_rss_kib,
    row_count,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
BENCH_DATABASE = "bench"
PROTECTED_DATABASES = {"financial", "financialdb", "postgres", "template0", "template1"}

DEFAULT_TRANSACTIONS = 500_000
DEFAULT_CUSTOMERS = 20_000
DEFAULT_ACCOUNTS_PER_CUSTOMER = 2
DEFAULT_REPEAT = 3
DEFAULT_SEED = 42

# The issue's targets.
PSQL_LIMIT_FACTOR = 1.5
PEAK_RSS_LIMIT_MB = 300


class BenchError(RuntimeError):
    """A case failed: it crashed, timed out, or read other than the source's row count."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- setup ----------------------------------------------------------------------------------


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def start_services() -> None:
    script = REPO_ROOT / "scripts" / "services.sh"
    if not script.exists():
        raise SystemExit(f"bench: {script} not found; start PostgreSQL and FerretDB yourself")
    log("bench: scripts/services.sh start")
    result = subprocess.run([str(script), "start"], cwd=REPO_ROOT, stdout=sys.stderr, stderr=sys.stderr)
    if result.returncode != 0:
        raise SystemExit(f"bench: scripts/services.sh start failed (exit {result.returncode})")


def ensure_postgres_database(server_url: str, database: str) -> None:
    import psycopg2
    from psycopg2 import sql

    connection = psycopg2.connect(with_database(server_url, "postgres"), connect_timeout=10)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cursor.fetchone() is None:
                log(f"bench: creating PostgreSQL database {database!r}")
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    finally:
        connection.close()


def seed(ctx: dict, config) -> dict:
    from financial_assets.sample_data import seed_sources

    log(
        f"bench: seeding {config.customers:,} customers, {config.accounts:,} accounts, "
        f"{config.transactions:,} transactions, {config.events:,} events (seed {config.seed})"
    )
    report = seed_sources(
        ctx["postgres_url"], ctx["mongo_url"], ctx["mongo_database"], config, progress=True
    )
    log(report.summary())
    with psycopg_connection(ctx["postgres_url"]) as connection:
        with connection.cursor() as cursor:
            # Settle the freshly written tables before timing reads of them.
            cursor.execute("VACUUM (ANALYZE) transactions")
    info = report.to_dict()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "seed.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    return info


class psycopg_connection:
    """An autocommit connection, closed on ended."""

    def __init__(self, url: str):
        self.url = url

    def __enter__(self):
        import psycopg2

        self.connection = psycopg2.connect(self.url, connect_timeout=10)
        self.connection.autocommit = True
        return self.connection

    def __exit__(self, *exc) -> None:
        self.connection.close()


def source_counts(ctx: dict) -> dict[str, int]:
    import pymongo

    with psycopg_connection(ctx["postgres_url"]) as connection, connection.cursor() as cursor:
        counts = {}
        for table in ("customers", "accounts", PG):
            cursor.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cursor.fetchone()[0]
    client = pymongo.MongoClient(ctx["mongo_url"], serverSelectionTimeoutMS=10_000)
    try:
        counts[DOC] = client[ctx["mongo_database"]][DOC].count_documents({})
    finally:
        client.close()
    return counts


# --- machine and versions -------------------------------------------------------------------


def machine() -> dict:
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / (1 << 20), 1),
        "cpu": cpu,
        "platform": platform.platform(),
    }


def versions(ctx: dict) -> dict:
    found = package_versions(
        "pyarrow", "psycopg2-binary", "pymongo", "pandas", "SQLAlchemy", "connectorx", "pymongoarrow",
    )
    try:
        with psycopg_connection(ctx["postgres_url"]) as connection, connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            found["postgresql"] = cursor.fetchone()[0]
    except Exception as error:  # noqa: BLE001 - versions are informative only
        found["postgresql"] = f"unknown ({type(error).__name__})"
    try:
        import pymongo

        client = pymongo.MongoClient(ctx["mongo_url"], serverSelectionTimeoutMS=5_000)
        try:
            info = client.admin.command("buildInfo")
        finally:
            client.close()
        ferret = info.get("ferretdb") or info.get("ferretdbVersion")
        if isinstance(ferret, dict):
            ferret = ferret.get("version")
        found["document_store"] = f"FerretDB {ferret}" if ferret else f"MongoDB-compatible {info.get('version')}"
    except Exception as error:  # noqa: BLE001
        found["document_store"] = f"unknown ({type(error).__name__})"
    try:
        psql = subprocess.run(
            [CASES["pg_psql_copy_limit"].command(ctx)[0], "--version"], capture_output=True, text=True
        )
        found["psql"] = psql.stdout.strip()
    except Exception:  # noqa: BLE001
        found["psql"] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "financial_assets"],
            cwd=REPO_ROOT, capture_output=True, text=True,
        )
        found["financial_assets"] = (commit.stdout.strip() or "no commit") + (
            " + local changes" if dirty.stdout.strip() else ""
        )
    except OSError:
        found["financial_assets"] = None
    return found


# --- running a case -------------------------------------------------------------------------


@dataclass
class Run:
    rows: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    output_bytes: int | None = None
    load_average: float | None = None  # the machine's 1-minute load average when the run began
    # CPU the rest of the machine used meanwhile: the database server's work, and anyone else's.
    other_cpu_seconds: float | None = None


@dataclass
class CaseResult:
    case: Case
    runs: list[Run] = field(default_factory=list)
    warmup: Run | None = None
    error: str | None = None
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.runs) and not self.error and not self.skipped

    @property
    def seconds(self) -> float | None:
        return statistics.median(r.seconds for r in self.runs) if self.ok else None

    @property
    def rows(self) -> int | None:
        return self.runs[0].rows if self.ok else None

    @property
    def cpu_seconds(self) -> float | None:
        return statistics.median(r.cpu_seconds for r in self.runs) if self.ok else None

    @property
    def other_cpu_seconds(self) -> float | None:
        values = [r.other_cpu_seconds for r in self.runs if r.other_cpu_seconds is not None]
        return statistics.median(values) if values and self.ok else None

    @property
    def peak_rss_mb(self) -> float | None:
        return max(r.peak_rss_mb for r in self.runs) if self.ok else None

    @property
    def output_mb(self) -> float | None:
        sizes = [r.output_bytes for r in self.runs if r.output_bytes is not None]
        return sizes[0] / (1 << 20) if sizes and self.ok else None


@dataclass
class Exit:
    code: int
    timed_out: bool
    sampled_peak_rss_kib: int | None  # VmHWM as last sampled while it ran
    cpu_seconds: float  # user + system, of the process and the children it waited for


def _wait(process: subprocess.Popen, timeout: float, sample: bool, sample_every: float = 0.005) -> Exit:
    """Reap ``process`` with os.wait4 (killing it after ``timeout``), optionally sampling its peak RSS.

    wait4's ru_maxrss is not used for the peak: on Linux it includes this (large) parent's RSS
    at the fork. VmHWM is monotonic, so the last sample misses only the final few ms. Python
    cases report their own VmHWM at their end and are not sampled.
    """
    timed_out = threading.Event()
    done = threading.Event()
    peak: list[int] = []

    def kill() -> None:
        timed_out.set()
        try:
            os.kill(process.pid, 9)
        except ProcessLookupError:
            pass

    def sampling() -> None:
        while not done.is_set():
            value = peak_rss_kib(process.pid)
            if value:
                peak.append(max(value, peak[-1] if peak else 0))
            done.wait(sample_every)

    timer = threading.Timer(timeout, kill)
    timer.daemon = True
    sampler = threading.Thread(target=sampling, daemon=True)
    timer.start()
    if sample:
        sampler.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()
        done.set()
        if sample:
            sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    return Exit(
        code=process.returncode,
        timed_out=timed_out.is_set(),
        sampled_peak_rss_kib=peak[-1] if peak else None,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
    )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def run_once(case: Case, ctx: dict, expected_rows: int, workroot: str, timeout: float) -> Run:
    workdir = Path(tempfile.mkdtemp(prefix=f"{case.name}-", dir=workroot))
    try:
        output_dir = workdir / "out"
        output_dir.mkdir()
        log_path = workdir / "output.log"
        run_ctx = dict(ctx, output_dir=str(output_dir), result_path=str(workdir / "result.json"))
        env = dict(os.environ, PYTHONUNBUFFERED="1", PGCONNECT_TIMEOUT="10")
        load_average = os.getloadavg()[0]
        with open(log_path, "wb") as output:
            try:
                if case.command is not None:
                    argv = case.command(run_ctx)
                else:
                    argv = [sys.executable, "-m", "bench.cases", case.name, json.dumps(run_ctx)]
                started, machine_started = time.perf_counter(), machine_cpu_seconds()
                process = subprocess.Popen(
                    argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output
                )
            except OSError as error:
                raise BenchError(f"could not start: {error}") from None
            ended = _wait(process, timeout, sample=case.command is not None)
            wall, machine_ended = time.perf_counter() - started, machine_cpu_seconds()
        if ended.timed_out:
            raise BenchError(f"timed out after {timeout:.0f} s")
        if ended.code != 0:
            raise BenchError(f"exited with status {ended.code}:\n{_tail(log_path)}")

        if case.command is not None:
            # psql reports "COPY <rows>"; its time is the process's wall time.
            match = re.search(r"^COPY (\d+)$", log_path.read_text(errors="replace"), re.MULTILINE)
            if not match:
                raise BenchError(f"no 'COPY n' line in psql's output:\n{_tail(log_path)}")
            if not ended.sampled_peak_rss_kib:
                raise BenchError("psql ended before its memory could be sampled")
            run = Run(
                rows=int(match.group(1)),
                seconds=wall,
                cpu_seconds=ended.cpu_seconds,
                peak_rss_mb=ended.sampled_peak_rss_kib / 1024,
                load_average=load_average,
                other_cpu_seconds=(
                    machine_ended - machine_started - ended.cpu_seconds
                    if machine_started is not None and machine_ended is not None else None
                ),
            )
        else:
            result = json.loads((workdir / "result.json").read_text())
            if not result["peak_rss_kib"]:
                raise BenchError("no peak RSS: /proc/self/status has no VmHWM here")
            run = Run(
                rows=result["rows"],
                seconds=result["seconds"],
                cpu_seconds=result["cpu_seconds"],
                peak_rss_mb=result["peak_rss_kib"] / 1024,
                output_bytes=result["output_bytes"],
                load_average=load_average,
                other_cpu_seconds=(
                    result["machine_cpu_seconds"] - result["cpu_seconds"]
                    if result["machine_cpu_seconds"] is not None else None
                ),
            )
        if run.rows != expected_rows:
            raise BenchError(f"read {run.rows:,} rows, but the source holds {expected_rows:,}")
        return run
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_case(
    case: Case, ctx: dict, expected_rows: int, repeat: int, workroot: str, timeout: float,
    position: str,
) -> CaseResult:
    result = CaseResult(case)
    missing = case.missing()
    if missing:
        result.skipped = f"not installed: {', '.join(missing)} (pip install -e '.[bench]')"
        log(f"bench: [{position}] {case.name}: skipped, {result.skipped}")
        return result
    for attempt in range(repeat + 1):
        label = "warm-up" if attempt == 0 else f"run {attempt}/{repeat}"
        log(f"bench: [{position}] {case.name}: {label} ...")
        try:
            run = run_once(case, ctx, expected_rows, workroot, timeout)
        except BenchError as error:
            result.error = str(error)
            log(f"bench: [{position}] {case.name}: {label} FAILED: {error}")
            return result
        log(
            f"bench: [{position}] {case.name}: {label} {run.seconds:.2f} s, "
            f"{run.rows / run.seconds:,.0f} rows/s, CPU {run.cpu_seconds:.2f} s, "
            f"peak RSS {run.peak_rss_mb:.0f} MB"
        )
        if attempt == 0:
            result.warmup = run
        else:
            result.runs.append(run)
    return result


# --- report ---------------------------------------------------------------------------------


def records(results: dict[str, CaseResult]) -> list[dict]:
    out = []
    for name, result in results.items():
        seconds = result.seconds
        baseline = result.case.baseline
        base = results.get(baseline) if baseline else None
        ratio = seconds / base.seconds if seconds and base and base.seconds else None
        out.append(
            {
                "name": name,
                "rows": result.rows,
                "seconds": round(seconds, 4) if seconds is not None else None,
                "rows_per_s": round(result.rows / seconds) if seconds else None,
                "peak_rss_mb": round(result.peak_rss_mb, 1) if result.peak_rss_mb is not None else None,
                "cpu_seconds": round(result.cpu_seconds, 3) if result.cpu_seconds is not None else None,
                "other_cpu_seconds": (
                    round(result.other_cpu_seconds, 3) if result.other_cpu_seconds is not None else None
                ),
                "baseline": baseline,
                "ratio": round(ratio, 3) if ratio is not None else None,
                "source": result.case.source,
                "description": result.case.description,
                "output_mb": round(result.output_mb, 2) if result.output_mb is not None else None,
                "runs_seconds": [round(r.seconds, 4) for r in result.runs],
                "runs_peak_rss_mb": [round(r.peak_rss_mb, 1) for r in result.runs],
                "runs_cpu_seconds": [round(r.cpu_seconds, 3) for r in result.runs],
                "runs_load_average": [round(r.load_average, 2) for r in result.runs if r.load_average is not None],
                "min_seconds": round(min(r.seconds for r in result.runs), 4) if result.ok else None,
                "max_seconds": round(max(r.seconds for r in result.runs), 4) if result.ok else None,
                "warmup_seconds": round(result.warmup.seconds, 4) if result.warmup else None,
                "status": "error" if result.error else "skipped" if result.skipped else "ok",
                "error": result.error or result.skipped,
            }
        )
    return out


def targets(by_name: dict[str, dict]) -> list[dict]:
    """The issue's targets: met (True/False) or not measured (None), with the numbers."""

    def seconds(name: str) -> float | None:
        record = by_name.get(name)
        return record["seconds"] if record and record["status"] == "ok" else None

    ours, limit, cx = seconds("pg_extract_ours"), seconds("pg_psql_copy_limit"), seconds("pg_connectorx")
    doc_ours, pma = seconds("doc_extract_ours"), seconds("doc_pymongoarrow")
    found = []

    def add(goal: str, met: bool | None, detail: str) -> None:
        found.append({"target": goal, "met": met, "detail": detail})

    add(
        f"pg_extract_ours within {PSQL_LIMIT_FACTOR}x the psql COPY limit",
        ours / limit <= PSQL_LIMIT_FACTOR if ours and limit else None,
        f"{ours / limit:.2f}x ({ours:.2f} s vs {limit:.2f} s)" if ours and limit else "not measured",
    )
    add(
        "pg_extract_ours faster than ConnectorX",
        ours < cx if ours and cx else None,
        f"{ours:.2f} s vs {cx:.2f} s ({ours / cx:.2f}x)" if ours and cx else "not measured",
    )
    for name in ("pg_extract_ours", "doc_extract_ours"):
        record = by_name.get(name)
        rss = record["peak_rss_mb"] if record and record["status"] == "ok" else None
        add(
            f"{name} peak RSS <= {PEAK_RSS_LIMIT_MB} MB",
            rss <= PEAK_RSS_LIMIT_MB if rss is not None else None,
            f"{rss:.0f} MB" if rss is not None else "not measured",
        )
    add(
        "doc_extract_ours at least as fast as pymongoarrow",
        doc_ours <= pma if doc_ours and pma else None,
        f"{doc_ours:.2f} s vs {pma:.2f} s ({doc_ours / pma:.2f}x)" if doc_ours and pma else "not measured",
    )
    return found


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def render(report: dict) -> str:
    m, scale, v = report["machine"], report["scale"], report["versions"]
    runs = report["repeat"]
    load = report["load_average"]
    lines = [
        "Raw-zone extraction benchmark",
        f"machine:  {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB RAM; "
        f"PostgreSQL {v.get('postgresql')}, {v.get('document_store')}",
        f"scale:    {scale['transactions']:,} transactions, {scale['transaction_events']:,} "
        f"transaction_events ({scale['customers']:,} customers, {scale['accounts']:,} accounts)",
        f"timing:   median of {runs} run{'s' if runs != 1 else ''} after 1 warm-up, each run in a "
        "fresh process, every case on the same data",
        f"load:     1-minute load average {load['start']:.1f} before the bench began "
        f"(its own runs then add up to ~2)",
    ]
    if load["start"] > m["cores"] / 2:
        lines.append(
            f"          WARNING: the {m['cores']} cores were already busy (other work, or a previous run); "
            "times may be inflated and noisy: compare ratios within this run, and see 'other' below"
        )
    header = (
        f"{'case':<19} {'rows':>9} {'seconds':>7} {'min-max':>11} {'rows/s':>9} {'CPU s':>6} "
        f"{'other':>6} {'RSS MB':>6} {'out MB':>6}  {'baseline':<18} {'ratio':>5}"
    )
    lines += ["", header, "-" * len(header)]
    for record in report["results"]:
        if record["status"] != "ok":
            word = "SKIPPED" if record["status"] == "skipped" else "FAILED"
            lines.append(f"{record['name']:<19} {word}: {record['error'].splitlines()[0]}")
            continue
        spread = f"{record['min_seconds']:.2f}-{record['max_seconds']:.2f}"
        lines.append(
            f"{record['name']:<19} {record['rows']:>9,} {record['seconds']:>7.2f} {spread:>11} "
            f"{record['rows_per_s']:>9,} {record['cpu_seconds']:>6.2f} "
            f"{_fmt(record['other_cpu_seconds'], '.2f'):>6} {record['peak_rss_mb']:>6.0f} "
            f"{_fmt(record['output_mb'], '.1f'):>6}  {record['baseline'] or '-':<18} "
            f"{_fmt(record['ratio'], '.2f'):>5}"
        )
    lines += [
        "",
        "seconds: wall time of one extract (Python cases: connect, read every row, write Parquet;",
        "         imports excluded; psql: the whole process). min-max: over the timed runs.",
        "CPU s:   the client process's user+system CPU time, all threads.",
        "other:   CPU the rest of the machine used meanwhile (the database server's work, and any",
        "         other process's). Medians. Both CPU columns are in core-seconds.",
        "RSS MB:  the client process's peak resident memory (VmHWM, MiB), the largest of the timed runs.",
        "out MB:  Parquet written. ratio: seconds / the baseline case's seconds (below 1: faster).",
        "",
        "targets (from the issue):",
    ]
    for target in report["targets"]:
        mark = {True: "MET   ", False: "MISSED", None: "n/a   "}[target["met"]]
        lines.append(f"  [{mark}] {target['target']}: {target['detail']}")
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=row_count, default=DEFAULT_TRANSACTIONS,
                        help=f"transactions to seed: 500000, 500k, 2m (default {DEFAULT_TRANSACTIONS:,})")
    parser.add_argument("--events", type=row_count, default=None,
                        help="transaction_events to seed, at most 0.95 x transactions (default 15%% of the "
                        "transactions); the document store is far slower than PostgreSQL, so fewer")
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS,
                        help=f"customers to seed (default {DEFAULT_CUSTOMERS:,})")
    parser.add_argument("--accounts-per-customer", type=int, default=DEFAULT_ACCOUNTS_PER_CUSTOMER)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT,
                        help=f"timed runs per case after one warm-up (default {DEFAULT_REPEAT})")
    parser.add_argument("--cases", default=",".join(CASES),
                        help="comma-separated cases to run (default: all): " + ", ".join(CASES))
    parser.add_argument("--skip-seed", action="store_true",
                        help="benchmark the data already in the bench databases")
    parser.add_argument("--no-services", action="store_true",
                        help="do not run scripts/services.sh start (the servers are already up)")
    parser.add_argument("--database", default=BENCH_DATABASE,
                        help="PostgreSQL and document-store database to use (default bench)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a run is killed")
    parser.add_argument("--workdir", default=None, help="where runs write their Parquet (default: a temp dir)")
    parser.add_argument("--output", default=str(RESULTS_DIR / "latest.json"), help="the JSON report")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = [name for name in names if name not in CASES]
    if unknown or not names:
        parser.error(f"unknown case(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(CASES)}")
    args.cases = names
    for name in ("transactions", "customers", "accounts_per_customer", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.events is None:
        args.events = default_events(args.transactions)
    if args.events < 0:
        parser.error("--events must not be negative")
    if args.database in PROTECTED_DATABASES:
        parser.error(f"--database {args.database!r} is not a benchmark database")
    return args


def prepare_sources(args: argparse.Namespace, settings, ctx: dict) -> tuple[dict | None, dict[str, int]]:
    """Create the bench database if needed, seed it unless told not to; its row counts."""
    ensure_postgres_database(settings.postgres_url, args.database)
    seed_info = None
    if not args.skip_seed:
        from financial_assets.sample_data import SeedConfig

        events = min(args.events, int(args.transactions * 0.95))
        config = SeedConfig(
            customers=args.customers,
            accounts_per_customer=args.accounts_per_customer,
            transactions=args.transactions,
            seed=args.seed,
            event_ratio=events / args.transactions,
        )
        if config.events != events:  # float rounding in the ratio; never seen, but say so
            log(f"bench: the generator will make {config.events:,} events, not {events:,}")
        seed_info = seed(ctx, config)
    else:
        seed_path = RESULTS_DIR / "seed.json"
        if seed_path.exists():
            seed_info = json.loads(seed_path.read_text())
    return seed_info, source_counts(ctx)


def main(argv: list[str] | None = None) -> int:
    load_start = os.getloadavg()[0]  # before this run adds its own
    args = parse_args(argv)
    from financial_assets.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as error:
        log(f"bench: {error}")
        return 2
    ctx = {
        "postgres_url": with_database(settings.postgres_url, args.database),
        "mongo_url": settings.mongo_url,
        "mongo_database": args.database,
    }
    if not args.no_services:
        start_services()
    try:
        seed_info, counts = prepare_sources(args, settings, ctx)
    except (psycopg2.Error, pymongo.errors.PyMongoError, ConnectionError) as error:
        # SourceUnavailableError is a ConnectionError; one line instead of a traceback.
        log(f"bench: the sources are not usable: {str(error).strip().splitlines()[0]}")
        return 2
    log("bench: source rows: " + ", ".join(f"{name} {count:,}" for name, count in counts.items()))
    for name in args.cases:
        if counts[CASES[name].source] == 0:
            log(f"bench: {CASES[name].source} is empty in database {args.database!r}: seed it first")
            return 2

    if load_start > (os.cpu_count() or 1) / 2:
        log(f"bench: the load average is {load_start:.1f} on {os.cpu_count()} cores: other work will skew the times")
    workroot = tempfile.mkdtemp(prefix="financial-assets-bench-", dir=args.workdir)
    results: dict[str, CaseResult] = {}
    try:
        for index, name in enumerate(args.cases, 1):
            case = CASES[name]
            results[name] = run_case(
                case, ctx, counts[case.source], args.repeat, workroot, args.timeout,
                f"{index}/{len(args.cases)}",
            )
    finally:
        shutil.rmtree(workroot, ignore_errors=True)

    result_records = records(results)
    report = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "scale": {
            "transactions": counts[PG],
            "transaction_events": counts[DOC],
            "customers": counts["customers"],
            "accounts": counts["accounts"],
        },
        "seed": seed_info.get("config") if seed_info else None,
        "repeat": args.repeat,
        "warmups": 1,
        "load_average": {
            "start": round(load_start, 2),
            "end": round(os.getloadavg()[0], 2),
            "max_during_runs": round(max(
                [r.load_average for res in results.values() for r in res.runs if r.load_average is not None]
                or [load_start]
            ), 2),
        },
        "statistic": "median",
        "versions": versions(ctx),
        "targets": targets({r["name"]: r for r in result_records}),
        "results": result_records,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    partial.write_text(json.dumps(report, indent=2) + "\n")
    partial.replace(output)

    print(render(report))
    print(f"\nwritten: {output.relative_to(REPO_ROOT) if output.is_relative_to(REPO_ROOT) else output}")
    return 1 if any(r.error for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
