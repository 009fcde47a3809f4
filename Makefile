# The two set-up commands of the README: `make run` starts the stack, `make test` runs every test.
VENV       ?= .venv
KS_VENV    ?= .venv-keystone
PYTHON     ?= python3
BIN         = $(VENV)/bin
BACKENDS   ?= sqlite postgresql mariadb

.PHONY: install run test lint bench services clean $(addprefix test-,$(BACKENDS))

# mysqlclient (MariaDB's driver) compiles against the MariaDB client headers; a clean machine (CI) lacks them.
$(BIN)/.installed: pyproject.toml
	dpkg -s libmariadb-dev >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq libmariadb-dev)
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

# The suite runs once per database backend, the three runs side by side (each prints when it ends);
# `make test-postgresql` runs one. PYTEST_ARGS passes options on, e.g. PYTEST_ARGS='-k force_down'.
test: install $(KS_VENV)/bin/.installed services lint
	$(MAKE) --no-print-directory -j3 --output-sync=target $(addprefix test-,$(BACKENDS))

$(addprefix test-,$(BACKENDS)): test-%: install $(KS_VENV)/bin/.installed services
	@echo "== pytest --backend $*"
	TEST_KEYSTONE_VENV=$(abspath $(KS_VENV)) $(BIN)/pytest -q -rs -p no:cacheprovider --backend $* $(PYTEST_ARGS)

# Every API benchmark on SQLite, PostgreSQL and MariaDB, one table (4-10 min); BENCH_ARGS=--quick: ~2 min.
bench: install services
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(KS_VENV) .novalite
