"""Scores for every current customer: calibrated probability, risk score 0-100 and the three features that
move the customer's risk most (with direction). Who is contacted is decided from these in churn/actions.py.

A driver's effect is measured, not assumed: the customer's probability minus the probability with that one
feature set to the population's typical value (median, or most common category). Only the features that
matter most on the holdout (permutation importance) are measured, which keeps scoring linear in customers.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd

from seg_pipeline import wording
from seg_pipeline.features import catalogue


def risk_score(probability: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(probability) * 100), 0, 100).astype("int64")


IMPORTANCE_COLUMNS = ["feature", "importance_mean", "importance_std"]


def permutation_importances(model, X: pd.DataFrame, y: np.ndarray, seed: int) -> pd.DataFrame:
    """How much shuffling each feature lowers holdout ROC-AUC: mean and spread over 3 shuffles of at most
    5,000 rows, largest first (columns ``IMPORTANCE_COLUMNS``).

    Measured on the first member of a calibrated ensemble, before its calibration: calibration is a
    monotone map of the member's score (AUC ranks scores), and the members are the same pipeline fitted on
    two thirds of the rows each, so the ranking barely differs at a fraction of the ensemble's cost."""
    from sklearn.inspection import permutation_importance

    measured = getattr(effect_model(model), "estimator", model)
    rows = np.random.default_rng(seed).choice(len(X), min(len(X), 5000), replace=False)
    result = permutation_importance(measured, X.iloc[rows], y[rows], scoring="roc_auc", n_repeats=3,
                                    random_state=seed)  # fmt: skip
    table = pd.DataFrame({"feature": list(X.columns), "importance_mean": result.importances_mean,
                          "importance_std": result.importances_std})  # fmt: skip
    return table.sort_values("importance_mean", ascending=False, kind="stable").reset_index(drop=True)


def important_features(importances: pd.DataFrame, n: int) -> list[str]:
    """The n features whose shuffling hurts holdout ROC-AUC most (see ``permutation_importances``); those
    that do not hurt it at all are left out, but at least the first is kept."""
    top = importances.head(n)
    return top.loc[top["importance_mean"] > 0, "feature"].tolist() or [importances["feature"].iloc[0]]


def typical_values(X: pd.DataFrame) -> dict[str, object]:
    typical = {}
    for column in X.columns:
        values = X[column].dropna()
        if values.empty:
            typical[column] = np.nan
        elif pd.api.types.is_numeric_dtype(values):
            typical[column] = float(values.median())
        else:
            typical[column] = values.mode().iloc[0]
    return typical


def _readable(column: str, values: np.ndarray, typical, currency: str, locale: str) -> np.ndarray:
    """Each customer's value of ``column`` as a sentence opening, with the typical value the effect is
    measured against: "Last purchase 143 days ago (typical: 40 days)". Worded once per distinct shown
    value, so a million customers cost a few hundred phrases."""
    codes, texts = catalogue.describe_distinct(column, values, currency, locale)
    reference = (
        "" if typical is _NO_TYPICAL else f" (typical: {catalogue.amount(column, typical, currency, locale)})"
    )
    return np.array([t[:1].upper() + t[1:] + reference for t in texts], dtype=object)[codes]


def _points(effects: np.ndarray) -> np.ndarray:
    """Effects as percentage points ("+21 points"), formatted once per distinct shown value."""
    pp = effects * 100
    shown = np.where(np.abs(pp) >= 1, np.round(pp), np.round(pp, 1))
    uniques, codes = np.unique(shown, return_inverse=True)
    return np.array([wording.points(u / 100) for u in uniques], dtype=object)[codes]


def effect_model(model):
    """The model driver effects are measured with. For a calibrated ensemble (CalibratedClassifierCV) its
    first member: the members are the same pipeline fitted on two thirds of the rows each, so effects barely
    differ, and measuring on one costs a third of scoring with all of them."""
    members = getattr(model, "calibrated_classifiers_", None)
    return members[0] if members else model


# Effects below half a percentage point are noise, not a reason worth reading.
MIN_EFFECT = 0.005
NO_DRIVER = "No single feature moves this customer's churn probability by 0.5 points or more"
_NO_TYPICAL = object()  # driver texts without "(typical: ...)"


def drivers(model, X: pd.DataFrame, features: list[str], typical: dict[str, object], n: int = 3,
            currency: str = "EUR", locale: str = "en") -> tuple[list[str], np.ndarray]:  # fmt: skip
    """Per customer the n features with the largest effect, in words: "Last purchase 143 days ago
    (typical: 40 days): +21 points" (see ``driver_texts``).

    A feature's effect is the customer's probability minus their probability with that feature set to its
    typical value, both from ``effect_model(model)``."""
    measured = effect_model(model)
    prepared = _prepared(measured, X)
    probability = (prepared.model.predict_proba(prepared.Z) if prepared else measured.predict_proba(X))[:, 1]
    effects = np.zeros((len(X), len(features)))
    for j, column in enumerate(features):
        value = typical[column]
        # a customer already at the typical value has no effect: only the others are predicted again
        # (most customers, for counts and shares whose median is 0)
        at_typical = X[column].isna() if pd.isna(value) else (X[column] == value).fillna(False)
        moved = ~at_typical.to_numpy(dtype=bool)
        if not moved.any():
            continue
        if prepared and column in prepared.blocks:
            neutral = prepared.neutral(X, moved, column, value)
            effects[moved, j] = probability[moved] - prepared.model.predict_proba(neutral)[:, 1]
            continue
        neutral = _at_typical(X[moved], column, value)
        effects[moved, j] = probability[moved] - measured.predict_proba(neutral)[:, 1]
    return driver_texts(X[features], effects, n, typical, currency, locale), effects


def _at_typical(frame: pd.DataFrame, column: str, value) -> pd.DataFrame:
    """A copy of ``frame`` with ``column`` set to its typical value (categories stay object text)."""
    neutral = frame.copy()
    neutral[column] = value
    if neutral[column].dtype == object or isinstance(value, str):
        neutral[column] = neutral[column].astype(object)
    return neutral


@dataclass
class _Prepared:
    """The measured model split at its ColumnTransformer: the features transformed once (``Z``), the model
    that takes transformed rows, and per input column its block: the fitted transformer, its columns, its
    output slice and whether it maps each column to one output column by itself.

    Setting one feature to its typical value then changes only that feature's output columns: the other
    columns of every moved customer are copied from ``Z`` rather than transformed again, and a one-to-one
    transformer (passthrough, ordinal codes, scaling) is run on one row only."""

    Z: np.ndarray
    model: object
    blocks: dict[str, tuple[object, list[str], slice, bool]]

    def neutral(self, X: pd.DataFrame, moved: np.ndarray, column: str, value) -> np.ndarray:
        transformer, columns, out, one_to_one = self.blocks[column]
        neutral = self.Z[moved]
        if one_to_one:
            position = columns.index(column)
            neutral[:, out.start + position] = _transform(
                transformer, _at_typical(X[columns].iloc[:1], column, value)
            )[0, position]
        else:  # e.g. one-hot codes or missing-value indicators: the block is transformed again
            neutral[:, out] = _transform(transformer, _at_typical(X.loc[moved, columns], column, value))
        return neutral


def _transform(transformer, frame: pd.DataFrame) -> np.ndarray:
    out = transformer.transform(frame)
    # a sparse block (one-hot codes) inside the dense output the transformer as a whole gives; a fitted
    # passthrough (an identity FunctionTransformer) hands the frame back
    return out.toarray() if hasattr(out, "toarray") else np.asarray(out, dtype=float)


def _prepared(measured, X: pd.DataFrame) -> _Prepared | None:
    """The split for a Pipeline (or a calibrated member wrapping one) whose steps before the model are one
    dense-output ColumnTransformer over named columns; None otherwise (effects then come from the frame)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    pipeline = getattr(measured, "estimator", measured)
    if (
        not isinstance(pipeline, Pipeline)
        or len(pipeline) != 2
        or not isinstance(pipeline[0], ColumnTransformer)
    ):
        return None
    prepare = pipeline[0]
    Z = prepare.transform(X)
    if not isinstance(Z, np.ndarray) or Z.dtype.kind != "f":
        return None
    blocks = {}
    for name, transformer, columns in prepare.transformers_:
        # fitted, only "drop" stays a string; its columns (and any not named) take the frame path; an empty
        # selection (no categorical features) has no columns to map and its transformer is never fitted
        if (
            isinstance(transformer, str)
            or not columns
            or not isinstance(columns, list)
            or not all(isinstance(c, str) for c in columns)
        ):
            continue
        # ordinal codes, imputation without indicators, scaling and passthrough name each output column
        # after its input column and compute it from that column alone
        one_to_one = _names_out(transformer, columns) == list(columns)
        for column in columns:
            blocks[column] = (transformer, list(columns), prepare.output_indices_[name], one_to_one)
    if pipeline is measured:
        return _Prepared(Z, pipeline[-1], blocks)
    # a calibrated member: the same calibration over the final model's scores of the transformed rows
    member = copy.copy(measured)
    member.estimator = pipeline[-1]
    return _Prepared(Z, member, blocks)


def _names_out(transformer, columns: list[str]) -> list[str] | None:
    """The transformer's output column names, None when it cannot tell (a FunctionTransformer without
    feature_names_out, or a Pipeline holding one: its get_feature_names_out exists but raises)."""
    names = getattr(transformer, "get_feature_names_out", None)
    try:
        return list(names(columns)) if names is not None else None
    except AttributeError:
        return None


def driver_texts(values: pd.DataFrame, effects: np.ndarray, n: int, typical: dict[str, object] | None = None,
                 currency: str = "EUR", locale: str = "en") -> list[str]:  # fmt: skip
    """The text of each customer's n largest effects (at least MIN_EFFECT), largest first, separated by
    "; ": the value in words, the typical value it is measured against (when ``typical`` is given) and
    the effect on the probability in percentage points. Formatted per (customer, driver) pair in one pass
    rather than per customer, and worded per distinct value rather than per pair."""
    top = np.argsort(-np.abs(effects), axis=1, kind="stable")[:, :n]
    rows = np.repeat(np.arange(len(values)), top.shape[1])
    columns = top.ravel()
    effect = effects[rows, columns]
    keep = np.abs(effect) >= MIN_EFFECT
    rows, columns, effect = rows[keep], columns[keep], effect[keep]
    cells = np.empty(len(rows), dtype=object)
    for j, name in enumerate(values.columns):  # only the cells shown, worded column by column
        shown = columns == j
        if shown.any():
            reference = typical.get(name) if typical is not None else _NO_TYPICAL
            cells[shown] = _readable(name, values[name].to_numpy(dtype=object)[rows[shown]], reference, currency,
                                     locale)  # fmt: skip
    parts = (cells + ": " + _points(effect)).tolist() if len(rows) else []
    # rows ascend, so each customer's parts are adjacent: join them slice by slice
    texts = [NO_DRIVER] * len(values)
    starts = np.flatnonzero(np.diff(rows, prepend=-1))
    ends = np.append(starts[1:], len(rows)) if len(starts) else starts
    for start, end in zip(starts, ends, strict=True):
        texts[rows[start]] = "; ".join(parts[start:end])
    return texts
