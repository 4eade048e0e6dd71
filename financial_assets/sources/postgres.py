"""PostgreSQL connections (Amazon RDS in production, `scripts/services.sh` locally)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from financial_assets.settings import redact_url
from financial_assets.sources.errors import SourceUnavailableError

if TYPE_CHECKING:
    import psycopg2.extensions


@contextmanager
def connect_postgres(url: str, connect_timeout_s: int = 10) -> Iterator[psycopg2.extensions.connection]:
    """A connection that commits on success, rolls back on error and is always closed."""
    # Imported here: the driver loads with a connection, not with every module that names the sources.
    import psycopg2

    try:
        connection = psycopg2.connect(
            url, connect_timeout=connect_timeout_s, application_name="financial_assets"
        )
    except psycopg2.OperationalError as error:
        # psycopg2's message can span lines; the first one says what went wrong.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SourceUnavailableError(
            f"PostgreSQL at {redact_url(url)} is unreachable: {reason}"
        ) from None
    try:
        with connection:
            yield connection
    finally:
        connection.close()
