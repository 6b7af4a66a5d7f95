# tollgate — the two commands that matter are `make dev` and `make test`.
CARGO ?= cargo

.PHONY: dev test build check fmt clippy bench release clean-test fuzz help

help:
	@echo "make dev         build and run 'tollgate serve --dev' (memory store, demo account, echo upstream)"
	@echo "make test        all unit and integration tests against a throwaway Redis"
	@echo "make build       debug build of every target"
	@echo "make check       rustfmt --check and clippy -D warnings"
	@echo "make bench       criterion benchmarks"
	@echo "make release     optimised binary in target/release/tollgate"
	@echo "make clean-test  stop and remove leftovers of interrupted test runs"
	@echo "make fuzz        run each fuzz target for FUZZ_SECONDS (default 60), one after another"

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

# Fuzzing needs nightly features; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# provide them. One target at a time: each run uses a whole core.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = pathnorm token_request bearer policy

fuzz:
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t || exit 1; \
		echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t corpus/$$t seeds/$$t -- \
			-dict=dicts/$$t.dict -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 || exit 1; \
	done
