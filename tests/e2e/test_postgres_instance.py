"""The same CLI run on a Dagster instance stored in the local PostgreSQL server (dagster-postgres)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import psycopg

from seg_pipeline.publish.contract import FILLED_BY_A_LATER_RUN, PUBLISHED_TABLES, column_names
from seg_pipeline.publish.stores import read_postgres_table, read_warehouse_table
from tests.e2e.test_cli import cli
from tests.integration.support import QUICK_ENV
from tests.test_definitions import EXPECTED_GROUPS

ROOT = Path(__file__).resolve().parents[2]


def test_run_on_a_postgres_backed_instance(tmp_path, small_company, pg_url):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml.example", dagster_home / "dagster.yaml")
    schema = f"published_{uuid.uuid4().hex[:8]}"
    env = {"DAGSTER_HOME": str(dagster_home), "DAGSTER_PG_URL": pg_url, "SEG_PUBLISH_DSN": pg_url,
           "SEG_PUBLISH__POSTGRES_SCHEMA": schema, **QUICK_ENV}  # fmt: skip
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
    assert f"PostgreSQL schema {schema}" in ran.stdout

    # the published tables are in PostgreSQL, the same as in the warehouse
    for table in PUBLISHED_TABLES:
        in_postgres = read_postgres_table(pg_url, schema, table)
        in_warehouse = read_warehouse_table(tmp_path / "home" / "warehouse.duckdb", table)
        assert list(in_postgres.columns) == column_names(table) and len(in_postgres) == len(in_warehouse)
        assert len(in_postgres) > 0 or table in FILLED_BY_A_LATER_RUN, table
    exported = cli(
        "export", "churn_scores", "--from", "postgres", "--out", "scores.csv", *args, cwd=tmp_path, env=env
    )
    assert exported.returncode == 0, exported.stderr
    assert f"from PostgreSQL schema {schema}" in exported.stdout

    status = cli("status", *args, cwd=tmp_path, env=env)
    assert status.returncode == 0 and "full_refresh" in status.stdout and "SUCCESS" in status.stdout
