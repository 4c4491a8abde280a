"""The same CLI run on a Dagster instance stored in the local PostgreSQL server (dagster-postgres)."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg

from tests.e2e.test_cli import cli
from tests.integration.support import QUICK_ENV
from tests.test_definitions import EXPECTED_GROUPS

ROOT = Path(__file__).resolve().parents[2]


def test_run_on_a_postgres_backed_instance(tmp_path, small_company, pg_url):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml.example", dagster_home / "dagster.yaml")
    env = {"DAGSTER_HOME": str(dagster_home), "DAGSTER_PG_URL": pg_url, **QUICK_ENV}
    args = ("--home", str(tmp_path / "home"), "--set", f"landing={small_company}", "--as-of", "2024-06-30")

    ran = cli("run", *args, cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert str(dagster_home) in ran.stdout

    with psycopg.connect(pg_url) as conn:
        runs = conn.execute("select pipeline_name, status from runs").fetchall()
        materialized = conn.execute(
            "select count(distinct asset_key) from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION'"
        ).fetchone()[0]
    assert runs == [("full_refresh", "SUCCESS")]
    assert materialized == len(EXPECTED_GROUPS)
    assert not (dagster_home / "history").exists()  # nothing went to the sqlite default

    status = cli("status", *args, cwd=tmp_path, env=env)
    assert status.returncode == 0 and "full_refresh" in status.stdout and "SUCCESS" in status.stdout
