"""Which publication readers see, and the readers that must be told about a new one.

No Dagster and no Spark import.

- Readers follow the rows of ``analytics.star_schema_publications`` (see
  `financial_assets.lakehouse.publication`): the latest one now, or the one that was current at
  a time or for a version (``--as-of``).
- Locally, a DuckDB file (``FIN_DUCKDB_PATH``, which BI tools open) holds one view per star table
  over the latest publication's Parquet files and a ``_publication`` table (version,
  published_at, and the lakehouse it follows). :func:`refresh_readers` rewrites it in one DuckDB
  transaction after every publish, rollback and compaction; `financial-assets query` also brings
  it up to date whenever it lags behind the latest publication. A file that follows another
  lakehouse is refused (:class:`LakehouseMismatchError`), never re-pointed.
- On AWS nothing needs telling: Athena reads the Glue Data Catalog's Iceberg tables, whose
  ``main`` the publish moves.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from financial_assets.lakehouse.catalog import LakehouseCatalog
from financial_assets.lakehouse.publication import (
    Publication,
    builds,
    latest_publication,
    publication_as_of,
    publications,
)
from financial_assets.query.duckdb_views import ReaderError, create_views, require_readable, view_statements


class NoStarSchemaError(ReaderError):
    """No version of the star schema has been published yet."""


class LakehouseMismatchError(ReaderError):
    """The DuckDB file follows another lakehouse than the one asked for."""


def require_publication(catalog: LakehouseCatalog) -> Publication:
    """What readers see now; NoStarSchemaError when nothing was published yet."""
    publication = latest_publication(catalog)
    if publication is None:
        raise NoStarSchemaError(f"no star schema published in {catalog!r} yet: run `financial-assets materialize` first")
    return publication


def parse_instant(text: str) -> datetime | None:
    """An ISO-8601 date or timestamp as an aware datetime (a naive one is UTC); None if ``text`` is not one."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when


def resolve_as_of(catalog: LakehouseCatalog, as_of: str) -> Publication:
    """The publication ``--as-of`` names, still readable: a published version (its latest
    publication, as a rollback to it would use) or the one that was current at an ISO-8601 time.
    ReaderError, one line, for an unknown version, a time before the first publication, or
    snapshots that maintenance expired."""
    history = publications(catalog)
    if not history:
        raise NoStarSchemaError(f"no star schema published in {catalog!r} yet: run `financial-assets materialize` first")
    of_version = [p for p in history if p.version == as_of]
    if of_version:
        publication = of_version[-1]
    else:
        when = parse_instant(as_of)
        if when is None:
            if any(build.version == as_of for build in builds(catalog)):
                raise ReaderError(f"version {as_of} was built but never published")
            raise ReaderError(
                f"--as-of {as_of!r} is neither a published version nor an ISO-8601 timestamp "
                f"(latest published version: {history[-1].version})"
            )
        if when < history[0].published_at:
            first = history[0]
            raise ReaderError(
                f"nothing was published yet at {when.isoformat()}: the first publication is "
                f"{first.version} at {first.published_at.isoformat()}"
            )
        publication = publication_as_of(catalog, when)
    require_readable(catalog, publication)
    return publication


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _microseconds(when: datetime) -> int:
    aware = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return (aware - _EPOCH) // timedelta(microseconds=1)


class DuckDBFile:
    """The DuckDB database file BI tools open: one view per star table and ``_publication``."""

    def __init__(self, path: str):
        self.path = path

    def current(self) -> tuple[str, int] | None:
        """(version, published_at in µs since the epoch) the file's views follow; None if it has none."""
        import duckdb

        if not os.path.exists(self.path):
            return None
        with duckdb.connect(self.path, read_only=True) as connection:
            try:
                row = connection.execute("SELECT version, epoch_us(published_at) FROM _publication").fetchone()
            except duckdb.CatalogException:
                return None
        return (row[0], row[1]) if row else None

    def follows(self, publication: Publication) -> bool:
        return self.current() == (publication.version, _microseconds(publication.published_at))

    def require_lakehouse(self, catalog: LakehouseCatalog) -> None:
        """LakehouseMismatchError when the file's views follow another lakehouse than ``catalog``'s
        (a file without a record, or none yet, is free to follow it)."""
        import duckdb

        if not os.path.exists(self.path):
            return
        with duckdb.connect(self.path, read_only=True) as connection:
            self._require_lakehouse(connection, catalog)

    def _require_lakehouse(self, connection, catalog: LakehouseCatalog) -> None:
        import duckdb

        try:
            row = connection.execute("SELECT lakehouse FROM _publication").fetchone()
        except (duckdb.CatalogException, duckdb.BinderException):  # no views yet, or written before the record
            return
        if row and row[0] and row[0] != catalog.identity:
            raise LakehouseMismatchError(
                f"the DuckDB file {self.path} (FIN_DUCKDB_PATH) follows the lakehouse {row[0]}, not "
                f"{catalog.identity}: set FIN_DUCKDB_PATH to a file of this lakehouse's own, or delete that one"
            )

    def refresh(self, catalog: LakehouseCatalog, publication: Publication) -> None:
        """Views and ``_publication`` onto ``publication``, in one DuckDB transaction (files are
        planned before the file is opened, so its write lock is held for milliseconds).
        LakehouseMismatchError, and the file untouched, when it follows another lakehouse."""
        import duckdb

        statements = view_statements(catalog, publication.snapshots)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with duckdb.connect(self.path) as connection:
            # Checked outside the transaction (a failed probe would abort it), but on this
            # connection, whose write lock on the file keeps every other process out meanwhile.
            self._require_lakehouse(connection, catalog)
            connection.execute("BEGIN")
            create_views(connection, statements)
            connection.execute(
                "CREATE OR REPLACE TABLE _publication AS SELECT ?::VARCHAR AS version, "
                "?::TIMESTAMPTZ AS published_at, ?::VARCHAR AS lakehouse",
                [publication.version, publication.published_at, catalog.identity],
            )
            connection.execute("COMMIT")


def duckdb_reads(catalog: LakehouseCatalog) -> bool:
    """Whether the DuckDB file can follow ``catalog``: only a lakehouse of local files. DuckDB reads
    ``s3://`` only through its httpfs extension, downloaded from the network on first use and
    given the endpoint and credentials in every connection that opens the file."""
    return not catalog.warehouse.startswith("s3://")


def check_readers(catalog: LakehouseCatalog, duckdb_path: str | None) -> None:
    """Before a publish, rollback or compaction commits: LakehouseMismatchError when the DuckDB
    file follows another lakehouse, so that the refresh after the commit cannot be refused. A
    file locked by a writer is left to the refresh, which checks again."""
    import duckdb

    if not duckdb_path or not duckdb_reads(catalog):
        return
    try:
        DuckDBFile(duckdb_path).require_lakehouse(catalog)
    except duckdb.IOException:
        pass


def refresh_readers(catalog: LakehouseCatalog, publication: Publication, duckdb_path: str | None) -> list[str]:
    """Tell the readers that need it about ``publication`` (after a publish, rollback or
    compaction); returns one line per reader, for logs. Locally that is the DuckDB file; on AWS
    nothing (``duckdb_path`` None): Athena reads the Iceberg tables' ``main`` from the Glue Data Catalog.

    The publication row is the commit point and the file only follows it: while another process
    holds the file open (a BI tool: even a read-only one blocks a writer), the refresh is left to
    the next `financial-assets query`, and the line says so, instead of failing the caller.
    A lakehouse on object storage is left alone too (:func:`duckdb_reads`), and the line says why.
    """
    import duckdb

    if not duckdb_path:
        return []
    if not duckdb_reads(catalog):
        return [f"DuckDB file {duckdb_path} NOT refreshed: its views read local Parquet files, and the lakehouse "
                f"is on {catalog.warehouse} (query it with Spark, or with Athena on AWS)"]
    try:
        DuckDBFile(duckdb_path).refresh(catalog, publication)
    except duckdb.IOException as error:
        return [f"DuckDB file {duckdb_path} NOT refreshed ({str(error).splitlines()[0]}): the next `financial-assets query` refreshes it"]
    return [f"DuckDB file {duckdb_path}"]
