# Two commands do everything on a fresh machine with Python 3.10+:
#   make demo   - the chain example DAG end to end against the local emulator (no AWS account)
#   make test   - lint, type check and every test not marked slow: minutes, the one to run before sending a change
# and what CI runs:
#   make test-all - make test, then the slow tests (real scheduler + triggerer, chaos, soak), the unit suite on the
#                   oldest supported Airflow, and the release check (make dist)
# Every virtualenv is installed from a lock in locks/, so the same commit installs the same versions on any day:
#   make lock         - resolve the newest versions pyproject.toml allows and rewrite both locks
#   make test-latest  - the same resolution without touching the locks: shows the drift, runs the unit suite on it
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# uv, pinned, in a virtualenv of its own: it installs the locks into the others and writes them.
UV_VERSION := 0.13.9
UV_DIR := .venv-uv
UV := $(UV_DIR)/bin/uv

# The newest Airflow pyproject.toml allows, with the test, celery (CeleryExecutor + PostgreSQL for the real-engine
# test) and docs extras.
LOCK := locks/airflow-newest.txt
LOCK_EXTRAS := --extra test --extra celery --extra docs
# The oldest supported Airflow gets the unit suite (everything but the tests marked slow), with what its release
# needs held back: newer fastapi/cadwyn break 3.0's in-process execution API for every task, and 3.0 reads
# connections from the environment through a MultiFernet attribute cryptography 46 removed.
OLDEST_AIRFLOW := 'apache-airflow>=3.0,<3.1' 'fastapi<0.117' 'cryptography<46'
OLDEST_LOCK := locks/airflow-oldest.txt
OLDEST_VENV := .venv-oldest
LATEST_VENV := .venv-latest
# The project is installed editable without build isolation, so its build requirements are locked too.
BUILD_REQUIRES := 'setuptools>=69' wheel

fingerprint = $(shell cat pyproject.toml $(wildcard $(1)) | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(call fingerprint,$(LOCK))
OLDEST_STAMP := $(OLDEST_VENV)/.installed-$(call fingerprint,$(OLDEST_LOCK))

# $(call compile,extra requirements,extras,output[,uv flags]): resolve pyproject.toml into a universal lock.
define compile
	printf '%s\n' $(BUILD_REQUIRES) $(1) | $(UV) pip compile --quiet --universal \
		--custom-compile-command 'make lock' $(4) pyproject.toml - $(2) -o $(3)
endef
# $(call install,venv,lock): exactly the lock's packages, then this checkout on top of them.
define install
	rm -rf $(1) && $(PYTHON) -m venv $(1)
	$(UV) pip sync --quiet --python $(1)/bin/python $(2)
	$(UV) pip install --quiet --python $(1)/bin/python --no-deps --no-build-isolation \
		--config-setting editable_mode=compat -e .
	@echo "$(1): $$(grep -c '==' $(2)) pins from $(2):" \
		$$($(UV) pip freeze --python $(1)/bin/python | grep -E '^(apache-airflow(-providers-[a-z-]+)?|boto3|celery)==')
endef

.PHONY: venv test test-all test-oldest test-latest lock lock-check lint docs dist demo bench clean

$(UV):
	$(PYTHON) -m venv $(UV_DIR)
	$(UV_DIR)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): pyproject.toml $(LOCK) | $(UV)
	$(call install,$(VENV),$(LOCK))
	touch $(STAMP)

venv: $(STAMP)

lint: venv lock-check
	$(BIN)/ruff check airflow_imagebuilder dags tests benchmarks scripts
	$(BIN)/ruff format --check airflow_imagebuilder dags tests benchmarks scripts
	$(BIN)/mypy airflow_imagebuilder

test: lint
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: test
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)
	$(MAKE) test-oldest docs dist

$(OLDEST_STAMP): pyproject.toml $(OLDEST_LOCK) | $(UV)
	$(call install,$(OLDEST_VENV),$(OLDEST_LOCK))
	touch $(OLDEST_STAMP)

test-oldest: $(OLDEST_STAMP)
	$(OLDEST_VENV)/bin/python -c "import airflow; print('Unit suite on Airflow', airflow.__version__)"
	$(OLDEST_VENV)/bin/python -m pytest -m "not slow"

lock: | $(UV)
	$(call compile,,$(LOCK_EXTRAS),$(LOCK),--upgrade)
	$(call compile,$(OLDEST_AIRFLOW),--extra test,$(OLDEST_LOCK),--upgrade)

# The locks still satisfy pyproject.toml: resolving again, keeping every pin the lock has, changes nothing.
lock-check: | $(UV)
	cp $(LOCK) $(UV_DIR)/newest.txt && cp $(OLDEST_LOCK) $(UV_DIR)/oldest.txt
	$(call compile,,$(LOCK_EXTRAS),$(UV_DIR)/newest.txt)
	$(call compile,$(OLDEST_AIRFLOW),--extra test,$(UV_DIR)/oldest.txt)
	@cmp -s $(UV_DIR)/newest.txt $(LOCK) && cmp -s $(UV_DIR)/oldest.txt $(OLDEST_LOCK) \
		|| { echo "locks/ no longer match pyproject.toml: run make lock"; exit 1; }

# Not part of CI: what a fresh resolution gives today, the difference from the lock, and the unit suite on it.
test-latest: | $(UV)
	$(call compile,,$(LOCK_EXTRAS),$(UV_DIR)/latest.txt,--upgrade)
	diff $(LOCK) $(UV_DIR)/latest.txt && echo "No drift: the newest allowed versions are the locked ones." || true
	$(call install,$(LATEST_VENV),$(UV_DIR)/latest.txt)
	$(LATEST_VENV)/bin/python -m pytest -m "not slow"

# The documentation site (MkDocs), warnings as errors; tests/test_readme.py builds it too.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The sdist and wheel PyPI would get, built from the locked setuptools and checked as PyPI checks them.
dist: venv
	rm -rf dist
	$(UV) build --quiet --python $(BIN)/python --no-build-isolation --out-dir dist
	$(BIN)/twine check --strict dist/*

demo: venv
	$(BIN)/python scripts/demo.py

bench: venv
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf dist $(VENV) $(OLDEST_VENV) $(LATEST_VENV) $(UV_DIR) .pytest_cache .mypy_cache .ruff_cache
