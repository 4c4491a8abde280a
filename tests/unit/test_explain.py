"""`explain` after `forget`: "pending" with what is still held until a run applies it, then "applied"."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pandas as pd
import pytest

from seg_pipeline.cleaning.privacy import pseudonymize, record_erasure
from seg_pipeline.explain import ErasureRegister, explain

KEY = b"test-key"
SURVIVOR, DUPLICATE, OTHER = "C1", "C1-dup", "C2"
REQUESTED = dt.datetime(2024, 7, 1, 9, 30, tzinfo=dt.UTC)
PENDING_LINE = (
    "erasure requested on 2024-07-01; pending until the next run publishes; the published tables still hold:"
)


def key_of(customer_id: str) -> str:
    return pseudonymize(pd.Series([customer_id]), KEY).iloc[0]


def build_warehouse(path, *, clean: bool = True, published: bool = True) -> None:
    """The tables `explain` reads, as a run leaves them, for C1 (with a merged duplicate) and C2;
    ``clean=False``: a later run removed C1 from its clean tables but failed before publishing."""
    c1, c2 = key_of(SURVIVOR), key_of(OTHER)
    in_clean = [SURVIVOR, DUPLICATE, OTHER] if clean else [OTHER]
    id_map = pd.DataFrame({
        "customer_id": [SURVIVOR, DUPLICATE, OTHER], "surviving_customer_id": [SURVIVOR, SURVIVOR, OTHER],
        "customer_key": [c1, c1, c2], "match_rule": ["", "same_email", ""],
    })  # fmt: skip
    id_map = id_map[id_map["customer_id"].isin(in_clean)]
    keys = id_map["customer_key"].drop_duplicates().tolist()
    tables = {
        "clean.customer_id_map": id_map,
        "clean.clean_customers": pd.DataFrame({"customer_key": keys, "consent_marketing": True,
                                               "consent_profiling": True, "profiling_allowed": True}),
        "segmentation.customer_clusters": pd.DataFrame({"customer_key": keys, "segment_id": 2,
                                                        "segment_name": "loyal buyers", "micro_segment_id": 21}),
        "segmentation.segment_profiles": pd.DataFrame({"segment_id": [2], "customers": [40], "share": [0.4],
                                                       "top_deviations": ["orders_365d +1.2"]}),
        "segmentation.lifecycle_stage": pd.DataFrame({"customer_key": keys, "lifecycle_stage": "champion",
                                                      "lifecycle_reason": "orders often"}),
        "churn.churn_scores": pd.DataFrame({
            "customer_key": keys, "churn_probability": 0.125, "churn_risk_score": 13, "risk_tier": "automated",
            "top_drivers": "recency_days (12, -0.03)", "model_version": 4, "scored_by": "logistic_regression",
            "as_of": pd.Timestamp("2024-06-30"),
        }),
        "churn.retention_segment": pd.DataFrame({"customer_key": pd.Series([], dtype=str)}),
    }  # fmt: skip
    if published:
        tables["published.customer_segments"] = pd.DataFrame({
            "customer_id": [SURVIVOR, OTHER], "segment_id": 2, "segment_name": "loyal buyers",
            "lifecycle_stage": "champion", "churn_risk_score": 13, "risk_tier": "automated",
            "as_of": pd.Timestamp("2024-06-30"), "run_id": "run-1",
        })  # fmt: skip
    with duckdb.connect(str(path)) as con:
        for name, frame in tables.items():
            con.execute(f"create schema if not exists {name.split('.')[0]}")
            con.register("frame", frame)
            con.execute(f"create table {name} as select * from frame")
            con.unregister("frame")


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    build_warehouse(path)
    return path


def requests_for(tmp_path, *customer_ids: str) -> ErasureRegister:
    """The register as `seg-pipeline forget` writes it, read back."""
    for customer_id in customer_ids:
        record_erasure(tmp_path, customer_id, KEY, now=REQUESTED)
    return ErasureRegister.read(tmp_path, KEY)


def test_without_a_request_there_is_no_erasure_section(warehouse):
    result = explain(warehouse, SURVIVOR)
    assert result.found and result.erasure is None and "Erasure" not in result.sections
    assert json.loads(json.dumps(result.as_json()))["erasure"] is None
    assert "Churn risk" in result.sections


def test_register_is_read_with_its_dates(tmp_path):
    assert ErasureRegister.read(tmp_path, KEY).requested_at == {}
    register = requests_for(tmp_path, SURVIVOR)
    assert register.requested_at == {key_of(SURVIVOR): "2024-07-01T09:30:00+00:00"}
    assert register.first_request([OTHER, SURVIVOR]) == "2024-07-01T09:30:00+00:00"
    assert register.first_request([OTHER]) is None


def test_request_not_yet_applied_is_pending_and_shows_what_is_held(tmp_path, warehouse):
    result = explain(warehouse, SURVIVOR, requests_for(tmp_path, SURVIVOR))
    assert result.found and result.erasure.status == "pending"
    text = result.text()
    assert PENDING_LINE in text and "Nothing is held" not in text
    # the erasure comes first, then everything still held
    assert list(result.sections)[0] == "Erasure"
    assert text.index(PENDING_LINE) < text.index("loyal buyers") < text.index("probability of leaving")
    as_json = result.as_json()
    assert as_json["erasure"] == {
        "status": "pending",
        "requested_at": "2024-07-01T09:30:00+00:00",
        "held_data": "shown below",
    }
    assert as_json["Erasure"][0] == PENDING_LINE and "Segment" in as_json


def test_request_for_a_merged_duplicate_is_pending_for_the_whole_identity(tmp_path, warehouse):
    requests = requests_for(tmp_path, DUPLICATE)
    assert explain(warehouse, SURVIVOR, requests).erasure.status == "pending"
    assert explain(warehouse, DUPLICATE, requests).erasure.status == "pending"
    assert explain(warehouse, OTHER, requests).erasure is None


def test_removed_from_clean_tables_but_still_published_is_pending(tmp_path):
    """A run applied the request in its clean stage but failed before publishing."""
    warehouse = tmp_path / "warehouse.duckdb"
    build_warehouse(warehouse, clean=False)
    result = explain(warehouse, SURVIVOR, requests_for(tmp_path, SURVIVOR))
    assert not result.found and result.erasure.status == "pending"
    published = result.sections["Published tables"]
    assert len(published) == 1 and published[0].startswith("customer_segments: customer_id=C1, segment_id=2")
    assert "as_of=2024-06-30" in published[0]


def test_request_applied_by_a_run_says_so(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    build_warehouse(warehouse, clean=False, published=False)
    result = explain(warehouse, SURVIVOR, requests_for(tmp_path, SURVIVOR))
    assert not result.found and result.erasure.status == "applied"
    assert result.sections["Erasure"][0].startswith(
        "An erasure request is recorded for this customer (requested on 2024-07-01) and applied:"
    )
    assert result.as_json()["erasure"]["held_data"] == "none"
    assert "Published tables" not in result.sections and "Churn risk" not in result.sections


def test_explain_opens_the_warehouse_read_only(warehouse):
    """DuckDB refuses a read-write connection while this process holds a read-only one on the file."""
    with duckdb.connect(str(warehouse), read_only=True) as held:
        assert explain(warehouse, SURVIVOR).found
        assert held.execute("select count(*) from clean.customer_id_map").fetchone() == (3,)
