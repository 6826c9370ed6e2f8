# fastship: the verbs people type. `make help` lists them.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# glibc's mmap threshold for `run`, as the image sets it (Dockerfile; bench/README.md,
# "Side by side: the allocator").
MALLOC_MMAP_THRESHOLD := 1048576

.DEFAULT_GOAL := help
SHELL := /bin/bash

include $(wildcard mk/*.mk)


.PHONY: system-deps
.PHONY: help venv run test test-fast lint fmt bench bench-cache bench-all admin docs clean

## help: list the targets
help:
	@grep -hE '^## ' $(MAKEFILE_LIST) | sed -e 's/^## /  /'

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@echo "installing fastship and its pinned dependencies into $(VENV)"
	@$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

## venv: create .venv with the pinned dependencies
venv: $(VENV)/.installed

## run: serve the web interface and the API on the embedded SQLite database at http://127.0.0.1:8000
run: venv web-if-possible
	@MALLOC_MMAP_THRESHOLD_=$(MALLOC_MMAP_THRESHOLD) $(PY) -m app serve

## admin: create an admin user (asks for email and password)
admin: venv
	@$(PY) -m app create-admin

## lint: ruff (lint and format check) and mypy
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app operator tests bench

## fmt: apply ruff's fixes and formatting
fmt: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## system-deps: install the Debian packages the tests need (.ci/packages.txt) when missing
system-deps:
	@tools/system-deps.sh

## test: the whole suite: system packages, lint, then every test (builds the Kubernetes tools once)
test: system-deps venv tools lint web-build
	$(BIN)/pytest

## test-fast: the tests that need no cluster, no image build, no Postgres server and no real node
test-fast: venv
	$(BIN)/pytest -m "not cluster and not image and not postgres and not realnode"

## bench: the service against a pure-ASGI ceiling app, side by side (needs wrk and Postgres)
bench: venv
	$(PY) -m bench.service

## bench-cache: the cache side by side with cachetools and cashews (needs redis-server)
bench-cache: venv
	$(PY) -m bench.cache

## bench-all: bench, then bench-operator and bench-load
bench-all: bench bench-operator bench-load

## clean: remove the venv, caches and the local database
clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache

## docs: regenerate the settings table in README.md from app/core/config.py
docs: venv
	@$(PY) -m app settings-schema --markdown > .settings-table.md
	@$(PY) -c 'import re,pathlib; p=pathlib.Path("README.md"); t=pathlib.Path(".settings-table.md").read_text().strip(); s=p.read_text(); p.write_text(re.sub(r"(<!-- settings-reference:start -->\n).*?(\n<!-- settings-reference:end -->)", lambda m: m.group(1)+t+m.group(2), s, flags=re.S))'
	@rm -f .settings-table.md
	@echo "README.md settings table regenerated"
