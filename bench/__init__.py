"""Benchmark of the raw-zone extraction (PostgreSQL and the document store into Parquet).

Not a test: ``python -m bench.run`` seeds a dedicated ``bench`` database with the project's
sample-data generator, runs each case in a fresh process, prints a table and writes
``bench/results/latest.json``. See ``bench/README.md``.
"""
