"""SparkResource: a run that needs Spark starts its session when the run begins, in the background,
and the build takes that session. The JVM's start itself is covered by the scale-out runs (a fresh
CLI process each); here the session factory is a stand-in that takes its time, so that the
overlap is visible without starting a JVM."""

from __future__ import annotations

import threading
import time

import pytest
from dagster import asset, materialize

import financial_assets.resources.spark as spark_module
from financial_assets.resources.spark import SparkResource

STARTUP_S = 0.8


@pytest.fixture
def slow_sessions(monkeypatch) -> list[str]:
    """Replaces the session factory with one that takes STARTUP_S and records the thread it ran on,
    in a process that has no session yet."""
    started_on: list[str] = []

    def start(master, remote, config):
        started_on.append(threading.current_thread().name)
        time.sleep(STARTUP_S)
        return f"session on {master}"

    monkeypatch.setattr(spark_module, "spark_session", start)
    monkeypatch.setattr(spark_module, "spark_session_exists", lambda: False)
    return started_on


@asset
def extraction() -> None:
    time.sleep(STARTUP_S * 1.5)  # a step before the build that does not need Spark


def building(seen: dict):
    @asset(deps=[extraction])
    def build(spark: SparkResource) -> None:
        asked = time.monotonic()
        seen["session"] = spark.session()
        seen["waited"] = time.monotonic() - asked
        seen["report"] = spark.start_report()

    return build


def test_the_session_starts_with_the_run_so_the_build_does_not_wait_for_it(slow_sessions):
    seen: dict = {}

    assert materialize([extraction, building(seen)], resources={"spark": SparkResource()}).success

    assert seen["session"] == "session on local[*]" and seen["waited"] < STARTUP_S / 2
    assert slow_sessions == ["spark-session-start"]  # one session, started in the background
    assert seen["report"].startswith("the Spark session started with the run, in the background")


def test_without_starting_with_the_run_the_build_starts_it_when_it_asks(slow_sessions):
    seen: dict = {}

    assert materialize([extraction, building(seen)], resources={"spark": SparkResource(start_with_the_run=False)}).success

    assert seen["waited"] >= STARTUP_S and slow_sessions == ["MainThread"]
    assert seen["report"] == "the Spark session started when the build asked for it"


def test_a_session_that_fails_to_start_fails_the_step_that_needs_it(monkeypatch):
    def broken(master, remote, config):
        raise RuntimeError("Java gateway process exited before sending its port number")

    monkeypatch.setattr(spark_module, "spark_session", broken)
    monkeypatch.setattr(spark_module, "spark_session_exists", lambda: False)

    result = materialize([extraction, building({})], resources={"spark": SparkResource()}, raise_on_error=False)

    failures = [event for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
    assert [event.step_key for event in failures] == ["build"]
    assert "Java gateway process exited" in failures[0].step_failure_data.error.cause.message
