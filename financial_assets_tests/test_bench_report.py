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
