"""Data segmentation cannot split the usual way: customers all alike, fewer (distinct) customers than
segmentation.k_min, no candidate in range or stable enough, silhouette undefined."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pandas as pd
import pytest

from seg_pipeline.config import SegmentationConfig
from seg_pipeline.errors import SegPipelineError
from seg_pipeline.segmentation import profiles as pf
from seg_pipeline.segmentation.candidates import Candidate, candidates, distinct_rows, make_estimator
from seg_pipeline.segmentation.figures import profile_heatmap, projection_figure, selection_figure
from seg_pipeline.segmentation.fit import ALL_CUSTOMERS, fit_segmentation
from seg_pipeline.segmentation.selection import SINGLE_SEGMENT, UNSTABLE_FALLBACK, select

ALGORITHMS = ["kmeans", "gmm", "agglomerative", "hdbscan"]


def customers(kinds: int, n: int = 300) -> pd.DataFrame:
    """n customers of ``kinds`` different profiles (customer i is of kind i % kinds), all else equal."""
    kind = np.arange(n) % kinds
    return pd.DataFrame({
        "customer_key": [f"k{i:04d}" for i in range(n)],
        "avg_order_value": 100.0 + 40.0 * kind,
        "interpurchase_mean_days": 60.0 - 5.0 * kind,
        "channel_share_web": 1.0 - 0.2 * kind,
        "monetary_365d": 300.0 + 120.0 * kind,
        "recency_days": 10.0,
    })  # fmt: skip


def fit(features: pd.DataFrame, **config):
    settings = SegmentationConfig(n_jobs=1, stability_resamples=2, **config)
    return fit_segmentation(features, config=settings, categorical=[], attributes=[],
                            churned=pd.Series(0.0, index=features.index), previous_deviations=None,
                            previous_assignments=None)  # fmt: skip


def test_customers_all_alike_make_one_segment_with_a_note():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no clusterer was asked to split identical rows
        result = fit(customers(kinds=1), algorithms=ALGORITHMS)
    assert result.single_segment
    assert result.assignments["segment_id"].nunique() == 1
    assert set(result.assignments["segment_name"]) == {ALL_CUSTOMERS}
    assert result.assignments["micro_segment_id"].nunique() == 1  # k-means cannot split them either
    profile = result.profiles.iloc[0]
    assert profile["customers"] == 300 and profile["share"] == 1.0 and profile["top_deviations"] == ""
    assert profile["top_traits"] == ""  # the one segment is the average customer
    table = result.selection.table
    assert len(table) == 1 and table["selected"].all() and result.selection.chosen["k"] == 1
    assert result.selection.chosen["candidate"] == SINGLE_SEGMENT
    assert pd.isna(result.selection.chosen["silhouette"]) and pd.isna(result.selection.chosen["stability"])
    assert (
        len(result.notes) == 1 and "all 300 customers have the same features after scaling" in result.notes[0]
    )
    assert result.selection.chosen["note"] == result.notes[0]
    # the fitted pipeline (the logged model) puts tomorrow's customers in the same one segment
    assert set(result.pipeline.predict(customers(kinds=3).drop(columns="customer_key"))) == {0}
    assert pf.long_deviations(result.deviations).empty


def test_a_single_segment_from_a_sample_says_so_and_its_figures_draw():
    result = fit(customers(kinds=1, n=600), fit_sample=500)
    assert result.notes[0].startswith(
        "all 500 customers of the fitting sample (segmentation.fit_sample) have the same features"
    )
    assert len(result.assignments) == 600 and result.single_segment
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no principal components of identical points, no empty panels
        for figure in (
            selection_figure(result.selection.table),
            projection_figure(result.design_sample, result.sample_segments, {1: ALL_CUSTOMERS}),
            profile_heatmap(result.deviations),
        ):
            figure.savefig(io.BytesIO(), format="png")


def test_fewer_customers_than_k_min_is_a_config_error():
    with pytest.raises(SegPipelineError, match=r"only 2 profiled customer\(s\), fewer than segmentation.k_min=3; "
                       r".*lower segmentation.k_min or check the extracts"):  # fmt: skip
        fit(customers(kinds=2, n=2))


def test_fewer_distinct_customers_than_k_min_names_the_cause():
    with pytest.raises(SegPipelineError) as raised:
        fit(customers(kinds=2), algorithms=ALGORITHMS)
    message = str(raised.value)
    assert message.startswith(
        "segmentation: only 2 distinct customers (after feature scaling) among 300, fewer than "
        "segmentation.k_min=3; segmentation needs at least 3 customers whose features ("
    )
    assert "avg_order_value" in message and message.endswith("lower segmentation.k_min or check the extracts")


def test_candidates_beyond_the_distinct_rows_are_left_out_and_said_so():
    result = fit(customers(kinds=4), algorithms=ALGORITHMS, k_min=3, k_max=8)
    table = result.selection.table
    assert table["k"].max() <= 4 and not table["candidate"].str.contains("k=5").any()
    assert result.selection.chosen["k"] == 4 and result.assignments["segment_id"].nunique() == 4
    assert result.notes == [
        "only 4 distinct customers (after feature scaling) among 300: candidates with more than 4 segments "
        "(up to segmentation.k_max=8) left out"
    ]


def test_without_a_stable_candidate_the_fallback_chooses_in_range_and_says_why():
    X = np.random.default_rng(3).uniform(size=(400, 3))  # no structure: no refit agrees exactly
    found = select(X, candidates(["kmeans"], 2, 4), k_min=2, k_max=4, seed=0, metric_sample=400,
                   hierarchical_sample=400, resamples=2, min_stability=1.0)  # fmt: skip
    table = found.table
    assert (table["stability"] < 1.0).all()
    assert table["eligible"].all() and table["selected"].sum() == 1
    assert table["note"].str.contains(f"{UNSTABLE_FALLBACK} 1.00").all()
    assert not table["note"].str.startswith(";").any()


def test_no_candidate_in_range_is_an_error_naming_what_each_found():
    X = np.random.default_rng(3).normal(size=(300, 3))
    with pytest.raises(SegPipelineError, match=r"no candidate found between segmentation.k_min=5 and "
                       r"segmentation.k_max=6 segments \(kmeans k=2: 2 segment\(s\); kmeans k=3: 3 segment\(s\)\)"):  # fmt: skip
        select(X, candidates(["kmeans"], 2, 3), k_min=5, k_max=6, seed=0, metric_sample=300,
               hierarchical_sample=300, resamples=2, min_stability=0.5)  # fmt: skip


def test_scores_left_empty_when_every_customer_is_a_segment_of_their_own():
    # silhouette, Davies-Bouldin and Calinski-Harabasz all need 2 to n-1 segments; the candidate is still
    # chosen (a company of a few customers)
    found = select(np.eye(3) * 10, candidates(["kmeans"], 3, 3), k_min=3, k_max=3, seed=0, metric_sample=3,
                   hierarchical_sample=200, resamples=2, min_stability=0.0)  # fmt: skip
    chosen = found.chosen
    assert chosen["k"] == 3 and chosen["selected"]
    assert chosen[["silhouette", "davies_bouldin", "calinski_harabasz"]].isna().all()


def test_hdbscan_fits_fewer_customers_than_its_usual_minimum_cluster_size():
    X = np.random.default_rng(0).normal(size=(12, 3))
    model = make_estimator(Candidate("hdbscan", None), n_rows=12, seed=0, hierarchical_sample=200).fit(X)
    assert len(model.predict(X)) == 12


def test_distinct_rows_and_deviations_of_a_single_group():
    assert (
        distinct_rows(np.zeros((5, 2))) == 1
        and distinct_rows(np.eye(3)) == 3
        and distinct_rows(np.empty((0, 2))) == 0
    )
    devs = pf.deviations(customers(kinds=1), pd.Series(np.zeros(300, dtype=int)), ["avg_order_value"])
    assert list(devs.index) == [0] and devs.columns.empty
    assert pf.long_deviations(devs).dtypes.to_dict() == {
        "segment_id": np.dtype("int64"), "feature": np.dtype("O"), "deviation": np.dtype("float64")
    }  # fmt: skip
