"""`AlertsResource`: fans an alert out to every configured channel."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from dagster import ConfigurableResource
from pydantic import Field

from financial_assets.alerts.alert import ERROR, Alert
from financial_assets.alerts.alert_log import AlertLogChannel
from financial_assets.alerts.slack import SlackChannel
from financial_assets.alerts.webhook import WebhookChannel, redact_webhook_url
from financial_assets.settings import DEFAULT_ALERT_LOG

_MAX_ERROR_CHARS = 500


@dataclass
class Delivery:
    """What happened to one alert: channel description → "sent" or the (secret-free) error."""

    alert: Alert
    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class AlertsResource(ConfigurableResource):
    """Where alerts go: always the alert log and the Dagster log; a webhook and Slack when set.

    Channels are independent: one that fails is logged (without its secrets) and the others are
    still tried. Secrets (`webhook_url`, the Slack token) should be given as `EnvVar`s so that the
    UI's config view does not show them.
    """

    alert_log_path: str = Field(
        default=DEFAULT_ALERT_LOG, description="JSON-lines file every alert is appended to."
    )
    webhook_url: str | None = Field(
        default=None, description="http(s) URL that receives each alert as a JSON POST (FIN_ALERT_WEBHOOK_URL)."
    )
    webhook_timeout_s: float = Field(default=5.0, description="Seconds to wait for the webhook.")
    webhook_retry_delay_s: float = Field(default=1.0, description="Pause before the one retry.")
    # A `dagster_slack.SlackResource`, typed by its base class: naming it here would import
    # slack_sdk (a quarter of a second) whenever the code location loads, Slack configured or not.
    slack: ConfigurableResource | None = Field(
        default=None, description="dagster_slack SlackResource (token from FIN_SLACK_TOKEN); with slack_channel."
    )
    slack_channel: str | None = Field(default=None, description="Slack channel (FIN_SLACK_CHANNEL).")

    def slack_enabled(self) -> bool:
        return self.slack is not None and bool((self.slack_channel or "").strip())

    def send(self, alert: Alert, log: logging.Logger) -> Delivery:
        """Delivers `alert` to every channel; never raises because of a channel."""
        delivery = Delivery(alert)
        level = logging.ERROR if alert.severity == ERROR else logging.WARNING
        # The Dagster log (the sensor's tick log in the UI): always, and first.
        log.log(level, "ALERT %s: %s [alert_id=%s]", alert.title, alert.message, alert.alert_id)
        delivery.sent.append("dagster log")

        for describe, make in self._channel_factories():
            try:
                channel = make()
                channel.send(alert)
            except Exception as error:  # noqa: BLE001 - one channel must not stop the others
                reason = self._scrub(f"{type(error).__name__}: {error}")[:_MAX_ERROR_CHARS]
                delivery.failed[describe] = reason
                log.warning("alert %s not delivered to %s: %s", alert.alert_id, describe, reason)
            else:
                delivery.sent.append(describe)
        return delivery

    def describe_channels(self) -> list[str]:
        return ["dagster log", *(describe for describe, _ in self._channel_factories())]

    def _channel_factories(self):
        yield f"alert log {self.alert_log_path}", lambda: AlertLogChannel(self.alert_log_path)
        if self.webhook_url:
            yield (
                f"webhook {redact_webhook_url(self.webhook_url)}",
                lambda: WebhookChannel(self.webhook_url, self.webhook_timeout_s, self.webhook_retry_delay_s),
            )
        if self.slack_enabled():
            yield (
                f"slack {self.slack_channel}",
                lambda: SlackChannel(self.slack.get_client(), self.slack_channel.strip()),
            )

    def _scrub(self, text: str) -> str:
        """Defence in depth: whatever a library put in its error, the secrets are not shown."""
        if self.webhook_url:
            text = text.replace(self.webhook_url, redact_webhook_url(self.webhook_url))
            parts = urlsplit(self.webhook_url)
            for secret in (parts.path.strip("/"), parts.query):
                if len(secret) > 3:
                    text = text.replace(secret, "***")
        if self.slack is not None and self.slack.token:
            text = text.replace(self.slack.token, "***")
        return text
