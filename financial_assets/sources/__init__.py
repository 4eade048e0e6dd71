"""Connections to the operational sources, with no Dagster import (the CLI and Glue use them too)."""

from financial_assets.sources.document_store import connect_document_store
from financial_assets.sources.errors import SourceUnavailableError
from financial_assets.sources.postgres import connect_postgres

__all__ = ["SourceUnavailableError", "connect_document_store", "connect_postgres"]
