"""Shared fixtures: a small generated company, a fresh PostgreSQL database, an isolated environment."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path

import pytest

from seg_pipeline.synthetic.generator import GeneratorConfig, generate

AS_OF = dt.date(2024, 6, 30)
TEST_KEY = "test-pseudonymization-key-not-a-secret"
# an existing server's admin URL (e.g. postgresql://postgres@127.0.0.1:5432/postgres); unset: the suite starts
# its own throwaway server (tests/pg_server.py), one per test worker
PG_ADMIN_URL = os.environ.get("SEG_TEST_PG_URL")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch):
    """No SEG_* or DAGSTER_HOME from the developer's shell leaks into a test."""
    for var in list(os.environ):
        if var.startswith("SEG_") or var == "DAGSTER_HOME":
            monkeypatch.delenv(var)
    monkeypatch.setenv("SEG_PSEUDO_KEY", TEST_KEY)


@pytest.fixture(scope="session")
def small_company(tmp_path_factory) -> Path:
    """1,500 customers with the default messiness, as of 2024-06-30. Read-only: copy before editing."""
    out = tmp_path_factory.mktemp("company")
    generate(GeneratorConfig(customers=1500, seed=12, as_of=AS_OF), out)
    return out


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """SEG_TEST_PG_URL, or a server started for this test session (and stopped after it)."""
    if PG_ADMIN_URL:
        yield PG_ADMIN_URL
        return
    from tests.pg_server import throwaway_server

    with throwaway_server() as url:
        yield url


@pytest.fixture(scope="session")
def pg_url(pg_admin_url) -> str:
    """A fresh database on the test PostgreSQL server for this test session, dropped afterwards."""
    import psycopg

    name = f"seg_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = pg_admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# The modules that take longest, slowest first (from `make test --durations`). They are handed out first so
# that none starts last on a worker while the other worker idles; a stale list costs wall time, never a test.
SLOWEST_FIRST = (
    "tests/e2e/test_reliability.py",
    "tests/e2e/test_cli.py",
    "tests/integration/test_churn.py",
    "tests/e2e/test_interrupt.py",
    "tests/integration/test_publish.py",
    "tests/integration/test_quality_gates.py",
    "tests/integration/test_privacy_audit.py",
    "tests/integration/test_segmentation.py",
    "tests/e2e/test_exports.py",
    "tests/e2e/test_ui.py",
    "tests/integration/test_clean_stage.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slowest modules first, then the other end-to-end and integration tests, then the unit tests: make test
    hands out whole files (--dist loadfile; tests of a module share its fixtures and run in order) in this
    order (--no-loadscope-reorder). Not --dist loadgroup: with pytest 9.2, xdist 3.8 no longer applies its
    xdist_group marks (it renames items through an attribute pytest stopped reading)."""

    def rank(item: pytest.Item) -> tuple[int, int]:
        path = item.nodeid.split("::", 1)[0]
        if path in SLOWEST_FIRST:
            return (0, SLOWEST_FIRST.index(path))
        return (1 if path.startswith(("tests/e2e/", "tests/integration/")) else 2, 0)

    items.sort(key=rank)  # stable: a module's tests keep their order
