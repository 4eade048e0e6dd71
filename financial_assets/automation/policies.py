"""When assets run, how fresh the published star schema must be, and which assets may not run at
once. Declared here, attached by each asset's definition; the one switch that starts the
automation is `automation_sensor` (`financial_assets.automation.jobs`), stopped by default."""

from __future__ import annotations

from datetime import timedelta

from dagster import AssetKey, AssetSelection, AutomationCondition, FreshnessPolicy

# Every day at 03:00 UTC: extract, build, audit, publish, requested together at the tick.
DAILY_PIPELINE_CRON = "0 3 * * *"
# Two hours later: maintenance. A build running late cannot write alongside it (the pool below).
DAILY_MAINTENANCE_CRON = "0 5 * * *"
# The sources are observed every hour, so the UI shows how fresh they are through the day; at half
# past, so that no observation shares a run with the daily extraction (in one run, a failed
# observation would skip the loads, which retry an unreachable source on their own).
SOURCE_OBSERVATION_CRON = "30 * * * *"

# Every step that writes the lakehouse's tables claims one slot of this pool; the instance gives
# it one slot (`concurrency: pools: default_limit: 1` in dagster.yaml), so a run started from the
# CLI and one started from the UI or by the automation never write the same tables at once.
LAKEHOUSE_WRITERS = "lakehouse_writers"


def observe_sources() -> AutomationCondition:
    return AutomationCondition.on_cron(SOURCE_OBSERVATION_CRON)


def daily_extraction(source: AssetKey) -> AutomationCondition:
    """At the daily tick, whether or not the source's observation changed: the sources keep no
    modification time, so an update in place changes neither row count nor newest value."""
    return AutomationCondition.on_cron(DAILY_PIPELINE_CRON).ignore(AssetSelection.assets(source))


def daily_after_upstream() -> AutomationCondition:
    """At the daily tick, once every upstream asset updated since it (or is requested with it):
    the star schema after the raw zone, the publish after a build that passed its blocking checks."""
    return AutomationCondition.on_cron(DAILY_PIPELINE_CRON)


def daily_maintenance(published: AssetKey) -> AutomationCondition:
    """At its tick, whatever was published since: maintenance keeps history bounded either way."""
    return AutomationCondition.on_cron(DAILY_MAINTENANCE_CRON).ignore(AssetSelection.assets(published))


# Readers must have the day's star schema by 06:00 UTC, published after the 03:00 tick.
PUBLISHED_FRESHNESS = FreshnessPolicy.cron(deadline_cron="0 6 * * *", lower_bound_delta=timedelta(hours=3))
