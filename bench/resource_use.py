"""What bounds each step of a run: CPU seconds by kind of process, sampled from `/proc`.

A step's wall time alone does not say whether it waited for the document store, computed in
Spark, or paid a fixed cost. `CpuSampler` records, a few times a second, the CPU time used so far
by each kind of process on the machine: our Python process, the JVMs it started (Spark: the
driver, and on a cluster its master, workers and executors), FerretDB and PostgreSQL.
`cpu_between(t0, t1)` gives each kind's CPU seconds in a window (a step, from Dagster's events),
and `bound_by` turns them into a verdict for the report. Linux only (it reads `/proc`).
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
KINDS = ("pipeline", "Spark", "FerretDB", "PostgreSQL")
# What a verdict calls each kind: the sources' servers answer the extraction steps' reads.
ROLE = {"pipeline": "our Python process", "Spark": "Spark", "FerretDB": "the document store",
        "PostgreSQL": "PostgreSQL"}


def _processes() -> dict[int, tuple[str, int, float]]:
    """Every live process: pid -> (command name, parent pid, CPU seconds used so far)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it ended while we looked
            continue
        # "pid (comm) state ppid ... utime stime ...": comm may hold spaces and parentheses.
        name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        found[int(entry.name)] = (name, int(rest[1]), (int(rest[11]) + int(rest[12])) / TICKS_PER_SECOND)
    return found


def _kind(pid: int, processes: dict[int, tuple[str, int, float]], root: int) -> str | None:
    name = processes[pid][0]
    if pid == root:
        return "pipeline"
    if name.startswith("postgres"):
        return "PostgreSQL"
    if name.startswith("ferretdb"):
        return "FerretDB"
    if name == "java":
        ancestor = processes[pid][1]
        while ancestor in processes and ancestor > 1:
            if ancestor == root:
                return "Spark"
            ancestor = processes[ancestor][1]
    return None


class CpuSampler:
    """Samples CPU by kind of process every ``interval_s`` in a daemon thread, from ``start()``
    to ``stop()`` (or use it as a context manager)."""

    def __init__(self, interval_s: float = 0.25, root: int | None = None):
        self.interval_s = interval_s
        self.root = os.getpid() if root is None else root
        self.times: list[float] = []  # epoch seconds
        self.totals: list[dict[str, float]] = []  # cumulative CPU seconds by kind at each time
        self._last: dict[int, float] = {}
        self._sum = dict.fromkeys(KINDS, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _sample(self) -> None:
        processes = _processes()
        for pid in processes:
            kind = _kind(pid, processes, self.root)
            if kind is None:
                continue
            used = processes[pid][2]
            # Only what a process used since it was last seen counts: a process that ends takes its
            # total with it, and one seen for the first time counts from then (an old server's past
            # CPU is not this run's).
            if pid in self._last:
                self._sum[kind] += max(0.0, used - self._last[pid])
            self._last[pid] = used
        self.times.append(time.time())
        self.totals.append(dict(self._sum))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> CpuSampler:
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def __enter__(self) -> CpuSampler:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def cpu_between(self, since: float, until: float) -> dict[str, float]:
        """CPU seconds of each kind between two epoch times: from the last sample before ``since``
        to the first after ``until`` (the window widens by up to one interval on each side)."""
        first = max(bisect.bisect_right(self.times, since) - 1, 0)
        last = min(bisect.bisect_left(self.times, until), len(self.times) - 1)
        before, after = self.totals[first], self.totals[last]
        return {kind: round(after[kind] - before[kind], 2) for kind in KINDS}


def bound_by(wall_s: float, cpu: dict[str, float], cores: int) -> str:
    """A step's verdict from its CPU by kind: the machine's CPU when the cores were mostly busy,
    otherwise the kind that worked most, or fixed costs when nothing did."""
    if wall_s < 1.0:  # a few samples only: the split would be noise
        return "-"
    busy = {kind: seconds / wall_s for kind, seconds in cpu.items() if seconds > 0}
    total = sum(busy.values())
    detail = ", ".join(f"{kind} {cores_used:.1f}" for kind, cores_used in sorted(busy.items(), key=lambda kv: -kv[1])
                       if cores_used >= 0.05)
    if total < 0.35:
        return f"fixed costs and waiting ({total:.1f} of {cores} cores busy)"
    top = max(busy, key=busy.get)
    if total >= 0.75 * cores:
        return f"CPU ({total:.1f} of {cores} cores busy), most by {ROLE[top]} ({detail})"
    return f"{ROLE[top]} ({detail} of {cores} cores)"
