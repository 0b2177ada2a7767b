# weir's two entry points: `make run` starts a node with the built-in config,
# `make test` runs every check CI runs. Both work on a fresh machine with Rust,
# Python 3.11, Go and make; `make test` installs what else the tests need (the
# Python packages into clients/python/.venv, helm into target/tools).

CARGO ?= cargo
PYTHON ?= python3
VENV := clients/python/.venv
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

.PHONY: run test lint rust-tests python-tests helm-tests bench

run:
	$(CARGO) run --release --bin weir -- serve

test: lint rust-tests python-tests helm-tests

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

rust-tests:
	$(CARGO) test --workspace --locked

# The Python adapters, tested against the real weir binary.
python-tests: $(VENV)/.installed
	$(CARGO) build --bin weir --locked
	cd clients/python && .venv/bin/ruff check . && .venv/bin/ruff format --check .
	cd clients/python && WEIR_BIN=$(TARGET_DIR)/debug/weir .venv/bin/python -m pytest -q

# The Helm chart, rendered by real helm (installed from the Go module proxy
# into target/tools when missing).
helm-tests:
	$(CARGO) build --bin weir --locked
	WEIR_BIN=$(TARGET_DIR)/debug/weir bash helm/test.sh

$(VENV)/.installed: clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e "clients/python[django,fastapi,test]"
	touch $@

bench:
	$(CARGO) bench --bench engine
	$(CARGO) bench --bench memory
