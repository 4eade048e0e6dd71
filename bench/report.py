"""Write `docs/benchmarks.md` from the latest results: `python -m bench.report`.

Reads `bench/results/latest.json` (extraction), `pipeline.json` (end to end, full and
incremental) and `peer.json` (the dlt + DuckDB peer stack), whichever exist, and states the
machine and versions they were measured on.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.pipeline import mode_summary, ratio_beyond_store_scan
from financial_assets.quality.star_checks import STAR_CHECKS

RESULTS = Path(__file__).resolve().parent / "results"
OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def _load(folder: Path, name: str) -> dict | None:
    path = folder / name
    return json.loads(path.read_text()) if path.exists() else None


def _scales() -> list[Path]:
    """The result folders to report: one per `make bench SCALE=` (`scale-2m`, ...), smallest
    first; or the latest results alone when there are none."""
    def transactions(folder: Path) -> int:
        pipeline = _load(folder, "pipeline.json")
        return pipeline["rows"]["transactions"] if pipeline else 0

    folders = sorted((p for p in RESULTS.glob("scale-*") if p.is_dir()), key=transactions)
    return folders or [RESULTS]


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


def main() -> int:
    sections = ["# Benchmarks", "", "Written by `python -m bench.report` from `bench/results/`; "
                "`make bench SCALE=...` measures (see `bench/README.md`).", ""]
    folders = _scales()
    for folder in folders:
        if len(folders) > 1:
            # One level down: every section of this scale under its own heading.
            sections += [f"# At SCALE={folder.name.removeprefix('scale-')}", ""]
        sections += headline(_load(folder, "pipeline.json"), _load(folder, "peer.json"))
        for name, render in (("latest.json", extraction_section), ("pipeline.json", pipeline_section),
                             ("peer.json", peer_section)):
            report = _load(folder, name)
            if report is not None:
                sections += render(report)
    sections += COMPARISON
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text("\n".join(sections))
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
