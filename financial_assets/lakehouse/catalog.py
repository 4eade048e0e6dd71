"""The one Iceberg catalog every table lives in, as PyIceberg and Spark both open it.

No Dagster and no Spark import: the raw zone (PyIceberg, no JVM), the star-schema build (Spark,
locally or in AWS Glue), the readers (DuckDB through PyIceberg's file planning) and the
maintenance job all start from a :class:`LakehouseCatalog`.

Two kinds, picked by one setting (``FIN_CATALOG_URL``, see `financial_assets.settings`):

- ``sql``: Iceberg's SQL/JDBC catalog in a PostgreSQL database (locally the server that
  `scripts/services.sh` runs). PyIceberg's ``SqlCatalog`` and Spark's ``JdbcCatalog`` share the
  same catalog tables, so a table one writes the other reads, with no migration.
- ``glue``: the AWS Glue Data Catalog, where Athena finds the same tables.

The catalog's ``name`` is also Spark's catalog name and, for the SQL kind, the ``catalog_name``
its rows carry, so several lakehouses can share one catalog database without seeing each other.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

# Maven coordinates of what Spark needs for this catalog: AWS Glue 6.0 runs Spark 4.1 (Scala
# 2.13) with Iceberg 1.11.0. Glue brings its own copies; locally Ivy fetches these once.
ICEBERG_VERSION = "1.11.0"
ICEBERG_SPARK_RUNTIME = f"org.apache.iceberg:iceberg-spark-runtime-4.1_2.13:{ICEBERG_VERSION}"
ICEBERG_AWS_BUNDLE = f"org.apache.iceberg:iceberg-aws-bundle:{ICEBERG_VERSION}"
POSTGRES_JDBC = "org.postgresql:postgresql:42.7.8"
ICEBERG_EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"

DEFAULT_CATALOG_NAME = "financial_assets"  # FIN_CATALOG_NAME

# Athena reads format version 2 only: every table is created with it, and never upgraded.
TABLE_PROPERTIES = {
    "format-version": "2",
    # Each commit writes a new metadata.json: keep the last 20, delete older ones as we commit.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
}


class CatalogUnavailableError(RuntimeError):
    """The catalog cannot be reached or opened; the message says which and why."""


@dataclass(frozen=True)
class LakehouseCatalog:
    """Where the lakehouse's tables are registered (the catalog) and stored (the warehouse)."""

    warehouse: str  # file:///absolute/path or s3://bucket/prefix
    sql_url: str | None = None  # postgresql://user[:password]@host[:port]/database; None: AWS Glue
    name: str = DEFAULT_CATALOG_NAME
    raw_namespace: str = "raw"
    analytics_namespace: str = "analytics"
    s3_endpoint_url: str | None = None  # MinIO, moto: an S3 other than AWS's
    region: str | None = None

    @property
    def kind(self) -> str:
        return "sql" if self.sql_url else "glue"

    @property
    def identity(self) -> str:
        """Which lakehouse this is, for a reader that must not mix two up (the DuckDB file): the
        warehouse, the catalog's name and where the catalog is, without user or password (the
        same catalog reached as another user is the same lakehouse)."""
        if self.sql_url:
            parts = urlsplit(self.sql_url)
            host = parts.hostname or ""
            where = f"postgresql://{host}:{parts.port or 5432}{parts.path}"
        else:
            where = "the AWS Glue Data Catalog"
        return f"{self.warehouse} (catalog {self.name} in {where})"

    def __repr__(self) -> str:  # never the catalog database's password
        where = _redacted(self.sql_url) if self.sql_url else "AWS Glue Data Catalog"
        return f"LakehouseCatalog({self.name!r}, {where}, warehouse={self.warehouse!r})"

    # -- identifiers ---------------------------------------------------------------------------

    def raw_table(self, name: str) -> str:
        """``raw.transactions``: a raw-zone table's identifier in this catalog."""
        return f"{self.raw_namespace}.{name}"

    def analytics_table(self, name: str) -> str:
        """``analytics.fact_transactions``: an analytics-zone table's identifier."""
        return f"{self.analytics_namespace}.{name}"

    def spark_table(self, identifier: str, branch: str | None = None) -> str:
        """The name Spark SQL and DataFrame readers/writers take, on a branch when given."""
        name = f"{self.name}.{identifier}"
        return f"{name}.branch_{branch}" if branch else name

    # -- PyIceberg -----------------------------------------------------------------------------

    def properties(self) -> dict[str, str]:
        """The PyIceberg catalog properties."""
        properties = {"warehouse": self.warehouse}
        if self.sql_url:
            properties.update(type="sql", uri=_sqlalchemy_url(self.sql_url))
        else:
            properties.update(type="glue")
            if self.region:
                properties["glue.region"] = self.region
            if self.s3_endpoint_url:  # a stand-in AWS (moto) serves Glue where it serves S3
                properties["glue.endpoint"] = self.s3_endpoint_url
        if self.region:
            properties["s3.region"] = self.region
        if self.s3_endpoint_url:
            properties.update({"s3.endpoint": self.s3_endpoint_url, "s3.force-virtual-addressing": "false"})
        return properties

    def load(self):
        """The PyIceberg catalog (one per process and setting: it holds a connection pool)."""
        with _OPENING:  # a build's threads may ask at once
            if self not in _OPEN:
                _OPEN[self] = _load_catalog(self)
            return _OPEN[self]

    def close(self) -> None:
        """Release the PyIceberg catalog's database connections (a later `load` reopens)."""
        loaded = _OPEN.pop(self, None)
        if loaded is not None and hasattr(loaded, "close"):
            loaded.close()

    # -- Spark ---------------------------------------------------------------------------------

    def spark_conf(self) -> dict[str, str]:
        """Settings that register this catalog in a Spark session under ``name``.

        They may be set at any time (``spark.conf.set``): Spark instantiates a catalog on its
        first use. The Iceberg runtime and SQL extensions must be on the session from its start.
        """
        prefix = f"spark.sql.catalog.{self.name}"
        conf = {
            prefix: "org.apache.iceberg.spark.SparkCatalog",
            f"{prefix}.warehouse": self.warehouse,
            # PyIceberg moves refs behind Spark's back (publish, rollback): never serve a stale table.
            f"{prefix}.cache-enabled": "false",
        }
        if self.sql_url:
            parts = urlsplit(self.sql_url)
            conf.update({
                f"{prefix}.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
                f"{prefix}.uri": f"jdbc:postgresql://{parts.hostname}:{parts.port or 5432}{parts.path}",
                f"{prefix}.jdbc.user": unquote(parts.username or ""),
                # The driver commits one thing at a time: one connection, not a pool per catalog.
                f"{prefix}.clients": "1",
            })
            if parts.password:
                conf[f"{prefix}.jdbc.password"] = unquote(parts.password)
        else:
            conf[f"{prefix}.catalog-impl"] = "org.apache.iceberg.aws.glue.GlueCatalog"
            if self.s3_endpoint_url:
                conf[f"{prefix}.glue.endpoint"] = self.s3_endpoint_url
        if self.warehouse.startswith("s3://"):
            conf[f"{prefix}.io-impl"] = "org.apache.iceberg.aws.s3.S3FileIO"
            if self.s3_endpoint_url:
                conf.update({f"{prefix}.s3.endpoint": self.s3_endpoint_url, f"{prefix}.s3.path-style-access": "true"})
            if self.region:
                conf[f"{prefix}.client.region"] = self.region
        return conf


def _sqlalchemy_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg2://{rest}" if scheme in ("postgresql", "postgres") else url


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


_OPEN: dict[LakehouseCatalog, object] = {}
_OPENING = threading.Lock()


def _load_catalog(catalog: LakehouseCatalog):
    from pyiceberg.catalog import load_catalog

    if catalog.sql_url:  # SQLAlchemy only for the SQL kind: a Glue job may not have it
        from sqlalchemy.exc import OperationalError
    else:
        OperationalError = ()  # noqa: N806 - nothing to catch
    try:
        loaded = load_catalog(catalog.name, **catalog.properties())
    except OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise CatalogUnavailableError(
            f"the Iceberg catalog database {_redacted(catalog.sql_url)} cannot be opened: {reason} "
            "(scripts/services.sh creates the local one; create yours, or set FIN_CATALOG_URL)"
        ) from error
    for namespace in (catalog.raw_namespace, catalog.analytics_namespace):
        # Asked first: creating, even one that exists, needs a permission (glue:CreateDatabase)
        # that a deployment whose infrastructure made the namespaces need not grant.
        if not loaded.namespace_exists(namespace):
            loaded.create_namespace_if_not_exists(namespace)
    return loaded


# -- the catalog as AWS Glue job arguments -----------------------------------------------------

# What a Glue job run needs to open the same catalog: each field as one ``--catalog-*`` argument.
_JOB_ARGUMENTS = {
    "warehouse": "--catalog-warehouse",
    "name": "--catalog-name",
    "raw_namespace": "--catalog-raw-namespace",
    "analytics_namespace": "--catalog-analytics-namespace",
    "region": "--catalog-region",
    "s3_endpoint_url": "--catalog-s3-endpoint-url",  # a stand-in S3 and Glue (moto), never on AWS
    "sql_url": "--catalog-sql-url",  # a SQL catalog: for a stand-in Glue run on this machine only
}


def glue_job_arguments(catalog: LakehouseCatalog) -> dict[str, str]:
    """The catalog as Glue job arguments (``{"--catalog-name": ..., ...}``), read back by
    :func:`catalog_from_job_arguments`. Unset fields are left out.

    Glue shows job arguments in its console and API: a SQL catalog URL holding a password is refused.
    """
    if catalog.sql_url and urlsplit(catalog.sql_url).password is not None:
        raise ValueError(
            f"{catalog!r}: a catalog URL with a password cannot be a Glue job argument (the console shows them)"
        )
    return {argument: getattr(catalog, field) for field, argument in _JOB_ARGUMENTS.items() if getattr(catalog, field)}


def catalog_from_job_arguments(argv: list[str]) -> LakehouseCatalog:
    """The catalog named by the ``--catalog-*`` arguments among a job's ``--name value`` pairs
    (others, Glue's and the job's own, are ignored). Raises ValueError naming a missing or
    repeated-without-value argument."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message):  # raise instead of exiting: the job reports it like any failure
            raise ValueError(f"job arguments: {message}")

    parser = _Parser(add_help=False, allow_abbrev=False)
    for field, argument in _JOB_ARGUMENTS.items():
        parser.add_argument(argument, dest=field, required=field == "warehouse", default=None)
    parsed, _others = parser.parse_known_args(argv)
    given = {field: value for field, value in vars(parsed).items() if value}
    return LakehouseCatalog(**given)
