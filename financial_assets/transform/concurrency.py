"""Independent Spark actions run at once.

A Spark action on small tables is bound by its fixed latency (planning, scheduling a job per
stage, committing), not by the cores; the driver submits the jobs of several actions from as many
threads and the scheduler interleaves their tasks, so a build's independent writes and checks
overlap instead of queuing. No Dagster import (Glue runs it).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def concurrently(*calls: Callable[[], Any]) -> list[Any]:
    """Each call's result, in order, the calls made at once; the first failure (in order) is
    raised once every call has returned, so that no action outlives the build that asked for it."""
    if len(calls) <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="spark-action") as pool:
        futures = [pool.submit(call) for call in calls]
    return [future.result() for future in futures]
