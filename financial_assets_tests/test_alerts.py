"""Alerts on failed asset checks and failed runs: one per failure streak, to every channel.

Real components throughout: a SQLite Dagster instance in a temporary DAGSTER_HOME (the storage
`make dev` uses), tiny assets with checks whose failure is switched by run config, the sensor
evaluated tick after tick with only its cursor carried over (exactly what a daemon restart
leaves), and a real HTTP server on loopback receiving the webhook. Slack's API is external, so
there, and only there, a recording client stands in for slack_sdk's.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetSelection,
    ConfigurableResource,
    DagsterInstance,
    Definitions,
    MetadataValue,
    asset,
    asset_check,
    build_sensor_context,
    define_asset_job,
)
from dagster_slack import SlackResource

from financial_assets.alerts import (
    Alert,
    AlertCursor,
    AlertsResource,
    build_quality_alerts_sensor,
    quality_alerts_sensor,
)

# --- a tiny code location of our own: an asset, an ERROR check, a WARN check, a passing check ---


class Switches(ConfigurableResource):
    """What fails in a run, chosen by run config."""

    ledger_fails: bool = False
    balances_fail: bool = False
    freshness_fails: bool = False


@asset
def ledger(switches: Switches) -> int:
    if switches.ledger_fails:
        raise RuntimeError("ledger source unreachable")
    return 3


@asset_check(asset=ledger, blocking=True, description="Balances equal the sum of movements.")
def balances_match(switches: Switches) -> AssetCheckResult:
    mismatched = 3 if switches.balances_fail else 0
    return AssetCheckResult(
        passed=mismatched == 0,
        metadata={"mismatched_accounts": mismatched, "sample": MetadataValue.json([{"account_id": 7}])},
    )


@asset_check(asset=ledger)
def ledger_is_fresh(switches: Switches) -> AssetCheckResult:
    return AssetCheckResult(
        passed=not switches.freshness_fails,
        severity=AssetCheckSeverity.WARN,
        metadata={"age_hours": 50.0 if switches.freshness_fails else 1.0},
    )


@asset_check(asset=ledger)
def ledger_has_rows() -> AssetCheckResult:
    return AssetCheckResult(passed=True, metadata={"rows": 3})


LEDGER_JOB = "ledger_job"
defs = Definitions(
    assets=[ledger],
    asset_checks=[balances_match, ledger_is_fresh, ledger_has_rows],
    jobs=[define_asset_job(LEDGER_JOB, selection=AssetSelection.assets(ledger))],
    resources={"switches": Switches()},
)


def run_ledger(instance: DagsterInstance, **switches: bool):
    return defs.resolve_job_def(LEDGER_JOB).execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={"resources": {"switches": {"config": switches}}},
    )


# --- the sensor, tick by tick ---


@dataclass
class Sensor:
    """The alerts sensor as the daemon runs it: a fresh context per tick, only the cursor kept."""

    instance: DagsterInstance
    alerts: AlertsResource
    definition: object = quality_alerts_sensor
    cursor: str | None = None
    logs: list[str] = field(default_factory=list)
    skip_reasons: list[str] = field(default_factory=list)

    def tick(self) -> None:
        with build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources={"alerts": self.alerts}
        ) as context:
            handler = _Collect(self.logs)
            context.log.addHandler(handler)
            try:
                result = self.definition(context)
            finally:
                context.log.removeHandler(handler)
        self.cursor = result.cursor
        self.skip_reasons.append(result.skip_reason.skip_message if result.skip_reason else "")


class _Collect(logging.Handler):
    def __init__(self, into: list[str]):
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


# --- a real webhook receiver on loopback ---


@dataclass
class Receiver:
    base_url: str
    posts: list[dict] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give, in order; then 200

    def of_kind(self, kind: str) -> list[dict]:
        return [post for post in self.posts if post["kind"] == kind]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(base_url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = state.statuses.pop(0) if state.statuses else 200
            if status == 200:
                state.posts.append(json.loads(body))
            state.paths.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# The part of a webhook URL that is a credential (Slack-style: /services/T…/B…/<token>).
SECRET = "services/T0001/B0002/xoxSecretToken42"


@pytest.fixture(scope="module")
def instance(tmp_path_factory) -> Iterator[DagsterInstance]:
    """One instance for the module, as in production: history piles up, and each test's sensor
    starts after what the tests before it ran (its first tick skips history)."""
    home = tmp_path_factory.mktemp("dagster_home")
    with DagsterInstance.local_temp(tempdir=str(home)) as instance:
        yield instance


def watching(instance, alerts: AlertsResource, **sensor_options) -> Sensor:
    """A sensor that has had its first tick, so that it alerts on whatever happens next."""
    definition = build_quality_alerts_sensor(**sensor_options) if sensor_options else quality_alerts_sensor
    sensor = Sensor(instance, alerts, definition=definition)
    sensor.tick()
    return sensor


def to_webhook(receiver: Receiver, tmp_path, **options) -> AlertsResource:
    return AlertsResource(
        alert_log_path=str(tmp_path / "alerts" / "alerts.jsonl"),
        webhook_url=f"{receiver.base_url}/{SECRET}",
        webhook_retry_delay_s=0.01,
        **options,
    )


def alert_log_lines(tmp_path) -> list[dict]:
    path = tmp_path / "alerts" / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- the behaviours ---


def test_a_failing_check_reaches_the_webhook_once_per_failure_streak(instance, receiver, tmp_path):
    sensor = watching(instance, to_webhook(receiver, tmp_path))

    for _ in range(3):
        run_ledger(instance, balances_fail=True)
        sensor.tick()
    assert len(receiver.of_kind("check_failed")) == 1

    run_ledger(instance)  # passes: the streak ends
    sensor.tick()
    assert len(receiver.of_kind("check_failed")) == 1

    run_ledger(instance, balances_fail=True)
    sensor.tick()
    assert len(receiver.of_kind("check_failed")) == 2


def test_the_alert_names_the_asset_the_check_and_the_run_and_carries_the_check_metadata(
    instance, receiver, tmp_path
):
    sensor = watching(instance, to_webhook(receiver, tmp_path))
    run = run_ledger(instance, balances_fail=True)
    sensor.tick()

    [alert] = receiver.of_kind("check_failed")
    assert alert["asset_key"] == "ledger"
    assert alert["check_name"] == "balances_match"
    assert alert["severity"] == "ERROR"
    assert alert["run_id"] == run.run_id
    assert alert["job_name"] == LEDGER_JOB
    assert alert["details"] == {"mismatched_accounts": 3, "sample": [{"account_id": 7}]}
    assert "balances_match" in alert["message"] and "ledger" in alert["message"]
    assert alert["links"]["run"] == f"/runs/{run.run_id}"
    assert alert["alert_id"] and alert["timestamp"].endswith("+00:00")
    assert alert["text"].startswith("[ERROR] check balances_match on ledger failed")


def test_a_failing_warn_check_that_does_not_block_alerts_too(instance, receiver, tmp_path):
    sensor = watching(instance, to_webhook(receiver, tmp_path))
    run = run_ledger(instance, freshness_fails=True)
    assert run.success  # a WARN check does not fail the run
    sensor.tick()

    [alert] = receiver.posts
    assert (alert["kind"], alert["check_name"], alert["severity"]) == ("check_failed", "ledger_is_fresh", "WARN")
    assert alert["details"] == {"age_hours": 50.0}


def test_a_failing_job_alerts_once_per_failure_streak_with_the_error(instance, receiver, tmp_path):
    sensor = watching(instance, to_webhook(receiver, tmp_path))

    for _ in range(2):
        run_ledger(instance, ledger_fails=True)
        sensor.tick()
    run_ledger(instance)  # succeeds: the streak ends
    sensor.tick()
    failed_again = run_ledger(instance, ledger_fails=True)
    sensor.tick()

    alerts = receiver.of_kind("run_failed")
    assert len(alerts) == 2
    assert alerts[1]["run_id"] == failed_again.run_id
    assert alerts[1]["job_name"] == LEDGER_JOB
    assert alerts[1]["details"]["failed_steps"] == ["ledger"]
    assert "ledger source unreachable" in alerts[1]["details"]["error"]


def test_the_alert_log_gets_one_json_line_per_alert(instance, tmp_path):
    sensor = watching(instance, AlertsResource(alert_log_path=str(tmp_path / "alerts" / "alerts.jsonl")))
    run_ledger(instance, balances_fail=True)  # the check fails and so does the run
    run_ledger(instance, freshness_fails=True)  # balances pass again, freshness starts failing
    sensor.tick()

    lines = alert_log_lines(tmp_path)
    assert [(line["kind"], line["check_name"]) for line in lines] == [
        ("check_failed", "balances_match"),
        ("run_failed", None),
        ("check_failed", "ledger_is_fresh"),
    ]
    assert Alert.from_dict(lines[0]).to_dict() == lines[0]  # the record round-trips through JSON


def test_a_webhook_that_is_down_does_not_stop_the_alert_log(instance, tmp_path):
    with socket.socket() as closed:  # bound, not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/{SECRET}"
        sensor = watching(
            instance,
            AlertsResource(
                alert_log_path=str(tmp_path / "alerts" / "alerts.jsonl"),
                webhook_url=url,
                webhook_retry_delay_s=0.01,
            ),
        )
        run_ledger(instance, freshness_fails=True)
        sensor.tick()

    assert [line["check_name"] for line in alert_log_lines(tmp_path)] == ["ledger_is_fresh"]
    assert any("not delivered to webhook" in message and "refused" in message for message in sensor.logs)
    assert "not delivered everywhere" in sensor.skip_reasons[-1]


def test_the_webhook_is_retried_once(instance, receiver, tmp_path):
    receiver.statuses = [503]  # the first attempt is turned away, the retry gets through
    sensor = watching(instance, to_webhook(receiver, tmp_path))
    run_ledger(instance, freshness_fails=True)
    sensor.tick()

    assert len(receiver.paths) == 2
    assert len(receiver.posts) == 1


def test_the_webhook_url_secret_never_reaches_the_logs(instance, receiver, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.statuses = [500, 500]  # refused twice: the failure is logged
    sensor = watching(instance, to_webhook(receiver, tmp_path))
    run_ledger(instance, freshness_fails=True)
    sensor.tick()

    assert receiver.paths == [f"/{SECRET}", f"/{SECRET}"]  # the real URL was used
    logged = "\n".join([*sensor.logs, caplog.text, *sensor.skip_reasons])
    assert f"{receiver.base_url}/***" in logged and "HTTP 500" in logged
    assert "xoxSecretToken42" not in logged
    assert "xoxSecretToken42" not in (tmp_path / "alerts" / "alerts.jsonl").read_text()


class RecordingSlackClient:
    """Stands in for slack_sdk.WebClient: Slack's API is the one external service."""

    def __init__(self):
        self.messages: list[dict] = []

    def chat_postMessage(self, **kwargs):  # noqa: N802 - slack_sdk's name
        self.messages.append(kwargs)
        return {"ok": True}


SLACK_CLIENT = RecordingSlackClient()


class RecordingSlackResource(SlackResource):
    def get_client(self):
        return SLACK_CLIENT


def test_slack_is_skipped_unless_both_token_and_channel_are_set(tmp_path):
    token_only = AlertsResource(alert_log_path=str(tmp_path / "a.jsonl"), slack=RecordingSlackResource(token="x"))
    channel_only = AlertsResource(alert_log_path=str(tmp_path / "a.jsonl"), slack_channel="#data-alerts")

    for resource in (token_only, channel_only):
        assert not resource.slack_enabled()
        assert not any(channel.startswith("slack") for channel in resource.describe_channels())


def test_slack_gets_the_alert_in_the_configured_channel(instance, tmp_path):
    SLACK_CLIENT.messages.clear()
    alerts = AlertsResource(
        alert_log_path=str(tmp_path / "alerts.jsonl"),
        slack=RecordingSlackResource(token="xoxb-test-token"),
        slack_channel="#data-alerts",
    )
    sensor = watching(instance, alerts)
    run_ledger(instance, freshness_fails=True)
    sensor.tick()

    [message] = SLACK_CLIENT.messages
    assert message["channel"] == "#data-alerts"
    assert "check ledger_is_fresh on ledger failed" in message["text"]
    assert '"age_hours": 50.0' in message["text"]


def test_a_restarted_sensor_neither_resends_nor_misses_alerts(instance, tmp_path):
    alerts = AlertsResource(alert_log_path=str(tmp_path / "alerts" / "alerts.jsonl"))
    sensor = watching(instance, alerts)
    run_ledger(instance, freshness_fails=True)
    sensor.tick()
    saved = sensor.cursor

    # While the daemon is down: the streak ends and a new one starts.
    run_ledger(instance)
    run_ledger(instance, freshness_fails=True)
    restarted = Sensor(instance, AlertsResource(alert_log_path=alerts.alert_log_path), cursor=saved)
    restarted.tick()
    restarted.tick()

    assert [line["check_name"] for line in alert_log_lines(tmp_path)] == ["ledger_is_fresh", "ledger_is_fresh"]
    open_streak = AlertCursor.from_json(restarted.cursor).streaks["check:ledger:ledger_is_fresh"]
    assert open_streak.failures == 1


def test_a_tick_reads_a_bounded_number_of_runs_and_the_next_one_carries_on(instance, tmp_path):
    sensor = watching(
        instance, AlertsResource(alert_log_path=str(tmp_path / "alerts" / "alerts.jsonl")), max_runs_per_tick=2
    )
    for fails in (True, False, True):  # two streaks of the WARN check
        run_ledger(instance, freshness_fails=fails)

    counts = []
    for _ in range(3):
        sensor.tick()
        counts.append(len(alert_log_lines(tmp_path)))

    assert counts == [1, 2, 2]
    assert "Read 2 finished runs (more to read next tick)" in sensor.skip_reasons[1]
    assert "Read 1 finished runs;" in sensor.skip_reasons[2]


def test_the_first_tick_does_not_replay_history(instance, tmp_path):
    run_ledger(instance, ledger_fails=True)
    sensor = watching(instance, AlertsResource(alert_log_path=str(tmp_path / "alerts" / "alerts.jsonl")))
    sensor.tick()

    assert alert_log_lines(tmp_path) == []
    assert json.loads(sensor.cursor)["after_storage_id"] > 0
