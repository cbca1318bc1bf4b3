# Two commands do everything on a fresh machine with Python 3.10+:
#   make demo   - the chain example DAG end to end against the local emulator (no AWS account)
#   make test   - lint, type check and the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= test
comma := ,
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)-$(subst $(comma),-,$(EXTRAS))

.PHONY: venv test lint unit demo bench clean

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

demo: venv
	$(BIN)/python scripts/demo.py

bench: venv
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
