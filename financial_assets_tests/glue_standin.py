"""A stand-in for the AWS Glue service that runs a job's script on this machine, the way Glue would.

Give it to `PipesGlueClient(client=...)` in place of a boto3 Glue client. Jobs live on a moto
server (create them with `create_job`, read them with `get_job`: anything not defined here goes
to a real boto3 Glue client pointed at moto). A job run is a local subprocess:

- the script is downloaded from the job's ``Command.ScriptLocation`` and each ``--extra-py-files``
  object from (moto) S3; the zips and wheels are the subprocess's only source of project code
  (PYTHONPATH), so a module missing from the shipped package fails the run here as on Glue;
- arguments are the job's DefaultArguments, then the run's Arguments, then the job's
  NonOverridableArguments, passed as ``--name value`` pairs after Glue's ``--JOB_ID``,
  ``--JOB_RUN_ID`` and ``--JOB_NAME``;
- the environment is this one without FIN_*, AWS_*, DAGSTER_* and PYTHON* variables, plus AWS
  credentials, region and ``AWS_ENDPOINT_URL`` = moto (what the job's role gives it on Glue);
- ``--datalake-formats iceberg`` gives the run the Iceberg runtime, as Glue does: here the jars the
  suite's own Spark uses, from its Ivy cache (FIN_CACHE_DIR); without it the run has none;
- ``--conf`` reaches the run's spark-submit as it is (PYSPARK_SUBMIT_ARGS), as on Glue.

The job reaches its Iceberg catalog and warehouse itself, as on Glue: the run's ``--catalog-*``
arguments name them (a SQL catalog and a local warehouse, or moto's Glue and S3).

Not emulated: Glue's own Spark (``awsglue`` is absent, so the script uses local Spark), workers
and capacity, ``--additional-python-modules`` (the venv's packages stand in), CloudWatch logs
(stdout/stderr go to files, see `output`), retries, timeouts, bookmarks and IAM.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import boto3
from botocore.exceptions import ClientError
from botocore.validate import validate_parameters

from financial_assets.transform.session import ivy_cache_dir

# Runs the script as __main__ after removing what Glue would not have: the venv installs
# `financial_assets` in editable mode, and its import hook would otherwise quietly supply any
# module missing from the shipped zip from the repository checkout.
_LAUNCHER = """
import os, runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(script)
runpy.run_path(script, run_name="__main__")
"""

_CONSUMED_BY_GLUE = {"--extra-py-files", "--additional-python-modules", "--python-modules-installer-option",
                     "--datalake-formats", "--conf"}
_DROPPED_ENV = re.compile(r"^(FIN_|AWS_|DAGSTER_|PYTHON)")
_ERROR_TAIL_CHARS = 4000


@dataclass
class _Run:
    id: str
    job: dict
    arguments: dict[str, str]
    directory: Path
    process: subprocess.Popen
    started_on: datetime
    completed_on: datetime | None = None
    stopped: bool = False
    state: str = "RUNNING"
    error_message: str | None = None
    log_files: dict[str, Path] = field(default_factory=dict)


class GlueStandin:
    """A boto3-Glue-client-like object whose job runs are local subprocesses."""

    def __init__(self, endpoint_url: str, region: str = "us-east-1", workdir: str | Path | None = None,
                 python: str = sys.executable, extra_env: dict[str, str] | None = None,
                 iceberg_cache_dir: str | Path | None = None):
        self.endpoint_url = endpoint_url
        self.region = region
        self._glue = boto3.client("glue", endpoint_url=endpoint_url, region_name=region)
        self._s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
        self._workdir = Path(workdir or tempfile.mkdtemp(prefix="glue-standin-"))
        self._python = python
        self._extra_env = dict(extra_env or {})
        # Where the Iceberg runtime's jars are (the suite's Ivy cache): Glue's --datalake-formats.
        self._iceberg_cache_dir = str(iceberg_cache_dir or Path(ivy_cache_dir()).parent)
        self.runs: dict[str, _Run] = {}

    def __getattr__(self, name):
        return getattr(self._glue, name)  # create_job, get_job, meta, exceptions, ...

    def __enter__(self) -> GlueStandin:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- Glue API -------------------------------------------------------------------------------

    def start_job_run(self, **params) -> dict:
        self._validate("StartJobRun", params)
        job = self._glue.get_job(JobName=params["JobName"])["Job"]  # EntityNotFoundException as Glue
        limit = job.get("ExecutionProperty", {}).get("MaxConcurrentRuns", 1)
        if sum(r.job["Name"] == job["Name"] and self._refresh(r) == "RUNNING" for r in self.runs.values()) >= limit:
            raise self._error("ConcurrentRunsExceededException", f"Job with name {job['Name']} already running",
                              "StartJobRun")
        arguments = {**job.get("DefaultArguments", {}), **params.get("Arguments", {}),
                     **job.get("NonOverridableArguments", {})}
        run_id = f"jr_{uuid.uuid4().hex}{uuid.uuid4().hex}"
        directory = self._workdir / run_id
        directory.mkdir(parents=True)
        script = self._download(job["Command"]["ScriptLocation"], directory)
        python_path = [str(self._download(uri.strip(), directory / "py-files"))
                       for uri in arguments.get("--extra-py-files", "").split(",") if uri.strip()]
        command = [self._python, "-c", _LAUNCHER, str(script),
                   "--JOB_ID", f"j_{job['Name']}", "--JOB_RUN_ID", run_id, "--JOB_NAME", job["Name"]]
        for name, value in arguments.items():
            if name not in _CONSUMED_BY_GLUE:
                command += [name, value]
        logs = {"stdout": directory / "stdout.log", "stderr": directory / "stderr.log"}
        with open(logs["stdout"], "wb") as stdout, open(logs["stderr"], "wb") as stderr:
            process = subprocess.Popen(command, cwd=directory, env=self._environment(python_path, arguments),
                                       stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                       start_new_session=True)  # its own group: a stop ends the JVM too
        self.runs[run_id] = _Run(run_id, job, arguments, directory, process, datetime.now(timezone.utc),
                                 log_files=logs)
        return {"JobRunId": run_id}

    def get_job_run(self, **params) -> dict:
        self._validate("GetJobRun", params)
        run = self._run(params["JobName"], params["RunId"], "GetJobRun")
        state = self._refresh(run)
        job_run = {
            "Id": run.id,
            "Attempt": 0,
            "JobName": run.job["Name"],
            "JobRunState": state,
            "Arguments": run.arguments,
            "StartedOn": run.started_on,
            "LastModifiedOn": run.completed_on or run.started_on,
            "ExecutionTime": int(((run.completed_on or datetime.now(timezone.utc)) - run.started_on).total_seconds()),
            "GlueVersion": run.job.get("GlueVersion", "6.0"),
            "LogGroupName": "/aws-glue/jobs",
        }
        if run.completed_on:
            job_run["CompletedOn"] = run.completed_on
        if run.error_message:
            job_run["ErrorMessage"] = run.error_message
        return {"JobRun": job_run}

    def batch_stop_job_run(self, **params) -> dict:
        self._validate("BatchStopJobRun", params)
        stopped, errors = [], []
        for run_id in params["JobRunIds"]:
            run = self.runs.get(run_id)
            if run is None or run.job["Name"] != params["JobName"] or self._refresh(run) != "RUNNING":
                errors.append({"JobName": params["JobName"], "JobRunId": run_id,
                               "ErrorDetail": {"ErrorCode": "InvalidInputException",
                                               "ErrorMessage": "Job run is not running"}})
                continue
            run.stopped = True
            self._end(run.process)
            stopped.append({"JobName": params["JobName"], "JobRunId": run_id})
        return {"SuccessfulSubmissions": stopped, "Errors": errors}

    # ---- helpers --------------------------------------------------------------------------------

    def output(self, run_id: str, stream: str = "stderr") -> str:
        """What the run wrote to stdout or stderr (CloudWatch's ``/output`` and ``/error`` on Glue)."""
        return self.runs[run_id].log_files[stream].read_text(errors="replace")

    def close(self) -> None:
        for run in self.runs.values():
            if run.process.poll() is None:
                self._end(run.process)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _refresh(self, run: _Run) -> str:
        if run.state != "RUNNING":
            return run.state
        code = run.process.poll()
        if code is None:
            return run.state
        run.completed_on = datetime.now(timezone.utc)
        if run.stopped:
            run.state = "STOPPED"
        elif code == 0:
            run.state = "SUCCEEDED"
        else:
            run.state = "FAILED"
            run.error_message = self._error_message(run, code)
        return run.state

    def _error_message(self, run: _Run, code: int) -> str:
        stderr = self.output(run.id)
        # Glue's message is the Python error; the traceback's tail carries it.
        tail = stderr[stderr.rfind("Traceback"):] if "Traceback" in stderr else stderr
        tail = tail.strip()[-_ERROR_TAIL_CHARS:]
        return tail or f"the job's process exited with code {code}"

    def _environment(self, python_path: list[str], arguments: dict[str, str]) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not _DROPPED_ENV.match(name)}
        credentials = boto3.Session().get_credentials().get_frozen_credentials()
        env.update({
            "AWS_ACCESS_KEY_ID": credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "PYTHONPATH": os.pathsep.join(python_path),
            "PYTHONUNBUFFERED": "1",
        })
        if credentials.token:
            env["AWS_SESSION_TOKEN"] = credentials.token
        if "iceberg" in arguments.get("--datalake-formats", "").split(","):
            env["FIN_CACHE_DIR"] = self._iceberg_cache_dir
        if arguments.get("--conf"):
            env["PYSPARK_SUBMIT_ARGS"] = f"--conf {arguments['--conf']} pyspark-shell"
        env.update(self._extra_env)
        return env

    def _download(self, uri: str, directory: Path) -> Path:
        if not uri.startswith("s3://"):
            raise self._error("InvalidInputException", f"not an S3 location: {uri}", "StartJobRun")
        bucket, _, key = uri[len("s3://"):].partition("/")
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / key.rsplit("/", 1)[-1]
        try:
            self._s3.download_file(bucket, key, str(target))
        except ClientError as error:
            raise self._error("InvalidInputException", f"cannot read {uri}: {error}", "StartJobRun") from error
        return target

    def _run(self, job_name: str, run_id: str, operation: str) -> _Run:
        run = self.runs.get(run_id)
        if run is None or run.job["Name"] != job_name:
            raise self._error("EntityNotFoundException", f"Job run {run_id} of {job_name} not found", operation)
        return run

    def _validate(self, operation: str, params: dict) -> None:
        """botocore's own client-side check of the request, as a real client makes it."""
        shape = self._glue.meta.service_model.operation_model(operation).input_shape
        validate_parameters(params, shape)

    def _error(self, code: str, message: str, operation: str) -> ClientError:
        """The modelled exception a real client raises, e.g. `glue.exceptions.EntityNotFoundException`."""
        return self._glue.exceptions.from_code(code)({"Error": {"Code": code, "Message": message}}, operation)

    @staticmethod
    def _end(process: subprocess.Popen) -> None:
        try:
            os.killpg(process.pid, signal.SIGTERM)  # the group this stand-in created for the run
            process.wait(timeout=20)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
