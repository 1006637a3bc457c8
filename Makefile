# Turnout — `make run` (demo) and `make test` (the whole suite) work on a fresh
# Debian machine as root: each installs what it needs first.
SHELL := /bin/bash
SWIFT ?= swift
APT_PACKAGES := libhiredis-dev zlib1g-dev libssl-dev redis-server wrk curl openssl chromium
BENCH_PACKAGES := nginx-light varnish
RELEASE_BIN = .build/release
DEBUG_BIN = .build/debug

.PHONY: run test bench deps release debug check clean

## Install the system packages Turnout builds and tests with, when missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "==> installing system packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

release: deps
	$(SWIFT) build -c release

debug: deps
	$(SWIFT) build --build-tests

## Build release, start the demo CRM on :3000 and Turnout on :8080 (Ctrl-C stops both).
run: release
	@$(RELEASE_BIN)/demo-crm --port 3000 --seed 50 & crm=$$!; \
	trap 'kill $$crm 2>/dev/null; wait $$crm 2>/dev/null' EXIT INT TERM; \
	for i in $$(seq 50); do curl -s -o /dev/null 127.0.0.1:3000/__crm/stats && break; sleep 0.1; done; \
	echo ""; \
	echo "Turnout on http://127.0.0.1:8080 in front of the demo CRM on http://127.0.0.1:3000. Try:"; \
	echo "  curl -i -H 'Authorization: Bearer demo' 'http://127.0.0.1:8080/api/messages?conversation_id=1&limit=3'"; \
	echo "  curl -i -H 'Authorization: Bearer demo' -H 'Content-Type: application/json' \\"; \
	echo "       -d '{\"conversation_id\":1,\"from\":\"+5511999\",\"to\":\"+5511888\",\"body\":\"hi\"}' http://127.0.0.1:8080/api/messages"; \
	echo "  curl -s -H 'Authorization: Bearer dev-admin-token' http://127.0.0.1:8080/api/optimized"; \
	echo "  curl -i -H 'X-Turnout-Lane: optimized' -H 'Authorization: Bearer demo' http://127.0.0.1:8080/api/messages/1   # twice: X-Cache MISS, then HIT"; \
	echo "  curl -s http://127.0.0.1:8080/readyz"; \
	echo "  open http://127.0.0.1:8080/api/optimized/dashboard?token=dev-admin-token   # the dashboard"; \
	echo "  WebSocket push: ws://127.0.0.1:8080/ws?token=<HS256 JWT signed with push.jwt_secret, claim channels> (README: Push notifications)"; \
	echo "  edit proxy.conf (or kill -HUP the turnout process) to reload; Ctrl-C stops both."; \
	echo ""; \
	$(RELEASE_BIN)/turnout --config proxy.conf

## The whole test suite: unit tests and end-to-end tests over real sockets.
test: deps
	$(SWIFT) build --build-tests
	@# Two processes: the end-to-end tests block their threads on sockets and
	@# child processes, which must not starve the in-process async tests of
	@# the (2-thread, on this machine) cooperative pool; and the in-process
	@# tests run one at a time, since several plugin tests that wait on plugin
	@# Tasks at once can take every cooperative thread (seen: a hang). Both
	@# orders take seconds.
	TURNOUT_BIN_DIR=$$(pwd)/$(DEBUG_BIN) $(SWIFT) test --skip-build --skip TurnoutIntegrationTests --no-parallel
	TURNOUT_BIN_DIR=$$(pwd)/$(DEBUG_BIN) $(SWIFT) test --skip-build --filter TurnoutIntegrationTests

## Benchmarks against direct-to-upstream and nginx (release build).
bench: release
	@missing=""; for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	Benchmarks/proxy.sh
	Benchmarks/plugin.sh
	Benchmarks/cache.sh
	Benchmarks/push.sh

check: release
	$(RELEASE_BIN)/turnout check --config proxy.conf

clean:
	rm -rf .build
