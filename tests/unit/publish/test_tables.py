"""The published tables from internal ones: CRM ids back, contract columns, history arithmetic."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from seg_pipeline.errors import SegPipelineError
from seg_pipeline.publish import tables
from seg_pipeline.publish.contract import PUBLISHED_TABLES, column_names, conform

AS_OF = dt.date(2024, 6, 30)


@pytest.fixture
def internal():
    keys = ["k1", "k2", "k3", "k4"]
    ids = pd.DataFrame({"customer_key": keys, "customer_id": ["C1", "C2", "C3", "C4"], "name_hash": "x"})
    scores = pd.DataFrame({
        "customer_key": keys, "churn_probability": [0.1, 0.5, 0.8, 0.3], "churn_risk_score": [10, 50, 80, 30],
        "top_drivers": ["a", "b", "c", "d"], "model_version": 3, "scored_by": "hist_gradient_boosting",
        "as_of": pd.Timestamp(AS_OF),
    })  # fmt: skip
    tiers = pd.DataFrame({
        "customer_key": keys, "risk_tier": ["automated", "semi_automated", "personal_outreach", "no_consent"],
        "action_rank": pd.array([3, 2, 1, None], dtype="Int64"), "value_365d": [100.0, 80.0, 50.0, 10.0],
        "expected_loss": [10.0, 40.0, 40.0, 3.0], "suggested_action": ["mail", "e-mail", "call", ""],
        "arm": ["treatment", "control", "treatment", None], "control_period": "2024-06",
    })  # fmt: skip
    # k4 joined after the last segmentation (a rescore): no segment yet
    clusters = pd.DataFrame({"customer_key": keys[:3], "segment_id": [1, 1, 2], "segment_name": ["A", "A", "B"],
                             "micro_segment_id": [101, 102, 201]})  # fmt: skip
    lifecycle = pd.DataFrame({"customer_key": keys, "lifecycle_stage": ["new", "steady", "at_risk", "new"]})
    profiles = pd.DataFrame({
        "segment_id": [1, 2], "segment_name": ["A", "B"], "customers": [2, 1], "share": [0.66, 0.33],
        "revenue_365d": [100.0, 50.0], "revenue_share": [0.66, 0.33], "mean_revenue_365d": [50.0, 50.0],
        "observed_churn_rate": [0.1, float("nan")], "top_deviations": ["x +1.0", "y -1.0"],
        "top_traits": ["orders 2.0× as often as the average customer", "spends less"],
    })  # fmt: skip
    customers = tables.scored_customers(ids, scores, tiers, clusters, lifecycle)
    return customers, profiles


def test_customer_segments_carry_crm_ids_and_exact_contract_columns(internal):
    customers, _ = internal
    out = tables.customer_segments(customers, AS_OF, "run-1")
    assert list(out.columns) == column_names("customer_segments")
    assert out["customer_id"].tolist() == ["C1", "C2", "C3", "C4"]
    assert out.set_index("customer_id")["in_retention_segment"].to_dict() == {
        "C1": False,  # automated campaign: not on the retention list
        "C2": True,
        "C3": True,
        "C4": False,
    }
    new = out.set_index("customer_id").loc["C4"]
    assert pd.isna(new["segment_id"]) and new["lifecycle_stage"] == "new" and new["risk_tier"] == "no_consent"
    conformed = conform("customer_segments", out)
    assert str(conformed["segment_id"].dtype) == "Int64" and conformed["as_of"].iloc[0] == pd.Timestamp(AS_OF)
    scores = conform("churn_scores", tables.churn_scores(customers, AS_OF, "run-1"))
    assert scores.set_index("customer_id")["risk_tier"].to_dict()["C3"] == "personal_outreach"


def test_retention_actions_hold_the_action_tiers_in_rank_order_and_nobody_without_consent(internal):
    customers, _ = internal
    out = conform("retention_actions", tables.retention_actions(customers, AS_OF, "run-1"))
    assert out["customer_id"].tolist() == ["C3", "C2", "C1"]  # C4 has no marketing consent
    assert out["action_rank"].tolist() == [1, 2, 3]
    assert out["suggested_action"].tolist() == ["call", "e-mail", "mail"]
    assert out.loc[0, "segment_name"] == "B" and out.loc[0, "expected_loss"] == 40.0


def test_profiles_count_from_the_published_assignments(internal):
    customers, profiles = internal
    out = tables.segment_profiles(profiles, customers, AS_OF, "run-1").set_index("segment_id")
    assert list(out.reset_index().columns) == column_names("segment_profiles")
    assert out.loc[1, "customers"] == 2 and out.loc[2, "customers"] == 1
    assert out.loc[1, "share"] == pytest.approx(0.5)  # of all 4 published customers, one unassigned
    assert out.loc[1, "mean_churn_probability"] == pytest.approx(0.3)
    assert out.loc[1, "expected_loss"] == pytest.approx(50.0)
    assert (out.loc[1, "customers_automated"], out.loc[1, "customers_semi_automated"]) == (1, 1)
    assert out.loc[1, "customers_no_consent"] == 0 and out.loc[1, "customers_no_action"] == 0
    assert out.loc[1, "customers_in_retention_segment"] == 1  # the semi-automated one
    assert (
        out.loc[2, "customers_personal_outreach"] == 1 and out.loc[2, "customers_in_retention_segment"] == 1
    )
    assert out.loc[1, "trait_deviations"] == "x +1.0"
    assert out.loc[1, "top_traits"] == "orders 2.0× as often as the average customer"


def test_history_counts_stayed_joined_left_and_keeps_earlier_runs(internal):
    customers, profiles = internal
    segments = tables.customer_segments(customers, AS_OF, "run-2")
    current = tables.segment_profiles(profiles, customers, AS_OF, "run-2")
    nothing = tables.migration_since(None, segments)
    assert nothing.empty
    first = tables.segment_history(None, nothing, True, segments, current, AS_OF, "run-1")
    assert first["customers_joined"].tolist() == [2, 1] and first["customers_stayed"].sum() == 0

    # previously: C1 in 1, C2 in 2, C3 in 2, C9 in 1 (since erased); now C1 1, C2 1, C3 2, C4 none
    previous = pd.DataFrame({"customer_id": ["C1", "C2", "C3", "C9"], "segment_id": [1, 2, 2, 1]})
    moved = tables.migration_since(previous, segments)
    pairs = {(f, t): n for f, t, n in moved.astype(object).where(moved.notna(), None).itertuples(index=False)}
    # C9 left; C4 has no segment on either side, so it moved nowhere
    assert pairs == {(1, 1): 1, (1, None): 1, (2, 1): 1, (2, 2): 1}
    history = tables.segment_history(first, moved, False, segments, current, AS_OF, "run-2")
    assert list(history.columns) == column_names("segment_history")
    latest = history[history["run_id"] == "run-2"].set_index("segment_id")
    assert latest.loc[1, ["customers_stayed", "customers_joined", "customers_left"]].tolist() == [1, 1, 1]
    assert latest.loc[2, ["customers_stayed", "customers_joined", "customers_left"]].tolist() == [1, 0, 1]
    assert (history["run_id"] == "run-1").sum() == 2  # earlier rows kept
    again = tables.segment_history(history, moved, False, segments, current, AS_OF, "run-2")
    assert len(again) == len(history)  # re-publishing a run replaces its rows


def test_kpi_history_holds_each_runs_headline_numbers_in_publish_order(internal):
    customers, profiles = internal
    current = tables.segment_profiles(profiles, customers, AS_OF, "run-1")
    first = conform("kpi_history", tables.kpi_history(None, customers, current, AS_OF, "run-1"))
    value = first.set_index(["measure", "breakdown"])["value"]
    assert value["customers", "all"] == 4
    assert value["mean_churn_probability", "all"] == pytest.approx(0.425)
    assert value["expected_loss", "all"] == pytest.approx(93.0)
    assert value["revenue_365d", "all"] == pytest.approx(240.0)
    assert value["retention_list_customers", "all"] == 2
    assert value["retention_list_expected_loss", "all"] == pytest.approx(80.0)
    assert value["tier_customers", "no_consent"] == 1 and value["tier_customers", "no_action"] == 0
    assert value["mean_churn_probability", "personal_outreach"] == pytest.approx(0.8)
    assert np.isnan(value["mean_churn_probability", "no_action"])  # an empty tier has no mean
    assert value["segment_customers", "segment:1"] == 2
    assert first.set_index("breakdown").loc["segment:2", "breakdown_label"] == "B"
    assert not first.duplicated(["run_id", "measure", "breakdown"]).any()
    # a second run on the same day comes after the first; publishing a run again replaces its rows
    second = tables.kpi_history(first, customers, current, AS_OF, "run-0")
    assert second["run_id"].drop_duplicates().tolist() == ["run-1", "run-0"]
    assert second.groupby("run_id")["publish_sequence"].unique().to_dict() == {"run-0": [2], "run-1": [1]}
    # read back in any order (DuckDB keeps none), the sequence still puts them in publish order
    again = tables.kpi_history(second.iloc[::-1], customers, current, AS_OF, "run-0")
    assert len(again) == len(second) and again["run_id"].drop_duplicates().tolist() == ["run-1", "run-0"]
    assert again["publish_sequence"].max() == 2  # publishing a run again keeps its place


def test_conform_names_the_breach():
    with pytest.raises(SegPipelineError, match=r"missing \['run_id'\].*unexpected \['email'\]"):
        conform("churn_scores", pd.DataFrame(columns=[*column_names("churn_scores")[:-1], "email"]))
    frame = pd.DataFrame({c: ["x"] for c in column_names("churn_scores")})
    frame = frame.assign(churn_probability=[0.5], churn_risk_score=[50], model_version=[1], as_of=["2024-06-30"],
                         customer_id=[None])  # fmt: skip
    with pytest.raises(SegPipelineError, match="column customer_id is missing in row 0"):
        conform("churn_scores", frame)
    with pytest.raises(SegPipelineError, match="unknown published table"):
        conform("customers", frame)


def test_no_published_column_can_identify_a_person():
    for table in PUBLISHED_TABLES:
        assert not {"name", "email", "phone", "company", "customer_key"} & set(column_names(table))


def test_keyed_rows_pick_like_a_left_merge():
    keys = pd.Series(["k3", "k1", "k2", "k4"])
    other = pd.DataFrame(
        {
            "customer_key": ["k1", "k2", "k3", "k9"],  # k4 absent, k9 not asked for
            "segment_id": [1, 2, 3, 9],
            "segment_name": pd.array(["a", "b", None, "z"], dtype="string"),
            "flag": [True, False, True, True],
        },
        index=[10, 11, 12, 13],
    )
    picked = tables.KeyedRows(keys).pick(other, ["segment_id", "segment_name", "flag"], "clusters")
    merged = (
        keys.to_frame("customer_key")
        .merge(other, on="customer_key", how="left", validate="one_to_one")
        .drop(columns="customer_key")
    )
    pd.testing.assert_frame_equal(picked, merged)
    assert picked["segment_id"].tolist()[:3] == [3.0, 1.0, 2.0] and pd.isna(picked["segment_id"].iloc[3])
    whole = tables.KeyedRows(keys.iloc[:3]).pick(other, ["segment_id"], "clusters")
    assert whole["segment_id"].dtype == "int64"  # nothing missing: the dtype stays


def test_keyed_rows_refuse_duplicate_keys():
    with pytest.raises(ValueError, match="not unique"):
        tables.KeyedRows(pd.Series(["k1", "k1"]))
    twice = pd.DataFrame({"customer_key": ["k1", "k1"], "segment_id": [1, 2]})
    with pytest.raises(ValueError, match="clusters: a customer_key occurs more than once"):
        tables.KeyedRows(pd.Series(["k1", "k2"])).pick(twice, ["segment_id"], "clusters")
