# tollgate — the two commands that matter are `make dev` and `make test`.
CARGO ?= cargo

.PHONY: dev test build check fmt clippy bench release clean-test help

help:
	@echo "make dev         build and run 'tollgate serve --dev' (memory store, demo account, echo upstream)"
	@echo "make test        all unit and integration tests against a throwaway Redis"
	@echo "make build       debug build of every target"
	@echo "make check       rustfmt --check and clippy -D warnings"
	@echo "make bench       criterion benchmarks"
	@echo "make release     optimised binary in target/release/tollgate"
	@echo "make clean-test  stop and remove leftovers of interrupted test runs"

dev:
	@scripts/ensure-deps.sh build
	$(CARGO) run --locked --bin tollgate -- serve --dev

test:
	@scripts/test.sh

build:
	@scripts/ensure-deps.sh build
	$(CARGO) build --locked --all-targets

check: fmt clippy

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	@scripts/ensure-deps.sh build
	$(CARGO) clippy --locked --all-targets -- -D warnings

bench:
	@scripts/ensure-deps.sh build
	$(CARGO) bench --locked

release:
	@scripts/ensure-deps.sh build
	$(CARGO) build --locked --release --bin tollgate

clean-test:
	@scripts/clean-test.sh
