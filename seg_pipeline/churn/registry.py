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

from dataclasses import dataclass

import numpy as np
import pandas as pd

from seg_pipeline.churn.train import HIGHER_IS_BETTER, evaluate, feature_frame

MODEL_NAME = "seg_pipeline_churn"
CHAMPION = "champion"
CHALLENGER = "challenger"
CHAMPION_URI = f"models:/{MODEL_NAME}@{CHAMPION}"


@dataclass
class GateDecision:
    promoted: bool
    reason: str
    champion_version: int | None  # the champion after the decision
    previous_champion: int | None
    previous_metrics: dict[str, float] | None


def decide(challenger: dict[str, float], champion: dict[str, float] | None, metric: str,
           tolerance: float) -> tuple[bool, str]:  # fmt: skip
    """Promote when there is no champion, or the challenger is no worse (within tolerance) on ``metric``."""
    if champion is None:
        return True, "no champion yet"
    new, old = challenger[metric], champion[metric]
    ok = new >= old - tolerance if HIGHER_IS_BETTER[metric] else new <= old + tolerance
    relation = "no worse than" if ok else "worse than"
    return (
        ok,
        f"{metric} {new:.4f} on the holdout is {relation} the champion's {old:.4f} (tolerance {tolerance})",
    )


def alias_version(client, alias: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(MODEL_NAME, alias).version)
    except MlflowException:  # no such alias (or no registered model yet)
        return None


def model_columns(model) -> tuple[list[str], list[str]]:
    """The numeric and categorical input columns a trained calibrated pipeline expects."""
    prepare = model.calibrated_classifiers_[0].estimator.named_steps["prepare"]
    numeric, categorical = [], []
    for name, _, columns in prepare.transformers:  # baselines read numbers in more than one block
        target = categorical if name == "categorical" else numeric
        target.extend(c for c in columns if c not in target)
    return numeric, categorical


HOLDOUT_MODEL_TAG = "holdout_model_uri"


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
