"""`quality_alerts_sensor`: one alert per failure streak of an asset check or a job.

Each tick reads the runs that finished since the cursor (at most `max_runs_per_tick`, oldest
first), takes each one's asset check evaluations and then its outcome, and advances the streaks
(see `streaks.py`). The cursor (JSON) holds the storage id read up to and the open streaks, and is
the sensor's only state: a daemon that restarts carries on from it, neither re-sending what it
sent nor skipping what happened while it was down.

Delivery is at least once: alerts go out during the tick and the cursor is saved when it ends, so
a daemon killed in between re-sends that tick's alerts, with the same `alert_id`.

The first tick (no cursor) starts at the newest finished run without alerting: a new
deployment does not replay the whole history. Check evaluations are read when their run
finishes; evaluations reported outside a run (runless) are not seen.

Running by default: it only reads the instance and launches nothing, and alerts that someone
has to remember to turn on are the silent failure this exists to prevent.
"""

from __future__ import annotations

from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, sensor

from financial_assets.alerts.resource import AlertsResource
from financial_assets.alerts.streaks import AlertCursor
from financial_assets.alerts.watch import (
    alerts_for_run,
    finished_runs_after,
    latest_finished_run_storage_id,
    runs_by_id,
)

MAX_RUNS_PER_TICK = 25


def build_quality_alerts_sensor(
    name: str = "quality_alerts_sensor",
    *,
    max_runs_per_tick: int = MAX_RUNS_PER_TICK,
    minimum_interval_seconds: int = 30,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
):
    @sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            "Alerts (alert log, Dagster log, webhook, Slack) on failed asset checks, of any "
            "severity, and on failed runs: once per failure streak."
        ),
    )
    def _quality_alerts_sensor(context: SensorEvaluationContext, alerts: AlertsResource) -> SensorResult:
        cursor = AlertCursor.from_json(context.cursor)
        instance = context.instance
        if cursor.after_storage_id is None:
            cursor.after_storage_id = latest_finished_run_storage_id(instance)
            return SensorResult(
                skip_reason=f"Started; watching runs that finish after event {cursor.after_storage_id}.",
                cursor=cursor.to_json(),
            )

        finished_runs = finished_runs_after(instance, cursor.after_storage_id, max_runs_per_tick)
        runs = runs_by_id(instance, [finished.run_id for finished in finished_runs])
        sent = failed = 0
        for finished in finished_runs:
            for alert in alerts_for_run(instance, cursor, finished, runs.get(finished.run_id)):
                delivery = alerts.send(alert, context.log)
                sent += 1
                failed += bool(delivery.failed)
            cursor.after_storage_id = finished.storage_id

        more = " (more to read next tick)" if len(finished_runs) == max_runs_per_tick else ""
        summary = (
            f"Read {len(finished_runs)} finished runs{more}; {sent} alerts"
            f"{f', {failed} not delivered everywhere' if failed else ''}; "
            f"{len(cursor.streaks)} failure streaks open."
        )
        return SensorResult(skip_reason=summary, cursor=cursor.to_json())

    return _quality_alerts_sensor


quality_alerts_sensor = build_quality_alerts_sensor()
