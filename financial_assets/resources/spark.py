from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from financial_assets.settings import DEFAULT_SPARK_MASTER
from financial_assets.transform.session import spark_session, spark_session_exists

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class SparkResource(ConfigurableResource):
    """Spark, started only for a run that needs it: one session (one JVM) per process.

    Local by default (`local[*]`); point `master` at a cluster or `remote` at a Spark Connect
    server (FIN_SPARK_MASTER / FIN_SPARK_REMOTE) to grow beyond one machine without code changes.
    Neither this resource nor the code location imports PySpark until a run needs Spark.

    When such a run begins (Dagster sets its resources up), the session starts in the background,
    so that the JVM's start (~10 s) overlaps the extraction steps that come before the build,
    which mostly wait for the sources; the build then takes the session as soon as it is up.
    """

    master: str = Field(default=DEFAULT_SPARK_MASTER, description="spark.master, e.g. local[*] or spark://host:7077")
    remote: str | None = Field(default=None, description="Spark Connect URL, e.g. sc://host:15002")
    config: dict[str, str] = Field(default_factory=dict, description="Extra Spark settings.")
    start_with_the_run: bool = Field(
        default=True,
        description="Start the session in the background when a run that needs Spark begins, "
        "instead of when its first Spark step asks for it.",
    )
    _starting: Future | None = PrivateAttr(default=None)
    _already_running: bool = PrivateAttr(default=False)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # In a process that already has its session (a test suite's, a second run in `dagster
        # dev`'s process), there is nothing to start.
        self._already_running = spark_session_exists()
        if not self.start_with_the_run or self._already_running:
            return
        self._starting = Future()
        self._starting.set_running_or_notify_cancel()
        started = time.monotonic()

        def start() -> None:
            try:
                self._starting.set_result((spark_session(self.master, self.remote, self.config),
                                           time.monotonic() - started))
            except BaseException as error:  # raised to the step that needs Spark, not lost here
                self._starting.set_exception(error)

        # A daemon thread: a run whose earlier steps fail exits without waiting for the JVM.
        threading.Thread(target=start, name="spark-session-start", daemon=True).start()
        if context.log:
            context.log.info(f"starting the Spark session ({self.remote or self.master}) in the background")

    def session(self) -> SparkSession:
        """The run's session: the one started with the run (waiting for it if it is still
        starting), or a new one now."""
        if self._starting is None:
            return spark_session(self.master, self.remote, self.config)
        session, _ = self._starting.result()
        return session

    def start_report(self) -> str:
        """How this run's session started, for the build's log."""
        if self._already_running:
            return "the process's Spark session was already running"
        if self._starting is not None and self._starting.done() and not self._starting.exception():
            return f"the Spark session started with the run, in the background, in {self._starting.result()[1]:.1f} s"
        return "the Spark session started when the build asked for it"
