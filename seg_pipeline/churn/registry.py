"""The champion gate's rule and the registry's names (the gate itself runs in platform/registry.py).

A challenger is promoted when there is no champion, or it is no worse (within a tolerance) than the champion
on the same holdout rows; scoring always loads `models:/seg_pipeline_churn@champion`.
"""

from __future__ import annotations

from dataclasses import dataclass

from seg_pipeline.churn.train import HIGHER_IS_BETTER

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


def model_columns(model) -> tuple[list[str], list[str]]:
    """The numeric and categorical input columns a trained calibrated pipeline expects."""
    prepare = model.calibrated_classifiers_[0].estimator.named_steps["prepare"]
    numeric, categorical = [], []
    for name, _, columns in prepare.transformers:  # baselines read numbers in more than one block
        target = categorical if name == "categorical" else numeric
        target.extend(c for c in columns if c not in target)
    return numeric, categorical


HOLDOUT_MODEL_TAG = "holdout_model_uri"
