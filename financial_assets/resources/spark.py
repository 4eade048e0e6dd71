from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

from financial_assets.settings import DEFAULT_SPARK_MASTER
from financial_assets.transform.session import spark_session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class SparkResource(ConfigurableResource):
    """Spark, started only when an asset asks for it: one session (one JVM) per process.

    Local by default (`local[*]`); point `master` at a cluster or `remote` at a Spark Connect
    server (FIN_SPARK_MASTER / FIN_SPARK_REMOTE) to grow beyond one machine without code changes.
    Neither this resource nor the code location imports PySpark until `session()` is called.
    """

    master: str = Field(default=DEFAULT_SPARK_MASTER, description="spark.master, e.g. local[*] or spark://host:7077")
    remote: str | None = Field(default=None, description="Spark Connect URL, e.g. sc://host:15002")
    config: dict[str, str] = Field(default_factory=dict, description="Extra Spark settings.")

    def session(self) -> SparkSession:
        return spark_session(self.master, self.remote, self.config)
