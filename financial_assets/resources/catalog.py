from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from financial_assets.lakehouse.catalog import LakehouseCatalog
from financial_assets.lakehouse.publication import Publication


class ReaderCatalogResource(ConfigurableResource):
    """The readers told about every publication, rollback and compaction: the local DuckDB file
    (one view per star table over the published snapshots' files). On AWS there is none to
    tell (``duckdb_path`` unset): Athena reads the Glue Data Catalog's Iceberg tables directly."""

    duckdb_path: str | None = Field(default=None, description="DuckDB database file with one view per table.")

    def refresh(self, catalog: LakehouseCatalog, publication: Publication) -> list[str]:
        """Bring every reader onto ``publication``; returns what was refreshed, for the log."""
        # The readers' code (DuckDB) is imported by the steps that tell them, not with the code location.
        from financial_assets.query.catalogs import refresh_readers

        return refresh_readers(catalog, publication, self.duckdb_path)

    def check(self, catalog: LakehouseCatalog) -> None:
        """Before committing a publication: refuses (LakehouseMismatchError) a DuckDB file that
        follows another lakehouse."""
        from financial_assets.query.catalogs import check_readers

        check_readers(catalog, self.duckdb_path)
