"""Slack through `dagster_slack.SlackResource`: `chat.postMessage` to one channel."""

from __future__ import annotations

import json
from typing import Any

from financial_assets.alerts.alert import ERROR, Alert

# Slack shows at most 40,000 characters of `text`; a few thousand are plenty for an alert.
_MAX_DETAILS_CHARS = 2500


def slack_text(alert: Alert) -> str:
    """mrkdwn: the title, the message, then the details (check metadata or run error)."""
    icon = ":rotating_light:" if alert.severity == ERROR else ":warning:"
    lines = [f"{icon} *{alert.title}*", alert.message, f"run `{alert.run_id}` · job `{alert.job_name}`"]
    if alert.details:
        details = json.dumps(alert.details, indent=1, sort_keys=True, default=str)
        if len(details) > _MAX_DETAILS_CHARS:
            details = details[:_MAX_DETAILS_CHARS] + "\n…(truncated)"
        lines.append(f"```{details}```")
    return "\n".join(lines)


class SlackChannel:
    """Posts with a Slack Web API client (a `slack_sdk.WebClient`, from `SlackResource.get_client()`).

    slack_sdk raises `SlackApiError` when Slack answers `ok: false`; the fan-out logs it.
    """

    name = "slack"

    def __init__(self, client: Any, channel: str):
        self.client = client
        self.channel = channel

    def send(self, alert: Alert) -> None:
        self.client.chat_postMessage(channel=self.channel, text=slack_text(alert), mrkdwn=True)

    def describe(self) -> str:
        return f"slack {self.channel}"
