# seg-pipeline: `make demo` and `make test` are the two set-up commands (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CUSTOMERS ?= 20000
SEED ?= 42
# the installer that reads uv.lock (installed into .venv by pip, once)
UV_VERSION := 0.13.9

# demo, dev and mlflow use the demo company's config unless SEG_CONFIG names another
export SEG_CONFIG ?= demo.yaml

.PHONY: demo test dev mlflow screenshots lint lock clean bench bench-btyd bench-churn bench-generate bench-uplift

# Installs exactly the versions in uv.lock (with the dev extras), by uv, into .venv; `--locked` stops with an
# error when pyproject.toml changed and the lock was not updated (`make lock`). --system-certs: trust the
# machine's certificate store as pip does (a proxy's CA is there, not in uv's bundled roots).
$(BIN)/seg-pipeline: pyproject.toml uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv sync --quiet --system-certs --locked --inexact --extra dev --python $(BIN)/python
	touch $@

# Re-resolve uv.lock after a change of dependencies in pyproject.toml (newest versions within its ranges);
# `make lock LOCK_ARGS=--upgrade-package=mlflow` moves one package only.
lock:
	test -x $(BIN)/uv || { test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); $(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"; }
	$(BIN)/uv lock --system-certs $(LOCK_ARGS)

# Generate a demo company into .seg/landing and materialize every asset on the embedded instance, twice:
# first as of DEMO_DAYS_BACK days ago (a backtest on today's extracts), then, after a simulated campaign has
# worked that run's retention list (generate --campaign: its treatment arm contacted, with a known effect),
# as of today, which judges the first run's scores and measures the campaign's uplift (README: Does it work?).
DEMO_DAYS_BACK ?= 120
DEMO_TODAY := $(shell date -u +%F)
DEMO_EARLIER := $(shell date -u -d "$(DEMO_TODAY) - $(DEMO_DAYS_BACK) days" +%F)
demo: $(BIN)/seg-pipeline
	$(BIN)/seg-pipeline generate --customers $(CUSTOMERS) --seed $(SEED) --as-of $(DEMO_TODAY)
	$(BIN)/seg-pipeline run --as-of $(DEMO_EARLIER)
	$(BIN)/seg-pipeline generate --customers $(CUSTOMERS) --seed $(SEED) --as-of $(DEMO_TODAY) --campaign
	$(BIN)/seg-pipeline run --as-of $(DEMO_TODAY)

# The whole suite: unit, integration (Dagster + DuckDB) and e2e (CLI, PostgreSQL on 127.0.0.1:5432).
test: $(BIN)/seg-pipeline
	$(BIN)/ruff check seg_pipeline tests benchmarks
	SEG_CONFIG= $(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder --durations=15

# The Dagster UI on http://127.0.0.1:3000 for the instance under .seg/dagster.
dev: $(BIN)/seg-pipeline
	$(BIN)/seg-pipeline dev

# The MLflow UI on http://127.0.0.1:5000 for the tracking store under .seg (segmentation and churn runs).
mlflow: $(BIN)/seg-pipeline
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/.seg/mlflow.db --host 127.0.0.1 --port 5000

# The README's pictures (docs/img): the demo run seen in the Dagster UI, the MLflow UI and the report,
# taken in headless Chromium by tests/e2e/test_ui.py (needs Debian's chromium and chromium-driver).
screenshots: $(BIN)/seg-pipeline
	test -f .seg/warehouse.duckdb || $(MAKE) demo
	SCREENSHOTS_FROM=$(CURDIR) SCREENSHOTS_CONFIG=$(SEG_CONFIG) SCREENSHOTS_TO=$(CURDIR)/docs/img \
		$(BIN)/python -m pytest tests/e2e/test_ui.py -q -p no:cacheprovider

# Full refresh and rescore at SIZE customers (default 10k): per-step time, peak memory, rows per second;
# results in benchmarks/results/pipeline.{json,md}. Companies are cached in benchmarks/cache/.
bench: $(BIN)/seg-pipeline
	$(BIN)/python benchmarks/bench_pipeline.py $(SIZE)

# Published churn scores against realized churn in the next 90 days, beside recency and BG/NBD / Pareto/NBD
# baselines, on the CDNOW data shipped in lifetimes (CHURN_DATASET=generated:demo or generated:cohort for a
# generated company; CHURN_ARGS="--as-of 1997-12-31" etc.); results in benchmarks/results/churn_real.{json,md}.
CHURN_DATASET ?= cdnow
bench-churn: $(BIN)/seg-pipeline
	$(BIN)/python benchmarks/churn_real.py --dataset $(CHURN_DATASET) $(CHURN_ARGS)

# How often the measured retention uplift's 95 % interval covers the planted effect (20 seeds, 20k customers)
bench-uplift: $(BIN)/seg-pipeline
	$(BIN)/python benchmarks/uplift_recovery.py

# BG/NBD cost (histories, fit, features; lifetimes' fit beside it) on the bench companies' orders at SIZE
# customers (default 10k and 100k); results in benchmarks/results/btyd.{json,md}.
bench-btyd: $(BIN)/seg-pipeline
	$(BIN)/python benchmarks/bench_btyd.py $(SIZE)

# Generator throughput and memory at SIZE customers (default 10k and 100k); results in benchmarks/results/.
bench-generate: $(BIN)/seg-pipeline
	$(BIN)/python benchmarks/bench_generate.py $(SIZE)

lint: $(BIN)/seg-pipeline
	$(BIN)/ruff check seg_pipeline tests benchmarks
	$(BIN)/ruff format --check seg_pipeline tests benchmarks

clean:
	rm -rf .seg .pytest_cache
