"""The local alert log: one JSON object per line, appended. Always on. Pure Python."""

from __future__ import annotations

import os
from pathlib import Path

from financial_assets.alerts.alert import Alert
from financial_assets.settings import DEFAULT_ALERT_LOG


class AlertLogChannel:
    """Appends each alert to a JSON-lines file (created with its folder when missing).

    Each line is written with a single `write` on a file opened for appending, and flushed to
    disk before returning, so a line is either whole or absent after a crash.
    """

    name = "alert_log"

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_ALERT_LOG):
        self.path = Path(path)

    def send(self, alert: Alert) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = alert.to_json() + "\n"
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(line)
            stream.flush()
            os.fsync(stream.fileno())

    def describe(self) -> str:
        return f"alert log {self.path}"
