# One gate and one demo. `make test` and `make demo` create .venv and install the pinned
# dependencies on first use; nothing else needs to be installed by hand.

SHELL := /bin/bash
export SAM_CLI_TELEMETRY := 0
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
PYTHON := $(BIN)/python
STAMP := $(VENV)/.installed
# The relay's C renderer (native/fastejson), compiled into the virtualenv: needs a C compiler and
# Python's headers (gcc and python3-dev, or Xcode's command line tools).
NATIVE_STAMP := $(VENV)/.fastejson
NATIVE_SOURCES := $(wildcard native/fastejson/*.c native/fastejson/*.py native/fastejson/*.toml)
FUNCTIONS := $(wildcard functions/*/app.py)
# Project code checked with mypy --strict (functions are checked one folder at a time, since
# every handler module is called `app`).
STRICT_PATHS := layers/shared/change_contract layers/shared/reaction_runtime localdev $(wildcard relay) $(wildcard bench)

.PHONY: help venv lock test lint typecheck pytest templates relay-image demo events bench build clean

help:
	@echo "make test    - every check: lint, types, all test tiers, template checks"
	@echo "make demo    - the whole pipeline locally (ARGS=--follow keeps it running)"
	@echo "make events  - regenerate events/*.json from the contract"
	@echo "make bench   - benchmarks, written to bench/results/"
	@echo "make build   - sam build (needs python3.13)"
	@echo "make relay-image - build the relay image (arm64) and push it to ECR (needs Docker)"

$(STAMP): requirements/dev.txt localdev/find-python.sh
	@boot="$$(./localdev/find-python.sh)"; echo "creating $(VENV) with $$boot"; \
	  "$$boot" -m venv --clear $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements/dev.txt
	$(PYTHON) localdev/install_paths.py
	@touch $@

$(NATIVE_STAMP): $(STAMP) $(NATIVE_SOURCES)
	$(PYTHON) -m pip install --quiet ./native/fastejson
	@rm -rf native/fastejson/build native/fastejson/*.egg-info
	@touch $@

venv: $(STAMP) $(NATIVE_STAMP)
	@$(PYTHON) localdev/install_paths.py >/dev/null

lock: $(STAMP)
	@echo "# Pinned by \`make lock\` from requirements/dev.in on Python 3.13. Do not edit by hand." > requirements/dev.txt.new
	$(PYTHON) -m pip install --quiet -r requirements/dev.in
	$(PYTHON) -m pip freeze | grep -ivE '^(pip|setuptools)==' >> requirements/dev.txt.new
	mv requirements/dev.txt.new requirements/dev.txt

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy $(STRICT_PATHS)
	@for app in $(FUNCTIONS); do dir=$$(dirname $$app); echo "mypy $$dir"; \
	  MYPYPATH=$$dir $(BIN)/mypy $$dir || exit 1; done
	$(BIN)/mypy --config-file tests/mypy.ini tests

pytest: venv
	$(BIN)/pytest

# Template checks: cfn-lint, sam validate, checkov (skips only where the template says why), and
# sam build when every function exists and a python3.13 is on PATH: into a temporary directory,
# so the tree stays clean, with --cached and a cache outside the tree (the layer's arm64 wheels
# come from PyPI: about a minute cold, about ten seconds cached).
SAM_CACHE := $${XDG_CACHE_HOME:-$$HOME/.cache}/mongo-change-reactions/sam-build
SAM_FUNCTIONS := stock_alert update_notifier audit_writer
templates: venv
	$(BIN)/cfn-lint template.yaml
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/sam validate --lint --template template.yaml --region us-east-1
	$(BIN)/checkov --file template.yaml --framework cloudformation --skip-download --quiet --compact
	@missing=""; for name in $(SAM_FUNCTIONS); do \
	  [ -f functions/$$name/app.py ] || missing="$$missing functions/$$name/app.py"; done; \
	if [ -n "$$missing" ]; then echo "sam build: SKIPPED, not written yet:$$missing"; \
	elif ! PATH="$(abspath $(BIN)):$$PATH" command -v python3.13 >/dev/null; then \
	  echo "sam build: SKIPPED, no python3.13 on PATH (the functions' runtime)"; \
	else dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; echo "sam build (into $$dir)"; \
	  PATH="$(abspath $(BIN)):$$PATH" $(BIN)/sam build --template template.yaml \
	    --build-dir "$$dir/build" --cached --cache-dir "$(SAM_CACHE)" --parallel >"$$dir/log" 2>&1 \
	    || { cat "$$dir/log"; exit 1; }; echo "sam build: ok"; fi

# The relay image for Fargate (linux/arm64), pushed to this account's ECR. Needs Docker with
# buildx and the AWS CLI with credentials; prints the RelayImageUri to deploy with.
RELAY_REPOSITORY ?= mongo-change-reactions-relay
RELAY_TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo latest)
relay-image:
	@command -v docker >/dev/null && docker info >/dev/null 2>&1 || { \
	  echo "relay-image: no running Docker engine here. Build on a machine with Docker (or Finch"; \
	  echo "aliased as docker): make relay-image, then deploy with RelayImageUri=<printed URI>."; \
	  exit 1; }
	@command -v aws >/dev/null || { echo "relay-image: the AWS CLI is needed to log in to ECR"; exit 1; }
	@set -e; region=$${AWS_REGION:-$$(aws configure get region)}; \
	account=$$(aws sts get-caller-identity --query Account --output text); \
	registry=$$account.dkr.ecr.$$region.amazonaws.com; uri=$$registry/$(RELAY_REPOSITORY):$(RELAY_TAG); \
	aws ecr describe-repositories --repository-names $(RELAY_REPOSITORY) --region $$region >/dev/null 2>&1 \
	  || aws ecr create-repository --repository-name $(RELAY_REPOSITORY) --region $$region \
	       --image-scanning-configuration scanOnPush=true --image-tag-mutability IMMUTABLE >/dev/null; \
	aws ecr get-login-password --region $$region | docker login --username AWS --password-stdin $$registry; \
	docker buildx build --platform linux/arm64 --file relay/Dockerfile --tag $$uri --push .; \
	echo "RelayImageUri=$$uri"

test: lint typecheck pytest templates

events: venv
	$(PYTHON) -m localdev.generate_events

demo: venv
	$(PYTHON) -m localdev.demo $(ARGS)

bench: venv
	$(PYTHON) -m bench $(ARGS)

build: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/sam build --template template.yaml

clean:
	rm -rf $(VENV) .aws-sam .mypy_cache .pytest_cache .ruff_cache .hypothesis
