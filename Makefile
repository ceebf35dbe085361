# skald — the two commands a newcomer needs: `make run` and `make test`.
# Everything the build and the tests need is installed here, from Debian and
# crates.io only. Run as root (or with sudo available) on Debian.

SHELL := /bin/bash
CARGO ?= cargo
CONFIG ?= sip-config/skald.yaml
APT_GET := $(shell if [ "$$(id -u)" = 0 ]; then echo apt-get; else echo sudo apt-get; fi)

# Debian packages: what a build needs, and what the tests' real peers need.
BUILD_PKGS := pkg-config gcc espeak-ng
TEST_PKGS := sip-tester baresip-core pocketsphinx-testdata sox curl bc chromium docker-compose

.PHONY: run build test deps test-deps check bench bench-load bench-calls bench-conversations clean-data fuzz help twilio-update-webhook twilio-status twilio-need-number dev-tunnel

## make run: install what is missing, build, start `skald serve` with the example config.
run: deps build models-prereqs
	./target/release/skald models fetch
	./target/release/skald serve --config $(CONFIG)

build:
	$(CARGO) build --release --locked

## make test: install what the tests need, then run every test (unit, sans-IO, end to end).
test: test-deps models
	$(CARGO) build --locked --all-targets
	$(CARGO) test --locked --benches
	$(CARGO) test --locked --lib --tests -- --test-threads=2

check:
	$(CARGO) clippy --locked --all-targets -- -D warnings

## Benchmarks: criterion micro-benchmarks, and sipp-driven load.
bench: test-deps
	$(CARGO) bench --locked

bench-load: test-deps build
	scripts/bench-load.sh

## make bench-calls: `skald loadtest` ramp (RAMP=1,50,100,200,400 callers over Twilio Media Streams)
## against a release skald in load-test mode: reply latency, missed replies, pacing, CPU, RSS.
bench-calls: test-deps build
	scripts/bench-calls.sh

## make bench-conversations: simulated callers (skald simulate) against a release skald, with the
## smart-turn model and with VAD only: reply latency p50/p90, decision time, CPU, concurrent calls.
bench-conversations: test-deps build models
	scripts/bench-conversations.sh

deps:
	@scripts/install-debs.sh $(BUILD_PKGS)

test-deps: deps
	@scripts/install-debs.sh $(TEST_PKGS)

clean-data:
	rm -rf data

## make fuzz: long libFuzzer runs of every network parser (nightly + cargo-fuzz; not part of `make test`).
FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz
	cd fuzz && for t in $$($(CARGO) +nightly fuzz list); do \
	  $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

## make models: fetch the local models from PyPI (pip), convert Moonshine to
## plain ONNX, record sha256 in SKALD_MODELS_DIR (default ~/.cache/skald/models).
## Needs python3 with pip and venv (Debian: python3-pip, python3-venv).
.PHONY: models models-prereqs
models: models-prereqs
	$(CARGO) build --locked --bin skald
	./target/debug/skald models fetch

models-prereqs: deps
	@command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 \
	  || scripts/install-debs.sh python3 python3-pip
	@python3 -c 'import ensurepip, venv' 2>/dev/null || scripts/install-debs.sh python3-venv

## make smart-turn-reference: pipecat's numpy Whisper features (the reference
## tests/smart_turn.rs compares against) with a pinned numpy, from PyPI, in
## target/smart-turn-reference.
.PHONY: smart-turn-reference livekit-clients
smart-turn-reference: models-prereqs
	scripts/smart-turn-reference.sh
test: smart-turn-reference

## make livekit-clients: LiveKit's official Python server SDK (PyPI
## livekit-api, pinned) in target/livekit-clients, for tests/livekit_api.rs.
livekit-clients: models-prereqs
	scripts/livekit-clients.sh
test: livekit-clients

## make twilio-update-webhook NUMBER=+15551234567 [PUBLIC_URL=https://…]: point a Twilio
## number's voice webhook and status callback at this server (twilio.public_url
## or PUBLIC_URL). Credentials: TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN, or
## TWILIO_API_KEY and TWILIO_API_SECRET.
twilio-update-webhook: twilio-need-number deps build
	./target/release/skald twilio update-webhook --config $(CONFIG) --number '$(NUMBER)' $(if $(PUBLIC_URL),--public-url '$(PUBLIC_URL)')

## make twilio-status [NUMBER=+15551234567]: a Twilio number's (or every number's)
## voice configuration and its recent calls.
## make dev-tunnel NUMBER=+15551234567 [PORT=8080]: expose a running local skald to Twilio
## through cloudflared or ngrok (whichever you have) and point the number's webhook at it.
dev-tunnel: twilio-need-number deps build
	NUMBER=$(NUMBER) PORT=$(or $(PORT),8080) scripts/dev-tunnel.sh

twilio-status: deps build
	./target/release/skald twilio status --config $(CONFIG) $(if $(NUMBER),--number '$(NUMBER)') $(if $(PUBLIC_URL),--public-url '$(PUBLIC_URL)')

twilio-need-number:
	@test -n "$(NUMBER)" || { echo "usage: make twilio-update-webhook NUMBER=+15551234567 [CONFIG=$(CONFIG)] [PUBLIC_URL=https://…]" >&2; exit 2; }

## make help: this list.
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)
