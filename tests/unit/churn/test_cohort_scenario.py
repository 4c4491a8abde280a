"""The case the first churn model lost: one acquisition cohort of a retailer, orders only, most customers
buying once or twice (the cohort scenario). The churn stage's own functions, on 20,000 customers: everyone
profiled is labelled at every snapshot, and the model beats sorting by recency and the BG/NBD model on the
out-of-time holdout. (The Dagster wiring of the same stage is tested in tests/integration/test_churn.py.)"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from seg_pipeline.churn.train import train_churn_model
from seg_pipeline.config import ChurnConfig
from seg_pipeline.features.labels import KEY_COLUMNS, activity_training_set
from seg_pipeline.synthetic.cohort import CohortConfig, generate_cohort

AS_OF = dt.date(2024, 6, 30)


def _no_events(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


@pytest.fixture(scope="module")
def cohort_training(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(CohortConfig(customers=20_000, seed=3, as_of=AS_OF), out)
    crm = pd.read_csv(out / "crm_customers.csv", parse_dates=["signup_date"])
    orders = pd.read_csv(out / "orders.csv", parse_dates=["order_date"]).rename(
        columns={"customer_id": "customer_key"}
    )
    customers = crm.rename(columns={"customer_id": "customer_key"}).assign(profiling_allowed=True)
    web = _no_events(
        {"customer_key": "object", "ts": "datetime64[ns]", "event_type": "object", "session_id": "object"}
    )
    email = _no_events({"customer_key": "object", "ts": "datetime64[ns]", "event_type": "object"})
    tickets = _no_events({"customer_key": "object", "created_at": "datetime64[ns]", "resolved_at": "datetime64[ns]",
                          "topic": "object", "satisfaction": "float64"})  # fmt: skip
    churn = ChurnConfig()
    built = activity_training_set(customers, orders, web, tickets, email, as_of=AS_OF, churn=churn,
                                  attributes=["acquisition_channel"])  # fmt: skip
    return customers, built, churn


def test_everyone_profiled_is_labelled_at_every_snapshot(cohort_training):
    customers, built, churn = cohort_training
    table = built.table
    assert table["snapshot"].nunique() == churn.snapshots  # 540 days of history hold all four
    for snapshot, rows in table.groupby("snapshot"):
        signed_up = customers["signup_date"] <= snapshot + pd.Timedelta(days=1)
        assert len(rows) == int(signed_up.sum()), snapshot
    # long silent customers are in training, as they are among the scored: most of the cohort by now
    holdout = table[table["split"] == "holdout"]
    assert (holdout["recency_days"] > churn.horizon_days).mean() > 0.7
    assert {"btyd_p_alive", "btyd_expected_orders_horizon", "btyd_p_no_order_horizon"} <= set(table.columns)


def test_the_model_beats_recency_and_bg_nbd_on_the_out_of_time_holdout(cohort_training):
    _, built, churn = cohort_training
    table = built.table
    features = [c for c in table.columns if c not in KEY_COLUMNS]
    trained = train_churn_model(table, features, ["acquisition_channel"], churn)
    holdout = trained.candidates.set_index("candidate")["holdout_roc_auc"]
    model = trained.holdout_metrics["roc_auc"]
    assert trained.kind == "model" and trained.beats_baselines, trained.baseline_verdict
    assert model >= holdout["baseline_recency"] + 0.01
    assert model >= holdout["baseline_btyd"] and model >= holdout["baseline_rfm"]
