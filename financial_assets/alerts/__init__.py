"""Alerts on failed asset checks and failed runs: one per failure streak, to every channel.

Channels: the alert log (JSON lines, always), the Dagster log (always), a webhook
(FIN_ALERT_WEBHOOK_URL) and Slack (FIN_SLACK_TOKEN with FIN_SLACK_CHANNEL).
"""

from __future__ import annotations

from financial_assets.alerts.alert import CHECK_FAILED, RUN_FAILED, Alert
from financial_assets.alerts.alert_log import AlertLogChannel
from financial_assets.alerts.resource import AlertsResource, Delivery
from financial_assets.alerts.sensor import build_quality_alerts_sensor, quality_alerts_sensor
from financial_assets.alerts.slack import SlackChannel
from financial_assets.alerts.streaks import AlertCursor
from financial_assets.alerts.webhook import WebhookChannel, WebhookError, redact_webhook_url

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
    "build_quality_alerts_sensor",
    "quality_alerts_sensor",
    "redact_webhook_url",
]
