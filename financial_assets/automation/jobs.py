"""Jobs a user launches by hand, and the automation sensor that runs the assets' automation
conditions (`financial_assets.automation.policies`), stopped until someone turns it on."""

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus, define_asset_job

from financial_assets.source_assets import SOURCE_KEYS

MAINTENANCE = AssetSelection.groups("maintenance")

full_pipeline_job = define_asset_job(
    "full_pipeline",
    selection=AssetSelection.all() - MAINTENANCE,
    description="Extract every source, build and audit the star schema, publish it if it passed.",
)

observe_sources_job = define_asset_job(
    "observe_sources",
    selection=AssetSelection.assets(*SOURCE_KEYS.values()),
    description="Record each source's row count and newest value (what the UI's source freshness shows).",
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

lakehouse_maintenance_job = define_asset_job(
    "maintain_lakehouse",
    selection=MAINTENANCE,
    description="Compact fact_transactions, drop stale rollback tags and audit branches, expire old "
    "snapshots and delete the files nothing needs (run config: retention_days, keep, compact).",
)

# Stopped by default: turn it on in the UI (Automation → automation) or with
# `dagster sensor start automation -w workspace.yaml`, with the daemon running. Then the sources
# are observed hourly (at half past), the pipeline runs daily at 03:00 UTC and maintenance at
# 05:00 UTC.
automation_sensor = AutomationConditionSensorDefinition(
    "automation",
    # Every asset; the observed sources by name, since a selection of "all" leaves them out.
    target=AssetSelection.all() | AssetSelection.assets(*SOURCE_KEYS.values()),
    default_status=DefaultSensorStatus.STOPPED,
    description="Runs every asset's automation condition: sources observed hourly at half past; "
    "extraction, build, audit and publish daily at 03:00 UTC; lakehouse maintenance daily at 05:00 UTC.",
)

JOBS = [full_pipeline_job, observe_sources_job, extract_sources_job, rebuild_and_publish_job, lakehouse_maintenance_job]
