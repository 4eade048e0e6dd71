"""The analytics zone: the star schema analysts query, built from the raw zone in one step.

One multi-asset so that the star tables are always built together, from the same raw snapshots,
onto the same audit branch: the dimensions and the fact can never drift out of step. Its checks
(`financial_assets/quality/star_checks.py`) audit the version before it may be published.
"""

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Config,
    MaterializeResult,
    multi_asset,
)
from pydantic import Field

from financial_assets.automation.policies import LAKEHOUSE_WRITERS, daily_after_upstream
from financial_assets.code_versions import STAR_SCHEMA_CODE_VERSION
from financial_assets.lakehouse.tables import new_version
from financial_assets.ownership import ANALYTICS, OWNERS, asset_tags
from financial_assets.quality.defects import DEFAULT_MAX_DEFECT_SHARE
from financial_assets.quality.specs import STAR_CHECKS, QualityThresholds
from financial_assets.resources.lakehouse import LakehouseResource
from financial_assets.resources.pii import PiiPolicyResource
from financial_assets.resources.star_schema_engine import StarSchemaEngine

KINDS = {"spark", "iceberg"}
# The asset whose output value is the build's version: what `published_star_schema` publishes.
VERSION_CARRIER = AssetKey("fact_transactions")


def _star_table(name: str, deps: list[str], domain: str, pii: bool, description: str) -> AssetSpec:
    spec = AssetSpec(
        name,
        deps=deps,
        group_name="analytics",
        kinds=KINDS,
        owners=OWNERS,
        tags=asset_tags(ANALYTICS, domain, pii),
        code_version=STAR_SCHEMA_CODE_VERSION,
        automation_condition=daily_after_upstream(),
        description=description,
    )
    # An output value needs an IO manager: Dagster's default one keeps the version (a short
    # string) in the instance's storage, where the publish step, or its re-execution, loads it.
    return spec.with_io_manager_key("io_manager") if spec.key == VERSION_CARRIER else spec


STAR_SCHEMA_SPECS = [
    _star_table(
        "dim_customers", ["raw_customers"], "customers", pii=True,  # names in clear, for the analyst's query
        description="One row per customer (customer_key), plus the unknown member -1. Email is an "
        "HMAC token of the normalised address (one person, one token), phone masked to its last two "
        "digits, address reduced to city and region.",
    ),
    _star_table(
        "dim_accounts", ["raw_accounts", "raw_customers"], "accounts", pii=False,
        description="One row per account (account_key) with its customer_key (-1 when the customer "
        "is unknown), type, opening time and opened_date_key, balance; plus the unknown member -1.",
    ),
    _star_table(
        "dim_dates", ["raw_accounts", "raw_transactions"], "calendar", pii=False,
        description="A full calendar (UTC days) from the earliest account opening to the latest "
        "transaction: date_key yyyymmdd, year, quarter, month, names, ISO weekday and week, weekend.",
    ),
    _star_table(
        "dim_customers_history", ["raw_customers", "raw_accounts"], "customers", pii=True,  # names in clear
        description="Type 2: one row per version of a customer (customer_version_key), on the columns of "
        "dim_customers, valid over [valid_from, valid_to) (valid_to NULL and is_current while current). A change "
        "is dated by the extraction that first showed it (the source keeps no update time); a first version "
        "starts at the customer's earliest account opening. A customer deleted from the source keeps its "
        "versions, the last closed and flagged is_deleted. Only changed customers are written (Iceberg MERGE).",
    ),
    _star_table(
        "dim_accounts_history", ["raw_accounts", "raw_customers"], "accounts", pii=False,
        description="Type 2: one row per version of an account (account_version_key): its customer_key, type "
        "and opening, valid over [valid_from, valid_to); the first version starts at opened_at. The balance, "
        "which changes every day, is not versioned: see fact_account_balances_daily.",
    ),
    _star_table(
        "fact_transactions",
        ["dim_accounts", "dim_customers_history", "dim_accounts_history", "raw_transactions", "raw_transaction_events"],
        "transactions", pii=False,
        description="One row per source transaction, none dropped: keys to the dimensions (-1 for "
        "unknown), amount and signed amount (deposits +, withdrawals and transfers -), the "
        "transaction's event (the latest-written when duplicated): device, fraud score, country, city, "
        "and defects, the codes of what is wrong in the source row (empty when nothing is: analysts "
        "exclude flagged rows with cardinality(defects) = 0), and account_version_key / customer_version_key, the "
        "history versions valid at transaction_at (-1 when none is).",
    ),
    _star_table(
        "fact_account_balances_daily", ["raw_accounts", "fact_transactions"], "accounts", pii=False,
        description="Periodic snapshot: one row per live account per day a build extracted the accounts "
        "(date_key: the extraction's UTC day; the day's last extraction wins), with the balance as extracted, "
        "and the account's transaction_count and net_signed_amount of that day's facts (updated when a "
        "transaction of that day arrives later). Days without a build have no row: the source keeps only "
        "the current balance.",
    ),
]


_DEFAULTS = QualityThresholds()


class StarSchemaConfig(Config):
    """The audit's thresholds (integrity checks have none: they must hold exactly), and whether
    to rebuild everything instead of adding new transactions to the published version."""

    full_refresh: bool = Field(
        default=False,
        description="Rebuild every table from the whole raw zone, even when an incremental build is possible.",
    )

    min_event_match_rate: float = Field(
        default=_DEFAULTS.min_event_match_rate, description="Least share of facts with an event (WARN)."
    )
    max_defect_share: dict[str, float] = Field(
        default=dict(DEFAULT_MAX_DEFECT_SHARE),
        description="Per source-defect check, the share of the build's new fact rows it may flag before it "
        "blocks the publish (ERROR); any flagged row is a WARN. A check left out keeps its default: "
        + ", ".join(f"{name} {share:.1%}" for name, share in DEFAULT_MAX_DEFECT_SHARE.items()) + ".",
    )
    max_transaction_age_hours: float = Field(
        default=_DEFAULTS.max_transaction_age_hours, description="Oldest the newest transaction may be (WARN)."
    )

    def thresholds(self) -> QualityThresholds:
        return QualityThresholds(
            min_event_match_rate=self.min_event_match_rate,
            max_defect_share=self.max_defect_share,
            max_transaction_age_hours=self.max_transaction_age_hours,
        )


STAR_CHECK_SPECS = [
    AssetCheckSpec(spec.name, asset=spec.asset, blocking=spec.blocking, description=spec.description)
    for spec in STAR_CHECKS
]


def _with_version(result, version: str):
    """The engine's report of the version-carrying table, with the version as its output value."""
    if isinstance(result, MaterializeResult) and result.asset_key == VERSION_CARRIER:
        return MaterializeResult(
            asset_key=result.asset_key, metadata=result.metadata, check_results=result.check_results,
            data_version=result.data_version, tags=result.tags, value=version,
        )
    return result


@multi_asset(
    specs=STAR_SCHEMA_SPECS, check_specs=STAR_CHECK_SPECS, can_subset=False, name="star_schema", pool=LAKEHOUSE_WRITERS
)
def star_schema(
    context: AssetExecutionContext,
    config: StarSchemaConfig,
    star_schema_engine: StarSchemaEngine,
    lakehouse: LakehouseResource,
    pii: PiiPolicyResource,
):
    """Write a new version of the star schema on an audit branch of each Iceberg table, then
    audit exactly what the branches hold: a failed ERROR check fails this step, so the version is
    never published. Incremental when it can be: only the facts of new transactions are appended
    to the published ones (see `financial_assets/transform/build.py`). The version is the
    output of `fact_transactions`, which `published_star_schema` takes as its input."""
    version = new_version(context.run.run_id)
    for result in star_schema_engine.build(
        context, lakehouse, pii, version, config.thresholds(), full_refresh=config.full_refresh
    ):
        yield _with_version(result, version)
