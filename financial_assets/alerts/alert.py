"""The alert record every channel receives. Pure Python: no Dagster import."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

CHECK_FAILED = "check_failed"
RUN_FAILED = "run_failed"
KINDS = (CHECK_FAILED, RUN_FAILED)
ERROR, WARN = "ERROR", "WARN"


def alert_id(kind: str, subject: str, run_id: str) -> str:
    """A stable identity: the same failure always gets the same id, so a receiver can drop a
    re-send (delivery is at least once; see the sensor's docstring)."""
    return hashlib.sha256(f"{kind}|{subject}|{run_id}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Alert:
    """One failure streak's first failure: a failed asset check evaluation or a failed run.

    `subject` is the streak key (``check:<asset>:<check>`` or ``job:<job>``); `details` is the
    check's metadata (what explains the failure) or, for a run, its error and failed steps;
    `links` are paths relative to the Dagster UI's address; `timestamp` is when the failure
    happened (ISO-8601, UTC).
    """

    kind: str
    severity: str
    subject: str
    run_id: str
    job_name: str
    message: str
    timestamp: str
    asset_key: str | None = None
    check_name: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    alert_id: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"alert kind must be one of {KINDS}, got {self.kind!r}")
        if self.severity not in (ERROR, WARN):
            raise ValueError(f"alert severity must be ERROR or WARN, got {self.severity!r}")
        if not self.alert_id:
            object.__setattr__(self, "alert_id", alert_id(self.kind, self.subject, self.run_id))

    @property
    def title(self) -> str:
        if self.kind == CHECK_FAILED:
            return f"[{self.severity}] check {self.check_name} on {self.asset_key} failed"
        return f"[{self.severity}] run of {self.job_name} failed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        return cls(**data)
