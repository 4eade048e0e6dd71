"""The lakehouse's names and published contract: its tables, their columns, the analyst's query.

Imports nothing, not even the rest of `financial_assets`: the transform, the audit, the readers,
the Dagster definitions, the Glue job and the benchmark's peer (whose virtualenv has none of our
dependencies) all take their names from here.
"""

from __future__ import annotations

from datetime import datetime, timezone

# The raw zone: one table per source table or collection.
RAW_TABLES = ("customers", "accounts", "transactions", "transaction_events")
# In the snapshot summary of a raw snapshot load (customers, accounts): a SHA-256 of the rows as
# read, in order. Equal digests mean equal rows (another order or batching only makes them differ),
# so a build may keep what it made of the previous load's rows.
CONTENT_DIGEST = "financial-assets.content-digest"

# The star schema readers see (the current dimensions, the type-2 histories, the facts and the
# daily balances), and the two tables that record its builds and publications.
STAR_TABLES = (
    "dim_customers", "dim_accounts", "dim_dates", "dim_customers_history", "dim_accounts_history",
    "fact_transactions", "fact_account_balances_daily",
)
BUILDS = "star_schema_builds"
PUBLICATIONS = "star_schema_publications"


def _columns(spec: str) -> tuple[tuple[str, str], ...]:
    return tuple(tuple(column.strip().split(" ", 1)) for column in spec.split(";"))


# The published tables' contract: columns and Spark types, in order; drift fails the build's
# audit. The type names are valid Hive/Athena types too, so the Glue Data Catalog takes them as they are.
PUBLISHED_SCHEMAS = {
    "dim_customers": _columns(
        "customer_key int; name string; email string; phone string; city string; region string"
    ),
    "dim_accounts": _columns(
        "account_key int; customer_key int; account_type string; opened_at timestamp; "
        "opened_date_key int; balance decimal(12,2)"
    ),
    "dim_dates": _columns(
        "date_key int; date date; year int; quarter int; month int; month_name string; day int; "
        "weekday int; weekday_name string; iso_week int; is_weekend boolean"
    ),
    "fact_transactions": _columns(
        "transaction_id int; date_key int; account_key int; customer_key int; amount decimal(12,2); "
        "signed_amount decimal(12,2); transaction_type string; transaction_at timestamp; "
        "device_type string; fraud_score double; country string; city string; defects array<string>; "
        "account_version_key bigint; customer_version_key bigint"
    ),
    "dim_customers_history": _columns(
        "customer_key int; customer_version_key bigint; name string; email string; phone string; city string; "
        "region string; valid_from timestamp; valid_to timestamp; is_current boolean; is_deleted boolean"
    ),
    "dim_accounts_history": _columns(
        "account_key int; account_version_key bigint; customer_key int; account_type string; opened_at timestamp; "
        "opened_date_key int; valid_from timestamp; valid_to timestamp; is_current boolean; is_deleted boolean"
    ),
    "fact_account_balances_daily": _columns(
        "date_key int; account_key int; customer_key int; balance decimal(12,2); extracted_at timestamp; "
        "transaction_count bigint; net_signed_amount decimal(22,2)"
    ),
}

# The analyst's query from the original pipeline's README, unchanged: `financial-assets query`
# runs it by default, and the benchmark's peer runs it on its own output.
ANALYST_QUERY = """\
SELECT c.name, c.email, SUM(f.amount) AS total_transaction_amount
FROM fact_transactions AS f
JOIN dim_customers AS c ON f.customer_key = c.customer_key
GROUP BY c.name, c.email
ORDER BY total_transaction_amount DESC"""


def new_version(run_id: str, now: datetime | None = None) -> str:
    """A build's version: sortable by time, unique per run, a valid branch-name part
    (20261129_053000_<run id prefix>)."""
    return f"{now or datetime.now(timezone.utc):%Y%m%d_%H%M%S}_{run_id[:8].lower()}"


def audit_branch(version: str) -> str:
    """The branch a build writes: a valid Spark identifier part (``table.branch_<name>``)."""
    return f"audit_{version}"


def publication_tag(version: str) -> str:
    """The tag that keeps a published version's snapshot while it is in the rollback window."""
    return f"published_{version}"
