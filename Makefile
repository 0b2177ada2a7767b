# weir's two entry points: `make run` starts a node with the built-in config,
# `make test` runs every check CI runs. Both work on a fresh machine with Rust
# installed; `make test` installs what else the tests need.

CARGO ?= cargo

.PHONY: run test lint rust-tests bench

run:
	$(CARGO) run --release --bin weir -- serve

test: lint rust-tests

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

rust-tests:
	$(CARGO) test --workspace --locked

bench:
	$(CARGO) bench --bench engine
	$(CARGO) bench --bench memory
