"""The analytics zone: the star schema analysts query, built from the raw zone in one step.

One multi-asset so that the star tables are always built together, from the same raw snapshots,
onto the same audit branch: the dimensions and the fact can never drift out of step. Its checks
(`financial_assets/quality/star_checks.py`) audit the version before it may be published.
"""

from dagster import AssetCheckSpec, AssetExecutionContext, AssetSpec, Config, multi_asset
from pydantic import Field

from financial_assets.analytics.engines import StarSchemaEngine
from financial_assets.quality.star_checks import DEFAULT_MAX_DEFECT_SHARE, STAR_CHECKS, QualityThresholds
from financial_assets.resources.lakehouse import LakehouseResource
from financial_assets.resources.pii import PiiPolicyResource
from financial_assets.transform.build import new_version

KINDS = {"spark", "iceberg"}

STAR_SCHEMA_SPECS = [
    AssetSpec(
        "dim_customers",
        deps=["raw_customers"],
        group_name="analytics",
        kinds=KINDS,
        description="One row per customer (customer_key), plus the unknown member -1. Email is an "
        "HMAC token of the normalised address (one person, one token), phone masked to its last two "
        "digits, address reduced to city and region.",
    ),
    AssetSpec(
        "dim_accounts",
        deps=["raw_accounts", "raw_customers"],
        group_name="analytics",
        kinds=KINDS,
        description="One row per account (account_key) with its customer_key (-1 when the customer "
        "is unknown), type, opening time and opened_date_key, balance; plus the unknown member -1.",
    ),
    AssetSpec(
        "dim_dates",
        deps=["raw_accounts", "raw_transactions"],
        group_name="analytics",
        kinds=KINDS,
        description="A full calendar (UTC days) from the earliest account opening to the latest "
        "transaction: date_key yyyymmdd, year, quarter, month, names, ISO weekday and week, weekend.",
    ),
    AssetSpec(
        "dim_customers_history",
        deps=["raw_customers", "raw_accounts"],
        group_name="analytics",
        kinds=KINDS,
        description="Type 2: one row per version of a customer (customer_version_key), on the columns of "
        "dim_customers, valid over [valid_from, valid_to) (valid_to NULL and is_current while current). A change "
        "is dated by the extraction that first showed it (the source keeps no update time); a first version "
        "starts at the customer's earliest account opening. A customer deleted from the source keeps its "
        "versions, the last closed and flagged is_deleted. Only changed customers are written (Iceberg MERGE).",
    ),
    AssetSpec(
        "dim_accounts_history",
        deps=["raw_accounts", "raw_customers"],
        group_name="analytics",
        kinds=KINDS,
        description="Type 2: one row per version of an account (account_version_key): its customer_key, type "
        "and opening, valid over [valid_from, valid_to); the first version starts at opened_at. The balance, "
        "which changes every day, is not versioned: see fact_account_balances_daily.",
    ),
    AssetSpec(
        "fact_transactions",
        deps=["dim_accounts", "dim_customers_history", "dim_accounts_history", "raw_transactions",
              "raw_transaction_events"],
        group_name="analytics",
        kinds=KINDS,
        description="One row per source transaction, none dropped: keys to the dimensions (-1 for "
        "unknown), amount and signed amount (deposits +, withdrawals and transfers -), the "
        "transaction's event (the latest-written when duplicated): device, fraud score, country, city, "
        "and defects, the codes of what is wrong in the source row (empty when nothing is: analysts "
        "exclude flagged rows with cardinality(defects) = 0), and account_version_key / customer_version_key, the "
        "history versions valid at transaction_at (-1 when none is).",
    ),
    AssetSpec(
        "fact_account_balances_daily",
        deps=["raw_accounts", "fact_transactions"],
        group_name="analytics",
        kinds=KINDS,
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


@multi_asset(specs=STAR_SCHEMA_SPECS, check_specs=STAR_CHECK_SPECS, can_subset=False, name="star_schema")
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
    to the published ones (see `financial_assets/transform/build.py`)."""
    version = new_version(context.run.run_id)
    yield from star_schema_engine.build(
        context, lakehouse, pii, version, config.thresholds(), full_refresh=config.full_refresh
    )
