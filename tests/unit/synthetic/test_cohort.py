"""The cohort scenario: one acquisition quarter, orders only, mostly one-time buyers, planted covariates,
future orders kept in truth/, deterministic, and extracts the pipeline's readers accept."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from seg_pipeline.config import load_settings
from seg_pipeline.sources.contracts import CONTRACTS
from seg_pipeline.sources.readers import read_source
from seg_pipeline.synthetic.cohort import (
    COHORT_DAYS,
    FUTURE_DAYS,
    HONOURED_RATES,
    CohortConfig,
    generate_cohort,
)
from seg_pipeline.synthetic.generator import CHUNK_SIZE, MessinessRates
from tests.conftest import AS_OF
from tests.unit.synthetic.test_generator import digest

REPO = Path(__file__).resolve().parents[3]
AS_OF_END = pd.Timestamp(AS_OF) + pd.Timedelta(days=1)  # exclusive
CUSTOMERS = 6000


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("cohort")
    summary = generate_cohort(CohortConfig(customers=CUSTOMERS, seed=11, as_of=AS_OF), out)
    orders = read(out / "orders.csv")
    orders["order_date"] = pd.to_datetime(orders["order_date"])
    orders["amount"] = orders["amount"].astype(float)
    future = read(out / "truth" / "orders_after_as_of.csv")
    future["order_date"] = pd.to_datetime(future["order_date"])
    crm = read(out / "crm_customers.csv")
    counts = orders.groupby("customer_id").size().reindex(crm["customer_id"], fill_value=0)
    return {
        "dir": out,
        "summary": summary,
        "crm": crm,
        "orders": orders,
        "future": future,
        "truth": read(out / "truth" / "customers.csv"),
        "counts": counts,
        "manifest": json.loads((out / "truth" / "manifest.json").read_text(encoding="utf-8")),
    }


def test_only_the_crm_and_orders_extracts_plus_truth(cohort):
    files = {p.relative_to(cohort["dir"]).as_posix() for p in cohort["dir"].rglob("*") if p.is_file()}
    assert files == {
        "crm_customers.csv",
        "orders.csv",
        "truth/customers.csv",
        "truth/orders_after_as_of.csv",
        "truth/manifest.json",
    }
    assert list(cohort["crm"].columns) == ["customer_id", "signup_date", "country", "acquisition_channel"]
    assert list(cohort["orders"].columns) == [
        "order_id",
        "customer_id",
        "order_date",
        "amount",
        "channel",
        "product_category",
    ]
    assert list(cohort["future"].columns) == ["order_id", "customer_id", "order_date", "amount"]
    assert {"customer_id", "lambda_per_day", "dropout_p", "alive_at_as_of", "death_date",
            "acquisition_channel"} <= set(cohort["truth"].columns)  # fmt: skip
    assert cohort["crm"]["customer_id"].is_unique and len(cohort["crm"]) == CUSTOMERS
    assert cohort["orders"]["order_id"].is_unique
    assert set(cohort["orders"]["channel"]) == {"web", "app", "store"}
    assert cohort["crm"].notna().all().all() and cohort["orders"].notna().all().all()  # clean by default
    manifest = cohort["manifest"]
    assert manifest["scenario"] == "cohort" and manifest["customers"] == CUSTOMERS and manifest["seed"] == 11
    assert manifest["as_of"] == AS_OF.isoformat() and manifest["history_days"] == 540
    assert manifest["rows"] == {
        "crm_customers": CUSTOMERS,
        "orders": len(cohort["orders"]),
        "orders_after_as_of": len(cohort["future"]),
    }
    assert manifest["parameters"]["r"] > 0 and "referral" in manifest["parameters"]["acquisition_channels"]


def test_one_acquisition_quarter_starting_history_days_before_as_of(cohort):
    signup = pd.to_datetime(cohort["crm"]["signup_date"])
    start = pd.Timestamp(AS_OF - dt.timedelta(days=540 - 1))
    assert signup.min() >= start and signup.max() < start + pd.Timedelta(days=COHORT_DAYS)
    assert signup.max() - signup.min() >= pd.Timedelta(days=COHORT_DAYS - 3)  # spread over the quarter
    # the signup date is the first purchase's date
    first = cohort["orders"].groupby("customer_id")["order_date"].min().dt.normalize()
    assert (first.reindex(cohort["crm"]["customer_id"]).to_numpy() == signup.to_numpy()).all()


def test_extracts_stop_at_as_of_and_truth_holds_the_next_year(cohort):
    orders, future, truth = cohort["orders"], cohort["future"], cohort["truth"]
    assert orders["order_date"].max() < AS_OF_END
    assert future["order_date"].min() >= AS_OF_END
    assert future["order_date"].max() < AS_OF_END + pd.Timedelta(days=FUTURE_DAYS)
    assert set(future["customer_id"]) <= set(cohort["crm"]["customer_id"])
    assert len(future) > 0.05 * len(orders)

    # the truth agrees with the orders: who buys after as_of was alive; the dead died at their last order
    truth = truth.set_index("customer_id")
    alive = truth["alive_at_as_of"] == "true"
    assert alive[future["customer_id"].unique()].all()
    last = (
        pd.concat([orders, future])[["customer_id", "order_date"]].groupby("customer_id")["order_date"].max()
    )
    dead = truth["death_date"].notna()
    assert (pd.to_datetime(truth.loc[dead, "death_date"]) == last[truth.index[dead]].dt.normalize()).all()
    assert (pd.to_datetime(truth.loc[dead & ~alive, "death_date"]) < AS_OF_END).all()
    assert (truth["orders_by_as_of"].astype(int) == cohort["counts"].reindex(truth.index)).all()


def test_most_customers_buy_once_or_twice_yet_a_minority_repeats(cohort):
    counts = cohort["counts"]
    one, at_most_two = (counts == 1).mean(), (counts <= 2).mean()
    assert counts.min() == 1
    assert 0.55 <= one <= 0.72  # CDNOW: about 60 %
    assert 0.75 <= at_most_two <= 0.85  # CDNOW: about 78 %
    assert (counts >= 5).mean() > 0.05  # a sizeable minority of repeat buyers
    assert cohort["summary"].one_order_share == pytest.approx(one)
    assert cohort["manifest"]["shares"]["at_most_two_orders_by_as_of"] == pytest.approx(at_most_two, abs=1e-4)


def test_planted_covariate_effects_are_visible_in_the_extracts(cohort):
    crm = cohort["crm"].set_index("customer_id")
    repeat = (cohort["counts"] > 1).rename("repeat")
    by_channel = repeat.groupby(crm["acquisition_channel"]).mean()
    # referral and newsletter customers come back more, marketplace and social customers less
    assert by_channel["referral"] > by_channel["search_ads"] + 0.04
    assert by_channel["newsletter"] > by_channel["search_ads"]
    assert by_channel["marketplace"] < by_channel["search_ads"] - 0.04
    assert by_channel["social"] < by_channel["search_ads"]

    orders = cohort["orders"].sort_values(["customer_id", "order_date"])
    first_category = orders.groupby("customer_id")["product_category"].first()
    by_category = repeat.groupby(first_category.reindex(repeat.index)).mean()
    durables = by_category[["electronics", "home"]].mean()
    assert by_category[["music", "books", "beauty"]].mean() > durables + 0.03

    # the frequent buyers use the app more and the store less
    frequent = orders["customer_id"].map(cohort["counts"]) >= 5
    share = orders.groupby(frequent)["channel"].value_counts(normalize=True)
    assert share[True]["app"] > share[False]["app"] + 0.05
    assert share[True]["store"] < share[False]["store"]

    # and the planted parameters move the same way
    truth = cohort["truth"].astype({"lambda_per_day": float, "dropout_p": float})
    planted = truth.groupby("acquisition_channel")[["lambda_per_day", "dropout_p"]].median()
    assert planted.loc["referral", "dropout_p"] < planted.loc["search_ads", "dropout_p"]
    assert planted.loc["marketplace", "dropout_p"] > planted.loc["search_ads", "dropout_p"]
    assert planted.loc["referral", "lambda_per_day"] > planted.loc["marketplace", "lambda_per_day"]


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    cfg = CohortConfig(customers=500, seed=5, as_of=AS_OF)
    generate_cohort(cfg, tmp_path / "a")
    generate_cohort(cfg, tmp_path / "b")
    generate_cohort(CohortConfig(customers=500, seed=6, as_of=AS_OF), tmp_path / "c")
    first = digest(tmp_path / "a")
    assert len(first) == 5
    assert first == digest(tmp_path / "b")
    other = digest(tmp_path / "c")
    for name in ("crm_customers.csv", "orders.csv", "truth/customers.csv", "truth/orders_after_as_of.csv"):
        assert first[name] != other[name], name


def test_chunks_join_seamlessly_and_parquet_holds_the_same_orders(tmp_path):
    n = CHUNK_SIZE + 150
    summary = generate_cohort(CohortConfig(customers=n, seed=2, as_of=AS_OF, format="parquet"), tmp_path)
    crm = pd.read_parquet(tmp_path / "crm_customers.parquet")
    orders = pd.read_parquet(tmp_path / "orders.parquet")
    assert len(crm) == n and crm["customer_id"].is_unique
    assert orders["order_id"].is_unique and set(orders["customer_id"]) == set(crm["customer_id"])
    assert summary.rows == {"crm_customers": n, "orders": len(orders)}
    future = read(tmp_path / "truth" / "orders_after_as_of.csv")
    assert future["order_id"].is_unique and len(future) == summary.future_orders


def test_history_days_moves_the_cohort_and_has_a_minimum(tmp_path):
    with pytest.raises(ValueError, match="at least 120"):
        generate_cohort(CohortConfig(customers=10, as_of=AS_OF, history_days=119), tmp_path / "short")
    summary = generate_cohort(CohortConfig(customers=300, seed=1, as_of=AS_OF, history_days=120), tmp_path)
    signup = pd.to_datetime(read(tmp_path / "crm_customers.csv")["signup_date"])
    assert summary.cohort_start == AS_OF - dt.timedelta(days=119)
    assert signup.min() >= pd.Timestamp(summary.cohort_start)
    assert signup.max() <= pd.Timestamp(summary.cohort_end) < AS_OF_END - pd.Timedelta(days=28)


def test_the_extracts_pass_the_source_contracts_as_cohort_yaml_reads_them(cohort):
    """Read as the raw assets do: the landing folder of cohort.yaml, its attributes as extra columns."""
    settings = load_settings(REPO / "cohort.yaml", [f"landing={cohort['dir']}"])
    extra = {name: "string" for name in settings.customer_attributes.categorical}
    assert extra == {"acquisition_channel": "string"}
    crm, report = read_source(CONTRACTS["crm_customers"], settings.source_path("crm_customers"), extra=extra)
    assert len(crm) == CUSTOMERS and crm["parse_errors"].isna().all()
    assert not report.coerced_to_null and not report.unparseable_required and not report.ignored_columns
    assert crm["signup_date"].notna().all() and crm["acquisition_channel"].notna().all()
    assert {"email", "churned", "updated_at"} <= set(report.columns_absent)
    orders, report = read_source(CONTRACTS["orders"], settings.source_path("orders"))
    assert len(orders) == len(cohort["orders"]) and orders["parse_errors"].isna().all()
    assert not report.coerced_to_null and not report.columns_absent and not report.ignored_columns
    assert str(orders["order_date"].dtype) == "datetime64[ns]" and (orders["amount"] > 0).all()
    for absent in ("web_events", "support_tickets", "email_events"):  # optional: empty typed tables
        assert settings.source_path(absent) is None
        table, _ = read_source(CONTRACTS[absent], None)
        assert table.empty and set(CONTRACTS[absent].column_names) <= set(table.columns)


def test_messiness_applies_the_honoured_rates_and_lists_them(tmp_path):
    rates = MessinessRates().scaled(3)
    summary = generate_cohort(CohortConfig(customers=3000, seed=4, as_of=AS_OF, rates=rates), tmp_path)
    anomalies = read(tmp_path / "truth" / "anomalies.csv")
    kinds = set(anomalies["kind"])
    assert {"missing_value", "orphan_id", "amount_outlier", "negative_amount", "future_date",
            "invalid_date"} <= kinds  # fmt: skip
    assert len(anomalies) == sum(summary.anomalies.values())
    manifest = json.loads((tmp_path / "truth" / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["rates"]) == set(HONOURED_RATES)
    orders, _ = read_source(CONTRACTS["orders"], tmp_path / "orders.csv", max_unparseable_share=0.01)
    assert (orders["amount"] < 0).any() and (orders["order_date"] > AS_OF_END).any()
