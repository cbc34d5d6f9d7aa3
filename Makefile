# `make run` and `make test` do all set-up on a fresh Debian 12 machine, as root.
SHELL := /bin/bash
PYTHON := /usr/bin/python3
VENV := .venv
APT_PACKAGES := $(shell grep -v '^\#' paas/doctor/apt-packages.txt)

.PHONY: run test test-postgres setup apt venv monitor lint clean-test bench-peers

run: setup
	@ln -sf "$(CURDIR)/$(VENV)/bin/paas" /usr/local/bin/paas
	@echo "paas is starting. In another terminal:"
	@echo "  paas apps:create hello"
	@echo "  cd my-app && paas git:remote -a hello   # adds the 'paas' git remote and its credentials"
	@echo "  git push paas main"
	@echo "  curl http://hello.$${PAAS_DOMAIN:-localhost}$$( [ "$${PAAS_ROUTER_PORT:-80}" = 80 ] || echo :$${PAAS_ROUTER_PORT})/"
	$(VENV)/bin/paas up

# Tests in parallel on TEST_WORKERS pytest-xdist workers (each test file on one worker: see
# tests/conftest.py), then the `serial` ones alone; both parts run, and either failing fails.
TEST_WORKERS ?= 3
PYTEST := $(VENV)/bin/pytest -p no:cacheprovider -o console_output_style=classic --durations=15

# The tests start their own PostgreSQL 15 (tests/postgres.py) where they need one; the unit
# tests run a second time with every database on it (PAAS_TEST_DATABASE=postgresql).
test: setup lint
	@status=0; \
	$(PYTEST) -n $(TEST_WORKERS) --dist loadfile -m 'not serial' || status=$$?; \
	$(PYTEST) -m serial || status=$$((status ? status : $$?)); \
	PAAS_TEST_DATABASE=postgresql $(PYTEST) -n $(TEST_WORKERS) --dist loadfile tests/unit \
		|| status=$$((status ? status : $$?)); \
	exit $$status

# The whole suite with every test platform's and unit test's database on PostgreSQL.
test-postgres: setup lint
	@status=0; \
	PAAS_TEST_DATABASE=postgresql $(PYTEST) -n $(TEST_WORKERS) --dist loadfile -m 'not serial' \
		|| status=$$?; \
	PAAS_TEST_DATABASE=postgresql $(PYTEST) -m serial || status=$$((status ? status : $$?)); \
	exit $$status

setup: apt venv monitor

# The dyno monitor (paas/runtime/native): static, so each dyno's costs no loader pages.
DYNO_MONITOR := paas/runtime/native/paas-dyno-monitor

monitor: $(DYNO_MONITOR)

$(DYNO_MONITOR): paas/runtime/native/dyno-monitor.c
	gcc -O2 -Wall -Wextra -Werror -static -s -o $@ $<

apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "Installing:" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@# The nodejs buildpack uses the stack's /usr/bin/node and npm (a nodejs package may bring npm).
	@[ -x /usr/bin/node ] && [ -x /usr/bin/npm ] || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm; }

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

lint: venv
	$(VENV)/bin/ruff check paas router tests bench
	$(VENV)/bin/mypy

# paas beside piku (bench/peers/README.md): PIKU_MIRROR=<a git dir of piku/piku> make bench-peers
# BENCH_ARGS="--cold 3 --redeploy 5 --config 5 --wrk-rounds 2 --many 10" for a shorter run.
bench-peers: setup
	bench/peers/run.sh $(BENCH_ARGS)
