"""How long the commands a user waits on take to start: the code location and the CLI.

    python -m bench.startup [--repeat N]

Prints, per command, the median wall and CPU seconds of N runs (children included) and whether
PySpark was loaded. Issue 15's target: `dagster definitions validate` under 5 s on an idle
2-core machine, with no PySpark; `financial-assets` commands that need no Spark never load it.
`make bench-startup` runs it with the Makefile's DAGSTER_HOME (var/dagster): without one, validate
makes a temporary instance and creates its SQLite tables, about half a second more.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Each command prints whether PySpark ended up loaded, as its last line on stderr.
_PYSPARK_LOADED = "import atexit, sys; atexit.register(lambda: print('pyspark' in sys.modules, file=sys.stderr)); "
COMMANDS = {
    "import financial_assets.definitions": "import financial_assets.definitions",
    "dagster definitions validate": (
        "import runpy, sys; sys.argv = ['dagster', 'definitions', 'validate', '-m', 'financial_assets.definitions']; "
        "runpy.run_module('dagster', run_name='__main__', alter_sys=True)"
    ),
    "financial-assets --help": "import sys; sys.argv = ['financial-assets', '--help']; "
                               "from financial_assets.cli import main; main()",
}


def measure(program: str) -> tuple[float, float, bool]:
    """Wall seconds, CPU seconds, and whether PySpark was loaded, of one run of ``program``."""
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    completed = subprocess.run([sys.executable, "-c", _PYSPARK_LOADED + program], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=300)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:  # the time of a failure says nothing (e.g. DAGSTER_HOME missing)
        raise SystemExit(f"bench.startup: failed: {program}\n{completed.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = completed.stderr.strip().splitlines()
    return wall, cpu, bool(lines) and lines[-1] == "True"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.startup", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{'command':<38} {'wall s':>7} {'CPU s':>7}  pyspark loaded")
    for name, program in COMMANDS.items():
        runs = [measure(program) for _ in range(args.repeat)]
        wall, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        print(f"{name:<38} {wall:>7.2f} {cpu:>7.2f}  {'yes' if any(r[2] for r in runs) else 'no'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
