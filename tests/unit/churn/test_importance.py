"""Permutation importance of a churn model: one table of means and spreads that both the driver features
and the MLflow figure read, so the numbers are computed once."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression

from seg_pipeline.churn.scores import IMPORTANCE_COLUMNS, important_features, permutation_importances


def holdout(n: int = 800, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Churn driven by silence (strongly) and tickets (weakly); noise plays no part."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"noise": rng.normal(size=n), "tickets_365d": rng.normal(size=n),
                      "recency_days": rng.normal(size=n)})  # fmt: skip
    logit = 2.5 * X["recency_days"] + 0.8 * X["tickets_365d"]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int).to_numpy()
    return X, y


def test_permutation_importances_rank_the_features_that_drive_churn_first():
    X, y = holdout()
    model = CalibratedClassifierCV(LogisticRegression(), cv=3).fit(X, y)
    table = permutation_importances(model, X, y, seed=0)

    assert list(table.columns) == IMPORTANCE_COLUMNS
    assert table["feature"].tolist() == ["recency_days", "tickets_365d", "noise"]
    assert table["importance_mean"].is_monotonic_decreasing
    assert (table["importance_std"] >= 0).all()
    assert table["importance_mean"].iloc[0] > 0.1 > abs(table["importance_mean"].iloc[-1])
    # the same seed gives the same numbers: the drivers and the figure agree across reruns
    pd.testing.assert_frame_equal(permutation_importances(model, X, y, seed=0), table)


def test_important_features_keep_those_that_hurt_when_shuffled_and_at_least_one():
    table = pd.DataFrame({"feature": ["a", "b", "c", "d"], "importance_mean": [0.2, 0.05, 0.0, -0.01],
                          "importance_std": [0.01] * 4})  # fmt: skip
    assert important_features(table, 3) == ["a", "b"]
    assert important_features(table, 1) == ["a"]
    nothing = table.assign(importance_mean=[0.0, -0.01, -0.02, -0.03])
    assert important_features(nothing, 3) == ["a"]
