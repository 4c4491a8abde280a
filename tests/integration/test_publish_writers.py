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
from seg_pipeline.publish.contract import column_names
from seg_pipeline.publish.writers import (
    PUBLISH_LOCK_KEY,
    PublishedTable,
    PublishUnavailable,
    publish,
    publish_to_warehouse,
    read_postgres_table,
    read_warehouse_table,
)


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
        "in_retention_segment": False, "as_of": pd.Timestamp("2024-06-30"), "run_id": run_id,
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
