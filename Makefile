# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install bytecode demo test test-fast serve bench lint clean browser redis

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the dependency pins or project metadata change.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet "pip==26.3"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# An editable install compiles nothing (a wheel's install does), and with
# PYTHONDONTWRITEBYTECODE set Python never caches it either: every command would compile
# the package again at start-up. Compile it here (only changed files are redone).
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q src

install: bytecode

demo: bytecode
	$(BIN)/python -m journey_ml.cli.demo

# Headless Chromium renders the HTML report in a test (Debian package; needs root/apt).
browser:
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "warning: could not install chromium; the report screenshot test will be skipped"; }

# A real redis-server for the Redis profile-store tests (Debian package; needs root/apt).
redis:
	@command -v redis-server >/dev/null 2>&1 || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
	    || echo "warning: could not install redis-server; the Redis profile-store tests will be skipped"; }

test: bytecode browser redis
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

test-fast: bytecode
	$(BIN)/python -m pytest -q -m "not slow"

serve: bytecode
	$(BIN)/journey-ml serve

bench: bytecode
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_simulate.py
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_models.py
	$(BIN)/python benchmarks/bench_train.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks service

clean:
	rm -rf $(VENV) demo_output .pytest_cache
