"""Star-schema builds made directly with PyIceberg, for the readers' and maintenance tests.

A build writes the four star tables on its audit branch and appends its row to
`star_schema_builds`, as the Spark build does; `publication.publish` then publishes it for
real. The tables are small: customers with their names, and facts with their amounts, so the
analyst's query gives totals a test can predict.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal

import pyarrow as pa
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.table.update.snapshot import ManageSnapshots

from financial_assets.lakehouse.catalog import TABLE_PROPERTIES, LakehouseCatalog
from financial_assets.lakehouse.publication import Publication, publish, record_build
from financial_assets.lakehouse.tables import audit_branch

SCHEMAS = {
    "dim_customers": pa.schema([
        pa.field("customer_key", pa.int64()), pa.field("name", pa.string()), pa.field("email", pa.string()),
    ]),
    "dim_accounts": pa.schema([
        pa.field("account_key", pa.int64()), pa.field("customer_key", pa.int64()), pa.field("account_type", pa.string()),
    ]),
    "dim_dates": pa.schema([
        pa.field("date_key", pa.int32()), pa.field("date", pa.date32()), pa.field("is_weekend", pa.bool_()),
    ]),
    "fact_transactions": pa.schema([
        pa.field("transaction_id", pa.int64()), pa.field("customer_key", pa.int64()),
        pa.field("amount", pa.decimal128(12, 2)), pa.field("transaction_ts", pa.timestamp("us", tz="UTC")),
    ]),
}

CUSTOMERS = [(1, "Ada Lovelace", "token-ada"), (2, "Grace Hopper", "token-grace")]


def star_rows(amounts: dict[int, list[str]], with_dates: bool = True) -> dict[str, pa.Table]:
    """Rows of the four tables: ``amounts`` maps a customer key to its transactions' amounts."""
    facts = [
        (customer, Decimal(amount))
        for customer, customer_amounts in sorted(amounts.items())
        for amount in customer_amounts
    ]
    moment = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
    return {
        "dim_customers": pa.Table.from_pylist(
            [{"customer_key": k, "name": n, "email": e} for k, n, e in CUSTOMERS], schema=SCHEMAS["dim_customers"]
        ),
        "dim_accounts": pa.Table.from_pylist(
            [{"account_key": 10 + k, "customer_key": k, "account_type": "checking"} for k, _, _ in CUSTOMERS],
            schema=SCHEMAS["dim_accounts"],
        ),
        "dim_dates": pa.Table.from_pylist(
            [{"date_key": 20261128, "date": date(2026, 11, 28), "is_weekend": True}] if with_dates else [],
            schema=SCHEMAS["dim_dates"],
        ),
        "fact_transactions": pa.Table.from_pylist(
            [
                {"transaction_id": i, "customer_key": customer, "amount": amount, "transaction_ts": moment}
                for i, (customer, amount) in enumerate(facts, start=1)
            ],
            schema=SCHEMAS["fact_transactions"],
        ),
    }


def write_branches(
    catalog: LakehouseCatalog, version: str, tables: dict[str, pa.Table], fact_files: int = 1
) -> dict[str, int]:
    """Each table's rows on the branch ``audit_<version>``, made from ``main`` as a build does;
    the facts in ``fact_files`` separate files. Returns the branches' snapshot ids.

    A table's branch, its replaced rows and each file are snapshots of their own, as a build's
    are, committed together: PyIceberg rewrites a table's metadata per commit, and the
    maintenance and readers' tests make hundreds of these builds."""
    iceberg = catalog.load()
    branch = audit_branch(version)
    snapshots = {}
    for name, rows in tables.items():
        table = iceberg.create_table_if_not_exists(
            catalog.analytics_table(name), schema=SCHEMAS[name], properties=TABLE_PROPERTIES
        )
        with table.transaction() as transaction:
            if transaction.table_metadata.current_snapshot_id is None:  # a branch needs a parent: an empty one
                transaction.append(SCHEMAS[name].empty_table())
            main = transaction.table_metadata.current_snapshot()
            with ManageSnapshots(transaction) as manage:
                manage.create_branch(main.snapshot_id, branch)
            if main.summary.get("total-records", "0") != "0":
                transaction.delete(AlwaysTrue(), branch=branch)  # a full build replaces everything
            parts = fact_files if name == "fact_transactions" else 1
            bounds = [round(i * rows.num_rows / parts) for i in range(parts + 1)]
            for start, end in zip(bounds, bounds[1:]):
                if end > start:
                    transaction.append(rows.slice(start, end - start), branch=branch)
        snapshots[name] = table.refs()[branch].snapshot_id
    return snapshots


def record_test_build(
    catalog: LakehouseCatalog, version: str, snapshots: dict[str, int], row_counts: dict[str, int] | None = None,
    failed_checks: list[tuple[str, str, str]] = (), mode: str = "full",
) -> None:
    """The build's row in ``star_schema_builds``; ``failed_checks`` are (asset, check, severity)."""
    checks = [{"asset": "fact_transactions", "name": "reconciles_with_raw", "passed": True, "severity": "ERROR"}]
    checks += [{"asset": a, "name": n, "passed": False, "severity": s} for a, n, s in failed_checks]
    record_build(catalog, {
        "version": version,
        "built_at": datetime.now(timezone.utc),
        "mode": mode,
        "mode_reason": "written by the tests",
        "branch": audit_branch(version),
        "snapshots": list(snapshots.items()),
        "row_counts": list((row_counts or {}).items()),
        "checks": json.dumps(checks),
        "record": "{}",
    })


def build(catalog: LakehouseCatalog, version: str, amounts: dict[int, list[str]], fact_files: int = 1,
          failed_checks: list[tuple[str, str, str]] = (), with_dates: bool = True) -> dict[str, int]:
    """A complete, audited build of ``version`` (not published); returns its snapshots."""
    tables = star_rows(amounts, with_dates)
    snapshots = write_branches(catalog, version, tables, fact_files)
    record_test_build(catalog, version, snapshots, {name: rows.num_rows for name, rows in tables.items()}, failed_checks)
    return snapshots


def build_and_publish(catalog: LakehouseCatalog, version: str, amounts: dict[int, list[str]], **options) -> Publication:
    build(catalog, version, amounts, **options)
    return publish(catalog, version, run_id=f"run-{version}")


def totals(amounts: dict[int, list[str]]) -> dict[str, Decimal]:
    """What the analyst's query returns for ``amounts``: customer name -> total."""
    names = {key: name for key, name, _ in CUSTOMERS}
    return {names[customer]: sum(map(Decimal, values)) for customer, values in amounts.items()}


def cli_environment(catalog: LakehouseCatalog, duckdb_path) -> dict[str, str]:
    """FIN_* variables under which `financial-assets` opens ``catalog`` and this DuckDB file."""
    return {
        "FIN_CATALOG_URL": catalog.sql_url,
        "FIN_CATALOG_NAME": catalog.name,
        "FIN_LAKEHOUSE_URI": catalog.warehouse.removeprefix("file://"),
        "FIN_DUCKDB_PATH": str(duckdb_path),
    }
