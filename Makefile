# seg-pipeline: `make demo` and `make test` are the two set-up commands (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CUSTOMERS ?= 20000
SEED ?= 42

.PHONY: demo test dev lint clean bench-generate

$(BIN)/seg-pipeline: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Generate a demo company into .seg/landing and materialize every asset on the embedded instance.
demo: $(BIN)/seg-pipeline
	$(BIN)/seg-pipeline generate --customers $(CUSTOMERS) --seed $(SEED)
	$(BIN)/seg-pipeline run

# The whole suite: unit, integration (Dagster + DuckDB) and e2e (CLI, PostgreSQL on 127.0.0.1:5432).
test: $(BIN)/seg-pipeline
	$(BIN)/ruff check seg_pipeline tests benchmarks
	$(BIN)/python -m pytest

# The Dagster UI on http://127.0.0.1:3000 for the instance under .seg/dagster.
dev: $(BIN)/seg-pipeline
	$(BIN)/seg-pipeline dev

# Generator throughput and memory at SIZE customers (default 10k and 100k); results in benchmarks/results/.
bench-generate: $(BIN)/seg-pipeline
	$(BIN)/python benchmarks/bench_generate.py $(SIZE)

lint: $(BIN)/seg-pipeline
	$(BIN)/ruff check seg_pipeline tests benchmarks
	$(BIN)/ruff format --check seg_pipeline tests benchmarks

clean:
	rm -rf .seg .pytest_cache
