"""benchmarks/churn_real.py's measures of the action tiers: the 365-day value it computes itself, lists
of a given size with ties at the cut, the tier rows and the lost revenue caught (README "Actions: who to
contact")."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import churn_real  # noqa: E402
from churn_real import Identities, caught, spend_before, tier_rows, top_k_total  # noqa: E402


def test_top_k_total_counts_ties_at_the_cut_in_proportion():
    score = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    values = np.array([10.0, 3.0, 0.0, 0.0, 100.0])
    assert top_k_total(score, values, 1) == 10.0
    # one of the three tied at 0.5 joins: a third of their total on average
    assert top_k_total(score, values, 2) == pytest.approx(10.0 + 1.0)
    assert top_k_total(score, values, 4) == pytest.approx(13.0)
    assert top_k_total(score, values, 0) == 0.0
    assert top_k_total(score, values, 9) == 113.0


def test_top_k_total_puts_missing_scores_last():
    score = np.array([np.nan, 0.2, 0.1])
    assert top_k_total(score, np.array([50.0, 1.0, 2.0]), 2) == 3.0


def test_lift_top_decile_unchanged_by_the_shared_helper():
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0] * 2)
    score = np.linspace(1, 0, len(y))
    # top 2 of 20: rows 0 and 1, one churner; base rate 0.2
    assert churn_real.lift_top_decile(y, score) == pytest.approx(0.5 / 0.2)


def test_spend_before_takes_the_window_of_monetary_365d():
    as_of = dt.date(2024, 6, 30)
    at = pd.to_datetime(
        [
            "2023-07-01 23:00",
            "2023-07-02 00:00",
            "2023-07-02 12:00",
            "2024-06-30 23:00",
            "2024-07-01 00:00",
            "2024-01-01 00:00",
        ]
    )
    orders = pd.DataFrame(
        {"group": ["a", "a", "b", "b", "b", "c"], "at": at, "day": at.normalize(),
         "amount": [100.0, 5.0, 7.0, 1.0, 1000.0, np.nan]}
    )  # fmt: skip
    spend = spend_before(orders, as_of)
    # an order counts when at most 365 days before the end of as_of (2024-06-30 23:59:59.999999): from
    # 2023-07-02 on (a leap year back), as the pipeline's features count it
    assert spend["a"] == 5.0
    assert spend["b"] == 8.0  # the order after as_of does not count
    assert spend["c"] == 0.0  # a missing amount is no spend


def _book() -> pd.DataFrame:
    """Six scored customers: two on the retention list, one more in automated, one without consent."""
    book = pd.DataFrame(
        {
            "risk_tier": ["personal_outreach", "semi_automated", "automated", "no_action", "no_action",
                          "no_consent"],
            "probability": [0.6, 0.5, 0.4, 0.9, 0.1, 0.95],
            "churned": [1, 0, 1, 1, 0, 1],
            "value": [100.0, 80.0, 10.0, 0.0, 500.0, 300.0],
            "days_since_last_order": [100.0, 50.0, 30.0, 400.0, 5.0, 500.0],
        }
    )  # fmt: skip
    return book.assign(
        in_retention_list=book["risk_tier"].isin(["personal_outreach", "semi_automated"]),
        contactable=book["risk_tier"] != "no_consent",
        lost=book["value"] * book["churned"],
    )


def test_tier_rows_measure_each_tier_the_list_and_everyone():
    rows = {r["tier"]: r for r in tier_rows(_book(), {"personal_outreach": 60.0, "all": 700.0})}
    assert [*rows] == ["personal_outreach", "semi_automated", "automated", "no_action", "no_consent",
                       "retention_list", "all"]  # fmt: skip
    listed = rows["retention_list"]
    assert listed["customers"] == 2 and listed["share"] == pytest.approx(2 / 6)
    assert listed["realized_churn_rate"] == 0.5 and listed["value"] == 180.0
    assert listed["realized_lost_value"] == 100.0
    assert listed["share_of_lost_value"] == pytest.approx(100 / 410)
    assert rows["no_consent"]["realized_lost_value"] == 300.0
    assert rows["personal_outreach"]["expected_loss_published"] == 60.0
    assert rows["no_action"]["expected_loss_published"] is None
    assert rows["all"]["expected_loss_published"] == 700.0


def test_caught_compares_lists_of_the_same_size_among_contactable_customers():
    book = _book()
    found = caught(book, book["in_retention_list"])
    assert found["customers"] == 2 and found["realized_lost_value_all"] == 410.0
    assert found["contactable_customers"] == 5
    ranked = found["rankings"]
    assert ranked["expected_loss"]["lost_value_caught"] == 100.0
    assert ranked["expected_loss"]["realized_churn_rate"] == 0.5
    # probability: 0.9 (no spend) and 0.6; the no-consent customer at 0.95 is on no list
    assert ranked["probability"]["lost_value_caught"] == 100.0
    assert ranked["probability"]["realized_churn_rate"] == 1.0
    # recency: 400 and 100 days silent
    assert ranked["recency"]["lost_value_caught"] == 100.0
    # spend: 500 (stayed) and 100
    assert ranked["spend"]["lost_value_caught"] == 100.0
    assert ranked["spend"]["realized_churn_rate"] == 0.5
    # the oracle: 100 and 10; the 300 without consent is out of reach
    assert ranked["oracle"]["lost_value_caught"] == 110.0
    assert ranked["oracle"]["share_caught"] == pytest.approx(110 / 410)


def test_generated_orders_leave_planted_outliers_and_negatives_out_of_the_value(tmp_path):
    truth = tmp_path / "truth"
    truth.mkdir()
    pd.DataFrame(
        {"source": ["orders", "web_events"], "source_row": [1, 0], "key": ["O2", "O1"],
         "kind": ["amount_outlier", "amount_outlier"]}
    ).to_csv(truth / "anomalies.csv", index=False)  # fmt: skip
    crm = pd.DataFrame({"customer_id": ["C1", "C2"]})
    frame = pd.DataFrame(
        {"order_id": ["O1", "O2", "O3", "O4", "O5"], "customer_id": ["C1", "C1", "C2", "C2", "X9"],
         "amount": ["10.5", "9999", "-3", "abc", "4"]}
    )  # fmt: skip
    when = pd.Series(pd.to_datetime(["2024-01-01 10:00"] * 5))
    orders = churn_real._orders(frame, when, Identities(crm, truth), truth)
    assert orders["amount"].tolist()[:1] == [10.5]
    assert orders["amount"].iloc[1:4].isna().all()  # outlier, negative, unparseable
    assert orders["day"].iloc[0] == pd.Timestamp("2024-01-01")
    assert (orders["group"] == "X9").sum() == 1  # an id outside the CRM keeps its own group


def test_markdown_shows_the_new_tables_beside_runs_without_them():
    book = _book()
    actions = {
        "tiers": tier_rows(book, {}),
        "lists": {"retention_list": caught(book, book["in_retention_list"]),
                  "action_tiers": caught(book, book["risk_tier"].isin(churn_real.ACTION_TIERS))},
        "value_check": {"customers": 3, "differing_by_more_than_0.01": 1, "max_abs_difference": 5.0,
                        "published_value_365d": 185.0, "value_here": 190.0},
    }  # fmt: skip
    code = {"commit": "0" * 40, "dirty": False}
    case = {
        "dataset": "cdnow", "as_of": "1998-03-31", "crm_customers": 6, "realized_label": "churned = no order",
        "run": {"exit_code": 0, "seconds": 1.0}, "code": code, "scored": 6, "realized_churn_rate": 0.67,
        "pipeline_reported": {}, "churn_model": {}, "metrics": {"published": {"rows": 6}},
        "metrics_ordered_in_last_horizon": {"published": {"rows": 4}},
    }  # fmt: skip
    data = {
        "machine": {"cpus": 1, "python": "3.11", "system": "test"}, "versions": {},
        "cases": {"old": case | {"as_of": "1997-09-30"}, "new": case | {"actions": actions}},
    }  # fmt: skip
    text = churn_real.markdown(data)
    assert "| 1998-03-31 | **retention list** (first two tiers) | 2 | 33.3 % |" in text
    assert "| 1998-03-31 | retention list | 2 | 410 | 24.4 % | 24.4 % | 24.4 % | 24.4 % | 26.8 % |" in text
    assert "| 1998-03-31 | retention list | 2 | 410 | 0.500 | 1.000 |" in text
    assert "1 of 3 customers differ by more than 0.01" in text
    assert "1997-09-30 | **retention list**" not in text
