"""Jobs a user launches by hand, and the daily schedule (stopped until someone turns it on)."""

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job

full_pipeline_job = define_asset_job(
    "full_pipeline",
    selection=AssetSelection.all(),
    description="Extract every source, build and audit the star schema, publish it if it passed.",
)

extract_sources_job = define_asset_job(
    "extract_sources",
    selection=AssetSelection.groups("raw"),
    description="Extract every source table into the raw zone (with its reconciliation checks).",
)

rebuild_and_publish_job = define_asset_job(
    "rebuild_and_publish",
    selection=AssetSelection.groups("analytics"),
    description="Build, audit and publish the star schema from the raw zone as it is now.",
)

# Stopped by default: turn it on in the UI (Automation → daily_full_pipeline) or with
# `dagster schedule start daily_full_pipeline -w workspace.yaml`, with the daemon running.
daily_full_pipeline = ScheduleDefinition(
    name="daily_full_pipeline",
    job=full_pipeline_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every day at 03:00 UTC: the full pipeline, from extraction to publish.",
)

JOBS = [full_pipeline_job, extract_sources_job, rebuild_and_publish_job]
SCHEDULES = [daily_full_pipeline]
