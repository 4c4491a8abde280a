"""Fit every candidate, score it and pick one.

Scores per candidate: silhouette (on a sample: it is quadratic in rows), Davies-Bouldin, Calinski-Harabasz
and bootstrap stability (mean adjusted Rand index between the candidate's labels and those of refits on
bootstrap resamples, compared on the same evaluation sample). The winner has the best mean rank over the
four scores among candidates whose k is in the configured range and whose stability reaches the floor;
ties go to the smaller k (fewer segments are easier to act on). When no candidate reaches the floor, the
winner is chosen among every scored candidate in the range, and each says so in its note.

Degenerate data: fewer customers, or fewer distinct design rows, than segmentation.k_min is an error
naming the cause; candidates with more segments than there are distinct rows are left out; when every
customer has the same design row, fit.py publishes one segment of everyone (single_segment).
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

from seg_pipeline.errors import SegPipelineError
from seg_pipeline.segmentation.candidates import Candidate, SingleSegment, estimator_name, make_estimator

SELECTION_COLUMNS = [
    "candidate", "algorithm", "estimator", "k", "silhouette", "davies_bouldin", "calinski_harabasz",
    "stability", "inertia", "smallest_share", "fit_seconds", "eligible", "mean_rank", "selected", "note",
]  # fmt: skip
SINGLE_SEGMENT = "single segment: all customers alike"
UNSTABLE_FALLBACK = "chosen among unstable candidates: none reached segmentation.min_stability"


@dataclass
class Selection:
    table: pd.DataFrame  # SELECTION_COLUMNS, one row per candidate
    model: object  # the selected, fitted estimator
    labels: np.ndarray  # its labels on the fitting rows
    chosen: pd.Series  # the selected row


def _scores(X: np.ndarray, labels: np.ndarray, evaluation: np.ndarray) -> dict[str, float]:
    # every score needs 2 to n-1 segments among the rows it is computed on (one customer per segment
    # happens in a company of a few customers); silhouette is computed on the evaluation sample
    if not 1 < len(np.unique(labels)) < len(labels):
        return {"silhouette": np.nan, "davies_bouldin": np.nan, "calinski_harabasz": np.nan}
    ev_labels = labels[evaluation]
    sil = (
        silhouette_score(X[evaluation], ev_labels)
        if 1 < len(np.unique(ev_labels)) < len(ev_labels)
        else np.nan
    )
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
    """Every candidate fitted and scored, ``n_jobs`` at a time in threads (-1: one per CPU).

    Threads, not joblib's default worker processes: the fits spend their time in numpy, BLAS and
    scikit-learn's Cython, which release the GIL (measured at 20k customers: threads 22 s, processes 26 s,
    one at a time 23 s), and a worker process that is still importing when a terminal's Ctrl-C reaches the
    process group prints a KeyboardInterrupt traceback of its own."""
    from joblib import Parallel, delayed

    rng = np.random.default_rng(seed)
    evaluation = np.sort(rng.choice(len(X), min(metric_sample, len(X)), replace=False))
    settings = {"seed": seed, "hierarchical_sample": hierarchical_sample, "resamples": resamples,
                "metric_sample": metric_sample, "k_min": k_min, "k_max": k_max, "min_stability": min_stability}  # fmt: skip
    results = Parallel(n_jobs=n_jobs, prefer="threads")(
        delayed(_evaluate)(c, X, evaluation, **settings) for c in candidates
    )
    rows = [row for row, _, _ in results]
    fitted = {row["candidate"]: (model, labels) for row, model, labels in results}

    table = pd.DataFrame(rows)
    table["eligible"] = _eligible(table, k_min=k_min, k_max=k_max, min_stability=min_stability)
    table["mean_rank"] = np.nan
    table.loc[table["eligible"], "mean_rank"] = _mean_rank(table[table["eligible"]])
    best = table[table["eligible"]].sort_values(["mean_rank", "k"]).index[0]
    table["selected"] = table.index == best
    table = table[SELECTION_COLUMNS]
    model, labels = fitted[table.loc[best, "candidate"]]
    return Selection(table=table, model=model, labels=labels, chosen=table.loc[best])


def _eligible(table: pd.DataFrame, *, k_min: int, k_max: int, min_stability: float) -> pd.Series:
    """Candidates in the k range that reach the stability floor; when none does, every scored candidate
    in the range, each noted (a segmentation is still published); when none is in the range, an error
    saying how many segments each candidate found."""
    in_range = table["k"].between(k_min, k_max) & table["k"].ge(2)
    stable = in_range & (table["stability"] >= min_stability)
    if stable.any():
        return stable
    if in_range.any():
        fallback = f"{UNSTABLE_FALLBACK} {min_stability:.2f}"
        table.loc[in_range, "note"] = [
            f"{n}; {fallback}" if n else fallback for n in table.loc[in_range, "note"]
        ]
        return in_range
    found = "; ".join(f"{c}: {k} segment(s)" for c, k in zip(table["candidate"], table["k"], strict=True))
    raise SegPipelineError(
        f"segmentation: no candidate found between segmentation.k_min={k_min} and segmentation.k_max={k_max} "
        f"segments ({found}); lower segmentation.k_min, add algorithms to segmentation.algorithms or check "
        "the extracts"
    )


def require_customers(customers: int, k_min: int) -> None:
    """Fewer customers than segments asked for is a config error (or an extract that lost its rows)."""
    if customers < k_min:
        raise SegPipelineError(
            f"segmentation: only {customers} profiled customer(s), fewer than segmentation.k_min={k_min}; "
            f"segmentation needs at least {k_min} customers to form {k_min} segments; lower segmentation.k_min "
            "or check the extracts (customer_features holds the profiled customers)"
        )


def feasible_k_max(distinct: int, customers: int, *, k_min: int, k_max: int, columns: list[str]
                   ) -> tuple[int, list[str]]:  # fmt: skip
    """The largest k the data allow (a clusterer cannot split identical rows) and a note when that is below
    segmentation.k_max; an error when it is below segmentation.k_min. ``distinct`` design rows among
    ``customers`` fitting rows; ``distinct`` 1 is the single-segment case, handled before this."""
    if distinct < k_min:
        raise SegPipelineError(
            f"segmentation: only {distinct} distinct customers (after feature scaling) among {customers:,}, "
            f"fewer than segmentation.k_min={k_min}; segmentation needs at least {k_min} customers whose "
            f"features ({_listed(columns)}) differ; lower segmentation.k_min or check the extracts"
        )
    if distinct >= k_max:
        return k_max, []
    return distinct, [
        f"only {distinct} distinct customers (after feature scaling) among {customers:,}: candidates with more "
        f"than {distinct} segments (up to segmentation.k_max={k_max}) left out"
    ]


def single_segment_note(customers: int, columns: list[str], *, sampled: bool) -> str:
    which = (
        f"{customers:,} customers of the fitting sample (segmentation.fit_sample)"
        if sampled
        else f"{customers:,} customers"
    )
    return (
        f"all {which} have the same features after scaling ({_listed(columns)}): one segment, "
        '"All customers", with no scores (silhouette and stability need two segments); check the extracts '
        "if customers should differ"
    )


def single_segment(X: np.ndarray, note: str) -> Selection:
    """The selection when every row is the same: one segment of everyone, as the table's only row."""
    started = time.perf_counter()
    model = SingleSegment().fit(X)
    row = dict.fromkeys(SELECTION_COLUMNS, np.nan) | {
        "candidate": SINGLE_SEGMENT, "algorithm": "single", "estimator": estimator_name(model), "k": 1,
        "smallest_share": 1.0, "fit_seconds": round(time.perf_counter() - started, 2), "eligible": False,
        "selected": True, "note": note,
    }  # fmt: skip
    table = pd.DataFrame([row], columns=SELECTION_COLUMNS)
    return Selection(table=table, model=model, labels=model.labels_, chosen=table.iloc[0])


def _listed(columns: list[str], shown: int = 8) -> str:
    more = f" and {len(columns) - shown} more" if len(columns) > shown else ""
    return ", ".join(columns[:shown]) + more


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
