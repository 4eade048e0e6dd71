"""Where a Spark build's time goes, from Spark's own event log: one line per SQL execution.

    python -m bench.spark_profile EVENT_LOG_DIR [--since EPOCH_S] [--until EPOCH_S]

`event_log_config(directory)` is what a session needs to write the log (uncompressed, so that this
module reads it with the standard library); `bench.pipeline --profile` turns it on for its runs and
prints the table for the last full and the last incremental build. Each execution (a write, an
audit query, a count...) is shown with its wall seconds, its jobs and tasks, and the executors' CPU
seconds: CPU close to wall x cores means bound by computation, far below it by fixed costs (job
scheduling, commits) or I/O. The time between executions is the driver's own work.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path


def event_log_config(directory: str | Path) -> dict[str, str]:
    """Spark settings that write the event log of a session into ``directory``."""
    return {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": Path(directory).resolve().as_uri(),
        "spark.eventLog.compress": "false",
    }


@dataclass(frozen=True)
class Execution:
    id: int
    description: str
    started: float  # epoch seconds
    seconds: float
    jobs: int
    stages: int
    tasks: int
    cpu_seconds: float
    input_mb: float  # read from tables and files
    shuffle_mb: float  # written to the shuffle, read by the next stage (over the network on a cluster)


def read_events(directory: str | Path) -> list[dict]:
    """Every event of every application logged in ``directory`` (rolling logs included)."""
    events = []
    for path in sorted(Path(directory).rglob("*")):
        # A rolling log's parts (events_<n>_<app>) or a single log (<app>, <app>.inprogress).
        if path.is_file() and path.name.startswith(("events_", "local-", "app-")) and not path.name.endswith(".crc"):
            with path.open() as lines:
                events += [json.loads(line) for line in lines if line.strip()]
    return events


def executions(events: list[dict], since: float = 0.0, until: float = float("inf")) -> list[Execution]:
    """The SQL executions that started between ``since`` and ``until`` (epoch seconds) and ran at
    least one job, in order."""
    started, ended, descriptions = {}, {}, {}
    for event in events:
        kind = event["Event"]
        if kind.endswith("SparkListenerSQLExecutionStart"):
            started[event["executionId"]] = event["time"] / 1000
            descriptions[event["executionId"]] = event.get("description", "")
        elif kind.endswith("SparkListenerSQLExecutionEnd"):
            ended[event["executionId"]] = event["time"] / 1000
    # Per completed stage (a stage skipped because its shuffle output was reused never completes):
    # tasks, executor CPU seconds, MB read as input, MB written to the shuffle.
    stages = {}
    for event in events:
        if event["Event"] == "SparkListenerStageCompleted":
            info = event["Stage Info"]
            metrics = {a["Name"]: float(a.get("Value") or 0) for a in info.get("Accumulables", [])
                       if str(a.get("Value", "")).lstrip("-").isdigit()}
            stages[info["Stage ID"]] = (
                info["Number of Tasks"],
                metrics.get("internal.metrics.executorCpuTime", 0) / 1e9,
                metrics.get("internal.metrics.input.bytesRead", 0) / 1e6,
                metrics.get("internal.metrics.shuffle.write.bytesWritten", 0) / 1e6,
            )
    jobs, per_execution = {}, {}
    for event in events:
        if event["Event"] == "SparkListenerJobStart":
            execution = event.get("Properties", {}).get("spark.sql.execution.id")
            if execution is None:
                continue
            execution = int(execution)
            jobs[execution] = jobs.get(execution, 0) + 1
            per_execution.setdefault(execution, {}).update(
                {stage: stages[stage] for stage in event["Stage IDs"] if stage in stages})
    found = []
    for id, start in sorted(started.items(), key=lambda item: item[1]):
        if not (since <= start <= until and jobs.get(id)):
            continue
        done = list(per_execution.get(id, {}).values())
        tasks, cpu, input_mb, shuffle_mb = (sum(column) for column in zip(*done)) if done else (0, 0.0, 0.0, 0.0)
        found.append(Execution(
            id, descriptions[id].split("\n")[0][:70], start, ended.get(id, start) - start, jobs[id], len(done),
            tasks, round(cpu, 2), round(input_mb, 1), round(shuffle_mb, 1),
        ))
    return found


def table(found: list[Execution], since: float, until: float) -> str:
    """The executions as a text table, with the wall time around them."""
    inside = sum(e.seconds for e in found)
    lines = [f"{until - since:.1f} s wall, {inside:.1f} s in {len(found)} Spark executions "
             f"({sum(e.jobs for e in found)} jobs); the rest is the driver's own work",
             f"{'at s':>7} {'seconds':>8} {'jobs':>5} {'stages':>6} {'tasks':>6} {'CPU s':>6} {'in MB':>7} "
             f"{'shuffle MB':>10}  execution"]
    lines += [f"{e.started - since:7.1f} {e.seconds:8.2f} {e.jobs:5d} {e.stages:6d} {e.tasks:6d} {e.cpu_seconds:6.1f} "
              f"{e.input_mb:7.1f} {e.shuffle_mb:10.1f}  {e.description}" for e in found]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spark_profile", description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="the spark.eventLog.dir of the session")
    parser.add_argument("--since", type=float, default=0.0, help="epoch seconds (default: the log's start)")
    parser.add_argument("--until", type=float, default=float("inf"), help="epoch seconds (default: its end)")
    args = parser.parse_args(argv)
    found = executions(read_events(args.directory), args.since, args.until)
    if not found:
        raise SystemExit(f"no Spark SQL execution with a job in {args.directory} in that window")
    since = args.since or found[0].started
    until = args.until if args.until != float("inf") else max(e.started + e.seconds for e in found)
    print(table(found, since, until))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
