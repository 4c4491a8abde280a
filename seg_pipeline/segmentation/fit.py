"""One segmentation fit, start to finish, in pandas and scikit-learn (the Dagster asset only wires it up):
design matrix -> candidates -> selection -> segment ids stable across runs -> names and profiles ->
micro-segments -> migration since the previous run.

When every customer has the same design row there is nothing to cluster: the result is one segment,
"All customers", with a note the asset logs as a warning (selection.py says which degenerate inputs are
errors instead).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.pipeline import Pipeline

from seg_pipeline.config import ChurnConfig, SegmentationConfig
from seg_pipeline.segmentation import profiles as pf
from seg_pipeline.segmentation.candidates import candidates, distinct_rows
from seg_pipeline.segmentation.design import DesignColumns, design_columns, design_frame, preprocessor
from seg_pipeline.segmentation.selection import (
    Selection,
    feasible_k_max,
    require_customers,
    select,
    single_segment,
    single_segment_note,
)

ALL_CUSTOMERS = "All customers"  # the name of the only segment when every customer is alike


@dataclass
class SegmentationResult:
    pipeline: Pipeline  # fitted: preprocessing + the selected clusterer; predicts cluster labels
    columns: DesignColumns
    selection: Selection
    label_to_segment: dict[int, int]  # the clusterer's labels -> stable segment ids
    match_distance: dict[int, float]
    assignments: pd.DataFrame  # customer_key, segment_id, segment_name, micro_segment_id
    profiles: pd.DataFrame  # one row per segment
    deviations: pd.DataFrame  # segment_id x feature (wide), for the heatmap
    micro: pd.DataFrame  # one row per micro-segment
    migration: pd.DataFrame
    design_sample: np.ndarray  # transformed rows of the fitting sample, for the projection figure
    sample_segments: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the run should warn about (degenerate data)

    @property
    def single_segment(self) -> bool:
        return len(self.profiles) == 1


def observed_churn(features: pd.DataFrame, customers: pd.DataFrame, churn: ChurnConfig) -> pd.Series:
    """Per profiled customer: the explicit CRM label, else inactive for longer than the churn horizon."""
    if churn.label == "explicit" and churn.explicit_column in customers:
        label = customers.set_index("customer_key")[churn.explicit_column]
        return features["customer_key"].map(label).astype("float64")
    if "recency_days" not in features:
        return pd.Series(np.nan, index=features.index)
    recency = features["recency_days"]
    return (recency.isna() | (recency > churn.horizon_days)).astype("float64")


def _micro_segments(X: np.ndarray, segment: np.ndarray, total: int, seed: int, fit_sample: int) -> np.ndarray:
    sizes = pd.Series(segment).value_counts().sort_index()
    counts = pf.micro_segment_counts(sizes, total)
    micro = np.zeros(len(segment), dtype="int64")
    rng = np.random.default_rng(seed)
    for seg, m in counts.items():
        rows = np.flatnonzero(segment == seg)
        fit_rows = rows if len(rows) <= fit_sample else rng.choice(rows, fit_sample, replace=False)
        if m > 1:  # k-means cannot split identical rows: no more micro-segments than distinct rows
            m = min(m, distinct_rows(X[fit_rows]))
        if m <= 1:
            local = np.zeros(len(rows), dtype="int64")
        else:
            local = KMeans(n_clusters=int(m), n_init=2, random_state=seed).fit(X[fit_rows]).predict(X[rows])
        micro[rows] = seg * 100 + local + 1  # e.g. 307 = segment 3, micro-segment 7
    return micro


def _micro_table(features: pd.DataFrame, assignments: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    micro = assignments["micro_segment_id"]
    devs = pf.deviations(features, micro, columns)
    revenue = pf.revenue_of(features)
    grouped = pd.DataFrame({"micro": micro.to_numpy(), "segment_id": assignments["segment_id"].to_numpy(),
                            "revenue": revenue.to_numpy()}).groupby("micro")  # fmt: skip
    table = pd.DataFrame(
        {
            "segment_id": grouped["segment_id"].first(),
            "customers": grouped.size(),
            "mean_revenue_365d": grouped["revenue"].mean(),
        }
    )
    table["share_of_segment"] = table["customers"] / table.groupby("segment_id")["customers"].transform("sum")
    table["top_deviations"] = pf.strongest_deviations(devs, table.index, 3)
    table.index.name = "micro_segment_id"
    return table.reset_index()


def fit_segmentation(features: pd.DataFrame, *, config: SegmentationConfig, categorical: list[str],
                     attributes: list[str], churned: pd.Series, previous_deviations: pd.DataFrame | None,
                     previous_assignments: pd.DataFrame | None, currency: str = "EUR",
                     locale: str = "en") -> SegmentationResult:  # fmt: skip
    """Segments and micro-segments of ``features``; ``currency`` and ``locale`` word the profiles' traits."""
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    features = features.reset_index(drop=True)
    require_customers(len(features), config.k_min)
    columns = design_columns(features, categorical, config.features, attributes)
    frame = design_frame(features, columns)
    rng = np.random.default_rng(config.seed)
    fit_rows = np.sort(rng.choice(len(frame), config.fit_sample, replace=False)) if len(frame) > config.fit_sample \
        else np.arange(len(frame))  # fmt: skip
    prep = preprocessor(columns).fit(frame.iloc[fit_rows])
    X_fit = prep.transform(frame.iloc[fit_rows])
    seconds["design"] = time.perf_counter() - clock

    clock = time.perf_counter()
    selection, notes = _select(X_fit, config, len(features), columns.all)
    pipeline = Pipeline([("prepare", prep), ("cluster", selection.model)])
    seconds["selection"] = time.perf_counter() - clock

    clock = time.perf_counter()
    X = prep.transform(frame)
    labels = pd.Series(selection.model.predict(X))
    profile_columns = [c for c in features.columns if c != "customer_key" and c not in columns.categorical
                       and pd.api.types.is_numeric_dtype(features[c])]  # fmt: skip
    by_label = pf.deviations(features, labels, profile_columns)
    mapping, distance = pf.stable_ids(by_label, previous_deviations)
    segment = labels.map(mapping).to_numpy()
    devs = by_label.rename(index=mapping).sort_index()
    names = pf.unique_names(devs) if len(devs) > 1 else dict.fromkeys(devs.index, ALL_CUSTOMERS)
    assignments = pd.DataFrame(
        {
            "customer_key": features["customer_key"].to_numpy(),
            "segment_id": segment.astype("int64"),
            "segment_name": pd.Series(segment).map(names).to_numpy(),
        }
    )
    profiles = pf.profile_table(features, pd.Series(segment), names, devs, churned.reset_index(drop=True),
                                currency=currency, locale=locale)  # fmt: skip
    seconds["profiles"] = time.perf_counter() - clock

    clock = time.perf_counter()
    total = min(config.micro_segments, len(features))
    assignments["micro_segment_id"] = _micro_segments(X, segment, total, config.seed, config.fit_sample)
    micro = _micro_table(features, assignments, profile_columns)
    seconds["micro_segments"] = time.perf_counter() - clock

    return SegmentationResult(
        pipeline=pipeline,
        columns=columns,
        selection=selection,
        label_to_segment=mapping,
        match_distance=distance,
        assignments=assignments,
        profiles=profiles,
        deviations=devs,
        micro=micro,
        migration=pf.migration(previous_assignments, assignments),
        design_sample=X_fit,
        sample_segments=pd.Series(selection.labels).map(mapping).to_numpy(),
        seconds={k: round(v, 2) for k, v in seconds.items()},
        notes=notes,
    )


def _select(X_fit: np.ndarray, config: SegmentationConfig, customers: int, columns: list[str]
            ) -> tuple[Selection, list[str]]:  # fmt: skip
    """Every feasible candidate fitted and scored, or the single segment when all rows are the same."""
    distinct = distinct_rows(X_fit)
    if distinct == 1:
        note = single_segment_note(len(X_fit), columns, sampled=len(X_fit) < customers)
        return single_segment(X_fit, note), [note]
    k_max, notes = feasible_k_max(
        distinct, len(X_fit), k_min=config.k_min, k_max=config.k_max, columns=columns
    )
    found = candidates(config.algorithms, config.k_min, k_max)
    selection = select(X_fit, found, k_min=config.k_min, k_max=k_max, seed=config.seed,
                       metric_sample=config.metric_sample, hierarchical_sample=config.hierarchical_sample,
                       resamples=config.stability_resamples, min_stability=config.min_stability,
                       n_jobs=config.n_jobs)  # fmt: skip
    return selection, notes
