"""Jobs a user launches by hand, and the daily schedules (stopped until someone turns them on)."""

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job

from financial_assets.maintenance.assets import lakehouse_maintenance

MAINTENANCE = AssetSelection.groups("maintenance")

full_pipeline_job = define_asset_job(
    "full_pipeline",
    selection=AssetSelection.all() - MAINTENANCE,
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

lakehouse_maintenance_job = define_asset_job(
    "maintain_lakehouse",
    selection=AssetSelection.assets(lakehouse_maintenance),
    description="Compact fact_transactions, drop stale rollback tags and audit branches, expire old "
    "snapshots and delete the files nothing needs (run config: retention_days, keep, compact).",
)

# Stopped by default, like daily_full_pipeline, and two hours after it. Overlapping a build is safe: compaction
# only rewrites the published snapshot and publishes nothing if a publish came meanwhile; branch heads never expire.
daily_lakehouse_maintenance = ScheduleDefinition(
    name="daily_lakehouse_maintenance",
    job=lakehouse_maintenance_job,
    cron_schedule="0 5 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every day at 05:00 UTC: lakehouse maintenance with its default configuration "
    "(7 days of snapshots, 5 versions for rollback, compaction).",
)

JOBS = [full_pipeline_job, extract_sources_job, rebuild_and_publish_job, lakehouse_maintenance_job]
SCHEDULES = [daily_full_pipeline, daily_lakehouse_maintenance]
