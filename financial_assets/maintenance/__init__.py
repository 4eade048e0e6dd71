"""Lakehouse maintenance: what keeps Iceberg's history from growing without bound.

- `financial_assets.maintenance.lakehouse` (PyIceberg only, no JVM): drop the ``published_<version>``
  tags of versions that left the rollback window, drop the audit branches killed builds left
  behind, and expire old snapshots on every table, deleting the files no snapshot needs any more.
- `financial_assets.maintenance.compaction` (Spark): rewrite the small files of
  ``fact_transactions`` and publish the compacted snapshot, so that readers follow it.
- `financial_assets.maintenance.assets`: the Dagster asset ``lakehouse_maintenance`` that runs
  them; its job and its daily automation condition live in `financial_assets.automation`.

This package's ``__init__`` imports nothing, so the pure modules load without Dagster.
"""
