# The two set-up commands of the README: `make run` starts the stack, `make test` runs every test.
VENV       ?= .venv
KS_VENV    ?= .venv-keystone
PYTHON     ?= python3
BIN         = $(VENV)/bin

.PHONY: install run test lint bench services clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

$(KS_VENV)/bin/.installed:
	$(PYTHON) -m venv $(KS_VENV)
	$(KS_VENV)/bin/pip install -q -U pip
	$(KS_VENV)/bin/pip install -q 'keystone>=30,<31'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/novalite up

services:
	bash tests/ensure_services.sh

lint: install
	$(BIN)/ruff check src tests bench

test: install $(KS_VENV)/bin/.installed services lint
	TEST_KEYSTONE_VENV=$(abspath $(KS_VENV)) $(BIN)/pytest -q -rs $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/api_latency.py

clean:
	rm -rf $(VENV) $(KS_VENV) .novalite
