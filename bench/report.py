"""Write `docs/benchmarks.md` from the results of record: `python -m bench.report [--scale S]`.

The results of record are committed under `bench/record/`, one folder per scale:
`bench/record/scale-<S>/section.md` is that scale's part of `docs/benchmarks.md` (it states the
machine and the date it was measured on), beside the JSON it was rendered from when there is one
(the sections of record at 2m and 10m predate this layout: only their text was kept).
`bench/record/notes.md` holds what people wrote by hand, shown first.

`--scale S` (what `make bench SCALE=S` runs) renders the run just measured,
`bench/results/scale-<S>/` (`latest.json` for extraction, `pipeline.json` end to end, full and
incremental, and `peer.json` for the dlt + DuckDB peer stack, whichever exist), into
`bench/record/scale-<S>/`, replacing that scale's record and no other. Without it, the document
is only rebuilt from the record. Commit `bench/record/` to make a run of record.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
from pathlib import Path

from bench.cases import row_count
from bench.pipeline import TOTAL, mode_summary, ratio_beyond_store_scan
from bench.resource_use import bound_by
from financial_assets.quality.specs import STAR_CHECKS

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
RECORD = BENCH / "record"
OUTPUT = BENCH.parent / "docs" / "benchmarks.md"
RESULT_FILES = ("latest.json", "pipeline.json", "pipeline-cluster.json", "peer.json")
# The record's pipeline result that a new run replaces is kept beside it, for "before" columns.
PREVIOUS_PIPELINE = "previous-pipeline.json"
HEADER = ["# Benchmarks", "", "Written by `python -m bench.report` from the results of record in `bench/record/` "
          "(one folder per scale); `make bench SCALE=...` measures and replaces its own scale's (see "
          "`bench/README.md`).", ""]


def _load(folder: Path, name: str) -> dict | None:
    path = folder / name
    return json.loads(path.read_text()) if path.exists() else None


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def extraction_section(report: dict) -> list[str]:
    machine, scale = report["machine"], report["scale"]
    lines = [
        "## Raw-zone extraction",
        "",
        f"{scale['transactions']:,} transactions and {scale['transaction_events']:,} events; "
        f"{report['statistic']} of {report['repeat']} runs after {report['warmups']} warm-up, each in a fresh "
        f"process; {machine['cores']} cores, {machine['memory_gib']} GiB; measured {report['timestamp']}.",
        "",
    ]
    rows = [
        [r["name"], f"{r['rows']:,}", f"{r['seconds']:.2f}", f"{r['rows_per_s']:,.0f}", f"{r['peak_rss_mb']:.0f}",
         r["baseline"] or "-", f"{r['ratio']:.2f}" if r["ratio"] else "-"]
        for r in report["results"] if r.get("status") == "ok"
    ]
    lines += _table(["case", "rows", "seconds", "rows/s", "peak RSS MB", "baseline", "ratio"], rows)
    lines += ["", "Targets:", ""]
    lines += [f"- {'met' if t['met'] else 'missed' if t['met'] is False else 'n/a'}: {t['target']} ({t['detail']})"
              for t in report["targets"]]
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    return lines + ["", f"Versions: {versions}.", ""]


def pipeline_section(report: dict) -> list[str]:
    rows = report["rows"]
    lines = [
        "## End to end: seeded sources to a published star schema",
        "",
        f"{rows['transactions']:,} transactions, {rows['transaction_events']:,} events; "
        f"{report['statistic']} of {report['repeat']} runs; local Spark; measured {report['timestamp']}. "
        f"Seeding ({report['seed_seconds']} s) is not part of the pipeline. The incremental runs follow "
        f"{report['incremental_share']:.0%} new transactions and events.",
        "",
    ]
    full, incremental = report["full_seconds"], report["incremental_seconds"]
    # Rows each stage handles: its source table; the star schema, the transactions; the whole
    # run, every source row. An incremental run handles the new transactions and as many events.
    stage_rows = {f"raw_{table}": count for table, count in rows.items()}
    stage_rows["star_schema"] = rows["transactions"]
    stage_rows["pipeline (all assets, one run)"] = sum(rows.values())
    new = report.get("incremental_new_rows")
    new_rows = {"raw_transactions": new, "raw_transaction_events": new, "star_schema": new,
                "pipeline (all assets, one run)": 2 * new if new else None}

    def rate(count, seconds) -> str:
        return f"{count / seconds:,.0f}" if count and seconds else "-"

    lines += _table(
        ["stage", "full (s)", "full rows/s", "incremental (s)", "incremental rows/s"],
        [[name, f"{full[name]:.2f}", rate(stage_rows.get(name), full[name]),
          f"{incremental.get(name, 0):.2f}", rate(new_rows.get(name), incremental.get(name))] for name in full],
    )
    modes = mode_summary(report.get("incremental_build_modes", []))
    lines += [
        "",
        f"Incremental / full: **{report['incremental_ratio']:.2f}** (target 0.10: "
        f"{'met' if report['incremental_ratio'] <= 0.10 else 'missed'}). "
        f"Peak RSS of the process: {report['peak_rss_mb']:.0f} MB. Star schema in the timed incremental runs: {modes}.",
        "",
    ]
    if "versions" in report:
        lines += [f"Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}.", ""]
    if "document_store_scan_seconds" in report:
        lines += [
            f"Why missed: the local document store, FerretDB 1.24, cannot seek by `_id` (it pushes down no range "
            f"filter), so finding the new events costs a scan of the whole collection: "
            f"{report['document_store_scan_seconds']:.2f} s measured on its own (a bare `find` for `_id` past the "
            f"newest document, median of 3), whatever the reader; the incremental events step took "
            f"{report['incremental_seconds']['raw_transaction_events']:.2f} s. The rest of the incremental run is "
            f"**{ratio_beyond_store_scan(report):.2f}** of a full run. On MongoDB or DocumentDB that "
            "read is an `_id` index range scan over the new documents only.",
            "",
        ]
    return lines


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _cores(report: dict) -> int:
    """The cores of the machine a pipeline result was measured on (2, like this machine's, for a
    result that does not say)."""
    return report.get("cores") or 2


def _cold_jvm(report: dict) -> str:
    """What the JVM's warm-up adds to a run, from the bench's first full run, when recorded."""
    first, timed = report.get("first_full_seconds"), report["time_use"].get("full", {}).get(TOTAL)
    if not first or not timed:
        return ""
    return (f" So is the JVM's warm-up: the bench's first full run, on the same fresh JVM, took {first[TOTAL]:.1f} s "
            f"({first['star_schema']:.1f} s of star schema) against {timed['seconds']:.1f} s for the timed one, most of "
            "the difference the just-in-time compiler's work on Spark's code.")


def time_use_section(report: dict, previous: dict | None) -> list[str]:
    """Where a full and an incremental run spend their time, step by step: seconds, share of the
    run, and what bounds each step (the CPU that each kind of process used meanwhile), beside the
    previous record's seconds when there is one."""
    uses = report.get("time_use")
    if not uses:
        return []
    cores = _cores(report)
    lines = [
        "### Where the time goes",
        "",
        f"The last timed full and incremental runs, step by step. *Bound by* is read from the CPU seconds each kind "
        f"of process used during the step (`bench/resource_use.py`, sampled from `/proc`), in cores busy out of "
        f"{cores}. The Spark session's start, {report['spark_session_start_seconds']:.1f} s (the JVM, the Iceberg "
        "runtime, the catalog), is paid once per process: by every `financial-assets materialize`, by none of these "
        "timed runs." + _cold_jvm(report),
        "",
    ]
    before_label = f"before (s), {previous['timestamp'][:10]}" if previous else None
    for kind in ("full", "incremental"):
        steps = uses.get(kind)
        if not steps:
            continue
        total = steps[TOTAL]["seconds"]
        old = (previous or {}).get(f"{kind}_seconds", {})
        header = ["step", *([before_label] if previous else []), "seconds", "share", "bound by"]
        rows = [
            [name, *([_seconds(old.get(name))] if previous else []), f"{use['seconds']:.2f}",
             f"{use['seconds'] / total:.0%}" if total else "-", bound_by(use["seconds"], use["cpu_seconds"], cores)]
            for name, use in steps.items()
        ]
        lines += [f"**{kind.capitalize()} run:**", ""] + _table(header, rows) + [""]
    return lines


def spark_split(executions: list[dict]) -> dict[str, float]:
    """A build's Spark work in totals: seconds inside executions, jobs, stages, tasks, CPU, shuffle."""
    return {key: round(sum(e[key] for e in executions), 1)
            for key in ("seconds", "jobs", "stages", "tasks", "cpu_seconds", "input_mb", "shuffle_mb")}


def spark_split_section(report: dict, cluster: dict | None) -> list[str]:
    """How the star-schema build's work splits into Spark executions, stages and tasks, and how
    much it shuffles: what decides how it scales with more executors."""
    executions = report.get("spark_executions", {}).get("full")
    if not executions:
        return []
    cores = _cores(report)
    lines = [
        "### How the full build's work splits (Spark's event log)",
        "",
        "One line per Spark SQL execution of the last full build on `local[*]` (`bench/spark_profile.py`): "
        "`overwrite`/`append` are table writes, `collectToPython`/`collect`/`first` the checks and statistics that "
        "read results back. Executions overlap (the build runs independent writes and checks at once), so their "
        "seconds add up to more than the step's.",
        "",
    ]
    lines += _table(
        ["execution", "seconds", "jobs", "stages", "tasks", "executor CPU s", "input MB", "shuffle MB"],
        [[e["description"], f"{e['seconds']:.2f}", e["jobs"], e["stages"], e["tasks"], f"{e['cpu_seconds']:.1f}",
          f"{e['input_mb']:.1f}", f"{e['shuffle_mb']:.1f}"] for e in executions],
    )
    engines = [("local[*]", report), *([("cluster", cluster)] if cluster else [])]
    rows = []
    for (engine, source), kind in itertools.product(engines, ("full", "incremental")):
        found = source.get("spark_executions", {}).get(kind)
        step = source.get("time_use", {}).get(kind, {}).get("star_schema")
        label = f"{engine}, {kind}"
        if found:
            split = spark_split(found)
            busy = f"{split['cpu_seconds'] / (step['seconds'] * cores):.0%}" if step else "-"
            rows.append([label, len(found), int(split["jobs"]), int(split["stages"]), int(split["tasks"]),
                         f"{split['shuffle_mb']:.1f}", f"{split['cpu_seconds']:.1f}",
                         f"{step['seconds']:.1f}" if step else "-", busy])
    lines += ["", "In totals, per build:", ""]
    lines += _table(["build", "executions", "jobs", "stages", "tasks", "shuffle MB", "executor CPU s",
                     "step s", f"executors busy (of {cores} cores)"], rows)
    lines += [
        "",
        "The executors' CPU is the part of a build that more executor cores divide: the fact table's write "
        "(the events' window, the joins, the shuffle by day, ~730 day files) and the audit that reads it back. The "
        "rest of the step's time does not divide: the driver's planning and Iceberg commits, the many one- or "
        "two-task stages of the dimensions and the checks' small aggregates, and tasks waiting for the last, "
        "largest task of their stage. The last column is how much of the cores' time the executors used.",
        "",
    ]
    return lines


def cluster_section(local: dict, cluster: dict) -> list[str]:
    """The same pipeline on a standalone cluster, beside local[*] on the same data."""
    lines = [
        "## The same pipeline on a standalone Spark cluster",
        "",
        f"`python -m bench.pipeline --cluster 2`: {cluster['engine']}, started from pyspark's own distribution; the "
        f"same seeded data, {cluster['statistic']} of {cluster['repeat']} runs; measured {cluster['timestamp']}. "
        "The lakehouse stays on local files (every executor runs on this machine); the scale-out tests run the "
        "same build against S3 (moto).",
        "",
    ]
    rows = []
    for name in ("star_schema", TOTAL):
        for kind in ("full", "incremental"):
            ours, theirs = local[f"{kind}_seconds"].get(name), cluster[f"{kind}_seconds"].get(name)
            if ours and theirs:
                rows.append([f"{name}, {kind}", f"{ours:.2f}", f"{theirs:.2f}", f"{theirs / ours:.2f}x"])
    rows.append(["Spark session start", f"{local['spark_session_start_seconds']:.2f}",
                 f"{cluster['spark_session_start_seconds']:.2f}",
                 f"{cluster['spark_session_start_seconds'] / local['spark_session_start_seconds']:.2f}x"])
    lines += _table(["", "local[*] (s)", "cluster (s)", "cluster / local"], rows)
    cpu = {}
    for label, report in (("local", local), ("cluster", cluster)):
        use = report.get("time_use", {}).get("full", {}).get("star_schema")
        if use:
            cpu[label] = use["cpu_seconds"]["Spark"]
    lines += [""]
    if len(cpu) == 2:
        lines += [
            f"Why the cluster is slower here: its two one-core executors and the driver share this machine's "
            f"{_cores(local)} cores with everything else, exactly as `local[*]`'s threads do, so it "
            "cannot add computing power; it only adds work. Each task and its result cross a process boundary "
            "(serialized, sent over loopback), shuffle blocks are fetched from another JVM's block manager instead "
            "of read in place, and three JVMs each pay their own garbage collection and just-in-time compilation. "
            f"Spark's CPU during the full star-schema step: {cpu['local']:.1f} s on `local[*]`, "
            f"{cpu['cluster']:.1f} s on the cluster ({cpu['cluster'] / cpu['local']:.2f}x). On a real cluster "
            "the parallel part (see the split above) divides by the executors' cores while the fixed part (the "
            "driver's planning, Iceberg commits, one-task stages) stays; `docs/scale-out.md` sizes executors from "
            "these numbers.",
            "",
        ]
    return lines


def peer_section(report: dict) -> list[str]:
    source = report["rows"]["source"]
    lines = [
        "## The peer stack: dlt into Parquet, the same star schema as SQL in DuckDB",
        "",
        f"On the pipeline bench's databases after its incremental runs: {source['transactions']:,} transactions, "
        f"{source['transaction_events']:,} events; {report['statistic']} of {report['repeat']} runs; "
        f"measured {report['timestamp']}.",
        "",
    ]
    stage_rows = {
        "dlt postgres (3 tables)": source["customers"] + source["accounts"] + source["transactions"],
        "dlt mongodb (events)": source["transaction_events"],
        "duckdb star schema": source["transactions"],
        "total": sum(source.values()),
    }
    lines += _table(["stage", "seconds", "rows/s"], [
        [name, f"{seconds:.2f}", f"{stage_rows[name] / seconds:,.0f}" if name in stage_rows else "-"]
        for name, seconds in report["stages_seconds"].items()
    ])
    versions = ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items())
    return lines + ["", f"Peak RSS of the process: {report.get('peak_rss_mb', 0):.0f} MB. Versions: {versions}.", ""]


COMPARISON = [
    "## What each side does",
    "",
    "- **Ours** (`bench.pipeline`): extraction with reconciliation counts against the sources, quarantine of "
    f"documents that break the schema, the star schema on Spark (the same code runs on Glue; incremental when the "
    f"published version allows), {len(STAR_CHECKS)} audit checks on it and 5 on the raw zone, "
    "an atomic publish of a new version with rollback, the DuckDB catalog update, lineage and run history in Dagster.",
    "- **Peer** (`bench.peer_dlt`): dlt extraction to Parquet (full replace), the same star schema as DuckDB SQL and "
    "the analyst query. No checks, no quarantine (a bad document stops the run), writes in place (readers can see a "
    "half-written mix), no versions, no lineage beyond dlt's load tables, one machine only.",
    "",
]


def headline(pipeline: dict | None, peer: dict | None) -> list[str]:
    if not pipeline or not peer:
        return []
    ours = sum(pipeline["rows"].values()) / pipeline["full_seconds"]["pipeline (all assets, one run)"]
    theirs = sum(peer["rows"]["source"].values()) / peer["stages_seconds"]["total"]
    return [
        "## Headline",
        "",
        f"- Full pipeline, seeded sources to a published star schema: ours {ours:,.0f} source rows/s, the dlt + "
        f"DuckDB peer {theirs:,.0f} rows/s (ours takes {theirs / ours:.2f}x the peer's time per row, for the checks "
        f"and guarantees below); peak RSS {pipeline['peak_rss_mb']:.0f} MB against the peer's "
        f"{peer.get('peak_rss_mb', 0):.0f} MB.",
        f"- An incremental run after 1% new rows takes {pipeline['incremental_ratio']:.2f} of a full run "
        f"(target 0.10: {'met' if pipeline['incremental_ratio'] <= 0.10 else 'missed'}); "
        + (f"{ratio_beyond_store_scan(pipeline):.2f} without the local document store's scan for new "
           "events, which FerretDB cannot avoid (see below)." if "document_store_scan_seconds" in pipeline
           else "the local document store scans for new documents."),
        "",
    ]


def machine_line(reports: dict[str, dict]) -> str:
    """Where and when a scale was measured, from whichever result files the run left."""
    machine = (reports.get("latest.json") or {}).get("machine") or {}
    pipeline = reports.get("pipeline.json") or {}
    parts = [machine.get("cpu")]
    cores = machine.get("cores") or pipeline.get("cores")
    parts.append(f"{cores} cores" if cores else None)
    parts.append(f"{machine['memory_gib']} GiB" if machine.get("memory_gib") else None)
    if "load_average" in pipeline:
        parts.append(f"load average {pipeline['load_average']:.1f} when the pipeline bench started")
    dates = sorted(report["timestamp"] for report in reports.values() if report.get("timestamp"))
    when = f"{dates[0]} to {dates[-1]}" if len(dates) > 1 and dates[0] != dates[-1] else (dates[0] if dates else "an unknown date")
    return f"Measured on {', '.join(p for p in parts if p) or 'an unrecorded machine'}, {when}."


def scale_section(scale: str, results: Path, previous: dict | None = None) -> list[str]:
    """The part of the document for one scale, from one run's result files in ``results``;
    ``previous`` is the pipeline result it replaces (the "before" of where the time goes)."""
    reports = {name: report for name in RESULT_FILES if (report := _load(results, name)) is not None}
    if not reports:
        raise SystemExit(f"bench.report: no result files ({', '.join(RESULT_FILES)}) in {results}")
    lines = [f"# At SCALE={scale}", "", machine_line(reports), ""]
    lines += headline(reports.get("pipeline.json"), reports.get("peer.json"))
    if "latest.json" in reports:
        lines += extraction_section(reports["latest.json"])
    pipeline, cluster = reports.get("pipeline.json"), reports.get("pipeline-cluster.json")
    if pipeline:
        lines += pipeline_section(pipeline)
        lines += time_use_section(pipeline, previous)
        lines += spark_split_section(pipeline, cluster)
        if cluster:
            lines += cluster_section(pipeline, cluster)
    if "peer.json" in reports:
        lines += peer_section(reports["peer.json"])
    return lines


def record_run(scale: str, results: Path, record: Path) -> Path:
    """Make the run in ``results`` the record of ``scale``: its section and its result files
    replace that scale's folder under ``record``; other scales are left as they are."""
    row_count(scale)  # a scale the bench takes, or argparse's error
    folder = record / f"scale-{scale}"
    previous = _load(folder, "pipeline.json")
    if previous and previous.get("timestamp") == (_load(results, "pipeline.json") or {}).get("timestamp"):
        previous = _load(folder, PREVIOUS_PIPELINE)  # the same run rendered again: keep its "before"
    section = "\n".join(scale_section(scale, results, previous))
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in RESULT_FILES:
        if (results / name).exists():
            shutil.copy2(results / name, folder / name)
    if previous:
        (folder / PREVIOUS_PIPELINE).write_text(json.dumps(previous, indent=1) + "\n")
    (folder / "section.md").write_text(section.rstrip("\n") + "\n")
    return folder


def recorded_scales(record: Path) -> list[Path]:
    """The record's scale folders, smallest scale first (500k < 2m < 10m)."""
    folders = [p for p in record.glob("scale-*") if (p / "section.md").is_file()]
    return sorted(folders, key=lambda p: row_count(p.name.removeprefix("scale-")))


def document(record: Path) -> str:
    """`docs/benchmarks.md`: the header, the notes written by hand, every scale of record, and
    what each side does."""
    lines = list(HEADER)
    notes = record / "notes.md"
    if notes.exists():
        lines += [notes.read_text().rstrip("\n"), ""]
    for folder in recorded_scales(record):
        lines += [(folder / "section.md").read_text().rstrip("\n"), ""]
    return "\n".join(lines + COMPARISON)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", help="record the run in bench/results/scale-SCALE/ as this scale's (500k, 2m, 10m...)")
    args = parser.parse_args(argv)
    if args.scale:
        folder = record_run(args.scale, RESULTS / f"scale-{args.scale}", RECORD)
        print(f"recorded {folder.relative_to(BENCH.parent)} (commit it to make it of record)")
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(document(RECORD))
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
