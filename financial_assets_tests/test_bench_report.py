"""`python -m bench.report`: a run records its own scale and keeps every other result of record.

Small result files written here stand in for a benchmark run; no benchmark runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import report

REPO_ROOT = Path(__file__).resolve().parent.parent
STAGES = ["raw_customers", "raw_accounts", "raw_transactions", "raw_transaction_events", "star_schema",
          "pipeline (all assets, one run)"]


def pipeline_result(transactions: int, full_total: float, timestamp: str) -> dict:
    """A pipeline.json as bench.pipeline writes it, with only what the report reads."""
    full = dict.fromkeys(STAGES, 1.0) | {"pipeline (all assets, one run)": full_total}
    return {
        "timestamp": timestamp,
        "rows": {"customers": 10, "accounts": 20, "transactions": transactions, "transaction_events": transactions // 10},
        "repeat": 3,
        "statistic": "median after 1 warm-up",
        "seed_seconds": 1.5,
        "full_seconds": full,
        "incremental_seconds": dict.fromkeys(STAGES, 0.5),
        "incremental_share": 0.01,
        "incremental_new_rows": transactions // 100,
        "incremental_ratio": 0.5,
        "incremental_build_modes": ["incremental (appended)"] * 3,
        "peak_rss_mb": 400.0,
        "load_average": 0.3,
        "cores": 2,
    }


def extraction_result(timestamp: str) -> dict:
    """A latest.json as bench.run writes it, with one case."""
    return {
        "timestamp": timestamp,
        "machine": {"cores": 2, "memory_gib": 23.5, "cpu": "Test CPU 3000", "platform": "Linux"},
        "scale": {"transactions": 1000, "transaction_events": 100},
        "statistic": "median", "repeat": 3, "warmups": 1,
        "results": [{"name": "pg_extract_ours", "rows": 1000, "seconds": 0.5, "rows_per_s": 2000.0,
                     "peak_rss_mb": 100.0, "baseline": None, "ratio": None, "status": "ok"}],
        "targets": [],
        "versions": {"pyarrow": "25.0.0"},
    }


def write_run(folder: Path, **files: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / f"{name}.json").write_text(json.dumps(content))
    return folder


def write_record(record: Path, scale: str, text: str) -> None:
    """A section of record kept as text only, as the 2m and 10m sections were."""
    (record / f"scale-{scale}").mkdir(parents=True)
    (record / f"scale-{scale}" / "section.md").write_text(f"# At SCALE={scale}\n\n{text}\n")


@pytest.fixture
def record(tmp_path) -> Path:
    record = tmp_path / "record"
    record.mkdir()
    (record / "notes.md").write_text("# Notes written by hand\n\nKept first.\n")
    write_record(record, "2m", "The 2m numbers of record.")
    write_record(record, "10m", "The 10m numbers of record.")
    return record


def test_a_run_adds_its_scale_and_keeps_every_scale_of_record_and_the_notes(tmp_path, record):
    run = write_run(tmp_path / "results" / "scale-1m", pipeline=pipeline_result(1_000_000, 20.0, "2026-12-01T10:00:00+00:00"))

    report.record_run("1m", run, record)
    text = report.document(record)

    assert "# Notes written by hand\n\nKept first." in text
    assert "The 2m numbers of record." in text and "The 10m numbers of record." in text
    assert "# At SCALE=1m" in text and "1,000,000 transactions" in text


def test_a_run_replaces_its_own_scale_and_no_other(tmp_path, record):
    first = write_run(tmp_path / "first", pipeline=pipeline_result(2_000_000, 30.0, "2026-12-01T10:00:00+00:00"))
    report.record_run("2m", first, record)  # the text-only 2m record is replaced
    second = write_run(tmp_path / "second", pipeline=pipeline_result(2_000_000, 25.0, "2026-12-02T10:00:00+00:00"))

    report.record_run("2m", second, record)
    text = report.document(record)

    assert text.count("# At SCALE=2m") == 1
    assert "2026-12-02T10:00:00+00:00" in text and "2026-12-01T10:00:00+00:00" not in text
    assert "The 2m numbers of record." not in text
    assert "The 10m numbers of record." in text


def test_scales_appear_smallest_first(tmp_path, record):
    report.record_run("500k", write_run(tmp_path / "r", pipeline=pipeline_result(500_000, 9.0, "2026-12-01T10:00:00+00:00")), record)

    text = report.document(record)

    assert text.index("# At SCALE=500k") < text.index("# At SCALE=2m") < text.index("# At SCALE=10m")
    assert text.index("# Notes written by hand") < text.index("# At SCALE=500k")


def test_a_recorded_scale_states_the_machine_and_the_date(tmp_path, record):
    run = write_run(tmp_path / "r", latest=extraction_result("2026-12-01T09:00:00+00:00"),
                    pipeline=pipeline_result(1_000_000, 20.0, "2026-12-01T10:00:00+00:00"))

    folder = report.record_run("1m", run, record)

    section = (folder / "section.md").read_text()
    assert section.splitlines()[2] == (
        "Measured on Test CPU 3000, 2 cores, 23.5 GiB, load average 0.3 when the pipeline bench started, "
        "2026-12-01T09:00:00+00:00 to 2026-12-01T10:00:00+00:00."
    )


def test_a_recorded_scale_keeps_the_result_files_it_was_rendered_from(tmp_path, record):
    pipeline = pipeline_result(1_000_000, 20.0, "2026-12-01T10:00:00+00:00")

    folder = report.record_run("1m", write_run(tmp_path / "r", pipeline=pipeline), record)

    assert json.loads((folder / "pipeline.json").read_text()) == pipeline
    assert not (folder / "latest.json").exists()


def test_a_scale_without_result_files_is_refused_and_its_record_kept(tmp_path, record):
    with pytest.raises(SystemExit, match="no result files"):
        report.record_run("2m", tmp_path / "empty", record)

    assert "The 2m numbers of record." in report.document(record)


def test_the_committed_document_is_the_committed_record():
    assert (REPO_ROOT / "docs" / "benchmarks.md").read_text() == report.document(REPO_ROOT / "bench" / "record")


def with_time_use(result: dict, spark_cpu: float) -> dict:
    """A pipeline result with what `--profile` and the CPU sampler add: each step's CPU by kind of
    process, the session's start, and the build's Spark executions."""
    idle = {"pipeline": 0.0, "Spark": 0.0, "FerretDB": 0.0, "PostgreSQL": 0.0}
    step = lambda seconds, **cpu: {"seconds": seconds, "cpu_seconds": idle | cpu}  # noqa: E731
    execution = {"id": 1, "description": "overwrite at NativeMethodAccessorImpl.java:0", "started": 0.0,
                 "seconds": 8.0, "jobs": 3, "stages": 3, "tasks": 40, "cpu_seconds": 12.0, "input_mb": 5.0,
                 "shuffle_mb": 2.5}
    return result | {
        "spark_session_start_seconds": 9.5,
        "engine": "local[*]",
        "time_use": {kind: {"raw_transaction_events": step(10.0, FerretDB=9.0, pipeline=2.0),
                            "star_schema": step(10.0, Spark=spark_cpu),
                            "pipeline (all assets, one run)": step(20.0, Spark=spark_cpu, FerretDB=9.0)}
                     for kind in ("full", "incremental")},
        "spark_executions": {"full": [execution], "incremental": [execution]},
    }


def test_where_the_time_goes_says_what_bounds_each_step(tmp_path, record):
    pipeline = with_time_use(pipeline_result(1_000_000, 20.0, "2026-12-01T10:00:00+00:00"), spark_cpu=18.0)

    section = (report.record_run("1m", write_run(tmp_path / "r", pipeline=pipeline), record) / "section.md").read_text()

    assert "### Where the time goes" in section and "The Spark session's start, 9.5 s" in section
    assert "| raw_transaction_events | 10.00 | 50% | the document store (FerretDB 0.9, pipeline 0.2 of 2 cores) |" in section
    assert "| star_schema | 10.00 | 50% | CPU (1.8 of 2 cores busy), most by Spark (Spark 1.8) |" in section


def test_a_run_keeps_the_pipeline_result_it_replaces_as_its_before(tmp_path, record):
    report.record_run("2m", write_run(tmp_path / "first", pipeline=pipeline_result(
        2_000_000, 30.0, "2026-11-30T10:00:00+00:00") | {"full_seconds": dict.fromkeys(STAGES, 7.5)}), record)
    second = with_time_use(pipeline_result(2_000_000, 20.0, "2026-12-01T10:00:00+00:00"), spark_cpu=18.0)

    folder = report.record_run("2m", write_run(tmp_path / "second", pipeline=second), record)
    again = report.record_run("2m", write_run(tmp_path / "second", pipeline=second), record)  # rendered twice

    assert json.loads((again / report.PREVIOUS_PIPELINE).read_text())["timestamp"] == "2026-11-30T10:00:00+00:00"
    assert "| step | before (s), 2026-11-30 | seconds | share | bound by |" in (folder / "section.md").read_text()
    assert "| star_schema | 7.50 | 10.00 | 50% |" in (again / "section.md").read_text()


def test_the_cluster_run_is_shown_beside_local_on_the_same_data_with_its_ratio(tmp_path, record):
    local = with_time_use(pipeline_result(2_000_000, 20.0, "2026-12-01T10:00:00+00:00"), spark_cpu=18.0)
    cluster = with_time_use(pipeline_result(2_000_000, 30.0, "2026-12-01T11:00:00+00:00"), spark_cpu=27.0)
    cluster["full_seconds"] = dict(cluster["full_seconds"], star_schema=3.0)
    cluster["engine"] = "standalone Spark cluster: 2 workers of 1 core"

    folder = report.record_run("2m", write_run(tmp_path / "r", pipeline=local, **{"pipeline-cluster": cluster}), record)
    section = (folder / "section.md").read_text()

    assert "## The same pipeline on a standalone Spark cluster" in section
    assert "| star_schema, full | 1.00 | 3.00 | 3.00x |" in section
    assert "full star-schema step: 18.0 s on `local[*]`, 27.0 s on the cluster (1.50x)" in section
    assert "| cluster, full | 1 | 3 | 3 | 40 | 2.5 | 12.0 | 10.0 | 60% |" in section


def test_where_the_time_goes_shows_what_a_cold_jvm_adds_to_a_run(tmp_path, record):
    pipeline = with_time_use(pipeline_result(1_000_000, 20.0, "2026-12-01T10:00:00+00:00"), spark_cpu=18.0)
    pipeline["first_full_seconds"] = {"star_schema": 25.0, "pipeline (all assets, one run)": 35.5}

    section = (report.record_run("1m", write_run(tmp_path / "r", pipeline=pipeline), record) / "section.md").read_text()

    assert "the bench's first full run, on the same fresh JVM, took 35.5 s (25.0 s of star schema) against 20.0 s" in section
