# weir's two entry points: `make run` starts a node with the built-in config,
# `make test` runs every check CI runs. Both work on a fresh machine with Rust,
# Python 3.11, Go, Node 20 and make; `make test` installs what else the tests
# need (the Python packages into clients/python/.venv, helm, promtool and
# schemathesis into target/tools, the dashboard's npm packages into dashboard/node_modules, Debian's chromium,
# redis-server, tcpdump and buildah).

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := clients/python/.venv
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

.PHONY: run test lint rust-tests api-tests python-tests helm-tests prometheus-tests dashboard dashboard-tests image image-tests fuzz fuzz-tests bench

run: dashboard
	$(CARGO) run --release --bin weir -- serve

test: dashboard lint rust-tests api-tests python-tests helm-tests prometheus-tests dashboard-tests image-tests fuzz-tests

# The web page: TypeScript and uPlot bundled into dashboard/dist, which the
# weir binary embeds when it is built (see build.rs).
dashboard: dashboard/node_modules/.installed
	cd dashboard && npm run build

dashboard/node_modules/.installed: dashboard/package.json dashboard/package-lock.json
	cd dashboard && npm ci --no-audit --no-fund
	touch $@

# The Prometheus alerting rules shipped for operators, checked by real
# promtool (built from the Go module proxy into target/tools when missing).
PROMTOOL_VERSION := v0.303.1
PROMTOOL := $(or $(shell command -v promtool 2>/dev/null),$(TARGET_DIR)/tools/promtool)

prometheus-tests: $(PROMTOOL)
	$(PROMTOOL) check rules helm/weir/files/weir-alerts.yml
	source helm/helm.sh && "$$HELM" template t helm/weir --set metrics.prometheusRule.enabled=true \
	  --show-only templates/monitoring.yaml | sed -n '/^spec:/,$$p' | tail -n +2 | sed 's/^  //' >$(TARGET_DIR)/chart-rules.yml
	$(PROMTOOL) check rules $(TARGET_DIR)/chart-rules.yml

$(TARGET_DIR)/tools/promtool:
	mkdir -p $(TARGET_DIR)/tools/promtool-build
	cd $(TARGET_DIR)/tools/promtool-build && (test -f go.mod || go mod init promtool-build) \
	  && go get github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION) \
	  && go build -o $@ github.com/prometheus/prometheus/cmd/promtool

# The dashboard in a real browser against three real weir nodes.
dashboard-tests: dashboard
	$(CARGO) build --bin weir --locked
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	cd dashboard && WEIR_BIN=$(TARGET_DIR)/debug/weir npm test

# The container image weir:<version>: a release build laid out FROM scratch
# and built with buildah (Debian's package, installed when missing).
image: dashboard
	$(CARGO) build --release --locked --bin weir
	command -v buildah >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah)
	bash image/rootfs.sh

# The image's own weir, run from its root filesystem with the chart's flags.
image-tests: image
	bash image/test.sh

# The fuzz targets of fuzz/ (cargo-fuzz, nightly Rust): ten seconds each in
# `make test`; `make fuzz FUZZ_SECONDS=600` for a long run.
FUZZ_SECONDS ?= 600
fuzz-tests:
	bash fuzz/run.sh 10

fuzz:
	bash fuzz/run.sh $(FUZZ_SECONDS)

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# The snapshot tests start real redis-server processes, and the security
# tests capture loopback traffic with tcpdump (Debian's packages).
rust-tests:
	command -v redis-server >/dev/null && command -v tcpdump >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server tcpdump)
	$(CARGO) test --workspace --locked

# The HTTP API against docs/openapi.json: schemathesis (PyPI, into
# target/tools/schemathesis) against two real clustered weir nodes.
api-tests:
	$(CARGO) build --bin weir --locked
	WEIR_BIN=$(TARGET_DIR)/debug/weir bash tests/api/schemathesis.sh

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

bench: dashboard
	$(CARGO) bench --bench engine
	$(CARGO) bench --bench memory
	$(CARGO) bench --bench usage
	$(CARGO) bench --bench snapshot
	$(CARGO) bench --bench sealing
