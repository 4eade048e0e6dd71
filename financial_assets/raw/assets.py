"""The raw zone: each source table extracted as-is, typed, into an Apache Iceberg table
(namespace `raw` of the lakehouse catalog), written without a JVM.

Each load is one Iceberg commit: its rows and its high-water mark (in the snapshot summary) land
together or not at all. This replaces the original pipeline's AWS DMS full-load tasks.
"""


import time
from typing import TYPE_CHECKING

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    Backoff,
    Config,
    Failure,
    Jitter,
    MaterializeResult,
    RetryPolicy,
    asset,
)
from pydantic import Field

from financial_assets.automation.policies import LAKEHOUSE_WRITERS, daily_extraction
from financial_assets.code_versions import RAW_ZONE_CODE_VERSION
from financial_assets.extract.contracts import (
    ACCOUNTS,
    CUSTOMERS,
    TRANSACTION_EVENTS,
    TRANSACTIONS,
    TableContract,
)
from financial_assets.ownership import OWNERS, RAW, asset_tags
from financial_assets.raw.metadata import load_metadata
from financial_assets.resources import DocumentStoreResource, LakehouseResource, PostgresResource
from financial_assets.settings import source_retry_delay_s
from financial_assets.source_assets import SOURCE_KEYS

if TYPE_CHECKING:
    # The loads (pyarrow, PyIceberg, the source drivers) are imported by the steps that run them,
    # not when the code location loads.
    from financial_assets.extract.loads import LoadReport

# A source that is briefly unreachable (failover, network blip) is retried 3 times, after
# FIN_SOURCE_RETRY_DELAY_S (default 2 s: 2, 6, 14 s, each +/- 2 s). So is a load whose Iceberg
# commit another writer overtook (ConcurrentCommitError): it committed nothing, and the retry plans
# again from the table's new snapshot. Read when the code location loads: a policy is part of an
# asset's definition, and the UI shows it.
SOURCE_RETRY = RetryPolicy(
    max_retries=3, delay=source_retry_delay_s(), backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)
PROGRESS_EVERY_S = 10.0


class RawLoadConfig(Config):
    full_refresh: bool = Field(
        default=False,
        description="Reload the whole source table instead of only rows past the high-water mark.",
    )


def _progress_logger(context: AssetExecutionContext, table: str):
    last = [time.monotonic()]

    def report(rows: int) -> None:
        if time.monotonic() - last[0] >= PROGRESS_EVERY_S:
            last[0] = time.monotonic()
            context.log.info(f"{table}: {rows:,} rows read so far")

    return report


RECONCILES = "reconciles_with_source"
RECONCILES_DESCRIPTION = "Source rows up to the high-water mark = raw rows + quarantined rows: nothing lost."


def _reconciliation(report: "LoadReport", source_rows: int) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=RECONCILES,
        passed=source_rows == report.raw_and_quarantined_rows,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "source_rows": source_rows,
            "raw_rows": report.raw_rows,
            "quarantined_rows": report.quarantined_rows,
        },
    )


def _not_retryable(error: Exception) -> Failure:
    # Drift and a rebuilt source need a person, not another attempt.
    return Failure(description=str(error), allow_retries=False)


def _raw_asset_properties(contract: TableContract) -> dict:
    """What every raw asset declares alike: its source upstream, owners and tags, the code that
    decides its rows, the writers' pool, and the daily automation."""
    return dict(
        group_name="raw",
        deps=[SOURCE_KEYS[contract.table]],
        owners=OWNERS,
        # The raw zone keeps the source's personal data in clear (it is restricted).
        tags=asset_tags(RAW, contract.domain, pii=bool(contract.pii_columns)),
        code_version=RAW_ZONE_CODE_VERSION,
        pool=LAKEHOUSE_WRITERS,
        automation_condition=daily_extraction(SOURCE_KEYS[contract.table]),
        retry_policy=SOURCE_RETRY,
    )


def _postgres_raw_asset(contract: TableContract, description: str) -> AssetsDefinition:
    @asset(
        name=f"raw_{contract.table}",
        kinds={"postgres", "iceberg"},
        description=description,
        **_raw_asset_properties(contract),
        check_specs=[AssetCheckSpec(RECONCILES, asset=f"raw_{contract.table}", blocking=True,
                                    description=RECONCILES_DESCRIPTION)],
    )
    def _raw_table(
        context: AssetExecutionContext,
        config: RawLoadConfig,
        postgres: PostgresResource,
        lakehouse: LakehouseResource,
    ) -> MaterializeResult:
        from financial_assets.extract.loads import (
            SchemaDriftError,
            SourceResetError,
            count_source_rows,
            load_postgres_table,
        )

        catalog = lakehouse.catalog()
        try:
            with postgres.connect() as connection:
                report = load_postgres_table(
                    connection,
                    contract,
                    catalog,
                    full_refresh=config.full_refresh,
                    run_id=context.run.run_id[:8],
                    progress=_progress_logger(context, contract.table),
                )
                source_rows = count_source_rows(connection, contract, report.high_water_mark)
        except (SchemaDriftError, SourceResetError) as error:
            raise _not_retryable(error) from error
        if report.new_columns:
            context.log.warning(
                f"{contract.table}: new source columns carried along: {', '.join(report.new_columns)}"
            )
        context.log.info(
            f"{contract.table}: {report.mode} load of {report.rows_loaded:,} rows from "
            f"{postgres.display_url}; high-water mark {report.previous_high_water_mark} -> "
            f"{report.high_water_mark} ({report.table}, snapshot {report.snapshot_id})"
        )
        if report.late_rows:
            context.log.info(f"{contract.table}: {report.late_rows:,} rows below the mark committed late and were picked up")
        return MaterializeResult(
            metadata=load_metadata(report, contract.pii_columns),
            check_results=[_reconciliation(report, source_rows)],
        )

    return _raw_table


raw_customers = _postgres_raw_asset(
    CUSTOMERS,
    "Customers from PostgreSQL into the Iceberg table `raw.customers`, as the source has them "
    "(names, emails, phones and addresses in clear: the raw zone is restricted). Small, so each "
    "run replaces the table's rows with a full snapshot, in one Iceberg commit.",
)
raw_accounts = _postgres_raw_asset(
    ACCOUNTS,
    "Accounts from PostgreSQL into the Iceberg table `raw.accounts`: savings or checking, balance "
    "as DECIMAL(12,2), opening time in UTC. Small, so each run replaces the table's rows with a "
    "full snapshot, in one Iceberg commit.",
)
raw_transactions = _postgres_raw_asset(
    TRANSACTIONS,
    "Transactions from PostgreSQL into the Iceberg table `raw.transactions`, loaded "
    "incrementally: each run appends, in one Iceberg snapshot, the rows whose transaction_id is "
    "past the high-water mark recorded in the table's last load snapshot, and the rows below it "
    "whose transaction committed after that load (run config full_refresh reloads all). "
    "Amounts stay DECIMAL(12,2); the `timestamp` column is a UTC instant.",
)


@asset(
    kinds={"mongodb", "iceberg"},
    **_raw_asset_properties(TRANSACTION_EVENTS),
    check_specs=[
        AssetCheckSpec(RECONCILES, asset="raw_transaction_events", blocking=True, description=RECONCILES_DESCRIPTION),
        AssetCheckSpec("no_quarantined_documents", asset="raw_transaction_events", blocking=False,
                       description="No document of this load broke the schema (WARN: they are kept in quarantine)."),
    ],
)
def raw_transaction_events(
    context: AssetExecutionContext,
    config: RawLoadConfig,
    document_store: DocumentStoreResource,
    lakehouse: LakehouseResource,
) -> MaterializeResult:
    """Device, location and fraud-score events from the document store (DocumentDB), read
    incrementally by `_id` against an explicit schema into the Iceberg table
    `raw.transaction_events`. Documents that break it land in `raw.transaction_events_quarantine`
    with the reason and the original document as JSON. `_id` becomes the string `event_id`;
    `geolocation` keeps its {country, city} structure."""
    from financial_assets.extract.loads import QUARANTINE_TABLE, count_source_documents, load_documents

    catalog = lakehouse.catalog()
    quarantine = catalog.raw_table(QUARANTINE_TABLE)
    with document_store.connect() as database:
        report = load_documents(
            database[TRANSACTION_EVENTS.table],
            catalog,
            full_refresh=config.full_refresh,
            run_id=context.run.run_id[:8],
            progress=_progress_logger(context, TRANSACTION_EVENTS.table),
        )
        source_rows = count_source_documents(
            database[TRANSACTION_EVENTS.table], report.high_water_mark, report.raw_and_quarantined_rows
        )
    if report.quarantined:
        context.log.warning(
            f"transaction_events: {report.quarantined:,} documents quarantined in {quarantine}"
        )
    if report.new_columns:
        context.log.warning(f"transaction_events: new fields carried along: {', '.join(report.new_columns)}")
    context.log.info(
        f"transaction_events: {report.mode} load of {report.rows_loaded:,} documents from "
        f"{document_store.display_url}"
    )
    quarantined = AssetCheckResult(
        check_name="no_quarantined_documents",
        passed=report.quarantined == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={"quarantined_this_load": report.quarantined, "quarantine_table": quarantine},
    )
    return MaterializeResult(
        metadata=load_metadata(report, TRANSACTION_EVENTS.pii_columns),
        check_results=[_reconciliation(report, source_rows), quarantined],
    )
