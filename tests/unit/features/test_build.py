"""customer_features on hand-made data with known answers, and the point-in-time guarantee."""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seg_pipeline.features.build import build_features
from seg_pipeline.features.catalogue import CATALOGUE

AS_OF = dt.date(2024, 6, 30)
T = pd.Timestamp


def customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_key": ["a", "b", "c", "d"],
            "signup_date": [T("2023-06-30"), T("2024-01-01"), pd.NaT, T("2024-08-01")],
            "profiling_allowed": [True, True, False, True],
            "plan": ["pro", "basic", "pro", "pro"],
            "monthly_charges": [10.0, 20.0, 30.0, 40.0],
        }
    )


def orders() -> pd.DataFrame:
    rows = [
        ("a", "2024-06-20", 100.0, "web", "office"),
        ("a", "2024-05-21", 50.0, "web", "office"),
        ("a", "2024-02-01", 30.0, "store", "home"),
        ("a", "2023-01-01", 20.0, "store", "home"),  # over a year ago
        ("b", "2024-03-02", 10.0, "app", "apparel"),
        ("c", "2024-06-01", 999.0, "web", "office"),  # no consent: never profiled
    ]
    frame = pd.DataFrame(
        rows, columns=["customer_key", "order_date", "amount", "channel", "product_category"]
    )
    return frame.assign(order_date=pd.to_datetime(frame["order_date"]))


def web() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_key": ["a", "a", "a", "b", None],
            "ts": pd.to_datetime(["2024-06-29", "2024-06-29", "2024-01-01", "2024-06-01", "2024-06-01"]),
            "event_type": ["page_view", "page_view", "page_view", "identify", "page_view"],
            "session_id": ["s1", "s1", "s0", "s2", "p1"],
        }
    )


def tickets() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_key": ["a", "a", "b"],
            "created_at": pd.to_datetime(["2024-06-01", "2024-06-10", "2024-01-01"]),
            "resolved_at": pd.to_datetime(["2024-06-01 12:00", "2024-07-05 00:00", "2024-01-02 00:00"]),
            "topic": ["billing", "billing", "technical"],
            "satisfaction": [2.0, np.nan, 5.0],
        }
    )


def email() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_key": ["a"] * 4 + ["b"] * 3,
            "ts": pd.to_datetime(
                ["2024-05-01", "2024-05-02", "2024-06-01", "2024-06-02"]
                + ["2024-04-01", "2024-04-02", "2024-04-03"]
            ),
            "event_type": ["sent", "open", "sent", "click"] + ["sent", "open", "unsubscribe"],
        }
    )


def build(**frames) -> pd.DataFrame:
    inputs = {"orders": orders(), "web": web(), "tickets": tickets(), "email": email(), **frames}
    result = build_features(customers(), **inputs, as_of=AS_OF, attributes=["plan", "monthly_charges"])
    return result.table.set_index("customer_key"), result


def test_known_answers():
    table, result = build()
    assert list(table.index) == ["a", "b"]  # c has no consent, d signed up after as_of
    assert result.excluded == {"no_profiling_consent": 1, "signed_up_after_as_of": 1}
    a = table.loc["a"]
    end = T("2024-07-01") - pd.Timedelta(microseconds=1)
    days = lambda ts: (end - T(ts)) / pd.Timedelta(days=1)  # noqa: E731
    assert a["tenure_days"] == pytest.approx(days("2023-06-30"))
    assert a["days_since_last_purchase"] == pytest.approx(days("2024-06-20"))
    assert a["recency_days"] == pytest.approx(days("2024-06-29"))  # the page view is the latest activity
    assert a["frequency_365d"] == 3 and a["orders_total"] == 4
    assert a["monetary_365d"] == 180 and a["avg_order_value"] == 50
    gaps = [396, 110, 30]  # days between consecutive orders
    assert a["interpurchase_mean_days"] == pytest.approx(np.mean(gaps))
    assert a["interpurchase_trend"] == pytest.approx(1.0)  # only 3 gaps: the last three are all of them
    assert a["spend_trend"] == pytest.approx(math.log1p(150) - math.log1p(30))
    assert a["channel_share_web"] == 0.5 and a["channel_share_store"] == 0.5 and a["channel_share_app"] == 0
    assert a["category_share_office"] == 0.5
    assert a["web_sessions_90d"] == 1 and a["web_page_views_90d"] == 2
    assert a["email_open_rate"] == 0.5 and a["email_click_rate"] == 0.5 and a["email_unsubscribed"] == 0
    assert a["tickets_365d"] == 2 and a["tickets_billing_365d"] == 2
    assert a["resolution_hours_mean"] == 12  # the second ticket was not resolved by as_of
    assert a["satisfaction_mean"] == 2 and a["low_satisfaction_tickets"] == 1
    assert a["plan"] == "pro" and a["monthly_charges"] == 10
    b = table.loc["b"]
    assert b["email_unsubscribed"] == 1 and b["email_open_rate"] == 1
    assert b["web_page_views_90d"] == 0 and b["web_sessions_90d"] == 1
    assert np.isnan(b["interpurchase_mean_days"])  # one order: no gap, left missing rather than invented
    assert b["tenure_days"] == pytest.approx(days("2024-01-01"))


def test_no_look_ahead():
    """Appending rows dated after as_of changes no feature of anyone."""
    before, _ = build()
    late = T("2024-07-01")
    after, _ = build(
        orders=pd.concat([orders(), pd.DataFrame({"customer_key": ["a", "b"], "order_date": [late, late + pd.Timedelta(days=40)],
                                                   "amount": [5000.0, 1.0], "channel": ["phone", "phone"],
                                                   "product_category": ["x", "x"]})], ignore_index=True),
        web=pd.concat([web(), pd.DataFrame({"customer_key": ["b"], "ts": [late], "event_type": ["page_view"], "session_id": ["s9"]})]),
        tickets=pd.concat([tickets(), pd.DataFrame({"customer_key": ["b"], "created_at": [late], "resolved_at": [late],
                                                     "topic": ["cancellation"], "satisfaction": [1.0]})]),
        email=pd.concat([email(), pd.DataFrame({"customer_key": ["a"], "ts": [late], "event_type": ["unsubscribe"]})]),
    )  # fmt: skip
    shared = [c for c in before.columns if c in after.columns]
    pd.testing.assert_frame_equal(before[shared], after[shared])
    new_columns = set(after.columns) - set(before.columns)
    assert not new_columns or (after[list(new_columns)].fillna(0) == 0).all().all()


def test_absent_sources_leave_their_features_out():
    empty = lambda frame: frame.iloc[0:0]  # noqa: E731
    table, result = build(web=empty(web()), tickets=empty(tickets()), email=empty(email()))
    assert result.sources_used == ["orders"]
    assert not [c for c in table.columns if c.startswith(("web_", "email_", "tickets_", "satisfaction"))]
    crm_only, result = build(
        orders=empty(orders()), web=empty(web()), tickets=empty(tickets()), email=empty(email())
    )
    assert result.sources_used == []
    assert list(crm_only.columns) == ["tenure_days", "recency_days", "plan", "monthly_charges"]


def test_readme_shows_the_whole_catalogue():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    for feature in CATALOGUE:
        assert re.search(rf"\| `{re.escape(feature.name)}` \|", readme), feature.name
