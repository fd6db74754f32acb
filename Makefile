# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT     ?= 8080
SIM_PORT ?= 8090

.PHONY: demo test bench lint typecheck venv clean

$(BIN)/lgsp: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

venv: $(BIN)/lgsp

## demo: the gateway on 127.0.0.1:$(PORT) beside the national simulator on $(SIM_PORT)
demo: venv
	$(BIN)/lgsp demo --port $(PORT) --simulator-port $(SIM_PORT)

## test: lint, type-check, then the test suite (needs PostgreSQL on 127.0.0.1:5432)
test: lint typecheck
	$(BIN)/pytest

## bench: the gateway against nginx and a bare aiohttp proxy (installs nginx and wrk if root)
bench: venv
	$(BIN)/python -m bench.proxies

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var *.egg-info .pytest_cache .mypy_cache .ruff_cache
