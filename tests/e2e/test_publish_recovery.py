"""A publish killed between its PostgreSQL and its warehouse commit, as `seg-pipeline status` meets it: the
split is reported while PostgreSQL cannot be reached, and put right once it can."""

from __future__ import annotations

import uuid

from seg_pipeline.config import load_settings
from seg_pipeline.publish import pending
from seg_pipeline.publish.writers import live_run_ids, publish
from tests.e2e.test_cli import cli
from tests.integration.test_publish_writers import killed_between, scores, segments

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"


def test_status_reports_a_split_publish_then_rolls_it_back(tmp_path, pg_url):
    home, schema = tmp_path / "home", f"split_{uuid.uuid4().hex[:8]}"
    warehouse = load_settings(overrides={"home": str(home)}, environ={}).warehouse_path
    warehouse.parent.mkdir(parents=True)
    publish(warehouse, {"churn_scores": scores("good"), "customer_segments": segments("good")}, {},
            (pg_url, schema), 5, "good")  # fmt: skip
    killed_between(warehouse, pg_url, schema, "postgres_committed")
    args = ("status", "--home", str(home), "--set", f"publish.postgres_schema={schema}")

    down = cli(*args, cwd=tmp_path, env={"SEG_PUBLISH_DSN": UNREACHABLE})
    assert down.returncode == 1, down.stderr
    assert "the published stores DISAGREE" in down.stderr
    assert f"PostgreSQL schema {schema} holds the tables of run new, the warehouse those of run good" in down.stderr
    assert live_run_ids(warehouse, (pg_url, schema)) == {"warehouse": "good", "postgres": "new"}

    up = cli(*args, cwd=tmp_path, env={"SEG_PUBLISH_DSN": pg_url})
    assert up.returncode == 0, up.stderr
    assert "Resolved an unfinished publish" in up.stderr and "put back to the tables of run good" in up.stderr
    assert live_run_ids(warehouse, (pg_url, schema)) == {"warehouse": "good", "postgres": "good"}
    assert pending.read_marker(warehouse) is None

    again = cli(*args, cwd=tmp_path, env={"SEG_PUBLISH_DSN": pg_url})
    assert again.returncode == 0 and "unfinished publish" not in again.stderr + again.stdout
