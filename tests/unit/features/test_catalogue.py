"""The features catalogue names each column of customer_features, patterned ones included, and words its values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seg_pipeline.features.catalogue import (
    CATALOGUE,
    UNITS,
    amount,
    catalogue_entry,
    catalogue_markdown,
    comparison,
    describe,
    describe_distinct,
    describe_many,
    feature_role,
    label,
    share_with_flag,
)


def test_columns_find_their_catalogue_entry_including_patterned_ones():
    assert catalogue_entry("recency_days").source == "all events"
    assert catalogue_entry("channel_share_app").name == "channel_share_<channel>"
    assert catalogue_entry("tickets_billing_365d").name == "tickets_<topic>_365d"
    assert catalogue_entry("channel_share_") is None and catalogue_entry("customer_key") is None


def test_roles_follow_the_catalogue():
    assert feature_role("avg_order_value", []) == "profile" and feature_role("recency_days", []) == "state"
    assert (
        feature_role("channel_share_app", []) == "profile"
        and feature_role("channel_share_unknown", []) == "state"
    )
    assert feature_role("plan", ["plan"]) == "profile" and feature_role("unheard_of", []) == "state"


# ---------------------------------------------------------------------------------------------------------
# Words for values: every unit kind, the templated columns and the columns the catalogue does not know


def test_every_feature_has_a_label_a_known_unit_and_words():
    for feature in CATALOGUE:
        assert feature.label and feature.unit in UNITS, feature.name
        if feature.unit in ("ratio", "log_ratio"):
            assert all(feature.trend), feature.name
        elif feature.unit != "attribute":
            assert "{}" in feature.phrase or feature.unit == "flag", feature.name
    assert (
        "| label |" in catalogue_markdown()
        and "| `recency_days` | days since the last activity |" in catalogue_markdown()
    )


@pytest.mark.parametrize(
    ("column", "value", "text"),
    [
        ("days_since_last_purchase", 143.4, "last purchase 143 days ago"),  # days
        ("days_since_last_purchase", 1.0, "last purchase 1 day ago"),
        ("recency_days", 0.2, "last active less than a day ago"),
        ("resolution_hours_mean", 36.2, "tickets resolved in 36 hours"),  # hours
        ("resolution_hours_mean", 100.0, "tickets resolved in 4 days"),
        ("frequency_365d", 12.0, "12 orders in the last 365 days"),  # count
        ("frequency_365d", 1.0, "1 order in the last 365 days"),
        ("frequency_365d", 0.0, "no orders in the last 365 days"),
        ("btyd_expected_orders_horizon", 0.43, "0.4 orders expected in the churn window"),
        ("monetary_365d", 1240.4, "€1,240 spent in the last 365 days"),  # money
        ("monetary_365d", 0.0, "nothing spent in the last 365 days"),
        ("avg_order_value", 45.6, "spends €46 per order"),
        ("channel_share_app", 0.62, "62% of orders via app"),  # share
        ("channel_share_sales_rep", 0.004, "0.4% of orders via sales rep"),
        ("email_open_rate", 0.45, "opens 45% of e-mails"),  # rate
        ("email_open_rate", 0.0, "opened none of the e-mails of the last 365 days"),
        ("btyd_p_alive", 0.031, "3% chance of still being an active buyer"),  # probability
        ("btyd_p_no_order_horizon", 0.7, "70% chance of no order in the churn window"),
        ("satisfaction_mean", 3.46, "rates support 3.5 of 5"),  # score
        ("email_unsubscribed", 1.0, "unsubscribed from e-mails"),  # flag
        ("email_unsubscribed", 0.0, "subscribed to e-mails"),
        (
            "interpurchase_trend",
            1.5,
            "ordering more slowly: last 3 gaps between orders 50% longer than usual",
        ),
        (
            "interpurchase_trend",
            2.5,
            "ordering more slowly: last 3 gaps between orders 2.5× as long as usual",
        ),
        ("interpurchase_trend", 0.6, "ordering faster: last 3 gaps between orders 40% shorter than usual"),
        ("interpurchase_trend", 1.05, "ordering at the usual pace"),  # ratio
        (
            "spend_trend",
            math.log1p(40) - math.log1p(100),
            "spend falling: last 90 days 59% below the 90 days before",
        ),
        (
            "spend_trend",
            math.log1p(140) - math.log1p(100),
            "spend rising: last 90 days 39% above the 90 days before",
        ),
        (
            "spend_trend",
            math.log1p(300) - math.log1p(100),
            "spend rising: last 90 days 3× the 90 days before",
        ),
        ("spend_trend", 9.7, "spend rising: last 90 days more than 10× the 90 days before"),
        ("spend_trend", 0.0, "spend steady: last 90 days within 10% of the 90 days before"),  # log ratio
        ("tenure_days", 1442.0, "customer for 1,442 days"),
    ],
)
def test_describe_words_each_unit(column, value, text):
    assert describe(column, value) == text


def test_templated_columns_name_their_level():
    assert describe("channel_share_store", 0.5) == "50% of orders via store"
    assert describe("channel_share_unknown", 0.2) == "20% of orders via an unrecorded channel"
    assert describe("category_share_home", 0.5) == "50% of orders in the home category"
    assert describe("category_share_other", 0.1) == "10% of orders in other categories"
    assert describe("tickets_billing_365d", 1.0) == "1 billing support ticket in the last 365 days"
    assert describe("tickets_unknown_365d", 0.0) == "no unlabelled support tickets in the last 365 days"
    assert label("tickets_technical_365d") == "technical support tickets in the last 365 days"
    assert label("category_share_home") == "share of orders in the home category"


def test_missing_values_say_what_is_missing():
    assert describe("days_since_last_purchase", float("nan")) == "no purchase yet"
    assert describe("email_open_rate", None) == "no e-mails sent in the last 365 days"
    assert describe("channel_share_app", np.nan) == "no orders"
    assert amount("web_recency_days", None) == "unknown"


def test_unknown_columns_are_their_name_and_value():
    assert describe("monthly_charges", 68.014) == "monthly charges 68.01"
    assert describe("monthly_charges", 1190.4) == "monthly charges 1,190"
    assert describe("plan", "basic") == "plan basic"
    assert describe("plan", None) == "plan unknown"
    assert label("contract_type") == "contract type" and amount("plan", "pro") == "pro"


def test_money_and_numbers_follow_currency_and_locale():
    assert describe("monetary_365d", 1240.0, "EUR", "de_DE") == "1.240\xa0€ spent in the last 365 days"
    assert describe("monetary_365d", 1240.0, "USD", "en_US") == "$1,240 spent in the last 365 days"
    assert describe("channel_share_app", 0.62, locale="de_DE") == "62\xa0% of orders via app"
    assert amount("avg_order_value", 540.2, "GBP") == "£540"


def test_amounts_are_short_values_with_their_unit():
    assert amount("days_since_last_purchase", 40.2) == "40 days"
    assert amount("frequency_365d", 3.0) == "3" and amount("email_open_rate", 0.35) == "35%"
    assert amount("satisfaction_mean", 3.5) == "3.5 of 5" and amount("spend_trend", 0.01) == "no change"
    assert (
        amount("interpurchase_trend", 1.4) == "+40%"
        and amount("email_unsubscribed", 0.0) == "subscribed to e-mails"
    )


def test_describe_many_words_each_distinct_shown_value_once():
    values = np.array([1.2, 1.4, np.nan, 300.0, None], dtype=object)
    texts = describe_many("recency_days", values)
    assert texts.tolist() == ["last active 1 day ago", "last active 1 day ago", "no activity recorded",
                              "last active 300 days ago", "no activity recorded"]  # fmt: skip
    codes, distinct = describe_distinct("recency_days", values)
    assert len(distinct) == 3 and (distinct[codes] == texts).all()  # 1 day, 300 days, and missing
    assert describe_many("plan", np.array(["pro", None], dtype=object)).tolist() == [
        "plan pro",
        "plan unknown",
    ]


def test_comparisons_exist_only_where_a_multiple_reads_naturally():
    assert comparison("frequency_365d", 2.34) == "orders 2.3× as often as the average customer"
    assert (
        comparison("tickets_billing_365d", 3.0)
        == "3× as many billing support tickets as the average customer"
    )
    assert comparison("recency_days", 3.0) is None  # days: two values
    assert comparison("channel_share_app", 3.0) is None  # shares: two percentages say more
    assert share_with_flag("email_unsubscribed", 0.12) == "12% have unsubscribed from e-mails"
