"""What a seed run did: :class:`SeedReport`, printable as a summary and writable as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from financial_assets.sample_data.schema import EVENTS_COLLECTION, TABLES

REPORT_TABLES = (*TABLES, EVENTS_COLLECTION)


@dataclass(frozen=True)
class FaultRecord:
    """The records one fault kind added.

    ``keys`` are values of ``key`` in ``table`` (for events: the ``transaction_id`` the bad
    document carries, or its ``_id`` as hex where it carries none). ``details`` holds whatever
    else a check may need, e.g. ``event_ids`` (hex ``_id``s of the documents added).
    """

    kind: str
    description: str
    table: str
    key: str
    keys: tuple
    details: dict = field(default_factory=dict)


@dataclass
class SeedReport:
    """Row counts per table (clean + faulty), the faults by kind, and timings.

    ``seconds[table]`` is the time spent on that table's own work (generating and loading); the
    events are written on a thread alongside the transactions, so ``seconds["total"]``, the
    wall-clock time, is less than the sum.
    """

    config: dict
    rows: dict[str, int]
    clean_rows: dict[str, int]
    faults: dict[str, FaultRecord] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def fault_keys(self, kind: str) -> tuple:
        return self.faults[kind].keys

    def to_dict(self) -> dict:
        return {
            "config": self.config,
            "rows": self.rows,
            "clean_rows": self.clean_rows,
            "faults": {kind: asdict(record) for kind, record in self.faults.items()},
            "seconds": self.seconds,
        }

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")

    def rows_per_second(self, table: str) -> float | None:
        seconds = self.seconds.get(table)
        return self.rows[table] / seconds if seconds else None

    def summary(self) -> str:
        """A small text table: rows per table, then faults injected per kind."""
        lines = [f"{'table':<24}{'rows':>12}{'of which faulty':>17}{'rows/s':>10}"]
        for table in REPORT_TABLES:
            faulty = self.rows[table] - self.clean_rows[table]
            speed = self.rows_per_second(table)
            lines.append(
                f"{table:<24}{self.rows[table]:>12,}{faulty:>17,}"
                + (f"{speed:>10,.0f}" if speed else f"{'':>10}")
            )
        if self.faults:
            lines.append("")
            lines.append(f"{'fault':<34}{'table':<22}{'records':>8}")
            for record in self.faults.values():
                lines.append(f"{record.kind:<34}{record.table:<22}{len(record.keys):>8}")
        return "\n".join(lines)
