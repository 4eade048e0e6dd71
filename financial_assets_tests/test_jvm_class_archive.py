"""The suite's JVMs start from the class archive that `make test` builds (jvm_class_archive.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from financial_assets_tests.jvm_class_archive import archive_path

pytestmark = pytest.mark.skipif(not archive_path().is_file(),
                                reason="no class archive: `make test` builds it before the suite")


def mapped_files(pid: int) -> set[str]:
    """The files mapped into a process's memory (the last field of /proc/<pid>/maps, where present)."""
    fields = (line.split(maxsplit=5) for line in Path(f"/proc/{pid}/maps").read_text().splitlines())
    return {field[5].strip() for field in fields if len(field) == 6}


def test_the_suites_spark_jvm_maps_the_class_archive(spark):
    jvm = spark.sparkContext._gateway.proc.pid

    assert str(archive_path()) in mapped_files(jvm)


def test_a_jvm_whose_class_path_differs_ignores_the_archive_silently():
    completed = subprocess.run(["java", "-cp", os.path.dirname(sys.executable), "-version"],
                               capture_output=True, text=True, timeout=60)

    assert completed.returncode == 0
    assert "[warning]" not in completed.stdout + completed.stderr
