"""The training data logged to MLflow: the schema MLflow itself infers from every row, the row count, and
a digest that changes when any row does (MLflow's own looks at the first 10,000)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from seg_pipeline.platform.tracking import training_dataset


@pytest.fixture(scope="module")
def mlflow():
    """MLflow imported for these tests only (seconds to import: not at collection)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    return mlflow


def training_inputs(rows: int = 20_000) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    gappy = rng.random(rows)
    gappy[rows - 1] = np.nan  # the only gap is in the last row
    plan = rng.choice(np.array(["basic", "pro"], dtype=object), rows)
    plan[rows // 2] = np.nan
    return pd.DataFrame(
        {
            "recency_days": rng.random(rows) * 100,
            "interpurchase_trend": gappy,
            "never_seen": np.full(rows, np.nan),
            "plan": plan,
            "contract": rng.choice(np.array(["monthly", "annual"], dtype=object), rows),
            "label": rng.integers(0, 2, rows).astype("float64"),
        }
    )


def test_schema_and_profile_are_mlflows_own(mlflow):
    inputs = training_inputs()
    dataset = training_dataset(mlflow, inputs)
    inferred_by_mlflow = mlflow.data.from_pandas(inputs, targets="label").schema
    assert dataset.schema == inferred_by_mlflow
    assert {c["name"]: c["required"] for c in dataset.schema.to_dict()}["interpurchase_trend"] is False
    assert dataset.profile == {"num_rows": len(inputs), "num_elements": inputs.size}
    assert dataset.name == "churn_training_set" and dataset.targets == "label"


def test_digest_follows_every_row(mlflow):
    inputs = training_inputs()
    digest = training_dataset(mlflow, inputs).digest
    assert training_dataset(mlflow, inputs.copy()).digest == digest
    changed = inputs.copy()
    changed.iloc[-1, 0] += 1  # past the first 10,000 rows
    assert training_dataset(mlflow, changed).digest != digest
    assert training_dataset(mlflow, inputs.rename(columns={"plan": "tier"})).digest != digest


def test_empty_training_data(mlflow):
    dataset = training_dataset(mlflow, training_inputs().head(0))
    assert dataset.profile["num_rows"] == 0
