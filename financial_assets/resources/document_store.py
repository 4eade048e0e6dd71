from __future__ import annotations

from contextlib import AbstractContextManager

import pymongo.database
from dagster import ConfigurableResource
from pydantic import Field

from financial_assets.settings import redact_url
from financial_assets.sources import connect_document_store


class DocumentStoreResource(ConfigurableResource):
    """The MongoDB-compatible document store: AWS DocumentDB in production, FerretDB locally.

    Holds the `transaction_events` collection. URL from FIN_MONGO_URL, database from
    FIN_MONGO_DATABASE; the password never reaches logs or metadata.
    """

    url: str = Field(description="mongodb://[user:password@]host[:port]/")
    database: str = Field(default="financialdb", description="Database holding transaction_events.")
    timeout_s: float = Field(default=10.0, description="Seconds to wait for the server.")

    def connect(self) -> AbstractContextManager[pymongo.database.Database]:
        return connect_document_store(self.url, self.database, self.timeout_s)

    @property
    def display_url(self) -> str:
        return redact_url(self.url)
