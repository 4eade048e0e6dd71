"""Document-store connections: DocumentDB in production, FerretDB or MongoDB locally."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from financial_assets.settings import redact_url
from financial_assets.sources.errors import SourceUnavailableError

if TYPE_CHECKING:
    import pymongo.database


@contextmanager
def connect_document_store(
    url: str, database: str, timeout_s: float = 10.0
) -> Iterator[pymongo.database.Database]:
    """The named database, after a ping proves the server answers; the client is always closed."""
    # Imported here: the driver loads with a connection, not with every module that names the sources.
    import pymongo
    import pymongo.errors

    client: pymongo.MongoClient = pymongo.MongoClient(
        url,
        serverSelectionTimeoutMS=int(timeout_s * 1000),
        connectTimeoutMS=int(timeout_s * 1000),
        appname="financial_assets",
        # DocumentDB does not support retryable writes.
        retryWrites=False,
    )
    try:
        try:
            client.admin.command("ping")
        except pymongo.errors.PyMongoError as error:
            reason = str(error).split(",")[0]
            raise SourceUnavailableError(
                f"document store at {redact_url(url)} is unreachable: {reason}"
            ) from None
        yield client[database]
    finally:
        client.close()
