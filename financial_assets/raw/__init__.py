from financial_assets.raw.assets import (
    raw_accounts,
    raw_customers,
    raw_transaction_events,
    raw_transactions,
)

RAW_ASSETS = [raw_customers, raw_accounts, raw_transactions, raw_transaction_events]

__all__ = ["RAW_ASSETS"]
