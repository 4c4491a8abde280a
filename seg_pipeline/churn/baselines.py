"""The naive churn models a sceptical analyst tries first; every training run scores its holdout with them.

- recency: days since the customer's last activity (for orders-only data: last purchase), or since signup
  for someone never active. Sorting customers by it is the first thing anyone checks a churn score against.
- rfm: a logistic regression on recency, frequency and monetary value (log scale), the classic RFM model.
- btyd: the BG/NBD model alone (features/btyd.py): its probability of no order in the horizon.

Each is a scikit-learn pipeline over named feature columns, like the candidates (train.py), so it can be
registered, scored, explained and, when the model does not beat it, published in the model's place. They
are calibrated by Platt scaling, a monotone map, so their ranking (ROC-AUC) is exactly the naive sort's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

BASELINE_PREFIX = "baseline_"
DESCRIPTIONS = {
    "recency": "sorting by days since the last activity (orders only: the last purchase)",
    "rfm": "logistic regression on recency, frequency and monetary value",
    "btyd": "the BG/NBD model alone: probability of no order in the horizon",
}
RFM_COLUMNS = ["frequency_365d", "monetary_365d"]


def silence_days(frame) -> np.ndarray:
    """Days since the last activity, or since signup for customers never active (columns: recency_days,
    tenure_days), on a log scale: a monotone transform, so the ranking is the recency sort."""
    values = np.asarray(frame, dtype="float64")
    silence = np.where(np.isnan(values[:, 0]), values[:, 1], values[:, 0])
    return np.log1p(np.nan_to_num(np.clip(silence, 0, None), nan=0.0))[:, None]


def _log_counts(frame) -> np.ndarray:
    return np.log1p(np.clip(np.nan_to_num(np.asarray(frame, dtype="float64"), nan=0.0), 0, None))


def _logit(frame) -> np.ndarray:
    p = np.clip(np.asarray(frame, dtype="float64"), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def baseline_columns(name: str) -> list[str]:
    """The customer_features columns a baseline reads."""
    return {
        "recency": ["recency_days", "tenure_days"],
        "rfm": ["recency_days", "tenure_days", *RFM_COLUMNS],
        "btyd": ["btyd_p_no_order_horizon"],
    }[name]


def available(name: str, table: pd.DataFrame) -> str | None:
    """None when the data allow the baseline, else why not."""
    needed = {"recency": ["tenure_days"], "rfm": RFM_COLUMNS, "btyd": ["btyd_p_no_order_horizon"]}[name]
    missing = [c for c in needed if c not in table or table[c].isna().all()]
    if missing:
        source = "orders" if name != "recency" else "signup dates or events"
        return f"needs {', '.join(missing)} (from {source}), which this data does not have"
    return None


def make_baseline(name: str) -> Pipeline:
    """An unfitted baseline: a ``prepare`` ColumnTransformer over named columns (the registry reads the
    columns from it, as for the candidates), then a logistic regression."""

    def scaled(transform: FunctionTransformer) -> Pipeline:
        return Pipeline([("transform", transform), ("scale", StandardScaler())])

    silence = FunctionTransformer(silence_days)  # two columns in, one out
    if name == "recency":
        blocks = [("numeric", scaled(silence), baseline_columns("recency"))]
    elif name == "rfm":
        blocks = [
            ("numeric", scaled(silence), ["recency_days", "tenure_days"]),
            ("counts", scaled(FunctionTransformer(_log_counts, feature_names_out="one-to-one")), RFM_COLUMNS),
        ]
    elif name == "btyd":
        # a customer without orders has no BG/NBD history: no order is expected from them
        impute = SimpleImputer(strategy="constant", fill_value=1.0, keep_empty_features=True)
        blocks = [("numeric", Pipeline([("impute", impute), ("logit", FunctionTransformer(_logit, feature_names_out="one-to-one")),
                                        ("scale", StandardScaler())]), baseline_columns("btyd"))]  # fmt: skip
    else:
        raise ValueError(f"unknown churn baseline {name!r}")
    return Pipeline([("prepare", ColumnTransformer(blocks)), ("model", LogisticRegression(max_iter=1000))])


def calibrated_baseline(name: str) -> CalibratedClassifierCV:
    return CalibratedClassifierCV(make_baseline(name), method="sigmoid", cv=3)
