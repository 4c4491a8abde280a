"""What every publish records so that its scores can be judged later: the score history.

``monitoring.score_history`` gets one row per scored customer and publish (the probability, tier and arm the
customer was published with), ``monitoring.scored_runs`` one row per publish. Both are appended, never
rewritten: a publish only adds its own rows (a retried publish of the same run replaces them), so the arm a
customer was assigned in a run stays on record. The one exception is erasure: every publish deletes the
history rows of customers with an erasure request (``erased_history_keys``); the run's row in scored_runs
keeps how many it scored, so the outcome counts them as erased.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from seg_pipeline.cleaning.privacy import suppression_hash

# column -> DuckDB type of the appended monitoring tables
HISTORY_TYPES = {
    "run_id": "VARCHAR", "as_of": "DATE", "customer_key": "VARCHAR", "churn_probability": "DOUBLE",
    "risk_tier": "VARCHAR", "arm": "VARCHAR", "control_period": "VARCHAR", "value_365d": "DOUBLE",
    "recency_days": "DOUBLE", "segment_id": "BIGINT", "segment_name": "VARCHAR", "model_version": "BIGINT",
}  # fmt: skip
SCORED_RUN_TYPES = {
    "run_id": "VARCHAR", "as_of": "DATE", "publish_sequence": "BIGINT", "published_at": "TIMESTAMP",
    "horizon_days": "BIGINT", "label": "VARCHAR", "model_version": "BIGINT", "scored_by": "VARCHAR",
    "holdout_roc_auc": "DOUBLE", "customers_scored": "BIGINT", "control_share": "DOUBLE",
    "control_period": "VARCHAR", "control_campaign": "VARCHAR",
}  # fmt: skip
HISTORY_COLUMNS = list(HISTORY_TYPES)
SCORED_RUN_COLUMNS = list(SCORED_RUN_TYPES)
# the kind under which the erasure index holds (hashed) customer keys of erased customers
ERASED_KEY_KIND = "customer_key"


def score_history_rows(
    customers: pd.DataFrame, features: pd.DataFrame, as_of: dt.date, run_id: str
) -> pd.DataFrame:
    """The history rows of one publish: ``customers`` as tables.scored_customers builds them (with arm and
    control_period), ``features`` for the recency the baseline ranking is judged on."""
    recency = features.set_index("customer_key")["recency_days"] if "recency_days" in features else None
    table = customers.assign(
        run_id=run_id, as_of=pd.Timestamp(as_of),
        recency_days=customers["customer_key"].map(recency) if recency is not None else float("nan"),
    )  # fmt: skip
    table = table[HISTORY_COLUMNS]
    return table.astype({"segment_id": "Int64", "model_version": "Int64", "recency_days": "float64",
                         "value_365d": "float64"})  # fmt: skip


def scored_run_row(
    *, run_id: str, as_of: dt.date, publish_sequence: int, history: pd.DataFrame, horizon_days: int, label: str,
    scored_by: str, holdout_roc_auc: float | None, control_share: float, control_campaign: str,
) -> pd.DataFrame:  # fmt: skip
    versions = history["model_version"].dropna()
    periods = history["control_period"].dropna()
    return pd.DataFrame([{
        "run_id": run_id, "as_of": pd.Timestamp(as_of), "publish_sequence": publish_sequence,
        "published_at": pd.Timestamp.now(tz="UTC").tz_localize(None), "horizon_days": horizon_days, "label": label,
        "model_version": int(versions.iloc[0]) if len(versions) else None, "scored_by": scored_by,
        "holdout_roc_auc": holdout_roc_auc, "customers_scored": len(history), "control_share": control_share,
        "control_period": periods.iloc[0] if len(periods) else None, "control_campaign": control_campaign,
    }])[SCORED_RUN_COLUMNS].astype({"model_version": "Int64", "holdout_roc_auc": "float64"})  # fmt: skip


def erased_history_keys(history_keys: pd.Series, erasure_index: pd.DataFrame, key: bytes) -> list[str]:
    """The customer keys of the history that belong to an erased customer (any record merged into them):
    matched by the erasure index's hashed keys, so the index never holds a key in the clear."""
    hashes = set(erasure_index.loc[erasure_index["kind"] == ERASED_KEY_KIND, "hash"].dropna())
    if not hashes or history_keys.empty:
        return []
    keys = pd.Series(pd.unique(history_keys.dropna()), dtype="string")
    return keys[suppression_hash(keys, ERASED_KEY_KIND, key).isin(hashes).to_numpy()].tolist()
