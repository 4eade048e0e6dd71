from __future__ import annotations

from contextlib import AbstractContextManager

import psycopg2.extensions
from dagster import ConfigurableResource
from pydantic import Field

from financial_assets.settings import redact_url
from financial_assets.sources import connect_postgres


class PostgresResource(ConfigurableResource):
    """The bank's operational PostgreSQL database (Amazon RDS in production).

    Holds `customers`, `accounts` and `transactions`. The URL comes from FIN_POSTGRES_URL;
    its password never reaches logs or metadata.
    """

    url: str = Field(description="postgresql://user[:password]@host[:port]/database")
    connect_timeout_s: int = Field(default=10, description="Seconds to wait for a connection.")

    def connect(self) -> AbstractContextManager[psycopg2.extensions.connection]:
        return connect_postgres(self.url, self.connect_timeout_s)

    @property
    def display_url(self) -> str:
        return redact_url(self.url)
