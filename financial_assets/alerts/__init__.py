"""Alerts on failed asset checks and failed runs: one per failure streak, to every channel.

Channels: the alert log (JSON lines, always), the Dagster log (always), a webhook
(FIN_ALERT_WEBHOOK_URL) and Slack (FIN_SLACK_TOKEN with FIN_SLACK_CHANNEL).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from dagster import EnvVar
from dagster_slack import SlackResource

from financial_assets.alerts.alert import CHECK_FAILED, RUN_FAILED, Alert
from financial_assets.alerts.alert_log import DEFAULT_ALERT_LOG, AlertLogChannel
from financial_assets.alerts.resource import AlertsResource, Delivery
from financial_assets.alerts.sensor import build_quality_alerts_sensor, quality_alerts_sensor
from financial_assets.alerts.slack import SlackChannel
from financial_assets.alerts.streaks import AlertCursor
from financial_assets.alerts.webhook import WebhookChannel, WebhookError, redact_webhook_url


def alerts_resource(
    alert_log_path: str = DEFAULT_ALERT_LOG,
    slack_channel: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> AlertsResource:
    """The deployment's AlertsResource. The webhook URL and the Slack token are passed as EnvVars
    (read when the sensor runs, hidden from the UI's config view), and only when set; Slack only
    when both the token and `slack_channel` are."""
    environ = os.environ if environ is None else environ
    webhook = EnvVar("FIN_ALERT_WEBHOOK_URL") if environ.get("FIN_ALERT_WEBHOOK_URL", "").strip() else None
    slack_channel = (slack_channel or "").strip() or None
    slack = (
        SlackResource(token=EnvVar("FIN_SLACK_TOKEN"))
        if slack_channel and environ.get("FIN_SLACK_TOKEN", "").strip()
        else None
    )
    return AlertsResource(
        alert_log_path=alert_log_path,
        webhook_url=webhook,
        slack=slack,
        slack_channel=slack_channel if slack else None,
    )


__all__ = [
    "CHECK_FAILED",
    "RUN_FAILED",
    "Alert",
    "AlertCursor",
    "AlertLogChannel",
    "AlertsResource",
    "Delivery",
    "SlackChannel",
    "WebhookChannel",
    "WebhookError",
    "alerts_resource",
    "build_quality_alerts_sensor",
    "quality_alerts_sensor",
    "redact_webhook_url",
]
