"""DuckDB views over one version of the star schema. No Dagster import.

The analyst's query from the original pipeline's README, unchanged, runs against these views.
"""

from __future__ import annotations

import duckdb

from financial_assets.lakehouse.publication import Publication, published
from financial_assets.lakehouse.storage import LakehouseStorage
from financial_assets.transform.build import version_path
from financial_assets.transform.star_schema import TABLES

ANALYST_QUERY = """\
SELECT c.name, c.email, SUM(f.amount) AS total_transaction_amount
FROM fact_transactions AS f
JOIN dim_customers AS c ON f.customer_key = c.customer_key
GROUP BY c.name, c.email
ORDER BY total_transaction_amount DESC"""


class NoStarSchemaError(LookupError):
    """No version of the star schema has been published yet."""


def require_publication(storage: LakehouseStorage) -> Publication:
    """What readers see now; NoStarSchemaError when nothing was published yet."""
    publication = published(storage)
    if publication is None:
        raise NoStarSchemaError(
            f"no star schema published in {storage.uri} yet: run `financial-assets materialize` first"
        )
    return publication


def published_version(storage: LakehouseStorage) -> str:
    return require_publication(storage).version


def view_statements(tables: dict[str, str]) -> list[str]:
    """One view per table over the Parquet files at its location."""
    return [
        f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{location}/*.parquet')"
        for table, location in sorted(tables.items())
    ]


def connect(storage: LakehouseStorage, version: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per star-schema table of ``version``."""
    connection = duckdb.connect()
    for statement in view_statements({t: storage.uri_of(version_path(version, t)) for t in TABLES}):
        connection.execute(statement)
    return connection
