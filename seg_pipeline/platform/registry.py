"""The champion gate in the MLflow model registry.

Every trained model becomes a version of `seg_pipeline_churn`. It takes the alias `champion` only when
it is no worse than the current champion on the same holdout rows (the champion is re-scored on this
run's holdout, so both are judged on identical data); otherwise it gets the alias `challenger` and the
reason is recorded. Scoring always loads `models:/seg_pipeline_churn@champion`.

A registered version is refitted on every labelled row, its run's latest snapshot included, which overlaps
a later run's holdout. The gate therefore re-scores the champion's holdout model (the same model fitted
without its own holdout, logged with its run and named by the version's tag ``holdout_model_uri``): its
labels all end before any later run's holdout snapshot, so the comparison stays out of time.
"""


from __future__ import annotations

import numpy as np
import pandas as pd

from seg_pipeline.churn.registry import (
    CHALLENGER,
    CHAMPION,
    CHAMPION_URI,
    HOLDOUT_MODEL_TAG,
    MODEL_NAME,
    GateDecision,
    decide,
    model_columns,
)
from seg_pipeline.churn.train import evaluate, feature_frame


def alias_version(client, alias: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(MODEL_NAME, alias).version)
    except MlflowException:  # no such alias (or no registered model yet)
        return None


def champion_metrics(
    mlflow, holdout: pd.DataFrame, threshold_of_champion: float | None, model_uri: str = CHAMPION_URI
) -> dict[str, float] | None:
    """The current champion (its holdout model when it has one) re-scored on this run's holdout rows."""
    model = mlflow.sklearn.load_model(model_uri)
    numeric, categorical = model_columns(model)
    p = model.predict_proba(feature_frame(holdout, numeric, categorical))[:, 1]
    threshold = threshold_of_champion if threshold_of_champion is not None else 0.5
    return evaluate(holdout["label"].to_numpy(), np.asarray(p), threshold)


def apply_gate(mlflow, client, version: int, metrics: dict[str, float], holdout: pd.DataFrame, metric: str,
               tolerance: float) -> GateDecision:  # fmt: skip
    previous = alias_version(client, CHAMPION)
    previous_metrics = None
    if previous is not None:
        tags = client.get_model_version(MODEL_NAME, str(previous)).tags
        threshold = float(tags["threshold"]) if "threshold" in tags else None
        previous_metrics = champion_metrics(
            mlflow, holdout, threshold, tags.get(HOLDOUT_MODEL_TAG, CHAMPION_URI)
        )
    promoted, reason = decide(metrics, previous_metrics, metric, tolerance)
    client.set_model_version_tag(MODEL_NAME, str(version), "gate", reason)
    if promoted:
        client.set_registered_model_alias(MODEL_NAME, CHAMPION, str(version))
        if alias_version(client, CHALLENGER) == version:
            client.delete_registered_model_alias(MODEL_NAME, CHALLENGER)
    else:
        client.set_registered_model_alias(MODEL_NAME, CHALLENGER, str(version))
    return GateDecision(
        promoted=promoted, reason=reason, champion_version=version if promoted else previous,
        previous_champion=previous, previous_metrics=previous_metrics,
    )  # fmt: skip
