# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test lint system-deps bench bench-ab bench-cache bench-peers clean
PEERS := bench/peers/.venv

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.lock
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e . --config-settings editable_mode=compat
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/myagent-ws server examples/weather_agent.py --host $(HOST) --port $(PORT)

system-deps:
	bash scripts/install-system-deps.sh

test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.bench.lock
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.model_path
	$(BIN)/python -m bench.sdk_floor
	$(BIN)/python -m bench.gc_heap

# The model-path turn of each server under callgrind: instructions and simulated L2 misses per
# turn, figures that do not drift with the machine's speed (valgrind: a Debian package).
bench-cache: $(STAMP) system-deps
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.bench.lock
	$(BIN)/python -m bench.cache_sim

# This tree's frame path against an earlier revision's, the two servers taking turns (the
# machine's speed drifts too much for figures of two runs at different times to compare).
REV ?= af16f67
bench-ab: $(STAMP)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.bench.lock
	$(BIN)/python -m bench.ab $(REV)

# Google ADK + LiteLLM in a venv of their own (bench/peers/.venv), served by `adk api_server`
# against the same fake model: the model-path table with ADK's column.
$(PEERS)/.installed: bench/peers/requirements.lock
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/pip install --disable-pip-version-check -q -r bench/peers/requirements.lock
	touch $@

bench-peers: $(STAMP) $(PEERS)/.installed
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.bench.lock
	$(BIN)/python -m bench.model_path --peers --rounds 3  # ADK's turns are ~40x ours: 3 rounds

clean:
	rm -rf $(VENV) $(PEERS) .pytest_cache .mypy_cache .ruff_cache
