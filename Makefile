# mkd: `make run` starts the daemon on the simulated backend; `make test` runs every test.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint typecheck bench fuzz fleet-soak openapi system-deps image clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# Debian packages the tests use: dtc (DTS <-> DTB), chromium (dashboard tests), systemd-analyze and
# systemd-socket-activate (the units in deploy/), strace (fsync order before a 2xx), openssl (certificates
# for the TLS tests), ip from iproute2 (network namespaces for clients beyond loopback), etcd from
# etcd-server (the fleet tests' private 3-member cluster), wrk (the load generator of `make bench`'s
# read benchmark).
system-deps:
	@missing=""; \
	command -v dtc >/dev/null 2>&1 || missing="$$missing device-tree-compiler"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v systemd-socket-activate >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v strace >/dev/null 2>&1 || missing="$$missing strace"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	[ -x /usr/bin/etcd ] || missing="$$missing etcd-server"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

run: $(STAMP) system-deps
	$(BIN)/mkd serve --config deploy/mkd.toml --state-dir var

test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/mypy --strict mkd
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict mkd

bench: $(STAMP) system-deps
	$(BIN)/python -m tests.bench

# The long schemathesis run: at least 5,000 stateful cases; load, start, stop and unload must each
# get at least 50 2xx (tests/fuzz/test_fuzz_openapi.py prints the count per operation).
fuzz: $(STAMP) system-deps
	MKD_FUZZ_CASES=5000 MKD_FUZZ_BUDGET_S=420 $(BIN)/pytest -n 0 -s -p no:cacheprovider --timeout=3600 tests/fuzz

# Random node kills, partitions and etcd member restarts for MKD_FLEET_SOAK_S seconds (default 120),
# checking after each step that the fleet converges and throughout that no instance runs on two nodes.
fleet-soak: $(STAMP) system-deps
	$(BIN)/python -m tests.fleet.soak

openapi: $(STAMP)
	$(BIN)/python -m mkd.openapi > openapi.json

# The container image (deploy/Containerfile) built with Debian's buildah on a debootstrap base, then
# `mkd --version` run inside it: minutes, so not part of `make test` (which checks the definition).
image:
	@missing=""; \
	command -v buildah >/dev/null 2>&1 || missing="$$missing buildah"; \
	command -v podman >/dev/null 2>&1 || missing="$$missing podman"; \
	command -v debootstrap >/dev/null 2>&1 || missing="$$missing debootstrap"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
	deploy/build-image.sh

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
