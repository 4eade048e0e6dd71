"""What the alerts sensor reads from the Dagster instance, and the alerts it makes of it.

Everything is read through the instance's run-status-change index: every finished run (success,
failure, cancellation) has one event there with a storage id that only grows, on every event-log
storage Dagster has (the default SQLite one, which keeps each run's events in its own file, as
well as PostgreSQL). A run's asset check evaluations are read from that run's events once it has
finished, so that all of them are known and they are taken in one consistent order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    EventLogEntry,
    MetadataValue,
    RunsFilter,
    RunStatusChangeRecordsFilter,
    TableMetadataValue,
)

from financial_assets.alerts.alert import CHECK_FAILED, ERROR, RUN_FAILED, WARN, Alert
from financial_assets.alerts.streaks import AlertCursor, check_subject, job_subject

FINISHED_RUN_EVENTS = (
    DagsterEventType.RUN_SUCCESS,
    DagsterEventType.RUN_FAILURE,
    DagsterEventType.RUN_CANCELED,
)
# Ad hoc materializations (the UI's "Materialize" button) all run as this job; their streaks are
# told apart by the assets they selected.
_IMPLICIT_ASSET_JOB_PREFIX = "__ASSET_JOB"
_MAX_ERROR_CHARS = 2000
WHAT_TO_DO = "what_to_do"  # the check metadata entry an alert's message quotes


@dataclass(frozen=True)
class FinishedRun:
    storage_id: int
    run_id: str
    job_name: str
    outcome: DagsterEventType
    entry: EventLogEntry


def latest_finished_run_storage_id(instance: DagsterInstance) -> int:
    """The storage id of the newest run-finished event (0 when no run ever finished)."""
    latest = 0
    for event_type in FINISHED_RUN_EVENTS:
        result = instance.fetch_run_status_changes(event_type, limit=1, ascending=False)
        if result.records:
            latest = max(latest, result.records[0].storage_id)
    return latest


def finished_runs_after(instance: DagsterInstance, after_storage_id: int, limit: int) -> list[FinishedRun]:
    """Up to `limit` runs that finished after `after_storage_id`, oldest first.

    One query per outcome, each limited; merged by storage id, the first `limit` are exactly the
    next `limit` events of the three kinds together.
    """
    records = []
    for event_type in FINISHED_RUN_EVENTS:
        result = instance.fetch_run_status_changes(
            RunStatusChangeRecordsFilter(event_type=event_type, after_storage_id=after_storage_id),
            limit=limit,
            ascending=True,
        )
        records.extend(result.records)
    records.sort(key=lambda record: record.storage_id)
    return [
        FinishedRun(
            storage_id=record.storage_id,
            run_id=record.event_log_entry.run_id,
            job_name=record.event_log_entry.job_name or "",
            outcome=record.event_log_entry.dagster_event_type,
            entry=record.event_log_entry,
        )
        for record in records[:limit]
    ]


def runs_by_id(instance: DagsterInstance, run_ids: Sequence[str]) -> dict[str, DagsterRun]:
    if not run_ids:
        return {}
    return {run.run_id: run for run in instance.get_runs(RunsFilter(run_ids=list(run_ids)))}


def alerts_for_run(
    instance: DagsterInstance,
    cursor: AlertCursor,
    finished: FinishedRun,
    run: DagsterRun | None,
) -> Iterator[Alert]:
    """Advances the streaks with one finished run; yields the alerts of streaks it starts.

    Its check evaluations come first (in the order they were stored), then the run's outcome:
    a failure continues or starts its job's streak, a success ends it, a cancellation does neither.
    """
    job_name = finished.job_name or (run.job_name if run else "")
    for entry in instance.all_logs(finished.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
        if not isinstance(evaluation, AssetCheckEvaluation):
            continue
        asset_key = evaluation.asset_key.to_user_string()
        subject = check_subject(asset_key, evaluation.check_name, evaluation.partition)
        if evaluation.passed:
            cursor.record_success(subject)
            continue
        at = _iso(entry.timestamp)
        if cursor.record_failure(subject, finished.run_id, at):
            alert = _check_alert(subject, finished.run_id, job_name, evaluation, at)
            cursor.streaks[subject].alert_id = alert.alert_id
            yield alert

    subject = job_subject(_job_streak_name(job_name, run))
    if finished.outcome == DagsterEventType.RUN_SUCCESS:
        cursor.record_success(subject)
    elif finished.outcome == DagsterEventType.RUN_FAILURE:
        at = _iso(finished.entry.timestamp)
        if cursor.record_failure(subject, finished.run_id, at):
            alert = _run_alert(instance, subject, finished, job_name, run, at)
            cursor.streaks[subject].alert_id = alert.alert_id
            yield alert


def _job_streak_name(job_name: str, run: DagsterRun | None) -> str:
    if job_name.startswith(_IMPLICIT_ASSET_JOB_PREFIX) and run is not None and run.asset_selection:
        assets = ",".join(sorted(key.to_user_string() for key in run.asset_selection))
        return f"{job_name}[{assets}]"
    return job_name


def _check_alert(subject: str, run_id: str, job_name: str, evaluation: AssetCheckEvaluation, at: str) -> Alert:
    asset_key = evaluation.asset_key.to_user_string()
    severity = WARN if evaluation.severity.value == WARN else ERROR
    blocking = " (blocking: downstream assets were not materialized)" if evaluation.blocking and severity == ERROR else ""
    message = f"Asset check {evaluation.check_name} on {asset_key} failed{blocking} in run {run_id} of job {job_name}."
    if evaluation.partition is not None:
        message += f" Partition {evaluation.partition}."
    if evaluation.description:
        message += f" {evaluation.description}"
    # A check that knows what the operator should do says so (the source-defect checks: how many
    # rows, which share against which threshold, sample keys, how to list them).
    what_to_do = evaluation.metadata.get(WHAT_TO_DO)
    if what_to_do is not None:
        message += f" {getattr(what_to_do, 'value', what_to_do)}"
    return Alert(
        kind=CHECK_FAILED,
        severity=severity,
        subject=subject,
        run_id=run_id,
        job_name=job_name,
        message=message,
        timestamp=at,
        asset_key=asset_key,
        check_name=evaluation.check_name,
        details=metadata_to_json(evaluation.metadata),
        links={"run": f"/runs/{run_id}", "asset": f"/assets/{'/'.join(evaluation.asset_key.path)}?view=checks"},
    )


def _run_alert(
    instance: DagsterInstance,
    subject: str,
    finished: FinishedRun,
    job_name: str,
    run: DagsterRun | None,
    at: str,
) -> Alert:
    failed_steps = []
    error = None
    for entry in instance.all_logs(finished.run_id, of_type=DagsterEventType.STEP_FAILURE):
        failed_steps.append(entry.step_key or "")
        step_error = getattr(entry.dagster_event.event_specific_data, "error", None) if entry.dagster_event else None
        if error is None and step_error is not None:
            error = f"step {entry.step_key}: {_root_cause(step_error)}"
    # The RUN_FAILURE event's data (JobFailureData): a run-level error, e.g. a launch failure.
    failure = finished.entry.dagster_event.event_specific_data if finished.entry.dagster_event else None
    run_error = getattr(failure, "error", None)
    if error is None and run_error is not None:
        error = _root_cause(run_error)
    if error is None:
        error = finished.entry.message or "the run failed"
    error = error[:_MAX_ERROR_CHARS]
    details: dict[str, Any] = {"error": error, "failed_steps": failed_steps}
    failure_reason = getattr(failure, "failure_reason", None)
    if failure_reason is not None:
        details["failure_reason"] = getattr(failure_reason, "value", str(failure_reason))
    if run is not None and run.asset_selection:
        details["assets"] = sorted(key.to_user_string() for key in run.asset_selection)
    return Alert(
        kind=RUN_FAILED,
        severity=ERROR,
        subject=subject,
        run_id=finished.run_id,
        job_name=job_name,
        message=f"Run {finished.run_id} of job {job_name} failed: {_one_line(error)}",
        timestamp=at,
        details=details,
        links={"run": f"/runs/{finished.run_id}"},
    )


def _root_cause(error) -> str:
    """The innermost cause's message: the step error wraps what actually went wrong."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat()


def metadata_to_json(metadata: Mapping[str, MetadataValue]) -> dict[str, Any]:
    """Metadata values as plain JSON: numbers, text, JSON as is; tables as lists of rows."""
    out: dict[str, Any] = {}
    for label, value in metadata.items():
        if isinstance(value, TableMetadataValue):
            plain: Any = [dict(record.data) for record in value.records]
        else:
            plain = getattr(value, "value", value)
        try:
            json.dumps(plain)
        except (TypeError, ValueError):
            plain = str(plain)
        out[label] = plain
    return out
