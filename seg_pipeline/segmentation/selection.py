"""Fit every candidate, score it and pick one.

Scores per candidate: silhouette (on a sample: it is quadratic in rows), Davies-Bouldin, Calinski-Harabasz
and bootstrap stability (mean adjusted Rand index between the candidate's labels and those of refits on
bootstrap resamples, compared on the same evaluation sample). The winner has the best mean rank over the
four scores among candidates whose k is in the configured range and whose stability reaches the floor;
ties go to the smaller k (fewer segments are easier to act on).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_score,
)

from seg_pipeline.segmentation.candidates import Candidate, estimator_name, make_estimator

SELECTION_COLUMNS = [
    "candidate", "algorithm", "estimator", "k", "silhouette", "davies_bouldin", "calinski_harabasz",
    "stability", "inertia", "smallest_share", "fit_seconds", "eligible", "mean_rank", "selected", "note",
]  # fmt: skip


@dataclass
class Selection:
    table: pd.DataFrame  # SELECTION_COLUMNS, one row per candidate
    model: object  # the selected, fitted estimator
    labels: np.ndarray  # its labels on the fitting rows
    chosen: pd.Series  # the selected row


def _scores(X: np.ndarray, labels: np.ndarray, evaluation: np.ndarray) -> dict[str, float]:
    if len(np.unique(labels)) < 2:
        return {"silhouette": np.nan, "davies_bouldin": np.nan, "calinski_harabasz": np.nan}
    ev_labels = labels[evaluation]
    sil = silhouette_score(X[evaluation], ev_labels) if len(np.unique(ev_labels)) > 1 else np.nan
    return {
        "silhouette": float(sil),
        "davies_bouldin": float(davies_bouldin_score(X, labels)),
        "calinski_harabasz": float(calinski_harabasz_score(X, labels)),
    }


def _stability(estimator, X: np.ndarray, labels: np.ndarray, evaluation: np.ndarray, *, resamples: int,
               size: int, rng: np.random.Generator) -> float:  # fmt: skip
    scores = []
    for _ in range(resamples):
        boot = rng.choice(len(X), size=min(size, len(X)), replace=True)
        refit = clone(estimator).fit(X[boot])
        scores.append(adjusted_rand_score(labels[evaluation], refit.predict(X[evaluation])))
    return float(np.mean(scores))


def _mean_rank(table: pd.DataFrame) -> pd.Series:
    ranks = pd.concat(
        [
            table["silhouette"].rank(ascending=False),
            table["davies_bouldin"].rank(ascending=True),
            table["calinski_harabasz"].rank(ascending=False),
            table["stability"].rank(ascending=False),
        ],
        axis=1,
    )
    return ranks.mean(axis=1)


def _evaluate(candidate: Candidate, X: np.ndarray, evaluation: np.ndarray, *, seed: int, hierarchical_sample: int,
              resamples: int, metric_sample: int, k_min: int, k_max: int, min_stability: float):  # fmt: skip
    """Fit and score one candidate (in a worker process: one thread, its own random stream)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # candidates run side by side; nested BLAS/OpenMP threads would fight
        started = time.perf_counter()
        rng = np.random.default_rng([seed, candidate.k or 0, sum(map(ord, candidate.algorithm))])
        estimator = make_estimator(
            candidate, n_rows=len(X), seed=seed, hierarchical_sample=hierarchical_sample
        )
        model = clone(estimator).fit(X)
        labels = model.predict(X)
        k = len(np.unique(labels))
        row = {
            "candidate": candidate.label if candidate.k is not None else f"{candidate.label} (k={k})",
            "algorithm": candidate.algorithm,
            "estimator": estimator_name(estimator),
            "k": k,
            **_scores(X, labels, evaluation),
            "stability": _stability(
                estimator, X, labels, evaluation, resamples=resamples, size=metric_sample, rng=rng
            )
            if k > 1
            else np.nan,  # fmt: skip
            "inertia": float(model.inertia_) if hasattr(model, "inertia_") else np.nan,
            "smallest_share": float(np.bincount(labels).min() / len(labels)),
            "fit_seconds": round(time.perf_counter() - started, 2),
        }
    notes = []
    if not k_min <= k <= k_max:
        notes.append(f"k={k} outside {k_min}-{k_max}")
    if k > 1 and row["stability"] < min_stability:
        notes.append(f"stability {row['stability']:.2f} below {min_stability:.2f}")
    row["note"] = "; ".join(notes)
    return row, model, labels


def select(X: np.ndarray, candidates: list[Candidate], *, k_min: int, k_max: int, seed: int,
           metric_sample: int, hierarchical_sample: int, resamples: int, min_stability: float,
           n_jobs: int = -1) -> Selection:  # fmt: skip
    """Every candidate fitted and scored, ``n_jobs`` at a time in worker processes (-1: one per CPU)."""
    from joblib import Parallel, delayed

    rng = np.random.default_rng(seed)
    evaluation = np.sort(rng.choice(len(X), min(metric_sample, len(X)), replace=False))
    settings = {"seed": seed, "hierarchical_sample": hierarchical_sample, "resamples": resamples,
                "metric_sample": metric_sample, "k_min": k_min, "k_max": k_max, "min_stability": min_stability}  # fmt: skip
    results = Parallel(n_jobs=n_jobs)(delayed(_evaluate)(c, X, evaluation, **settings) for c in candidates)
    rows = [row for row, _, _ in results]
    fitted = {row["candidate"]: (model, labels) for row, model, labels in results}

    table = pd.DataFrame(rows)
    in_range = table["k"].between(k_min, k_max)
    table["eligible"] = in_range & (table["stability"] >= min_stability)
    if not table["eligible"].any():  # nothing stable enough: still choose, and say so
        table["eligible"] = in_range & table["silhouette"].notna()
        table.loc[table["eligible"], "note"] += "; chosen among unstable candidates: none reached the floor"
    table["mean_rank"] = np.nan
    table.loc[table["eligible"], "mean_rank"] = _mean_rank(table[table["eligible"]])
    best = table[table["eligible"]].sort_values(["mean_rank", "k"]).index[0]
    table["selected"] = table.index == best
    table = table[SELECTION_COLUMNS]
    model, labels = fitted[table.loc[best, "candidate"]]
    return Selection(table=table, model=model, labels=labels, chosen=table.loc[best])


def selection_markdown(table: pd.DataFrame) -> str:
    shown = table[
        ["candidate", "silhouette", "davies_bouldin", "calinski_harabasz", "stability", "mean_rank"]
    ]
    lines = ["| candidate | silhouette | Davies-Bouldin | Calinski-Harabasz | stability (ARI) | mean rank |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for (_, row), selected in zip(shown.iterrows(), table["selected"], strict=True):
        mark = "**" if selected else ""
        cells = [f"{mark}{row['candidate']}{mark}"] + [
            "" if pd.isna(row[c]) else f"{row[c]:,.3f}" if c != "calinski_harabasz" else f"{row[c]:,.0f}"
            for c in ("silhouette", "davies_bouldin", "calinski_harabasz", "stability", "mean_rank")
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
