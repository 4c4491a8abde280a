"""The atomic swap on the real stores: a publish that breaks half-way, a held lock, a consumer's view and
an unreachable server each leave the last good tables exactly as they were, with nothing left behind."""

from __future__ import annotations

import threading
import uuid

import duckdb
import pandas as pd
import psycopg
import pytest

from seg_pipeline.errors import SegPipelineError
from seg_pipeline.publish import pending
from seg_pipeline.publish.contract import column_names
from seg_pipeline.publish.stores import (
    PUBLISH_LOCK_KEY,
    PublishedTable,
    PublishUnavailable,
    read_postgres_table,
    read_warehouse_table,
)
from seg_pipeline.publish.writers import StoresDisagree, live_run_ids, publish, publish_to_warehouse


def scores(run_id: str, n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": [f"C{i}" for i in range(n)], "churn_probability": 0.5, "churn_risk_score": 50,
        "risk_tier": "semi_automated", "top_drivers": "recency days 90, +0.10", "model_version": 1, "scored_by": "random_forest",
        "as_of": pd.Timestamp("2024-06-30"), "run_id": run_id,
    })  # fmt: skip


def segments(run_id: str, n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": [f"C{i}" for i in range(n)], "segment_id": [1, 2, None][:n], "segment_name": "A",
        "lifecycle_stage": "steady", "micro_segment_id": 101, "churn_risk_score": 50, "risk_tier": "semi_automated",
        "in_retention_segment": False, "arm": "treatment", "as_of": pd.Timestamp("2024-06-30"), "run_id": run_id,
    })  # fmt: skip


@pytest.fixture
def stores(tmp_path, pg_url):
    schema = f"w_{uuid.uuid4().hex[:8]}"
    warehouse = tmp_path / "warehouse.duckdb"
    publish(warehouse, {"churn_scores": scores("good"), "customer_segments": segments("good")},
            {"drift_reference": pd.DataFrame({"feature": ["x"], "share": [1.0]})}, (pg_url, schema), 5)  # fmt: skip
    return warehouse, pg_url, schema


def assert_last_good_kept(warehouse, dsn, schema):
    for table in ("churn_scores", "customer_segments"):
        assert set(read_warehouse_table(warehouse, table)["run_id"]) == {"good"}
        assert set(read_postgres_table(dsn, schema, table)["run_id"]) == {"good"}
    with psycopg.connect(dsn) as connection:
        names = {r[0] for r in connection.execute(
            "select table_name from information_schema.tables where table_schema = %s", [schema])}  # fmt: skip
    assert names == {"churn_scores", "customer_segments"}  # no staging table left behind


def test_published_types_follow_the_contract(stores):
    warehouse, dsn, schema = stores
    with psycopg.connect(dsn) as connection:
        types = dict(connection.execute(
            "select column_name, data_type from information_schema.columns where table_schema = %s "
            "and table_name = 'customer_segments' order by ordinal_position", [schema]).fetchall())  # fmt: skip
    assert list(types) == column_names("customer_segments")
    assert (types["segment_id"], types["as_of"], types["in_retention_segment"]) == (
        "bigint",
        "date",
        "boolean",
    )
    frame = read_warehouse_table(warehouse, "customer_segments")
    assert frame["segment_id"].isna().sum() == 1 and frame["customer_id"].tolist() == ["C0", "C1", "C2"]


def test_a_publish_that_breaks_half_way_changes_nothing_in_either_store(stores):
    warehouse, dsn, schema = stores
    broken = segments("bad").astype({"segment_name": object})
    broken.at[1, "segment_name"] = {"not": "text"}  # the server cannot take it: fails while staging
    with pytest.raises(psycopg.Error):
        publish(warehouse, {"churn_scores": scores("bad"), "customer_segments": broken}, {}, (dsn, schema), 5)
    assert_last_good_kept(warehouse, dsn, schema)


def test_a_contract_breach_is_refused_before_anything_is_written(stores):
    warehouse, dsn, schema = stores
    with pytest.raises(SegPipelineError, match="customer_segments: columns do not match"):
        publish(warehouse, {"churn_scores": scores("bad"), "customer_segments": segments("bad").drop(columns="run_id")},
                {}, (dsn, schema), 5)  # fmt: skip
    assert_last_good_kept(warehouse, dsn, schema)


def test_a_second_publisher_waits_for_the_lock_then_gives_up_clearly(stores):
    warehouse, dsn, schema = stores
    holder = psycopg.connect(dsn)
    holder.execute("select pg_advisory_xact_lock(%s)", [PUBLISH_LOCK_KEY])  # another publish in progress
    try:
        with pytest.raises(SegPipelineError, match="waited 1 s for a lock"):
            publish(warehouse, {"churn_scores": scores("bad")}, {}, (dsn, schema), 1)
    finally:
        holder.rollback()
        holder.close()
    assert_last_good_kept(warehouse, dsn, schema)


def test_a_publisher_queued_behind_another_publishes_after_it(stores):
    warehouse, dsn, schema = stores
    holder = psycopg.connect(dsn)
    holder.execute("select pg_advisory_xact_lock(%s)", [PUBLISH_LOCK_KEY])
    release = threading.Timer(1.0, holder.rollback)
    release.start()
    publish(warehouse, {"churn_scores": scores("next")}, {}, (dsn, schema), 30)
    release.join()
    holder.close()
    assert set(read_postgres_table(dsn, schema, "churn_scores")["run_id"]) == {"next"}


def test_a_view_on_a_published_table_blocks_the_swap_with_advice(stores):
    warehouse, dsn, schema = stores
    with psycopg.connect(dsn) as connection:
        connection.execute(f'create view "{schema}".high_risk as select * from "{schema}".churn_scores')
    with pytest.raises(SegPipelineError, match="views on them block the swap"):
        publish(warehouse, {"churn_scores": scores("bad")}, {}, (dsn, schema), 5)
    with psycopg.connect(dsn) as connection:
        connection.execute(f'drop view "{schema}".high_risk')
    assert_last_good_kept(warehouse, dsn, schema)


def test_an_unreachable_server_leaves_the_warehouse_untouched_too(stores):
    warehouse, dsn, schema = stores
    with pytest.raises(PublishUnavailable, match="not reachable"):
        publish(
            warehouse,
            {"churn_scores": scores("bad")},
            {},
            ("postgresql://nobody@127.0.0.1:1/none", schema),
            5,
        )
    assert_last_good_kept(warehouse, dsn, schema)
    assert read_warehouse_table(warehouse, "drift_reference", "monitoring") is not None


def test_a_warehouse_swap_that_breaks_half_way_is_rolled_back(stores):
    warehouse, dsn, schema = stores
    good_scores = PublishedTable.of("churn_scores", scores("bad"))
    # bypasses the contract check, so the second table fails inside the transaction (text into BIGINT)
    broken = PublishedTable(
        "customer_segments", segments("bad").astype({"segment_id": object}).assign(segment_id="x")
    )
    with pytest.raises(duckdb.Error):
        publish_to_warehouse(warehouse, [good_scores, broken])
    assert_last_good_kept(warehouse, dsn, schema)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        names = {r[0] for r in connection.execute(
            "select table_name from information_schema.tables where table_schema = 'published'").fetchall()}  # fmt: skip
    assert names == {"churn_scores", "customer_segments"}


# --- two stores: a fault between the commits --------------------------------------------------------------

KILL_BETWEEN = """
import os, signal, sys
from pathlib import Path
from seg_pipeline.publish.writers import publish
from tests.integration.test_publish_writers import scores, segments

warehouse, dsn, schema, phase = sys.argv[1:]

def crash(reached):
    if reached == phase:
        os.kill(os.getpid(), signal.SIGKILL)  # as a power cut or the OOM killer would

publish(Path(warehouse), {"churn_scores": scores("new"), "customer_segments": segments("new")},
        {}, (dsn, schema), 5, "new", crash)
"""


def killed_between(warehouse, dsn, schema, phase: str) -> None:
    """A publishing process killed right after ``phase`` (postgres_committed or warehouse_committed)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    child = subprocess.run([sys.executable, "-c", KILL_BETWEEN, str(warehouse), dsn, schema, phase], cwd=root,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert child.returncode == -9, child.stderr


def run_ids(warehouse, dsn, schema) -> dict[str, set[str]]:
    return {
        "warehouse": set(read_warehouse_table(warehouse, "churn_scores")["run_id"]),
        "postgres": set(read_postgres_table(dsn, schema, "churn_scores")["run_id"]),
    }


def test_an_error_between_the_two_commits_puts_postgres_back(stores):
    warehouse, dsn, schema = stores

    def disk_full(phase):
        if phase == "postgres_committed":
            raise OSError(28, "No space left on device")

    with pytest.raises(SegPipelineError, match="PostgreSQL's previous tables were put back") as caught:
        publish(warehouse, {"churn_scores": scores("bad"), "customer_segments": segments("bad")}, {},
                (dsn, schema), 5, "bad", disk_full)  # fmt: skip
    assert "No space left on device" in str(caught.value)
    assert_last_good_kept(warehouse, dsn, schema)
    assert pending.read_marker(warehouse) is None


def test_a_process_killed_between_the_commits_is_rolled_back(stores):
    warehouse, dsn, schema = stores
    killed_between(warehouse, dsn, schema, "postgres_committed")
    assert run_ids(warehouse, dsn, schema) == {"warehouse": {"good"}, "postgres": {"new"}}  # split
    marker = pending.read_marker(warehouse)
    assert marker.run_id == "new" and marker.phase == "postgres_committed" and marker.warehouse_run == "good"

    with pending.publish_lock(warehouse):  # a publish still going is left alone
        assert pending.resolve(warehouse, (dsn, schema), 5).action == "in_progress"
    resolution = pending.resolve(warehouse, (dsn, schema), 5)
    assert resolution.action == "rolled_back" and "put back to the tables of run good" in resolution.message
    assert_last_good_kept(warehouse, dsn, schema)  # no __incoming / __previous left in PostgreSQL either
    assert pending.read_marker(warehouse) is None
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        names = {
            r[0] for r in connection.execute("select table_name from information_schema.tables").fetchall()
        }
    assert not [n for n in names if n.endswith("__incoming")]
    assert pending.resolve(warehouse, (dsn, schema), 5) is None


def test_a_split_that_cannot_be_undone_is_reported_and_blocks_the_next_publish(stores):
    warehouse, dsn, schema = stores
    killed_between(warehouse, dsn, schema, "postgres_committed")
    unreachable = ("postgresql://nobody@127.0.0.1:1/none", schema)
    resolution = pending.resolve(warehouse, unreachable, 1)
    assert resolution.unresolved
    assert "DISAGREE" in resolution.message
    assert f"PostgreSQL schema {schema} holds the tables of run new, the warehouse those of run good" in (
        resolution.message
    )
    with pytest.raises(StoresDisagree, match="DISAGREE"):
        publish(warehouse, {"churn_scores": scores("next")}, {}, unreachable, 1, "next")
    assert run_ids(warehouse, dsn, schema) == {
        "warehouse": {"good"},
        "postgres": {"new"},
    }  # nothing more changed

    result = publish(warehouse, {"churn_scores": scores("next"), "customer_segments": segments("next")}, {},
                     (dsn, schema), 5, "next")  # fmt: skip
    assert "put back to the tables of run good" in result.resolved_earlier
    assert run_ids(warehouse, dsn, schema) == {"warehouse": {"next"}, "postgres": {"next"}}
    assert live_run_ids(warehouse, (dsn, schema)) == {"warehouse": "next", "postgres": "next"}


def test_a_process_killed_after_both_commits_is_finished(stores):
    warehouse, dsn, schema = stores
    killed_between(warehouse, dsn, schema, "warehouse_committed")
    assert run_ids(warehouse, dsn, schema) == {"warehouse": {"new"}, "postgres": {"new"}}
    resolution = pending.resolve(warehouse, (dsn, schema), 5)
    assert resolution.action == "finished"
    with psycopg.connect(dsn) as connection:
        names = {r[0] for r in connection.execute(
            "select table_name from information_schema.tables where table_schema = %s", [schema])}  # fmt: skip
    assert names == {"churn_scores", "customer_segments"}  # the previous tables dropped
    assert pending.read_marker(warehouse) is None
