"""Sample data for the sources: `financial-assets seed` and its Python API.

    from financial_assets.sample_data import SeedConfig, seed_sources
    report = seed_sources(postgres_url, mongo_url, mongo_database, SeedConfig(transactions=5000,
                          with_faults=True))
    report.rows["transactions"], report.faults["null_amounts"].keys

Modules (none imports Dagster): ``config`` (what to generate), ``schema`` (the reference DDL),
``generate`` (deterministic clean data in blocks), ``faults`` (the fault catalogue),
``objectids`` (reproducible ObjectIds), ``load`` (COPY and insert_many), ``seed`` (the
orchestration), ``report`` (what was loaded), ``cli`` (the command).

The heavy imports (numpy, Faker, pyarrow) wait until ``seed_sources`` or the catalogue is used,
so that ``financial-assets --help`` stays quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from financial_assets.sample_data.config import SeedConfig

if TYPE_CHECKING:
    from financial_assets.sample_data.faults import CATALOGUE, FaultKind
    from financial_assets.sample_data.report import FaultRecord, SeedReport
    from financial_assets.sample_data.seed import seed_sources

__all__ = ["CATALOGUE", "FaultKind", "FaultRecord", "SeedConfig", "SeedReport", "seed_sources"]

_LAZY = {
    "seed_sources": "financial_assets.sample_data.seed",
    "SeedReport": "financial_assets.sample_data.report",
    "FaultRecord": "financial_assets.sample_data.report",
    "CATALOGUE": "financial_assets.sample_data.faults",
    "FaultKind": "financial_assets.sample_data.faults",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
