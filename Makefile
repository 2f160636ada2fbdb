# Developer and CI entry points. `make test` from a fresh clone needs only
# python3 (3.11+) and make: everything else is installed into .venv.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.requirements-installed

# Ansible finds the collection as certautopilot.vault through a symlink to the
# repository root (ansible-test sanity needs a real copy: tests/sanity/run.sh).
COLLECTIONS_ROOT := $(CURDIR)/build/collections
COLLECTION_LINK := $(COLLECTIONS_ROOT)/ansible_collections/certautopilot/vault

# Every Ansible run uses the venv's Python, so interpreter discovery never
# lands on a pyenv shim or a system Python without hvac/cryptography.
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS_ROOT)
export ANSIBLE_PYTHON_INTERPRETER := $(BIN)/python
export PATH := $(BIN):$(PATH)

.PHONY: help venv rulebook-venv test style units integration matrix sanity sanity-matrix nox-venv lint molecule docs-check docs changelog-lint build clean collection-link

help:
	@echo "make venv        create .venv and install requirements-dev.txt"
	@echo "make test        venv + style + units + integration + matrix + sanity + sanity-matrix + lint + molecule"
	@echo "                 + docs-check + docs + changelog-lint"
	@echo "make units       pytest tests/unit"
	@echo "make integration pytest tests/integration (starts a local OpenBao server)"
	@echo "make matrix      units + integration smoke on each ansible-core 2.17-2.21 (nox: noxfile.py, venvs in .nox/)"
	@echo "make sanity      ansible-test sanity on a copy of the collection"
	@echo "make sanity-matrix  the same sanity on the newest core of the matrix (2.21), from its venv in .nox/"
	@echo "make style       ruff check and ruff format --check on the Python code"
	@echo "make lint        ansible-lint --offline --profile production"
	@echo "make molecule    molecule test -s default (extensions/molecule)"
	@echo "make docs-check  ansible-doc renders every module, filter and role"
	@echo "make docs        rendered HTML docs with antsibull-docs + Sphinx, offline, into build/docs/html"
	@echo "make changelog-lint  lint changelogs/fragments and changelog.yaml; CHANGELOG.md is up to date"
	@echo "make build       ansible-galaxy collection build into build/ (BUILD_DIR=...)"
	@echo "make clean       remove build output and caches (keeps .venv)"

venv: $(VENV_STAMP)

$(VENV_STAMP): requirements-dev.txt requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "python3 3.11+ is required, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

collection-link: $(COLLECTION_LINK)

$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../../.. $@

test: venv style units integration matrix sanity sanity-matrix lint molecule docs-check docs changelog-lint

# pytest exits 5 when it collected no test: not a failure while tests/unit is
# still empty. (tests/unit/conftest.py makes the collection importable.)
units: venv collection-link
	@if [ ! -d tests/unit ]; then echo "no unit tests yet"; exit 0; fi; \
	rc=0; $(BIN)/python -m pytest tests/unit || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no unit tests collected"; rc=0; fi; exit $$rc

integration: venv collection-link rulebook-venv
	$(BIN)/python -m pytest tests/integration

# ansible-rulebook, for the real run of the example rulebook (tests/integration/test_cert_expiry_source.py), in a venv
# of its own so that its pins never fight the test venv's ansible-runner. It needs Java 17 at run time.
RULEBOOK_VENV := $(CURDIR)/build/rulebook-venv
RULEBOOK_STAMP := $(RULEBOOK_VENV)/.requirements-installed

rulebook-venv: $(RULEBOOK_STAMP)

$(RULEBOOK_STAMP): tests/eda/requirements-rulebook.txt
	$(PYTHON) -m venv $(RULEBOOK_VENV)
	$(RULEBOOK_VENV)/bin/python -m pip install --quiet -r tests/eda/requirements-rulebook.txt
	touch $@

sanity: venv
	tests/sanity/run.sh

# The ansible-core matrix (issue 15): nox runs from a venv of its own, each session in its own venv under .nox/,
# reused while its pins are the same; the sessions, cores, Pythons and pins are in noxfile.py. `rm -rf .nox`
# starts over. A core whose Python is not installed fails its session (pyenv install 3.12, ...).
NOX_DIR := $(CURDIR)/.nox
NOX_VENV := $(NOX_DIR)/_nox
NOX_STAMP := $(NOX_VENV)/.requirements-installed
NOX := $(NOX_VENV)/bin/nox --noxfile $(CURDIR)/noxfile.py --envdir $(NOX_DIR)

nox-venv: $(NOX_STAMP)

$(NOX_STAMP): tests/matrix/requirements-nox.txt
	$(PYTHON) -m venv $(NOX_VENV)
	$(NOX_VENV)/bin/python -m pip install --quiet -r tests/matrix/requirements-nox.txt
	touch $@

# tests/unit, then tests/matrix/smoke.txt against a real OpenBao, on each core.
matrix: nox-venv
	$(NOX) --tags matrix

# tests/sanity/run.sh with VENV set to the newest core's sanity venv.
sanity-matrix: nox-venv
	$(NOX) --tags sanity

# Python style: ruff lint rules and formatting (ruff.toml), on every Python file of ours.
style: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

lint: venv collection-link
	$(BIN)/ansible-lint --offline --profile production --nocolor

molecule: venv collection-link
	@if [ -d extensions/molecule/default ]; then \
		cd extensions && $(BIN)/molecule test -s default; \
	else \
		echo "no molecule scenario yet"; \
	fi

# ansible-doc exits 0 with a warning for a plugin it cannot find, so a render
# only counts when it printed the plugin's header and no warning or error.
docs-check: venv collection-link
	@shopt -s nullglob; rendered=0; \
	render() { \
		echo "ansible-doc -t $$1 $$2"; \
		output=$$(ANSIBLE_NOCOLOR=1 $(BIN)/ansible-doc -t "$$1" "$$2" 2>&1) || { echo "$$output"; return 1; }; \
		if ! grep -q "^> " <<< "$$output" || grep -q "^\[\(WARNING\|ERROR\|DEPRECATION WARNING\)\]" <<< "$$output"; then \
			echo "$$output"; echo "ansible-doc did not render $$1 $$2 cleanly"; return 1; \
		fi; \
		rendered=$$((rendered + 1)); \
	}; \
	for file in plugins/modules/*.py; do \
		name=$$(basename "$$file" .py); [ "$$name" = __init__ ] && continue; \
		render module "certautopilot.vault.$$name"; \
	done; \
	filters=$$($(BIN)/ansible-doc -t filter --list --json certautopilot.vault \
		| $(BIN)/python -c 'import json, sys; print("\n".join(sorted(json.load(sys.stdin))))'); \
	for name in $$filters; do render filter "$$name"; done; \
	for dir in roles/*/; do \
		name=$$(basename "$$dir"); \
		[ -f "$$dir/meta/argument_specs.yml" ] || continue; \
		render role "certautopilot.vault.$$name"; \
	done; \
	if [ $$rendered -eq 0 ]; then echo "no modules, filters or roles to document yet"; fi

# The release tarball; galaxy.yml's build_ignore keeps .venv, caches and test artefacts out of it
# (tests/integration/test_release.py installs it and checks).
BUILD_DIR ?= build
build: venv
	$(BIN)/ansible-galaxy collection build --force --output-path $(BUILD_DIR)/

# Fragments and changelog.yaml lint, and CHANGELOG.md is exactly what changelog.yaml renders to.
# (Release: antsibull-changelog release --version X.Y.Z; see changelogs/config.yaml.)
changelog-lint: venv
	$(BIN)/antsibull-changelog lint
	$(BIN)/antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
	@rendered=$$(mktemp -d); trap 'rm -rf "$$rendered"' EXIT; \
	cp -r changelogs galaxy.yml "$$rendered/"; \
	(cd "$$rendered" && $(BIN)/antsibull-changelog generate); \
	diff -u CHANGELOG.md "$$rendered/CHANGELOG.md" \
		|| { echo "CHANGELOG.md is not what changelogs/changelog.yaml renders to: run antsibull-changelog generate"; exit 1; }

# Rendered docs (antsibull-docs + Sphinx, warnings are errors), offline: see scripts/build_docs.py.
docs: venv collection-link
	$(BIN)/python scripts/build_docs.py

clean:
	rm -rf build dist tests/output .pytest_cache
	find . -path ./.venv -prune -o -type d -name __pycache__ -exec rm -rf {} +

# The collection's cycle against a local OpenBao dev server, or the server in VAULT_ADDR (see scripts/demo.py).
.PHONY: demo
demo: venv
	$(BIN)/python scripts/demo.py

# Performance benchmark (issue 8), not part of `make test`: floor (hvac alone),
# ours (module, role) and peer (community.hashi_vault.vault_kv2_write in a loop)
# against one local OpenBao server. `make bench N=200` for another size; only a
# full run at N=1000 rewrites docs/performance.md. The timed processes run from
# build/bench-venv (the `ansible` package, which ships community.hashi_vault);
# bench/run.py imports the integration tests' server and certificates from tests/support.
# Then the distance run (issue 13): the same cases and an 8-thread floor through
# bench/relay.py, which adds RTT_MS of round trip (bench only, never in tests);
# RTT_MS=0 skips it. PEER_N: the peer's batch there (its time is extrapolated to N).
.PHONY: bench bench-venv
BENCH_VENV := $(CURDIR)/build/bench-venv
BENCH_STAMP := $(BENCH_VENV)/.requirements-installed
N ?= 1000
RTT_MS ?= 10
PEER_N ?= $(N)

bench-venv: $(BENCH_STAMP)

$(BENCH_STAMP): bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	touch $@

bench: venv bench-venv collection-link
	PYTHONPATH=$(CURDIR)/tests/support $(BIN)/python bench/run.py --n $(N) --rtt-ms $(RTT_MS) --peer-n $(PEER_N) \
		--bench-python $(BENCH_VENV)/bin/python
