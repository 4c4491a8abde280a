"""The candidate clusterers, each a scikit-learn estimator with fit/predict so it can sit at the end of a
Pipeline and assign customers it never saw (tomorrow's, or those outside the fitting sample).

Agglomerative clustering and HDBSCAN do not scale to every customer and cannot predict, so they are fitted
on a sample and every customer then goes to the nearest cluster centroid (SampledClusterer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, clone
from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans, MiniBatchKMeans
from sklearn.metrics import pairwise_distances_argmin
from sklearn.mixture import GaussianMixture

# Above this many fitting rows k-means runs in mini-batches.
MINIBATCH_FROM = 50_000


class SampledClusterer(ClusterMixin, BaseEstimator):
    """Fit ``estimator`` on at most ``sample_size`` rows, then label every row by its nearest centroid.

    Points the estimator calls noise (label -1, HDBSCAN) get no centroid of their own but are still
    assigned, so every customer ends up in exactly one segment.
    """

    def __init__(self, estimator=None, sample_size: int = 5000, random_state: int = 0):
        self.estimator = estimator
        self.sample_size = sample_size
        self.random_state = random_state

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        rng = np.random.default_rng(self.random_state)
        rows = (
            rng.choice(len(X), self.sample_size, replace=False) if len(X) > self.sample_size else slice(None)
        )
        sample = X[rows]
        self.estimator_ = clone(self.estimator).fit(sample)
        found = self.estimator_.labels_
        clusters = np.unique(found[found >= 0])
        if len(clusters) == 0:  # all noise: one segment of everyone
            self.cluster_centers_ = sample.mean(axis=0, keepdims=True)
        else:
            self.cluster_centers_ = np.vstack([sample[found == c].mean(axis=0) for c in clusters])
        self.n_clusters_ = len(self.cluster_centers_)
        self.labels_ = self.predict(X)
        return self

    def predict(self, X):
        return pairwise_distances_argmin(np.asarray(X, dtype=float), self.cluster_centers_)


class SingleSegment(ClusterMixin, BaseEstimator):
    """Everyone in one segment: the outcome when every customer has the same design row, where no
    clusterer can split anyone (see fit.py). Predicts label 0 for every row, like a fitted clusterer."""

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        self.cluster_centers_ = X.mean(axis=0, keepdims=True)
        self.n_clusters_ = 1
        self.labels_ = self.predict(X)
        return self

    def predict(self, X):
        return np.zeros(len(X), dtype="int64")


def distinct_rows(X: np.ndarray) -> int:
    """How many different rows X has: no clusterer can form more segments than that."""
    return len(np.unique(np.asarray(X, dtype=float), axis=0)) if len(X) else 0


@dataclass(frozen=True)
class Candidate:
    algorithm: str  # kmeans | gmm | agglomerative | hdbscan
    k: int | None  # None: the algorithm finds k itself (hdbscan)

    @property
    def label(self) -> str:
        return f"{self.algorithm} k={self.k}" if self.k is not None else self.algorithm


def candidates(algorithms: list[str], k_min: int, k_max: int) -> list[Candidate]:
    found = [Candidate(a, k) for a in algorithms if a != "hdbscan" for k in range(k_min, k_max + 1)]
    return found + ([Candidate("hdbscan", None)] if "hdbscan" in algorithms else [])


def make_estimator(candidate: Candidate, *, n_rows: int, seed: int, hierarchical_sample: int):
    """A fresh, unfitted estimator for the candidate, sized for ``n_rows`` fitting rows."""
    k = candidate.k
    if candidate.algorithm == "kmeans":
        if n_rows > MINIBATCH_FROM:
            return MiniBatchKMeans(n_clusters=k, batch_size=4096, n_init=3, random_state=seed)
        return KMeans(n_clusters=k, n_init=4, random_state=seed)
    if candidate.algorithm == "gmm":
        # diagonal covariances with a variance floor: one-hot and share columns hold many exact 0/1
        # values, and without the floor a component collapses onto them
        return GaussianMixture(
            n_components=k, covariance_type="diag", reg_covar=0.01, n_init=2, random_state=seed
        )
    if candidate.algorithm == "agglomerative":
        inner = AgglomerativeClustering(n_clusters=k, linkage="ward")
        return SampledClusterer(inner, sample_size=hierarchical_sample, random_state=seed)
    if candidate.algorithm == "hdbscan":
        size = min(n_rows, hierarchical_sample)
        # HDBSCAN refuses a minimum cluster size above the rows it is given (a company of a dozen customers)
        inner = HDBSCAN(min_cluster_size=min(max(15, size // 50), max(size, 2)), copy=True)
        return SampledClusterer(inner, sample_size=hierarchical_sample, random_state=seed)
    raise ValueError(f"unknown segmentation algorithm {candidate.algorithm!r}")


def estimator_name(estimator) -> str:
    inner = getattr(estimator, "estimator", None)
    return (
        f"{type(estimator).__name__}({type(inner).__name__})"
        if inner is not None
        else type(estimator).__name__
    )
