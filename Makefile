# freshet: every command a user or CI needs. `make demo` and `make test` do all set-up themselves.
# Heavy artefacts live outside the clone, keyed by version: uv and the Kafka jars and the Weaviate
# binary under $(FRESHET_CACHE), wheels in uv's cache (~/.cache/uv).

SHELL := /bin/bash
UV_VERSION := 0.13.9
FRESHET_CACHE ?= $(HOME)/.cache/freshet
UV := $(FRESHET_CACHE)/uv-$(UV_VERSION)/bin/uv
VENV := .venv
FRESHET := $(VENV)/bin/freshet
PYTEST_ARGS ?=

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export UV_PYTHON_DOWNLOADS := never
export FRESHET_CACHE_DIR ?= $(FRESHET_CACHE)

.PHONY: help install up down clean status demo test unit integration chaos chaos-cluster bench lint typecheck

help:
	@echo "make demo    - start the local stack and index + search this project's docs over Kafka"
	@echo "make test    - unit and integration tests (starts what they need)"
	@echo "make chaos   - the chaos tier: faults and hostile input on a Kafka and Weaviate of its own"
	@echo "make chaos-cluster - the chaos tier's cluster scenarios (issue 10) on a 3-broker, 3-node cluster of its own"
	@echo "make bench   - every benchmark suite on the local stack, one table (BENCH_ARGS=--json, --only bulk, ...)"
	@echo "make up | down | status | clean  - manage the local stack (clean wipes all local data)"
	@echo "make up CLUSTER=1 - a local cluster: 3 brokers, 3 Weaviate nodes, 2 indexers, 2 query workers"

$(UV):
	python3 -m pip install --quiet --disable-pip-version-check --target $(FRESHET_CACHE)/uv-$(UV_VERSION) uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras --python python3.11
	$(VENV)/bin/freshet model export  # the onnx backends' exports, made here from the bundled weights (cached)
	@touch $@

install: $(VENV)/.synced

# The demo's golden set (judged against this repository's docs), unless one is set already.
up demo: export FRESHET_GOLDEN_DIR ?= $(CURDIR)/ops/golden/freshet-docs

# `make up CLUSTER=1`: 3 KRaft brokers, 3 Weaviate nodes, 2 indexers, 2 query workers (docs/cluster.md);
# BROKERS=, WEAVIATE_NODES=, INDEXERS=, QUERY_WORKERS= override each count. Without any of them, `make up`
# starts the shape the stack was last started with, or one of each.
ifeq ($(CLUSTER),1)
BROKERS ?= 3
WEAVIATE_NODES ?= 3
INDEXERS ?= 2
QUERY_WORKERS ?= 2
endif
STACK_SHAPE = $(if $(BROKERS),--brokers $(BROKERS)) $(if $(WEAVIATE_NODES),--weaviate-nodes $(WEAVIATE_NODES)) \
	$(if $(INDEXERS),--indexers $(INDEXERS)) $(if $(QUERY_WORKERS),--query-workers $(QUERY_WORKERS)) \
	$(if $(filter 1 yes true,$(SECURE)),--secure,$(if $(filter 0 no false,$(SECURE)),--plain))

up: install
	$(FRESHET) stack up $(STACK_SHAPE)

down: install
	$(FRESHET) stack down

clean: install
	$(FRESHET) stack clean

status: install
	$(FRESHET) stack status

demo: up
	$(FRESHET) demo

test: install
	$(FRESHET) stack install --browser
	$(VENV)/bin/pytest tests --ignore=tests/chaos --durations=25 $(PYTEST_ARGS)

unit: install
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

integration: install
	$(FRESHET) stack install --browser
	$(VENV)/bin/pytest tests/integration $(PYTEST_ARGS)

# Scale knobs (defaults: the full scale CI runs): CHAOS_EVENTS, CHAOS_KILLS, CHAOS_OUTAGE_SECONDS,
# CHAOS_HOSTILE, CHAOS_RATE, CHAOS_SEED; the reliability table lands in .freshet/chaos/report.md.
chaos: install
	$(FRESHET) stack install
	$(VENV)/bin/pytest tests/chaos --timeout 1800 --durations=15 $(PYTEST_ARGS)

# The cluster scenarios (tests/chaos/cluster, skipped by `make chaos`): same knobs; their table lands in
# .freshet/chaos/cluster/report.md.
chaos-cluster: install
	$(FRESHET) stack install
	CHAOS_CLUSTER=1 $(VENV)/bin/pytest tests/chaos/cluster --timeout 1800 --durations=15 $(PYTEST_ARGS)

# Every benchmark suite (bulk, edits, freshness, query, hnsw) on the local stack, one table; the figures
# also land in .freshet/bench.json. They read ../shared/datasets (the demo never does). About 30 minutes.
BENCH_ARGS ?=
bench: install
	$(FRESHET) stack install
	$(FRESHET) bench --out .freshet/bench.json $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check freshet schemas streams workers ops tests

typecheck: install
	$(VENV)/bin/mypy
