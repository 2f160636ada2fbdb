# Developer and CI entry points. `make test` from a fresh clone needs only
# python3 (3.11+) and make: everything else is installed into .venv.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.requirements-installed

# The tools venv: nox for the ansible-core matrix and uv, which builds .venv and the matrix's venvs.
NOX_DIR := $(CURDIR)/.nox
NOX_VENV := $(NOX_DIR)/_nox
NOX_STAMP := $(NOX_VENV)/.requirements-installed
NOX := $(NOX_VENV)/bin/nox --noxfile $(CURDIR)/noxfile.py --envdir $(NOX_DIR)
UV := $(NOX_VENV)/bin/uv
# uv only uses the Pythons installed here (python3, pyenv's 3.12 and 3.13), never downloads one.
export UV_PYTHON_DOWNLOADS := never

# Ansible finds the collection as certautopilot.vault through a symlink to the
# repository root (ansible-test sanity needs a real copy: tests/sanity/run.sh).
COLLECTIONS_ROOT := $(CURDIR)/build/collections
COLLECTION_LINK := $(COLLECTIONS_ROOT)/ansible_collections/certautopilot/vault

# Every Ansible run uses the venv's Python, so interpreter discovery never
# lands on a pyenv shim or a system Python without hvac/cryptography.
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS_ROOT)
export ANSIBLE_PYTHON_INTERPRETER := $(BIN)/python
export PATH := $(BIN):$(PATH)

.PHONY: help venv rulebook-venv test test-deep check check-smoke style units integration integration-serial matrix matrix-in-turn \
	matrix-all sanity sanity-2.19 sanity-matrix nox-venv lint molecule docs-check docs changelog-lint build clean \
	collection-link

help:
	@echo "make venv        create .venv and install requirements-dev.txt (uv, from .nox/_nox)"
	@echo "make check       the inner loop (<= 90 s): style + units + check-smoke (CONTRIBUTING.md)"
	@echo "make test        venv + style + units, then integration with lint, docs-check, changelog-lint, docs,"
	@echo "                 molecule and sanity-matrix beside it, then matrix"
	@echo "                 (each stage's wall time in build/test-times.txt)"
	@echo "make test-deep   make test + the 2.19 core's sanity and matrix session (what make test runs once elsewhere)"
	@echo "                 + the leak property test with 400 examples (LEAK_PROPERTY_EXAMPLES; make test: 40)"
	@echo "make units       pytest tests/unit"
	@echo "make integration pytest tests/integration on XDIST_WORKERS (2) workers, each with its own OpenBao server"
	@echo "make integration-serial  the same on one process (XDIST_WORKERS=0)"
	@echo "make check-smoke in-process module tests against a real OpenBao server (CHECK_SMOKE)"
	@echo "make matrix      units + the smoke (tests/matrix) on ansible-core 2.17, 2.18, 2.20, 2.21, two sessions at a time (MATRIX_JOBS; nox: noxfile.py, venvs in"
	@echo "                 .nox/); 2.19 is .venv's core, which make test runs everything on"
	@echo "make matrix-all  the same on every core 2.17-2.21"
	@echo "make sanity      ansible-test sanity on a copy of the collection, on .venv's core (2.19); alias sanity-2.19"
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

# What the demo needs and no more: the runtime requirements, ansible-core and the bao binary (make venv adds the
# development tools - pytest, ansible-lint, molecule, sphinx - to the same .venv).
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEMO_REQUIREMENTS := requirements.txt requirements-demo.txt

$(RUNTIME_STAMP): $(DEMO_REQUIREMENTS) | $(NOX_STAMP)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "python3 3.11+ is required, found " + sys.version.split()[0])'
	[ -x $(BIN)/python ] || $(UV) venv --quiet --seed --python "$$($(PYTHON) -c 'import sys; print(sys.executable)')" $(VENV)
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet --strict -r requirements-demo.txt
	$(BIN)/python -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else "$(VENV) is not a virtualenv")'
	touch $@

# uv (from the nox venv: tests/matrix/requirements-nox.txt) creates .venv and installs into it, in seconds
# where pip takes minutes; --seed still puts pip into .venv. An existing .venv is installed into, never recreated.
# VIRTUAL_ENV, not --python .venv/bin/python: uv 0.13 resolves that symlink to the base interpreter and installs there.
$(VENV_STAMP): requirements-dev.txt $(DEMO_REQUIREMENTS) | $(NOX_STAMP)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "python3 3.11+ is required, found " + sys.version.split()[0])'
	[ -x $(BIN)/python ] || $(UV) venv --quiet --seed --python "$$($(PYTHON) -c 'import sys; print(sys.executable)')" $(VENV)
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet --strict -r requirements-dev.txt
	$(BIN)/python -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else "$(VENV) is not a virtualenv")'
	touch $@

collection-link: $(COLLECTION_LINK)

$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../../.. $@

# Each ansible-core runs once: 2.19 (.venv) the units and the whole integration suite, the others (make matrix)
# the units and the smoke; sanity runs on the newest core, 2.21.
TEST_TIMES := $(CURDIR)/build/test-times.txt
# make test runs its stages in two phases, stopping at the first that fails, and records each stage's wall time
# (build/test-times.txt). The integration suite keeps about one core and a half busy (its tests wait on servers,
# retries and playbook starts) and is the longest stage: every other stage runs beside it, one after another, their
# output kept in build/beside-integration.log and shown when they end. The matrix runs there one session at a
# time (matrix-in-turn): two at once would take both cores from the suite.
TEST_FIRST := style units
TEST_BESIDE_INTEGRATION := lint docs-check changelog-lint docs molecule sanity-matrix matrix-in-turn
TEST_LAST :=
BESIDE_LOG := $(CURDIR)/build/beside-integration.log

test: venv collection-link nox-venv rulebook-venv
	@mkdir -p $(dir $(TEST_TIMES)); : > $(TEST_TIMES); all_start=$$(date +%s); \
	stage() { \
		start=$$(date +%s); \
		if $(MAKE) --no-print-directory "$$1"; then \
			printf '%-16s %5ss\n' "$$1" "$$(( $$(date +%s) - start ))" >> $(TEST_TIMES); \
		else \
			echo "make test: stage $$1 failed after $$(( $$(date +%s) - start ))s"; return 1; \
		fi; \
	}; \
	for name in $(TEST_FIRST); do stage "$$name" || exit 1; done; \
	( for name in $(TEST_BESIDE_INTEGRATION); do stage "$$name" || exit 1; done ) > $(BESIDE_LOG) 2>&1 & beside=$$!; \
	integration_rc=0; stage integration || integration_rc=$$?; \
	beside_rc=0; wait $$beside || beside_rc=$$?; \
	echo "make test: the stages beside the integration suite ($(TEST_BESIDE_INTEGRATION)):"; cat $(BESIDE_LOG); \
	if [ $$integration_rc -ne 0 ] || [ $$beside_rc -ne 0 ]; then exit 1; fi; \
	for name in $(TEST_LAST); do stage "$$name" || exit 1; done; \
	printf '%-16s %5ss\n' total "$$(( $$(date +%s) - all_start ))" >> $(TEST_TIMES); \
	echo "make test: stage wall times (the stages beside integration overlap it)"; cat $(TEST_TIMES)

# What make test leaves to one core, run on the other too: 2.19's sanity and its matrix session (the smoke on
# a venv of its own), on top of make test; and the property-based leak test with ten times its examples.
test-deep: test
	$(MAKE) --no-print-directory sanity
	$(NOX) --session matrix-2.19
	LEAK_PROPERTY_EXAMPLES=400 $(BIN)/python -m pytest -q -p no:cacheprovider tests/integration/test_leak_property.py

# The inner loop: style, units and a smoke against a real OpenBao server, all in-process (no ansible-playbook):
# every module's main() once (the matrix's in-process test) and the push's ownership decisions and refusals.
# Two pytest runs: the two directories' fixtures each start a server, and in one process two in-process
# harnesses lost a module's warnings (test_push_ownership.py's warning cases fail there).
CHECK_SMOKE := tests/matrix/test_smoke.py::test_each_module_runs_in_process_on_this_core
CHECK_SMOKE_INTEGRATION := tests/integration/test_push_ownership.py

check: style units check-smoke

check-smoke: venv collection-link
	$(BIN)/python -m pytest -q -p no:cacheprovider $(CHECK_SMOKE)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(CHECK_SMOKE_INTEGRATION)

# pytest exits 5 when it collected no test: not a failure while tests/unit is
# still empty. (tests/unit/conftest.py makes the collection importable.)
units: venv collection-link
	@if [ ! -d tests/unit ]; then echo "no unit tests yet"; exit 0; fi; \
	rc=0; $(BIN)/python -m pytest tests/unit || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no unit tests collected"; rc=0; fi; exit $$rc

# Two workers on two cores (XDIST_WORKERS=0: one process). Each worker is a pytest session with its own OpenBao
# server; the timing-sensitive files stay on one worker (tests/integration/conftest.py, --dist loadgroup).
XDIST_WORKERS ?= 2
integration: venv collection-link rulebook-venv
	$(BIN)/python -m pytest -n $(XDIST_WORKERS) --dist loadgroup tests/integration

integration-serial: venv collection-link rulebook-venv
	$(BIN)/python -m pytest tests/integration

# ansible-rulebook, for the real run of the example rulebook (tests/integration/test_cert_expiry_source.py), in a venv
# of its own so that its pins never fight the test venv's ansible-runner. It needs Java 17 at run time.
RULEBOOK_VENV := $(CURDIR)/build/rulebook-venv
RULEBOOK_STAMP := $(RULEBOOK_VENV)/.requirements-installed

rulebook-venv: $(RULEBOOK_STAMP)

$(RULEBOOK_STAMP): tests/eda/requirements-rulebook.txt | $(NOX_STAMP)
	[ -x $(RULEBOOK_VENV)/bin/python ] || \
		$(UV) venv --quiet --python "$$($(PYTHON) -c 'import sys; print(sys.executable)')" $(RULEBOOK_VENV)
	VIRTUAL_ENV=$(RULEBOOK_VENV) $(UV) pip install --quiet --strict -r tests/eda/requirements-rulebook.txt
	$(RULEBOOK_VENV)/bin/python -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else "not a virtualenv")'
	touch $@

sanity: venv
	tests/sanity/run.sh

sanity-2.19: sanity

# The ansible-core matrix (issue 15): nox runs from a venv of its own, each session in its own venv under .nox/,
# reused while its pins are the same; the sessions, cores, Pythons and pins are in noxfile.py. `rm -rf .nox`
# starts over. A core whose Python is not installed fails its session (pyenv install 3.12, ...).

nox-venv: $(NOX_STAMP)

$(NOX_STAMP): tests/matrix/requirements-nox.txt
	$(PYTHON) -m venv $(NOX_VENV)
	$(NOX_VENV)/bin/python -m pip install --quiet -r tests/matrix/requirements-nox.txt
	touch $@

# tests/unit and tests/matrix (one playbook run of every plugin, each module in-process) against a real OpenBao,
# in one pytest process, on each core but .venv's (make matrix) or on every core (make matrix-all).
# A session keeps about one core busy (one pytest process, then one ansible-playbook run), so the sessions are
# dealt to MATRIX_JOBS (2) nox processes at once: on this 2-core machine, idle, 2.17 and 2.18 took 54 s side by
# side and 84 s one after the other. Each process's log is printed when all have ended; MATRIX_JOBS=1: in turn.
MATRIX_JOBS ?= 2
define run_matrix
	@sessions=$$($(NOX) --tags $(1) --list --json 2>/dev/null \
		| $(NOX_VENV)/bin/python -c 'import json, sys; print(" ".join(s["session"] for s in json.load(sys.stdin)))'); \
	logs=$$(mktemp -d); trap 'rm -rf "$$logs"' EXIT; pids=(); \
	for job in $$(seq 0 $$(( $(MATRIX_JOBS) - 1 ))); do \
		mine=(); index=0; \
		for session in $$sessions; do \
			if [ $$(( index % $(MATRIX_JOBS) )) -eq $$job ]; then mine+=("$$session"); fi; index=$$((index + 1)); \
		done; \
		[ $${#mine[@]} -gt 0 ] || continue; \
		echo "nox --session $${mine[*]} (its log follows when every session has ended)"; \
		$(NOX) --session "$${mine[@]}" > "$$logs/$${#pids[@]}.log" 2>&1 & pids+=($$!); \
	done; \
	rc=0; for index in "$${!pids[@]}"; do wait "$${pids[$$index]}" || rc=1; cat "$$logs/$$index.log"; done; exit $$rc
endef

matrix: nox-venv
	$(call run_matrix,matrix)

# The matrix beside the integration suite in make test: one nox session at a time.
matrix-in-turn:
	$(MAKE) --no-print-directory matrix MATRIX_JOBS=1

matrix-all: nox-venv
	$(call run_matrix,matrix-all)

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

# ansible-doc exits 0 with a warning for a plugin it cannot find, so a render only counts when it printed the
# plugin's header and no warning or error. One ansible-doc process a plugin type renders all of that type.
docs-check: venv collection-link
	@shopt -s nullglob; rendered=0; \
	render() { \
		local type=$$1; shift; [ $$# -gt 0 ] || return 0; \
		echo "ansible-doc -t $$type $$*"; \
		output=$$(ANSIBLE_NOCOLOR=1 $(BIN)/ansible-doc -t "$$type" "$$@" 2>&1) || { echo "$$output"; return 1; }; \
		if grep -q "^\[\(WARNING\|ERROR\|DEPRECATION WARNING\)\]" <<< "$$output"; then \
			echo "$$output"; echo "ansible-doc did not render every $$type cleanly"; return 1; \
		fi; \
		for name in "$$@"; do \
			grep -qE "^> [A-Z]+:? \*?$${name//./\\.}\*? \(" <<< "$$output" \
				|| { echo "$$output"; echo "ansible-doc did not render $$type $$name"; return 1; }; \
			rendered=$$((rendered + 1)); \
		done; \
	}; \
	names() { for file in "$$@"; do name=$$(basename "$$file" .py); [ "$$name" = __init__ ] || echo "certautopilot.vault.$$name"; done; }; \
	render module $$(names plugins/modules/*.py); \
	render lookup $$(names plugins/lookup/*.py); \
	render filter $$($(BIN)/ansible-doc -t filter --list --json certautopilot.vault \
		| $(BIN)/python -c 'import json, sys; print("\n".join(sorted(json.load(sys.stdin))))'); \
	render role $$(for spec in roles/*/meta/argument_specs.yml; do echo "certautopilot.vault.$$(basename "$$(dirname "$$(dirname "$$spec")")")"; done); \
	if [ $$rendered -eq 0 ]; then echo "no modules, filters or roles to document yet"; else echo "$$rendered rendered"; fi

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
demo: $(RUNTIME_STAMP) collection-link
	$(BIN)/python scripts/demo.py

# Performance benchmark (issue 8), not part of `make test`: floor (hvac alone),
# ours (module, role) and peer (community.hashi_vault.vault_kv2_write in a loop)
# against one local OpenBao server. `make bench N=200` for another size; only a
# full run at N=1000 rewrites docs/performance.md. The timed processes run from
# build/bench-venv (the `ansible` package, which ships community.hashi_vault);
# bench/run.py imports the integration tests' server and certificates from tests/support.
# Then the distance run (issue 13): the same cases and an 8-thread floor through
# bench/relay.py, which adds RTT_MS of round trip (bench only, never in tests);
# RTT_MS=0 skips it. PEER_N: the peer's batch, in both runs (its time is extrapolated to N).
# The fleet case (issue 27): FLEET_HOSTS local hosts, one certificate each, the role per host against fleet mode
# and against one batch. CASES=fleet (comma-separated, of floor,module,role,peer,fleet) runs only those cases;
# the page is rewritten only by a run at N=1000 with floor, module, role and peer.
.PHONY: bench bench-venv
BENCH_VENV := $(CURDIR)/build/bench-venv
BENCH_STAMP := $(BENCH_VENV)/.requirements-installed
N ?= 1000
RTT_MS ?= 10
PEER_N ?= $(N)
FLEET_HOSTS ?= 100
CASES ?=

bench-venv: $(BENCH_STAMP)

$(BENCH_STAMP): bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	touch $@

bench: venv bench-venv collection-link
	PYTHONPATH=$(CURDIR)/tests/support $(BIN)/python bench/run.py --n $(N) --rtt-ms $(RTT_MS) --peer-n $(PEER_N) \
		--fleet-hosts $(FLEET_HOSTS) $(if $(CASES),--cases $(CASES)) --bench-python $(BENCH_VENV)/bin/python
