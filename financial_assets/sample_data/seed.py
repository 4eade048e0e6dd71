"""Fill the sources with sample data: :func:`seed_sources`.

One PostgreSQL transaction drops the three tables, re-creates them, COPYs the rows, puts the
foreign keys back, moves the SERIAL sequences past the explicit ids and commits; until then
other sessions see the old tables (or wait for them). The events are written to a staging
collection and renamed over ``transaction_events`` just before that commit. So a re-run
replaces the data and never duplicates it; a failed run leaves the previous data in place.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from tqdm import tqdm

from financial_assets.sample_data import generate, load, schema
from financial_assets.sample_data.config import SeedConfig
from financial_assets.sample_data.faults import FaultSet, plan_faults
from financial_assets.sample_data.report import SeedReport
from financial_assets.sources import connect_document_store, connect_postgres

LOCK_TIMEOUT = "60s"


@contextmanager
def _bar(enabled: bool, table: str, total: int):
    with tqdm(total=total, desc=f"{table:<18}", unit="rows", unit_scale=True, disable=not enabled,
              dynamic_ncols=True, smoothing=0.1) as bar:
        yield bar


def seed_sources(
    postgres_url: str,
    mongo_url: str,
    mongo_database: str,
    config: SeedConfig,
    progress: bool = False,
) -> SeedReport:
    """Replace the sources' data with the sample data of ``config``; returns what was loaded.

    Raises ``SourceUnavailableError`` (one line, no password) when a server cannot be reached.
    """
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    rows = dict.fromkeys((*schema.TABLES, schema.EVENTS_COLLECTION), 0)
    faults = FaultSet()

    with connect_postgres(postgres_url) as connection, connect_document_store(
        mongo_url, mongo_database
    ) as database:
        accounts = generate.plan_accounts(config)
        pool = generate.geolocation_pool(config.seed)
        with connection.cursor() as cursor, load.EventSink(database) as events:
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            schema.recreate_tables(cursor)

            phase = time.perf_counter()
            first_customer = None
            with _bar(progress, "customers", config.customers) as bar:
                for table in generate.customer_blocks(config):
                    if first_customer is None:
                        first_customer = table.slice(0, 1).to_pylist()[0]
                    rows["customers"] += load.copy_table(cursor, "customers", table)
                    bar.update(table.num_rows)
            seconds["customers"] = time.perf_counter() - phase

            phase = time.perf_counter()
            with _bar(progress, "accounts", config.accounts) as bar:
                for table in accounts.tables():
                    rows["accounts"] += load.copy_table(cursor, "accounts", table)
                    bar.update(table.num_rows)
            seconds["accounts"] = time.perf_counter() - phase

            # Time spent generating and copying only, not waiting for the events' thread.
            seconds["transactions"] = 0.0
            first_block = None
            with _bar(progress, schema.EVENTS_COLLECTION, config.events) as event_bar:
                events.on_inserted = event_bar.update
                with _bar(progress, "transactions", config.transactions) as bar:
                    for index in range(generate.transaction_block_count(config)):
                        phase = time.perf_counter()
                        block = generate.transaction_block(config, accounts, index)
                        if first_block is None:
                            first_block = block
                        rows["transactions"] += load.copy_table(cursor, "transactions", block.table())
                        seconds["transactions"] += time.perf_counter() - phase
                        bar.update(len(block))
                        # The sink's thread builds the documents while this one goes on with COPY.
                        events.write(lambda block=block: generate.event_documents(config, block, pool))

                if config.with_faults:
                    faults = plan_faults(config, first_customer, first_block)
                    for table, data in faults.tables().items():
                        rows[table] += load.copy_table(cursor, table, data)
                    event_bar.total += len(faults.events)
                    events.write(faults.events)
                rows[schema.EVENTS_COLLECTION] = events.flush()
            seconds[schema.EVENTS_COLLECTION] = events.seconds

            phase = time.perf_counter()
            schema.add_foreign_keys(cursor, validate=not config.with_faults)
            schema.reset_sequences(cursor)
            cursor.execute("ANALYZE " + ", ".join(schema.TABLES))
            events.publish()
            seconds["finish"] = time.perf_counter() - phase
        # Leaving connect_postgres commits.
    seconds["total"] = time.perf_counter() - started

    fault_rows = {
        "customers": len(faults.customers),
        "accounts": len(faults.accounts),
        "transactions": len(faults.transactions),
        schema.EVENTS_COLLECTION: len(faults.events),
    }
    return SeedReport(
        config=config.to_dict(),
        rows=rows,
        clean_rows={table: count - fault_rows[table] for table, count in rows.items()},
        faults=faults.records,
        seconds={name: round(value, 3) for name, value in seconds.items()},
    )
