"""Failure streaks and the sensor's cursor. Pure Python: no Dagster import.

A streak is a run of consecutive failures of one subject — an asset check
(``check:<asset key>:<check name>``, plus ``[<partition>]`` for a partitioned evaluation) or a
job (``job:<job name>``). Only the first failure of a streak alerts; a pass (check) or a
successful run (job) ends it, and the next failure starts a new streak and alerts again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

CURSOR_VERSION = 1
# Streaks still open after this many subjects are dropped oldest first; a dropped subject that
# fails again alerts again, which beats a cursor that grows without bound.
MAX_OPEN_STREAKS = 1000


def check_subject(asset_key: str, check_name: str, partition: str | None = None) -> str:
    subject = f"check:{asset_key}:{check_name}"
    return f"{subject}[{partition}]" if partition is not None else subject


def job_subject(job_name: str) -> str:
    return f"job:{job_name}"


@dataclass
class Streak:
    """An open streak: when and in which run it started, how many failures it has had."""

    started_at: str
    first_run_id: str
    last_run_id: str
    failures: int = 1
    alert_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "first_run_id": self.first_run_id,
            "last_run_id": self.last_run_id,
            "failures": self.failures,
            "alert_id": self.alert_id,
        }


@dataclass
class AlertCursor:
    """The sensor's whole state, stored as its cursor (JSON).

    `after_storage_id`: the event-log storage id of the last run-finished event (success, failure
    or cancellation) already read; None until the first tick. `streaks`: the open streaks.
    """

    after_storage_id: int | None = None
    streaks: dict[str, Streak] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str | None) -> AlertCursor:
        if not text:
            return cls()
        data = json.loads(text)
        if data.get("version") != CURSOR_VERSION:
            raise ValueError(f"unknown alert cursor version {data.get('version')!r}")
        return cls(
            after_storage_id=data.get("after_storage_id"),
            streaks={subject: Streak(**streak) for subject, streak in data.get("streaks", {}).items()},
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": CURSOR_VERSION,
                "after_storage_id": self.after_storage_id,
                "streaks": {subject: streak.to_dict() for subject, streak in sorted(self.streaks.items())},
            },
            sort_keys=True,
        )

    def record_failure(self, subject: str, run_id: str, at: str) -> bool:
        """Counts a failure of `subject`; True when it starts a streak (so it must alert)."""
        streak = self.streaks.get(subject)
        if streak is not None:
            streak.failures += 1
            streak.last_run_id = run_id
            return False
        self.streaks[subject] = Streak(started_at=at, first_run_id=run_id, last_run_id=run_id)
        self._bound()
        return True

    def record_success(self, subject: str) -> Streak | None:
        """Ends `subject`'s streak, if any; returns the streak that ended."""
        return self.streaks.pop(subject, None)

    def _bound(self) -> None:
        while len(self.streaks) > MAX_OPEN_STREAKS:
            oldest = min(self.streaks, key=lambda subject: self.streaks[subject].started_at)
            del self.streaks[oldest]
