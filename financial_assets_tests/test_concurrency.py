"""`concurrently`: a build's independent Spark actions run at once, results in order, no action
left running when one fails."""

import threading
import time

import pytest

from financial_assets.transform.concurrency import concurrently


def test_results_come_back_in_the_order_of_the_calls():
    assert concurrently(lambda: (time.sleep(0.05), "slow")[1], lambda: "fast") == ["slow", "fast"]


def test_the_calls_run_at_once():
    both_started = threading.Barrier(2, timeout=5)  # broken (and raising) if the calls ran one by one

    assert sorted(concurrently(both_started.wait, both_started.wait)) == [0, 1]  # each its own arrival


def test_a_failure_is_raised_once_every_other_call_has_returned():
    finished = []

    def slow():
        time.sleep(0.1)
        finished.append("slow")

    def failing():
        raise ValueError("the audit query failed")

    with pytest.raises(ValueError, match="the audit query failed"):
        concurrently(failing, slow)
    assert finished == ["slow"]
