"""The Dagster code location: `dagster dev -m financial_assets.definitions`."""

import gc

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

# Everything loaded so far (Dagster, these definitions) lives as long as the process, so the cyclic
# garbage collector need not scan it again: it did at each full collection and at exit, about one
# CPU second of `dagster definitions validate` (measured with bench/startup.py). Collected first, so
# that a process which imports this late (a test session) does not keep its garbage for good.
gc.collect()
gc.freeze()
