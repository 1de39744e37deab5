# Two commands on a fresh machine: `make serve` and `make test`. Everything else is
# reached from those (or named below). The virtualenv is built on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
AUTHZ := $(BIN)/authz
DB_URL ?= sqlite:///var/authz.db
PORT ?= 50051
# The example organizations (an installed server ships none: it serves the folder it is given).
POLICY_DIR ?= authz/policies/generated
HTTP_PORT ?= 8181

.PHONY: install proto proto-check proto-lint proto-release policy-check lint typecheck pytest test serve bench bench-peers fuzz faults soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Generated gRPC stubs (client/v1/*_pb2*.py, typed .pyi; imported as authz_client.v1 or authz.v1); never edited by hand.
proto: $(STAMP)
	$(BIN)/python -m tools.codegen

# Fails when committed stubs differ from what proto/ generates.
proto-check: $(STAMP)
	$(BIN)/python -m tools.codegen --check

# API hygiene: buf lint (buf.yaml) and buf breaking against the last released API image
# under proto/releases/ (highest version). `make proto-release VERSION=v1.1.0` records a
# new baseline when a release ships.
PROTO_BASELINE = $(shell ls proto/releases/*.binpb | sort -V | tail -n 1)
proto-lint: $(STAMP)
	$(BIN)/buf lint
	$(BIN)/buf breaking proto --against $(PROTO_BASELINE)

proto-release: $(STAMP)
	test -n "$(VERSION)" || { echo "usage: make proto-release VERSION=v1.1.0"; exit 2; }
	$(BIN)/buf build proto --exclude-source-info -o proto/releases/$(VERSION).binpb

# Compiled policy matches its sources; sources validate; policy test suites pass.
policy-check: $(STAMP)
	$(AUTHZ) policy compile --check
	$(AUTHZ) org import --check --all
	$(AUTHZ) policy validate
	$(AUTHZ) policy test

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy authz server client tools

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: proto-check proto-lint policy-check lint typecheck pytest

serve: $(STAMP)
	mkdir -p var
	$(AUTHZ) db upgrade --db $(DB_URL)
	$(AUTHZ) directory import --db $(DB_URL) --policy-dir $(POLICY_DIR) authz/policies/orgs/acme-eu/tests/directory.yaml
	$(AUTHZ) serve --db $(DB_URL) --policy-dir $(POLICY_DIR) --listen 127.0.0.1:$(PORT) --http-listen 127.0.0.1:$(HTTP_PORT)

bench: $(STAMP)
	$(BIN)/python -m bench

# authz beside Cerbos (npm @cerbos/cerbos-linux-x64, into bench/.peers/) and the echo floor.
bench-peers: $(STAMP)
	$(BIN)/python -m bench --parts peers

# Long property-based campaign over every RPC (make test runs 25 examples per RPC).
FUZZ_EXAMPLES ?= 2000
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -s tests/hardening/test_fuzz.py

# Fault tests that disturb the machine: restarts the local PostgreSQL cluster under load.
faults: $(STAMP)
	AUTHZ_FAULTS=1 $(BIN)/python -m pytest -q -s tests/hardening/test_replicas_faults.py

# Loopback load at 80% of measured capacity; SOAK_SECONDS=60 for a short run.
SOAK_SECONDS ?= 600
soak: $(STAMP)
	$(BIN)/python scripts/soak.py --seconds $(SOAK_SECONDS)

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .mypy_cache .ruff_cache
