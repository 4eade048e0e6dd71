"""The Dagster code location: `dagster dev -m financial_assets.definitions`."""

from dagster import Definitions, in_process_executor

from financial_assets.alerts import quality_alerts_sensor
from financial_assets.analytics import ANALYTICS_ASSETS
from financial_assets.automation.jobs import JOBS, automation_sensor
from financial_assets.maintenance.assets import MAINTENANCE_ASSETS
from financial_assets.raw import RAW_ASSETS
from financial_assets.resources import deployment_resources
from financial_assets.settings import Settings
from financial_assets.source_assets import SOURCE_ASSETS

settings = Settings.from_env()

defs = Definitions(
    assets=[*SOURCE_ASSETS, *RAW_ASSETS, *ANALYTICS_ASSETS, *MAINTENANCE_ASSETS],
    jobs=JOBS,
    sensors=[automation_sensor, quality_alerts_sensor],
    resources=deployment_resources(settings),
    # One process per run: a step per process would start a JVM per Spark step on 2 cores.
    executor=in_process_executor,
)
