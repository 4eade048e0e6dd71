"""The operational sources, declared upstream of the raw zone: external assets Dagster observes
but never writes. Each observation records the row count and the newest value, so the UI shows
how fresh each source is and, through the data version, which raw table is behind its source.
"""

from __future__ import annotations

from datetime import datetime

from dagster import (
    AssetKey,
    AssetSpec,
    DataVersion,
    MetadataValue,
    ObserveResult,
    multi_observable_source_asset,
)

from financial_assets.automation.policies import observe_sources
from financial_assets.extract.contracts import POSTGRES_TABLES, TRANSACTION_EVENTS, TableContract
from financial_assets.extract.observations import SourceObservation, observe_collection, observe_table
from financial_assets.ownership import OWNERS, SOURCE, asset_tags
from financial_assets.resources import DocumentStoreResource, PostgresResource

DESCRIPTIONS = {
    "customers": "The bank's customers in PostgreSQL (RDS): names, emails, phones, addresses.",
    "accounts": "Savings and checking accounts in PostgreSQL (RDS), with balance and opening time.",
    "transactions": "Deposits, withdrawals and transfers in PostgreSQL (RDS); grows by appends.",
    "transaction_events": "One device, location and fraud-score event per transaction, in the document "
    "store (DocumentDB; FerretDB locally).",
}


def _spec(system: str, contract: TableContract, kind: str) -> AssetSpec:
    return AssetSpec(
        AssetKey([system, contract.table]),
        description=DESCRIPTIONS[contract.table],
        group_name="sources",
        kinds={kind},
        owners=OWNERS,
        tags=asset_tags(SOURCE, contract.domain, pii=bool(contract.pii_columns)),
        automation_condition=observe_sources(),
    )


POSTGRES_SPECS = {contract.table: _spec("postgres", contract, "postgres") for contract in POSTGRES_TABLES}
DOCUMENT_SPECS = {TRANSACTION_EVENTS.table: _spec("document_store", TRANSACTION_EVENTS, "mongodb")}
SOURCE_KEYS = {table: spec.key for table, spec in {**POSTGRES_SPECS, **DOCUMENT_SPECS}.items()}


def _newest(value: datetime | int | None) -> MetadataValue:
    if value is None:  # an empty source
        return MetadataValue.null()
    return MetadataValue.timestamp(value) if isinstance(value, datetime) else MetadataValue.int(value)


def _observed(key: AssetKey, observation: SourceObservation) -> ObserveResult:
    return ObserveResult(
        asset_key=key,
        data_version=DataVersion(observation.data_version),
        metadata={
            "dagster/row_count": MetadataValue.int(observation.rows),
            "newest": _newest(observation.newest),
            "newest_column": MetadataValue.text(observation.newest_column),
        },
    )


@multi_observable_source_asset(specs=list(POSTGRES_SPECS.values()), can_subset=True, name="observe_postgres")
def observe_postgres(context, postgres: PostgresResource):
    """Row count and newest value of each selected PostgreSQL table, on one connection."""
    selected = context.selected_asset_keys
    with postgres.connect() as connection:
        for contract in POSTGRES_TABLES:
            key = POSTGRES_SPECS[contract.table].key
            if key in selected:
                yield _observed(key, observe_table(connection, contract))


@multi_observable_source_asset(specs=list(DOCUMENT_SPECS.values()), name="observe_document_store")
def observe_document_store(document_store: DocumentStoreResource):
    """Document count of `transaction_events` and the time of its newest document."""
    with document_store.connect() as database:
        yield _observed(SOURCE_KEYS["transaction_events"], observe_collection(database[TRANSACTION_EVENTS.table]))


SOURCE_ASSETS = [observe_postgres, observe_document_store]
