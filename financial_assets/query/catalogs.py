"""Readers' catalogs that follow each publish: a DuckDB database file, or the AWS Glue Data Catalog.

No Dagster import. Both are told the new publication after the pointer moved, and point their
tables at its version; no crawler is involved. Column types come from the published contract
(`quality/star_checks.EXPECTED_SCHEMAS`), which the build's `schema_matches_contract` check
has just verified against the written files.
"""

from __future__ import annotations

import os

import duckdb

from financial_assets.lakehouse.publication import Publication
from financial_assets.quality.star_checks import EXPECTED_SCHEMAS
from financial_assets.query.duckdb_views import view_statements

PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


def contract_columns(table: str) -> list[tuple[str, str]]:
    """(name, type) of a published table; the types are valid Hive/Athena types as written."""
    return list(EXPECTED_SCHEMAS[table])


class DuckDBCatalog:
    """A DuckDB file (BI tools open it too) whose views read the published version's files."""

    def __init__(self, path: str):
        self.path = path

    def publish(self, publication: Publication) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with duckdb.connect(self.path) as connection:
            connection.execute("BEGIN")
            for statement in view_statements(publication.tables):
                connection.execute(statement)
            connection.execute(
                "CREATE OR REPLACE TABLE _publication AS SELECT ? AS version, ? AS published_at",
                [publication.version, publication.published_at],
            )
            connection.execute("COMMIT")


class GlueCatalog:
    """The Glue Data Catalog database Athena reads: one external Parquet table per star table."""

    def __init__(self, glue_client, database: str):
        self.glue = glue_client
        self.database = database

    def table_input(self, table: str, location: str, version: str) -> dict:
        return {
            "Name": table,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE", "financial_assets.version": version},
            "StorageDescriptor": {
                "Columns": [{"Name": name, "Type": type_} for name, type_ in contract_columns(table)],
                "Location": location.rstrip("/") + "/",
                "InputFormat": PARQUET_INPUT,
                "OutputFormat": PARQUET_OUTPUT,
                "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE, "Parameters": {"serialization.format": "1"}},
            },
        }

    def _ensure_database(self) -> None:
        try:
            self.glue.get_database(Name=self.database)
        except self.glue.exceptions.EntityNotFoundException:
            self.glue.create_database(DatabaseInput={
                "Name": self.database,
                "Description": "The financial_assets star schema, as published (managed by financial_assets).",
            })

    def publish(self, publication: Publication) -> None:
        self._ensure_database()
        for table, location in sorted(publication.tables.items()):
            table_input = self.table_input(table, location, publication.version)
            try:
                self.glue.update_table(DatabaseName=self.database, TableInput=table_input)
            except self.glue.exceptions.EntityNotFoundException:
                self.glue.create_table(DatabaseName=self.database, TableInput=table_input)
