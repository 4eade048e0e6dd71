"""Spark servers on loopback for the scale-out tests, started from the pyspark package's own
distribution (its ``bin/spark-class``): a standalone cluster (one master, workers of one core
each, every one its own JVM) and a Spark Connect server. Each is a context manager that stops
every JVM it started, and keeps their logs in its directory.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from financial_assets.lakehouse.catalog import ICEBERG_EXTENSIONS


def spark_home() -> Path:
    """The Spark distribution inside the installed pyspark package (``bin/``, ``jars/``)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(condition, what: str, timeout_s: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {log}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:]) for log in logs)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f}s\n{tails}")


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


class _Servers:
    """JVMs started with ``spark-class``, each in its own process group, logs in ``directory``."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.environment = {
            **os.environ,
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOCAL_DIRS": str(self.directory / "local"),
        }
        self.processes: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def spark_class(self, name: str, *arguments: str, environment: Mapping[str, str] | None = None) -> None:
        log = self.directory / f"{name}.log"
        self.logs.append(log)
        with log.open("wb") as output:
            self.processes.append(subprocess.Popen(
                [str(spark_home() / "bin" / "spark-class"), *arguments],
                env={**self.environment, **(environment or {})}, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            ))

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class SparkCluster(_Servers):
    """A standalone cluster on 127.0.0.1: a master and ``workers`` workers of ``worker_cores``
    cores and ``worker_memory`` each. ``master_url`` is what FIN_SPARK_MASTER takes."""

    def __init__(self, directory: Path, workers: int = 2, worker_cores: int = 1, worker_memory: str = "1g",
                 timeout_s: float = 120):
        super().__init__(directory)
        self.workers = workers
        self.port, self.webui_port = free_port(), free_port()
        self.master_url = f"spark://127.0.0.1:{self.port}"
        # No REST submission server: nothing here submits through it, and it would take port 6066.
        self.spark_class("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                         "--port", str(self.port), "--webui-port", str(self.webui_port),
                         environment={"SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false"})
        for number in range(1, workers + 1):
            self.spark_class(f"worker-{number}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                             "--cores", str(worker_cores), "--memory", worker_memory, "--webui-port", "0",
                             "--work-dir", str(self.work_dir(number)), self.master_url)
        try:
            _wait_for(lambda: self._alive_workers() == workers, f"{workers} Spark workers", timeout_s, self.logs)
        except BaseException:
            self.stop()
            raise

    def work_dir(self, worker: int) -> Path:
        """Where a worker runs its executors: ``<it>/<application id>/<executor id>/stderr``."""
        return self.directory / f"worker-{worker}"

    def status(self) -> dict:
        """The master's JSON status: workers, active and completed applications."""
        return _get_json(f"http://127.0.0.1:{self.webui_port}/json/")

    def _alive_workers(self) -> int:
        try:
            return self.status()["aliveworkers"]
        except OSError:
            return 0

    def executor_logs(self, application_id: str) -> dict[int, list[Path]]:
        """Each worker's executors' logs (stderr) of one application, by worker number."""
        return {
            number: sorted(self.work_dir(number).glob(f"{application_id}/*/stderr"))
            for number in range(1, self.workers + 1)
        }


class ConnectServer(_Servers):
    """A Spark Connect server on 127.0.0.1 (``url`` is what FIN_SPARK_REMOTE takes), running its
    own Spark on ``master`` with the Iceberg runtime ``jars`` (what an operator gives it) and
    ``config``; its Spark UI's REST API on ``ui_port`` tells what ran there."""

    def __init__(self, directory: Path, jars: str, master: str = "local[2]",
                 config: Mapping[str, str] | None = None, timeout_s: float = 120):
        super().__init__(directory)
        self.port, self.ui_port = free_port(), free_port()
        self.url = f"sc://127.0.0.1:{self.port}"
        settings = {
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(self.port),
            "spark.sql.extensions": ICEBERG_EXTENSIONS,
            "spark.ui.port": str(self.ui_port),
            **(config or {}),
        }
        arguments = [argument for key, value in settings.items() for argument in ("--conf", f"{key}={value}")]
        self.spark_class("connect-server", "org.apache.spark.deploy.SparkSubmit", "--master", master,
                         "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
                         "--name", "Spark Connect server", "--jars", jars, *arguments, "spark-internal")
        try:
            _wait_for(self._listening, "the Spark Connect server", timeout_s, self.logs)
        except BaseException:
            self.stop()
            raise

    def succeeded_jobs(self) -> int:
        """How many Spark jobs the server's application has run to success."""
        api = f"http://127.0.0.1:{self.ui_port}/api/v1/applications"
        [application] = _get_json(api)
        return len(_get_json(f"{api}/{application['id']}/jobs?status=succeeded"))

    def _listening(self) -> bool:
        if self.processes[0].poll() is not None:
            raise RuntimeError(f"the Spark Connect server exited: see {self.logs[0]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False
