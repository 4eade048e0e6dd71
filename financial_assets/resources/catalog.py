from __future__ import annotations

import boto3
from dagster import ConfigurableResource
from pydantic import Field

from financial_assets.lakehouse.publication import Publication
from financial_assets.query.catalogs import DuckDBCatalog, GlueCatalog


class ReaderCatalogResource(ConfigurableResource):
    """Where readers find the published star schema: a DuckDB file on a laptop, the Glue Data
    Catalog (for Athena) on AWS. Told every new publication; no crawler involved."""

    duckdb_path: str | None = Field(default=None, description="DuckDB database file with one view per table.")
    glue_database: str | None = Field(default=None, description="Glue Data Catalog database for Athena.")
    region: str | None = Field(default=None, description="AWS region of the Glue catalog.")

    def catalogs(self) -> list:
        catalogs: list = []
        if self.duckdb_path:
            catalogs.append(DuckDBCatalog(self.duckdb_path))
        if self.glue_database:
            catalogs.append(GlueCatalog(boto3.client("glue", region_name=self.region), self.glue_database))
        return catalogs

    def publish(self, publication: Publication) -> list[str]:
        """Point every catalog at ``publication``; returns what was updated, for the log."""
        catalogs = self.catalogs()
        for catalog in catalogs:
            catalog.publish(publication)
        return [type(catalog).__name__ for catalog in catalogs]
