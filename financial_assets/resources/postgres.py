from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

from financial_assets.settings import redact_url
from financial_assets.sources import connect_postgres
from financial_assets.sources.secrets import source_url_from_secret

if TYPE_CHECKING:
    import psycopg2.extensions


class PostgresResource(ConfigurableResource):
    """The bank's operational PostgreSQL database (Amazon RDS in production).

    Holds `customers`, `accounts` and `transactions`. The URL comes from FIN_POSTGRES_URL;
    its password never reaches logs or metadata.
    """

    url: str | None = Field(default=None, description="postgresql://user[:password]@host[:port]/database")
    secret_id: str | None = Field(
        default=None, description="Secrets Manager secret with `postgres_url` (AWS deployments)."
    )
    connect_timeout_s: int = Field(default=10, description="Seconds to wait for a connection.")

    def resolved_url(self) -> str:
        return self.url or source_url_from_secret(self.secret_id, "postgres_url")

    def connect(self) -> AbstractContextManager[psycopg2.extensions.connection]:
        return connect_postgres(self.resolved_url(), self.connect_timeout_s)

    @property
    def display_url(self) -> str:
        return redact_url(self.url) if self.url else f"(secret {self.secret_id})"
