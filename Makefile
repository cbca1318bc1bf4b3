# Two commands do everything on a fresh machine with Python 3.10+:
#   make demo   - the chain example DAG end to end against the local emulator (no AWS account)
#   make test   - lint, type check and the whole test suite (and the unit suite on the oldest supported Airflow)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= test
comma := ,
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)-$(subst $(comma),-,$(EXTRAS))

# The oldest supported Airflow gets the unit suite (everything but the tests marked slow).
OLDEST_AIRFLOW ?= apache-airflow>=3.1,<3.2
OLDEST_VENV := .venv-oldest
OLDEST_STAMP := $(OLDEST_VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: venv test test-oldest lint demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python --config-setting editable_mode=compat -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check airflow_imagebuilder dags tests benchmarks scripts
	$(BIN)/ruff format --check airflow_imagebuilder dags tests benchmarks scripts
	$(BIN)/mypy airflow_imagebuilder

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) test-oldest

$(OLDEST_STAMP): pyproject.toml
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install --quiet --upgrade pip uv
	$(OLDEST_VENV)/bin/uv pip install --quiet --python $(OLDEST_VENV)/bin/python \
		--config-setting editable_mode=compat -e '.[test]' '$(OLDEST_AIRFLOW)'
	rm -f $(OLDEST_VENV)/.installed-* && touch $(OLDEST_STAMP)

test-oldest: $(OLDEST_STAMP)
	$(OLDEST_VENV)/bin/python -c "import airflow; print('Unit suite on Airflow', airflow.__version__)"
	$(OLDEST_VENV)/bin/python -m pytest -m "not slow"

demo: venv
	$(BIN)/python scripts/demo.py

bench: venv
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(OLDEST_VENV) .pytest_cache .mypy_cache .ruff_cache
