"""Candidates, selection, stable ids, names and migration on small made-up data with known structure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seg_pipeline.errors import SegPipelineError
from seg_pipeline.segmentation import profiles as pf
from seg_pipeline.segmentation.candidates import SampledClusterer, candidates
from seg_pipeline.segmentation.design import design_columns
from seg_pipeline.segmentation.selection import select, selection_markdown


def blobs(k: int, n: int = 200, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 8, (k, d))
    truth = np.repeat(np.arange(k), n)
    return centres[truth] + rng.normal(0, 1, (k * n, d)), truth


def test_selection_finds_the_planted_k_and_marks_one_winner():
    X, truth = blobs(4)
    found = select(X, candidates(["kmeans", "gmm", "agglomerative", "hdbscan"], 2, 6), k_min=2, k_max=6,
                   seed=0, metric_sample=500, hierarchical_sample=400, resamples=2, min_stability=0.6)  # fmt: skip
    table = found.table
    assert table["selected"].sum() == 1 and found.chosen["k"] == 4
    assert len(table) == 3 * 5 + 1
    assert table.loc[table["algorithm"] == "kmeans", "inertia"].notna().all()
    assert (table.loc[table["k"] == 4, "stability"] > 0.95).all()
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, found.labels) > 0.99
    assert "**" in selection_markdown(table)


def test_out_of_range_k_is_reported_but_never_selected():
    X, _ = blobs(5)
    found = select(X, candidates(["kmeans"], 2, 3), k_min=2, k_max=3, seed=0, metric_sample=500,
                   hierarchical_sample=400, resamples=2, min_stability=0.99)  # fmt: skip
    assert found.chosen["k"] in (2, 3)
    assert (
        "chosen among unstable candidates" in " ".join(found.table["note"])
        or found.chosen["stability"] >= 0.99
    )


def test_sampled_clusterer_assigns_every_row_to_a_centroid():
    from sklearn.cluster import AgglomerativeClustering

    X, truth = blobs(3, n=500)
    model = SampledClusterer(AgglomerativeClustering(3), sample_size=300, random_state=1).fit(X)
    assert model.cluster_centers_.shape == (3, 4)
    labels = model.predict(X)
    assert set(labels) == {0, 1, 2} and len(labels) == len(X)
    assert pd.crosstab(truth, labels).max(axis=1).sum() == len(X)


def test_design_columns_default_to_profile_features_and_reject_unknown_names():
    features = pd.DataFrame({"customer_key": ["a", "b"], "recency_days": [1.0, 2.0], "avg_order_value": [3.0, 4.0],
                             "channel_share_web": [0.5, 1.0], "channel_share_unknown": [0.1, 0.0],
                             "plan": ["pro", "basic"], "email_open_rate": [np.nan, np.nan]})  # fmt: skip
    cols = design_columns(features, ["plan"], None, ["plan"])
    assert cols.numeric == ["avg_order_value", "channel_share_web"] and cols.categorical == ["plan"]
    assert design_columns(features, [], ["recency_days"], []).numeric == ["recency_days"]
    with pytest.raises(SegPipelineError, match="segmentation.features names nope"):
        design_columns(features, [], ["nope"], [])


def devs_frame(rows: dict[int, dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame.from_dict(rows, orient="index")


def test_stable_ids_follow_the_nearest_previous_profile_and_new_ones_get_new_ids():
    previous = pf.long_deviations(devs_frame({1: {"a": 2.0, "b": 0.0}, 2: {"a": -2.0, "b": 0.0}}))
    now = devs_frame({0: {"a": -1.9, "b": 0.1}, 1: {"a": 2.1, "b": 0.0}, 2: {"a": 0.0, "b": 3.0}})
    mapping, distance = pf.stable_ids(now, previous)
    assert mapping == {0: 2, 1: 1, 2: 3}
    assert set(distance) == {0, 1}
    fresh, _ = pf.stable_ids(now, None)
    assert fresh == {0: 1, 1: 2, 2: 3}


def test_names_are_readable_and_distinct():
    devs = devs_frame({
        1: {"monetary_365d": 1.5, "frequency_365d": 1.2, "channel_share_store": 1.4},
        2: {"monetary_365d": -1.0, "frequency_365d": -0.9, "recency_days": 1.5, "email_open_rate": -1.0},
        3: {"monetary_365d": 1.4, "frequency_365d": 1.1, "channel_share_web": 1.2},
    })  # fmt: skip
    names = pf.unique_names(devs)
    assert names[1] == "High-value frequent in-store buyers"
    assert names[2] == "Dormant low-value occasional buyers, low engagement"
    assert names[3] == "High-value frequent web-shop buyers"
    same = pf.unique_names(devs_frame({1: {"monetary_365d": 1.0}, 2: {"monetary_365d": 1.0}}))
    assert len(set(same.values())) == 2


# The demo's five segments (their strongest deviations) and the names they had before names were worded
# as adjectives: "via store", "buying home" read as data, "home buyers" would be buying houses.
DEMO = {
    1: ({"channel_share_store": 1.7, "category_share_office": 1.6, "channel_share_web": -0.8}, "Mid-value customers, via store"),
    2: ({"channel_share_app": 1.5, "category_share_apparel": 1.5, "monthly_charges": -1.1, "avg_order_value": -0.9,
         "interpurchase_mean_days": -0.9}, "Low-paying frequent buyers, via app"),
    3: ({"category_share_electronics": 1.6, "category_share_software": 1.5, "monthly_charges": 1.0,
         "email_open_rate": 1.0, "interpurchase_mean_days": -0.6}, "High-paying frequent buyers, buying electronics"),
    4: ({"category_share_home": 1.3, "channel_share_web": 1.2, "satisfaction_mean": -0.8, "monetary_365d": -0.8,
         "frequency_365d": -0.7}, "Low-value occasional buyers, buying home"),
    5: ({"category_share_services": 2.7, "channel_share_sales_rep": 2.5, "avg_order_value": 2.3, "monthly_charges": 2.0,
         "interpurchase_mean_days": 0.6}, "Big-basket occasional buyers, buying services"),
}  # fmt: skip


def test_names_put_channel_and_category_before_the_noun_and_stay_short():
    names = pf.unique_names(devs_frame({seg: devs for seg, (devs, _) in DEMO.items()}))
    assert names == {
        1: "Mid-value in-store customers",
        2: "Low-paying frequent app buyers",
        3: "High-paying frequent electronics buyers",
        4: "Low-value occasional home-goods buyers",
        5: "Big-basket occasional service buyers",
    }
    assert all(len(names[seg]) <= len(before) for seg, (_, before) in DEMO.items())
    assert (
        pf.unique_names(devs_frame({seg: devs for seg, (devs, _) in DEMO.items()})) == names
    )  # deterministic


def test_names_that_clash_grow_by_their_next_trait_and_skip_unrecorded_channels():
    devs = devs_frame({
        1: {"channel_share_app": 1.5, "category_share_office": 1.2, "channel_share_unknown": 3.0},
        2: {"channel_share_app": 1.4, "tickets_365d": 0.9},
        3: {"category_share_garden_tools": 1.1, "frequency_365d": 0.8},
    })  # fmt: skip
    names = pf.unique_names(devs)
    assert names[1] == "Mid-value app customers, buying office supplies"  # not "unknown customers"
    assert names[2] == "Mid-value app customers, support-heavy"
    assert names[3] == "Mid-value frequent garden-tools buyers"


def test_traits_compare_with_the_average_customer_in_each_features_unit():
    features = pd.DataFrame({
        "frequency_365d": [10.0, 8.0, 2.0, 2.0, 2.0, 2.0],  # segment 1 mean 9, all 4.33: a multiple
        "avg_order_value": [50.0, 70.0, 55.0, 55.0, 55.0, 55.0],  # 60 vs 56.7: too close, both values
        "days_since_last_purchase": [100.0, 200.0, 10.0, 20.0, 30.0, 5000.0],  # medians: 150 vs 65
        "channel_share_app": [0.6, 0.7, 0.1, 0.1, 0.1, 0.1],  # shares: both percentages
        "email_unsubscribed": [1.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # a flag: the share of customers with it
        "monetary_365d": [0.0, 0.0, 500.0, 400.0, 300.0, 200.0],  # segment 0: no multiple of nothing
    })  # fmt: skip
    segment = pd.Series([1, 1, 2, 2, 2, 2])
    devs = pf.deviations(features, segment, list(features.columns))
    traits = dict(zip(devs.index, pf.traits(features, segment, devs, devs.index, 6), strict=True))
    parts = traits[1].split("; ")
    assert len(parts) == 6  # "; " separates traits only
    assert "orders 2.1× as often as the average customer" in parts
    assert "spends €60 per order (average €57)" in parts
    assert "last purchase 150 days ago (typical customer 65 days)" in parts
    assert "65% of orders via app (average 28%)" in parts
    assert "50% have unsubscribed from e-mails (average 17%)" in parts
    assert "nothing spent in the last 365 days (average €233)" in parts
    assert "orders 0.5× as often as the average customer" in traits[2].split("; ")


def test_trait_uses_a_multiple_only_between_the_bounds():
    assert pf.trait("frequency_365d", 3.0, 2.0) == "orders 1.5× as often as the average customer"
    assert pf.trait("frequency_365d", 2.8, 2.0) == "2.8 orders in the last 365 days (average 2)"  # 1.4×
    assert pf.trait("frequency_365d", 1.3, 2.0) == "orders 0.7× as often as the average customer"  # 0.65×
    assert (
        pf.trait("frequency_365d", 0.1, 2.0) == "0.1 orders in the last 365 days (average 2)"
    )  # below a tenth
    assert (
        pf.trait("monetary_365d", 2480.0, 1240.0, "EUR", "de_DE")
        == "spends 2× as much as the average customer"
    )
    assert (
        pf.trait("monetary_365d", 1300.0, 1240.0, "EUR", "de_DE")
        == "1.300\xa0€ spent in the last 365 days (average 1.240\xa0€)"
    )
    assert (
        pf.trait("monthly_charges", 325.0, 171.4) == "monthly charges 325 (average 171)"
    )  # an attribute: as it is
    assert pf.trait("avg_order_value", float("nan"), 50.0) == "no orders (average €50)"


def test_profile_table_keeps_deviations_and_adds_traits():
    features = pd.DataFrame(
        {"monetary_365d": [900.0, 1100.0, 700.0, 700.0], "frequency_365d": [9.0, 11.0, 1.0, 1.0]}
    )
    segment = pd.Series([1, 1, 2, 2])
    devs = pf.deviations(features, segment, list(features.columns))
    table = pf.profile_table(features, segment, {1: "a", 2: "b"}, devs, None, currency="USD")
    assert list(table.columns[-2:]) == ["top_traits", "top_deviations"]
    deviations = table.loc[0, "top_deviations"].split(", ")
    assert deviations[0].startswith("frequency_365d +") and deviations[1].startswith("monetary_365d +")
    # the same features in the same order, in words
    assert table.loc[0, "top_traits"].split("; ") == ["orders 1.8× as often as the average customer",
                                                      "$1,000 spent in the last 365 days (average $850)"]  # fmt: skip
    assert table.loc[1, "top_traits"].split("; ")[1] == "$700 spent in the last 365 days (average $850)"


def test_migration_counts_moves_joins_and_leavers():
    before = pd.DataFrame({"customer_key": ["a", "b", "c"], "segment_id": [1, 1, 2]})
    after = pd.DataFrame({"customer_key": ["a", "b", "d"], "segment_id": [1, 2, 2]})
    moved = pf.migration(before, after)
    as_tuples = {(f if pd.notna(f) else None, t if pd.notna(t) else None, n) for f, t, n in moved.to_numpy()}
    assert as_tuples == {(1, 1, 1), (1, 2, 1), (2, None, 1), (None, 2, 1)}
    assert pf.migration_summary(moved) == {"stayed": 1, "changed_segment": 1, "joined": 1, "left": 1}


def test_micro_segment_counts_add_up_and_every_segment_gets_one():
    counts = pf.micro_segment_counts(pd.Series({1: 9000, 2: 900, 3: 100}), 60)
    assert counts.sum() == 60 and (counts >= 1).all() and counts[1] > counts[2] > 0
