"""What a source holds now, in one cheap look: its row count and its newest value.

What the source assets' observations record (`financial_assets/source_assets`), so the UI
shows how fresh each source is before anything is extracted. No Dagster import; the source
drivers and the loads are imported when an observation runs, not when the code location loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from financial_assets.extract.contracts import TableContract

if TYPE_CHECKING:
    from pymongo.collection import Collection


@dataclass(frozen=True)
class SourceObservation:
    rows: int
    newest_column: str
    # The greatest value of newest_column: a UTC time, or an id for a table without a time.
    newest: datetime | int | None

    @property
    def data_version(self) -> str:
        """Changes whenever rows are added (or removed); an update in place may leave it as it
        was, since the sources record no modification time."""
        newest = self.newest.isoformat() if isinstance(self.newest, datetime) else self.newest
        return f"{self.rows} rows, {self.newest_column} {newest}"


def observe_table(connection, contract: TableContract) -> SourceObservation:
    """One pass over the table for both numbers (the sources have no index beyond their primary
    keys, so a `max` of a time column is a scan anyway; `count(*)` shares it)."""
    from psycopg2 import sql

    query = sql.SQL("SELECT count(*), max({}) FROM {}").format(
        sql.Identifier(contract.newest_column), sql.Identifier(contract.table)
    )
    with connection.cursor() as cursor:
        cursor.execute(query)
        rows, newest = cursor.fetchone()
    if newest is not None and contract.column_types[contract.newest_column] == "UTC_TIMESTAMP":
        newest = newest.replace(tzinfo=timezone.utc)  # TIMESTAMP without zone, written in UTC
    return SourceObservation(rows=rows, newest_column=contract.newest_column, newest=newest)


def observe_collection(collection: Collection) -> SourceObservation:
    """The collection's size from its statistics, and the time in its greatest `_id` (an
    ObjectId starts with the second it was made): one step down the `_id` index."""
    from financial_assets.extract.loads import collection_size

    newest = collection.find_one({}, projection={"_id": 1}, sort=[("_id", -1)])
    return SourceObservation(
        rows=collection_size(collection),
        newest_column="_id",
        newest=newest["_id"].generation_time if newest else None,
    )
