# The README's two commands are `make demo` and `make test`; both set everything up from scratch.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
INSTALLED := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/var/dagster

.PHONY: install iac-tools services services-stop demo test dev query bench bench-startup clean

$(INSTALLED): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(INSTALLED)

# cfn-lint and checkov, in their own virtualenv: checkov pins boto3, packaging and networkx
# below the project's.
IAC_VENV := .venv-iac
IAC_INSTALLED := $(IAC_VENV)/.installed

$(IAC_INSTALLED): infra/requirements.txt
	test -x $(IAC_VENV)/bin/python || $(PYTHON) -m venv $(IAC_VENV)
	$(IAC_VENV)/bin/python -m pip install --quiet -r infra/requirements.txt
	touch $@

iac-tools: $(IAC_INSTALLED)

services: $(INSTALLED)
	scripts/services.sh start

services-stop:
	scripts/services.sh stop

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

# The seed replaces the sources, so the raw zone is rebuilt rather than advanced.
demo: services $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/financial-assets seed
	$(BIN)/financial-assets materialize --full-refresh
	$(BIN)/financial-assets query

# The analyst's query from the original pipeline's README, on the latest star schema.
query: $(INSTALLED)
	$(BIN)/financial-assets query

# Two workers, one Spark JVM each: a serial run leaves a third of this 2-core machine idle (much
# of it runs one thread at a time: Spark's driver planning, Python). Each module runs whole on
# one worker, the longest first (conftest.py). TEST_WORKERS=1: one worker; `pytest` alone: serial.
# First, once per JDK and pyspark, the class archive that spares each of the suite's ~20 JVMs a
# third of a cold start's CPU (financial_assets_tests/jvm_class_archive.py; ~1 minute, then a no-op).
TEST_WORKERS ?= 2
test: services $(IAC_INSTALLED)
	$(BIN)/python -m financial_assets_tests.jvm_class_archive
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

dev: services $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

# Benchmarks, not tests: extraction against its baselines, then the pipeline stage by stage, the
# peer stack on the same data, and the pipeline once more on a two-worker standalone Spark cluster
# (one timed run: the side-by-side with local[*]).
# SCALE and EVENTS take 500000, 500k or 2m; EVENTS defaults to 15% of SCALE.
SCALE ?= 500k
EVENTS ?=
REPEAT ?= 3
# The project with the bench extra's peers (pandas, ConnectorX, pymongoarrow...) in a virtualenv of
# their own: pymongoarrow pins pyarrow to one older minor release, and `.venv`, the environment
# `make test` tested, must stay as it was.
BENCH_VENV := .venv-bench
BENCH_BIN := $(CURDIR)/$(BENCH_VENV)/bin
BENCH_INSTALLED := $(BENCH_VENV)/.installed

$(BENCH_INSTALLED): setup.cfg pyproject.toml
	test -x $(BENCH_BIN)/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_BIN)/python -m pip install --quiet --upgrade pip
	$(BENCH_BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

# The peer stack (dlt + DuckDB) lives in its own virtualenv: dlt's pins are not Dagster's.
PEER_INSTALLED := .venv-dlt/.installed

$(PEER_INSTALLED): bench/peer-requirements.txt
	test -x .venv-dlt/bin/python || $(PYTHON) -m venv .venv-dlt
	.venv-dlt/bin/python -m pip install --quiet -r bench/peer-requirements.txt
	touch $@

# How long the code location and the CLI take to start, and whether they load PySpark.
bench-startup: $(INSTALLED) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m bench.startup --repeat 3

bench: $(BENCH_INSTALLED) $(PEER_INSTALLED)
	$(BENCH_BIN)/python -m bench.run --transactions $(SCALE) $(if $(EVENTS),--events $(EVENTS)) --repeat $(REPEAT)
	$(BENCH_BIN)/python -m bench.pipeline --transactions $(SCALE) $(if $(EVENTS),--events $(EVENTS)) --repeat $(REPEAT) --profile
	.venv-dlt/bin/python -m bench.peer_dlt --database bench_pipeline --mongo-database bench_pipeline --repeat $(REPEAT)
	$(BENCH_BIN)/python -m bench.pipeline --transactions $(SCALE) $(if $(EVENTS),--events $(EVENTS)) --repeat 1 --profile --cluster 2
	mkdir -p bench/results/scale-$(SCALE)
	cp bench/results/latest.json bench/results/pipeline.json bench/results/pipeline-cluster.json bench/results/peer.json bench/results/scale-$(SCALE)/
	$(BENCH_BIN)/python -m bench.report --scale $(SCALE)

# Stops the local servers even when FIN_*_URL point elsewhere and deletes their data, also where
# PostgreSQL's was kept outside the clone (as root, see scripts/services.sh): var/ is about to go.
clean:
	env -u FIN_POSTGRES_URL -u FIN_MONGO_URL scripts/services.sh purge
	rm -rf var .venv .venv-iac .venv-dlt .venv-bench
