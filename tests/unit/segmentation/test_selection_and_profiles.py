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
    assert names[1] == "High-value frequent buyers, via store"
    assert names[2].startswith("Dormant, low-value occasional buyers")
    assert names[3] == "High-value frequent buyers, via web"
    same = pf.unique_names(devs_frame({1: {"monetary_365d": 1.0}, 2: {"monetary_365d": 1.0}}))
    assert len(set(same.values())) == 2


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
