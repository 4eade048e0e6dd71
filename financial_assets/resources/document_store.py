from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

from financial_assets.settings import DEFAULT_MONGO_DATABASE, redact_url
from financial_assets.sources import connect_document_store
from financial_assets.sources.secrets import source_url_from_secret

if TYPE_CHECKING:
    import pymongo.database


class DocumentStoreResource(ConfigurableResource):
    """The MongoDB-compatible document store: AWS DocumentDB in production, FerretDB locally.

    Holds the `transaction_events` collection. URL from FIN_MONGO_URL, database from
    FIN_MONGO_DATABASE; the password never reaches logs or metadata.
    """

    url: str | None = Field(default=None, description="mongodb://[user:password@]host[:port]/")
    secret_id: str | None = Field(
        default=None, description="Secrets Manager secret with `mongo_url` (AWS deployments)."
    )
    database: str = Field(default=DEFAULT_MONGO_DATABASE, description="Database holding transaction_events.")
    timeout_s: float = Field(default=10.0, description="Seconds to wait for the server.")

    def resolved_url(self) -> str:
        return self.url or source_url_from_secret(self.secret_id, "mongo_url")

    def connect(self) -> AbstractContextManager[pymongo.database.Database]:
        return connect_document_store(self.resolved_url(), self.database, self.timeout_s)

    @property
    def display_url(self) -> str:
        return redact_url(self.url) if self.url else f"(secret {self.secret_id})"
