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


TRAITS = "orders 2.3× as often as the average customer; last purchase 12 days ago (typical customer 40 days)"
DRIVERS = "Last purchase 12 days ago (typical: 40 days): -3 points"
SUGGESTED = "Personal e-mail from the account team with a tailored offer; follow up on reply"


def build_warehouse(path, *, clean: bool = True, published: bool = True, actions: bool = True,
                    tier: str = "semi_automated", rank: int | None = 12) -> None:  # fmt: skip
    """The tables `explain` reads, as a run leaves them, for C1 (with a merged duplicate) and C2;
    ``clean=False``: a later run removed C1 from its clean tables but failed before publishing;
    ``actions=False``: a warehouse written before action tiers and worded traits (risk tiers by score,
    deviations in standard deviations); ``tier`` and ``rank``: C1's action tier and rank."""
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
        "segmentation.segment_profiles": pd.DataFrame({"segment_id": [2], "customers": [4000], "share": [0.4],
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
    if actions:
        tables["segmentation.segment_profiles"]["top_traits"] = TRAITS
        tables["churn.churn_scores"] = (
            tables["churn.churn_scores"].drop(columns="risk_tier").assign(top_drivers=DRIVERS)
        )
        tables["churn.action_tiers"] = pd.DataFrame({
            "customer_key": keys, "risk_tier": [tier] + ["automated"] * (len(keys) - 1),
            "action_rank": pd.array([rank] + [40] * (len(keys) - 1), dtype="Int64"),
            "value_365d": 2720.0, "expected_loss": 340.0,
            "suggested_action": [SUGGESTED if tier == "semi_automated" else ""] + [""] * (len(keys) - 1),
        })  # fmt: skip
        tables["churn.retention_segment"] = pd.DataFrame(
            {"customer_key": keys[:1] if tier == "semi_automated" else []}
        )
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


def test_segment_and_churn_risk_read_in_business_language(warehouse):
    result = explain(warehouse, SURVIVOR, currency="EUR", locale="en")
    segment = result.sections["Segment"]
    assert segment[1] == (
        "4,000 customers share it (40% of all); what sets the segment apart from the average customer: "
        + TRAITS
    )
    risk = result.sections["Churn risk"]
    assert risk[0] == "probability of leaving within the horizon: 12.5% (risk score 13 of 100)"
    assert risk[1] == "what moves it most (each feature's effect on the probability): " + DRIVERS
    assert risk[3:] == [
        "action tier: semi-automated, rank 12 by expected loss (1 = the largest)",
        "expected loss: €340 (churn probability 12.5% × €2,720 spent in the last 365 days)",
        "suggested action: " + SUGGESTED,
        "in the retention list (the personal-outreach and semi-automated tiers): yes",
    ]
    german = explain(warehouse, SURVIVOR, currency="EUR", locale="de_DE").sections["Churn risk"]
    assert (
        german[4]
        == "expected loss: 340\xa0€ (churn probability 12,5\xa0% × 2.720\xa0€ spent in the last 365 days)"
    )


@pytest.mark.parametrize(
    ("tier", "rank", "line"),
    [
        ("no_consent", None, "action tier: none; without marketing consent the customer is not contacted"),
        ("no_action", None, "action tier: none; nothing to lose (no spend in the last 365 days or below "
                            "actions.min_expected_loss)"),
        ("no_action", 5000, "action tier: none; the tiers are filled by customers with a larger expected loss, rank "
                            "5,000 by expected loss (1 = the largest)"),
        ("personal_outreach", 1, "action tier: personal outreach, rank 1 by expected loss (1 = the largest)"),
    ],
)  # fmt: skip
def test_every_tier_is_said_in_words(tmp_path, tier, rank, line):
    warehouse = tmp_path / "warehouse.duckdb"
    build_warehouse(warehouse, tier=tier, rank=rank)
    risk = explain(warehouse, SURVIVOR).sections["Churn risk"]
    assert risk[3] == line
    assert risk[-1].endswith(": yes" if tier == "personal_outreach" else ": no")
    assert not any(
        r.startswith("suggested action") for r in risk
    )  # only the semi-automated tier has one here


def test_a_warehouse_without_action_tiers_gets_the_earlier_lines(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    build_warehouse(warehouse, actions=False)
    result = explain(warehouse, SURVIVOR)
    assert result.sections["Segment"][1] == (
        "4,000 customers share it (40% of all); what sets the segment apart, in standard deviations from all "
        "customers: orders_365d +1.2"
    )
    risk = result.sections["Churn risk"]
    assert (
        risk[0] == "probability of leaving within the horizon: 12.5% (risk score 13 of 100, tier automated)"
    )
    assert risk[1].endswith("recency_days (12, -0.03)")
    assert risk[-1] == "in the retention segment (high risk, high value): no"
    assert not any(r.startswith("action tier") for r in risk)
