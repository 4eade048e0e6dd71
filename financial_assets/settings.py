"""Every setting the platform reads from the environment, validated in one place.

The one configuration path: :meth:`Settings.from_env` reads and validates every ``FIN_*``
variable, each default is declared once below, and the Dagster resources are built from the
:class:`Settings` (`financial_assets.resources.deployment_resources`); nothing else reads the
environment for them. A secret the environment sets (:data:`SECRET_VARIABLES`) reaches a resource
as a Dagster ``EnvVar`` naming its variable, so the UI's configuration view never shows its value.

No Dagster import: the CLI, the services script's callers and Glue-side code read the same
settings. A missing or malformed value raises :class:`SettingsError`, whose message is one line
that names the variable; callers print it as is instead of a stack trace.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from financial_assets.lakehouse.catalog import DEFAULT_CATALOG_NAME, LakehouseCatalog

# Ports of the servers that `scripts/services.sh` starts: away from the well-known ones, so a
# system PostgreSQL (5432) or MongoDB (27017) never collides, and below Linux's ephemeral range
# (32768-60999), so an outgoing connection never holds them while a server is down.
DEFAULT_POSTGRES_PORT = 25432
DEFAULT_MONGO_PORT = 27117
DEFAULT_MONGO_DATABASE = "financialdb"

# The Iceberg catalog: a database of its own on the local PostgreSQL (scripts/services.sh creates it).
DEFAULT_CATALOG_DATABASE = "lakehouse_catalog"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_MONGO_DATABASE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")

# A source step that fails is retried 3 times, the first after this many seconds, then with
# exponential backoff (Dagster's: 1, 3, 7 times it). Long enough to ride out a failover.
DEFAULT_SOURCE_RETRY_DELAY_S = 2.0

# Where local state lives, relative to the working directory (the repository under `make`).
DEFAULT_LAKEHOUSE = "var/lakehouse"
DEFAULT_DUCKDB_PATH = "var/analytics.duckdb"
DEFAULT_PII_KEY_FILE = "var/secrets/pii_hmac_key"
DEFAULT_ALERT_LOG = "var/alerts/alerts.jsonl"
# The FerretDB build and Spark's Ivy cache: in the repository, whatever the working directory.
DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache"

DEFAULT_SPARK_MASTER = "local[*]"  # Spark in this process, on every core
DEFAULT_GLUE_DATABASE = "financial_data_db"
DEFAULT_ATHENA_WORKGROUP = "financial-assets"

# The settings that are secrets, and their variables.
SECRET_VARIABLES = {
    "postgres_url": "FIN_POSTGRES_URL",
    "mongo_url": "FIN_MONGO_URL",
    "pii_hmac_key": "FIN_PII_HMAC_KEY",
    "alert_webhook_url": "FIN_ALERT_WEBHOOK_URL",
    "slack_token": "FIN_SLACK_TOKEN",
}


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe for logs and metadata."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else f"***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SettingsError(f"{name} must be a TCP port number (1-65535), got {raw!r}")
    return int(raw)


def _postgres_url(environ: Mapping[str, str]) -> str:
    name = "FIN_POSTGRES_URL"
    url = environ.get(name, "").strip()
    if not url:
        port = _port(environ, "FIN_POSTGRES_PORT", DEFAULT_POSTGRES_PORT)
        return f"postgresql://financial@127.0.0.1:{port}/financial"
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise SettingsError(
            f"{name} must look like postgresql://user[:password]@host[:port]/database, "
            f"got scheme {parts.scheme or '(none)'!r}"
        )
    if not parts.hostname or not parts.path.strip("/"):
        raise SettingsError(f"{name} must name a host and a database: {redact_url(url)}")
    return url


def _mongo_url(environ: Mapping[str, str]) -> str:
    name = "FIN_MONGO_URL"
    url = environ.get(name, "").strip()
    if not url:
        port = _port(environ, "FIN_MONGO_PORT", DEFAULT_MONGO_PORT)
        return f"mongodb://127.0.0.1:{port}/"
    scheme = urlsplit(url).scheme
    if scheme not in ("mongodb", "mongodb+srv"):
        raise SettingsError(
            f"{name} must look like mongodb://[user:password@]host[:port]/, "
            f"got scheme {scheme or '(none)'!r}"
        )
    return url


def _mongo_database(environ: Mapping[str, str]) -> str:
    name = "FIN_MONGO_DATABASE"
    database = environ.get(name, "").strip() or DEFAULT_MONGO_DATABASE
    if not _MONGO_DATABASE_NAME.match(database):
        raise SettingsError(
            f"{name} must be 1-63 letters, digits, '_' or '-', got {database!r}"
        )
    return database


def _lakehouse_uri(environ: Mapping[str, str]) -> str:
    name = "FIN_LAKEHOUSE_URI"
    uri = environ.get(name, "").strip()
    if not uri:
        return str(Path(DEFAULT_LAKEHOUSE).resolve())
    if uri.startswith("s3://"):
        bucket = uri[len("s3://"):].split("/", 1)[0]
        if not bucket:
            raise SettingsError(f"{name} must name a bucket: s3://bucket[/prefix], got {uri!r}")
        return uri.rstrip("/")
    if "://" in uri and not uri.startswith("file://"):
        raise SettingsError(
            f"{name} must be a local path, file:// or s3://bucket[/prefix], got {uri!r}"
        )
    return str(Path(uri.removeprefix("file://")).expanduser().resolve())


def source_retry_delay_s(environ: Mapping[str, str] | None = None) -> float:
    """FIN_SOURCE_RETRY_DELAY_S: seconds before the first retry of a source step (0 retries at once)."""
    environ = os.environ if environ is None else environ
    name = "FIN_SOURCE_RETRY_DELAY_S"
    raw = environ.get(name, "").strip()
    if not raw:
        return DEFAULT_SOURCE_RETRY_DELAY_S
    try:
        delay = float(raw)
    except ValueError:
        delay = -1.0
    if not 0 <= delay <= 3600:  # also refuses nan and inf
        raise SettingsError(f"{name} must be a number of seconds from 0 to 3600, got {raw!r}")
    return delay


def cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """FIN_CACHE_DIR: the FerretDB build and Spark's Ivy cache of JVM artifacts (``<it>/ivy``),
    read where a Spark session starts (`financial_assets.transform.session`), Settings or not."""
    environ = os.environ if environ is None else environ
    return str(Path(environ.get("FIN_CACHE_DIR", "").strip() or DEFAULT_CACHE_DIR).expanduser().resolve())


def _s3_endpoint_url(environ: Mapping[str, str]) -> str | None:
    name = "FIN_S3_ENDPOINT_URL"
    url = environ.get(name, "").strip()
    if not url:
        return None
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise SettingsError(f"{name} must be an http(s):// URL such as http://127.0.0.1:9000, got {url!r}")
    return url.rstrip("/")


def _catalog_url(environ: Mapping[str, str], deployment: str) -> str | None:
    """FIN_CATALOG_URL: a PostgreSQL URL (Iceberg's SQL catalog) or ``glue`` (the AWS Glue Data
    Catalog). Default: the catalog database on the local PostgreSQL, or Glue on AWS."""
    name = "FIN_CATALOG_URL"
    url = environ.get(name, "").strip()
    if not url:
        if deployment == "aws":
            return None
        port = _port(environ, "FIN_POSTGRES_PORT", DEFAULT_POSTGRES_PORT)
        return f"postgresql://financial@127.0.0.1:{port}/{DEFAULT_CATALOG_DATABASE}"
    if url.lower() == "glue":
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or not parts.path.strip("/"):
        raise SettingsError(
            f"{name} must be 'glue' or postgresql://user[:password]@host[:port]/database, got {redact_url(url)!r}"
        )
    return url


def _catalog_name(environ: Mapping[str, str]) -> str:
    name = "FIN_CATALOG_NAME"
    value = environ.get(name, "").strip() or DEFAULT_CATALOG_NAME
    if not _IDENTIFIER.match(value):
        raise SettingsError(f"{name} must be a lower-case identifier (letters, digits, '_'), got {value!r}")
    return value


def _flag(environ: Mapping[str, str], name: str) -> bool:
    raw = environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _engine_settings(environ: Mapping[str, str]) -> dict:
    """FIN_STAR_SCHEMA_ENGINE=local (default) or glue, and what the Glue engine needs."""
    engine = environ.get("FIN_STAR_SCHEMA_ENGINE", "").strip().lower() or "local"
    if engine not in ("local", "glue"):
        raise SettingsError(f"FIN_STAR_SCHEMA_ENGINE must be 'local' or 'glue', got {engine!r}")
    glue = {
        "glue_job_name": environ.get("FIN_GLUE_JOB_NAME", "").strip() or None,
        "glue_staging_s3_uri": environ.get("FIN_GLUE_STAGING_S3_URI", "").strip() or None,
        "glue_pipes_bucket": environ.get("FIN_GLUE_PIPES_BUCKET", "").strip() or None,
        "glue_pii_key_secret_id": environ.get("FIN_GLUE_PII_KEY_SECRET_ID", "").strip() or None,
    }
    if engine == "glue":
        for name, variable in (
            ("glue_job_name", "FIN_GLUE_JOB_NAME"),
            ("glue_staging_s3_uri", "FIN_GLUE_STAGING_S3_URI"),
            ("glue_pipes_bucket", "FIN_GLUE_PIPES_BUCKET"),
        ):
            if not glue[name]:
                raise SettingsError(f"{variable} must be set when FIN_STAR_SCHEMA_ENGINE=glue")
        if not glue["glue_staging_s3_uri"].startswith("s3://"):
            raise SettingsError(
                f"FIN_GLUE_STAGING_S3_URI must be s3://bucket/prefix, got {glue['glue_staging_s3_uri']!r}"
            )
    region = environ.get("AWS_REGION", "").strip() or environ.get("AWS_DEFAULT_REGION", "").strip() or None
    return {"star_schema_engine": engine, "aws_region": region, **glue}


def _deployment(environ: Mapping[str, str]) -> str:
    deployment = environ.get("FIN_DEPLOYMENT", "").strip().lower() or "local"
    if deployment not in ("local", "aws"):
        raise SettingsError(f"FIN_DEPLOYMENT must be 'local' or 'aws', got {deployment!r}")
    return deployment


def _deployment_settings(environ: Mapping[str, str], deployment: str) -> dict:
    """FIN_DEPLOYMENT=local (default): DuckDB beside the lakehouse, sources from URLs.
    FIN_DEPLOYMENT=aws: an S3 lakehouse, Glue, the Glue Data Catalog and Athena, and source
    credentials from AWS Secrets Manager only (FIN_SOURCES_SECRET_ID)."""
    settings = {
        "deployment": deployment,
        "glue_database": environ.get("FIN_GLUE_DATABASE", "").strip() or DEFAULT_GLUE_DATABASE,
        "athena_workgroup": environ.get("FIN_ATHENA_WORKGROUP", "").strip() or DEFAULT_ATHENA_WORKGROUP,
        "sources_secret_id": environ.get("FIN_SOURCES_SECRET_ID", "").strip() or None,
        "duckdb_path": None,
    }
    if deployment == "local":
        path = environ.get("FIN_DUCKDB_PATH", "").strip()
        # Unset: derived from the lakehouse once it is known (see Settings.from_env).
        settings["duckdb_path"] = str(Path(path).expanduser().resolve()) if path else None
        return settings
    for plain in ("FIN_POSTGRES_URL", "FIN_MONGO_URL"):
        if environ.get(plain, "").strip():
            raise SettingsError(
                f"{plain} must not be set when FIN_DEPLOYMENT=aws: source credentials come from "
                "the Secrets Manager secret FIN_SOURCES_SECRET_ID"
            )
    if not settings["sources_secret_id"]:
        raise SettingsError("FIN_SOURCES_SECRET_ID must be set when FIN_DEPLOYMENT=aws")
    if not environ.get("FIN_LAKEHOUSE_URI", "").strip().startswith("s3://"):
        raise SettingsError("FIN_LAKEHOUSE_URI must be s3://bucket/prefix when FIN_DEPLOYMENT=aws")
    return settings


def _alert_settings(environ: Mapping[str, str]) -> dict:
    """The alert log is always on; the webhook URL (it may hold a token) and the Slack token are secrets."""
    webhook = environ.get("FIN_ALERT_WEBHOOK_URL", "").strip()
    if webhook and (urlsplit(webhook).scheme not in ("http", "https") or not urlsplit(webhook).hostname):
        raise SettingsError("FIN_ALERT_WEBHOOK_URL must be an http(s):// URL")  # not echoed: it holds a token
    token = environ.get("FIN_SLACK_TOKEN", "").strip()
    channel = environ.get("FIN_SLACK_CHANNEL", "").strip()
    if bool(token) != bool(channel):
        missing = "FIN_SLACK_CHANNEL" if token else "FIN_SLACK_TOKEN"
        raise SettingsError(f"{missing} must be set too: Slack alerts need FIN_SLACK_TOKEN and FIN_SLACK_CHANNEL")
    log = environ.get("FIN_ALERT_LOG", "").strip() or DEFAULT_ALERT_LOG
    return {
        "alert_log_path": str(Path(log).expanduser().resolve()),
        "alert_webhook_url": webhook or None,
        "slack_token": token or None,
        "slack_channel": channel or None,
    }


@dataclass(frozen=True)
class Settings:
    """Where the sources and the lakehouse are, and how to reach them: every field is read by
    :meth:`from_env` (defaults point at `scripts/services.sh`). Secrets never appear in its repr."""

    postgres_url: str = field(repr=False)
    mongo_url: str = field(repr=False)
    mongo_database: str
    lakehouse_uri: str
    s3_endpoint_url: str | None
    spark_master: str
    spark_remote: str | None
    pii_hmac_key: str | None = field(repr=False)
    pii_clear_text: bool
    local_pii_key_file: str | None
    star_schema_engine: str
    glue_job_name: str | None
    glue_staging_s3_uri: str | None
    glue_pipes_bucket: str | None
    glue_pii_key_secret_id: str | None
    aws_region: str | None
    alert_log_path: str
    alert_webhook_url: str | None = field(repr=False)
    slack_token: str | None = field(repr=False)
    slack_channel: str | None
    deployment: str
    duckdb_path: str | None
    glue_database: str
    athena_workgroup: str
    sources_secret_id: str | None
    catalog_url: str | None  # None: the AWS Glue Data Catalog
    catalog_name: str
    source_retry_delay_s: float
    secrets_in_environment: frozenset[str]  # the fields of SECRET_VARIABLES their variables set

    def secret_variable(self, name: str) -> str | None:
        """The variable the secret setting ``name`` was read from, or None when the environment
        does not set it (its default, or no secret at all)."""
        return SECRET_VARIABLES[name] if name in self.secrets_in_environment else None

    def catalog(self) -> LakehouseCatalog:
        """The Iceberg catalog every table of this lakehouse is registered in."""
        glue = self.catalog_url is None
        return LakehouseCatalog(
            warehouse=warehouse_uri(self.lakehouse_uri),
            sql_url=self.catalog_url,
            name=self.catalog_name,
            # In the Glue Data Catalog, namespaces are account-wide databases: named after ours.
            raw_namespace=f"{self.glue_database}_raw" if glue else "raw",
            analytics_namespace=self.glue_database if glue else "analytics",
            s3_endpoint_url=self.s3_endpoint_url,
            region=self.aws_region,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        deployment = _deployment(environ)
        if deployment == "aws":
            environ = {"FIN_STAR_SCHEMA_ENGINE": "glue", **environ}
        settings = cls._from_env(environ, deployment)
        if deployment == "local" and settings.duckdb_path is None:
            settings = replace(settings, duckdb_path=default_duckdb_path(settings, environ))
        return settings

    @classmethod
    def _from_env(cls, environ: Mapping[str, str], deployment: str) -> Settings:
        return cls(
            **_deployment_settings(environ, deployment),
            postgres_url=_postgres_url(environ),
            mongo_url=_mongo_url(environ),
            mongo_database=_mongo_database(environ),
            lakehouse_uri=_lakehouse_uri(environ),
            s3_endpoint_url=_s3_endpoint_url(environ),
            spark_master=environ.get("FIN_SPARK_MASTER", "").strip() or DEFAULT_SPARK_MASTER,
            spark_remote=environ.get("FIN_SPARK_REMOTE", "").strip() or None,
            pii_hmac_key=environ.get("FIN_PII_HMAC_KEY", "").strip() or None,
            pii_clear_text=_flag(environ, "FIN_PII_CLEAR_TEXT"),
            local_pii_key_file=None if deployment == "aws" else str(Path(DEFAULT_PII_KEY_FILE).resolve()),
            **_engine_settings(environ),
            **_alert_settings(environ),
            catalog_url=_catalog_url(environ, deployment),
            catalog_name=_catalog_name(environ),
            source_retry_delay_s=source_retry_delay_s(environ),
            secrets_in_environment=frozenset(
                name for name, variable in SECRET_VARIABLES.items() if environ.get(variable, "").strip()
            ),
        )


def default_duckdb_path(settings: Settings, environ: Mapping[str, str]) -> str:
    """The DuckDB file readers use when FIN_DUCKDB_PATH is unset: ``var/analytics.duckdb`` for the
    default lakehouse (``var/lakehouse`` in the default catalog), and for a lakehouse chosen by
    FIN_LAKEHOUSE_URI, FIN_CATALOG_URL or FIN_CATALOG_NAME a file of its own,
    ``var/analytics-<catalog name>-<hash of the lakehouse's identity>.duckdb``, so that it never
    re-points the views of another lakehouse's file."""
    import hashlib

    if not any(environ.get(name, "").strip() for name in ("FIN_LAKEHOUSE_URI", "FIN_CATALOG_URL", "FIN_CATALOG_NAME")):
        return str(Path(DEFAULT_DUCKDB_PATH).resolve())
    digest = hashlib.sha256(settings.catalog().identity.encode()).hexdigest()[:12]
    return str(Path(f"var/analytics-{settings.catalog_name}-{digest}.duckdb").resolve())


def warehouse_uri(lakehouse_uri: str) -> str:
    """The lakehouse root as Iceberg takes it: ``s3://...`` as is, a local path as ``file://``."""
    return lakehouse_uri if "://" in lakehouse_uri else f"file://{lakehouse_uri}"
