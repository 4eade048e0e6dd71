"""A generic webhook: the alert as a JSON POST. Pure Python (urllib).

Webhook URLs carry their token in the path or query (Slack, Teams, Discord, ...), so the URL is
only ever shown as scheme://host[:port]/*** — in logs, errors and descriptions.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from financial_assets.alerts.alert import Alert

# Statuses worth one more try: the receiver is overloaded or briefly down.
_RETRYABLE_STATUSES = {408, 425, 429, 500, 502, 503, 504}


class WebhookError(RuntimeError):
    """The webhook refused or never received the alert. The message holds no secret."""


def redact_webhook_url(url: str) -> str:
    """scheme://host[:port] and `/***` when there is a path or query; user info is dropped."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(malformed URL)"
    if not parts.scheme or not host:
        return "(malformed URL)"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    shown = f"{parts.scheme}://{host}{f':{port}' if port else ''}"
    if parts.path.strip("/") or parts.query or parts.fragment:
        shown += "/***"
    return shown


class WebhookChannel:
    """POSTs `{"text": <one line>, ...the alert's fields}` as JSON.

    The `text` field makes Slack-, Mattermost- and Teams-style incoming webhooks show the alert
    as is; other receivers read the alert's fields. A connection error, a timeout or a 408/429/5xx
    answer is retried once after `retry_delay_s`; any other answer outside 2xx fails at once.
    """

    name = "webhook"

    def __init__(self, url: str, timeout_s: float = 5.0, retry_delay_s: float = 1.0):
        if urlsplit(url).scheme not in ("http", "https"):
            raise WebhookError(f"the webhook URL must be http(s)://, got {redact_webhook_url(url)}")
        self._url = url
        self.timeout_s = timeout_s
        self.retry_delay_s = retry_delay_s

    @property
    def display_url(self) -> str:
        return redact_webhook_url(self._url)

    def describe(self) -> str:
        return f"webhook {self.display_url}"

    def payload(self, alert: Alert) -> bytes:
        body = {"text": f"{alert.title}: {alert.message}", **alert.to_dict()}
        return json.dumps(body, sort_keys=True, default=str).encode("utf-8")

    def send(self, alert: Alert) -> None:
        data = self.payload(alert)
        problem = self._post(data)
        if problem is not None and problem[1]:
            time.sleep(self.retry_delay_s)
            problem = self._post(data)
        if problem is not None:
            raise WebhookError(f"webhook {self.display_url}: {problem[0]}")

    def _post(self, data: bytes) -> tuple[str, bool] | None:
        """None when delivered, else (what went wrong, whether a retry may help).

        Only the status or the error's reason is kept: urllib's exceptions carry the full URL.
        """
        request = urllib.request.Request(
            self._url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "financial-assets-alerts/1"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
                return None
        except urllib.error.HTTPError as error:
            status = error.code
            error.close()
            return f"HTTP {status}", status in _RETRYABLE_STATUSES
        except urllib.error.URLError as error:
            return f"unreachable ({_reason(error.reason)})", True
        except OSError as error:  # timeouts while reading, connection resets
            return f"unreachable ({_reason(error)})", True
        except http.client.HTTPException as error:  # a garbled answer
            return f"bad answer ({type(error).__name__})", True
        except ValueError:  # http.client.InvalidURL and friends quote the whole URL: not shown
            return "invalid URL", False


def _reason(reason: object) -> str:
    """A fixed description of a network error; never the error's text, which may quote the URL."""
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return type(reason).__name__
