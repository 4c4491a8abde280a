"""lifecycle_stage on hand-made customers built to meet (or just miss) each rule, with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seg_pipeline.config import LifecycleConfig
from seg_pipeline.segmentation.lifecycle import LIFECYCLE_STAGES, assign_lifecycle, lifecycle_counts

RULES = LifecycleConfig()

# A customer no rule applies to: long-standing, active 40 days ago (too long for a champion, not long
# enough to be at risk), on rhythm, average value, flat spend.
STEADY = {
    "tenure_days": 400.0,
    "recency_days": 40.0,
    "days_since_last_purchase": 40.0,
    "interpurchase_mean_days": 30.0,
    "monetary_365d": 100.0,
    "frequency_365d": 2.0,
    "spend_trend": 0.0,
}


def frame(**customers: dict) -> pd.DataFrame:
    """One row per keyword: customer_key = the keyword, STEADY values overridden by the dict."""
    rows = [{"customer_key": key, **STEADY, **overrides} for key, overrides in customers.items()]
    return pd.DataFrame(rows)


def stages(features: pd.DataFrame, rules: LifecycleConfig = RULES) -> dict[str, str]:
    result = assign_lifecycle(features, rules)
    return dict(zip(result["customer_key"], result["lifecycle_stage"], strict=True))


def reasons(features: pd.DataFrame, rules: LifecycleConfig = RULES) -> dict[str, str]:
    result = assign_lifecycle(features, rules)
    return dict(zip(result["customer_key"], result["lifecycle_reason"], strict=True))


def population() -> pd.DataFrame:
    """One customer built for each stage, plus ordinary buyers that set the champion quantiles."""
    return frame(
        new={"tenure_days": 45.0},
        dormant={"recency_days": 212.0, "days_since_last_purchase": 212.0},
        at_risk={"recency_days": 75.0, "days_since_last_purchase": 75.0},
        champion={"monetary_365d": 4210.0, "frequency_365d": 12.0, "recency_days": 5.0},
        growing={"spend_trend": 0.45},
        steady={},
        steady2={},
        steady3={},
    )


def test_each_stage_is_reached_by_the_customer_built_for_it():
    assert stages(population()) == {
        "new": "new",
        "dormant": "dormant",
        "at_risk": "at_risk",
        "champion": "champion",
        "growing": "growing",
        "steady": "steady",
        "steady2": "steady",
        "steady3": "steady",
    }


def test_output_columns_and_order_follow_the_input():
    features = population()
    result = assign_lifecycle(features.set_index(pd.Index(range(100, 108))), RULES)
    assert list(result.columns) == ["customer_key", "lifecycle_stage", "lifecycle_reason"]
    assert result["customer_key"].tolist() == features["customer_key"].tolist()
    assert set(result["lifecycle_stage"]) <= set(LIFECYCLE_STAGES)


def test_reasons_carry_the_customers_numbers_and_the_thresholds():
    assert reasons(population()) == {
        "new": "customer for 45 days (new up to 90)",
        "dormant": "no activity for 212 days (dormant from 180)",
        "at_risk": "no activity for 75 days (at risk from 60)",
        "champion": "365-day spend 4,210 and 12 orders, both in the top 20%, active 5 days ago (champion)",
        "growing": "spend last 90 days up 0.45 on the 90 before (growing from 0.30)",
        "steady": "none of the rules apply",
        "steady2": "none of the rules apply",
        "steady3": "none of the rules apply",
    }


def test_first_matching_rule_wins():
    features = frame(
        new_and_inactive={"tenure_days": 30.0, "recency_days": 400.0},
        new_never_active={"tenure_days": 30.0, "recency_days": np.nan},
        dormant_and_overdue={"recency_days": 200.0, "days_since_last_purchase": 200.0},
        at_risk_and_growing={"recency_days": 70.0, "spend_trend": 1.0},
    )
    assert stages(features) == {
        "new_and_inactive": "new",
        "new_never_active": "new",
        "dormant_and_overdue": "dormant",
        "at_risk_and_growing": "at_risk",
    }


def test_thresholds_are_inclusive_where_the_rules_say_at_least_or_at_most():
    features = frame(
        new_edge={"tenure_days": 90.0},
        not_new={"tenure_days": 91.0},
        dormant_edge={"recency_days": 180.0},
        at_risk_edge={"recency_days": 60.0},
        growing_edge={"spend_trend": 0.3},
        not_growing={"spend_trend": 0.29},
    )
    assert stages(features) == {
        "new_edge": "new",
        "not_new": "steady",
        "dormant_edge": "dormant",
        "at_risk_edge": "at_risk",
        "growing_edge": "growing",
        "not_growing": "steady",
    }


def test_never_active_customer_is_dormant_with_its_own_reason():
    features = frame(never={"recency_days": np.nan, "days_since_last_purchase": np.nan})
    result = assign_lifecycle(features, RULES)
    assert result["lifecycle_stage"].tolist() == ["dormant"]
    assert result["lifecycle_reason"].tolist() == ["no recorded activity (dormant)"]


def test_overdue_on_their_own_rhythm_is_at_risk_even_if_recently_active_elsewhere():
    features = frame(
        # Opened an email 35 days ago, but last ordered 143 days ago against a usual 40-day gap.
        overdue={"recency_days": 35.0, "days_since_last_purchase": 143.0, "interpurchase_mean_days": 40.0},
        # Exactly 2.5x is not above 2.5x.
        on_the_edge={
            "recency_days": 35.0,
            "days_since_last_purchase": 100.0,
            "interpurchase_mean_days": 40.0,
        },
        # Fewer than 2 orders: no usual gap, so no overdue test.
        one_order={
            "recency_days": 35.0,
            "days_since_last_purchase": 143.0,
            "interpurchase_mean_days": np.nan,
        },
        # Orders all on one day: a zero gap is no rhythm.
        same_day={"recency_days": 35.0, "days_since_last_purchase": 40.0, "interpurchase_mean_days": 0.0},
    )
    assert stages(features) == {
        "overdue": "at_risk",
        "on_the_edge": "steady",
        "one_order": "steady",
        "same_day": "steady",
    }
    assert reasons(features)["overdue"] == (
        "143 days since the last order, 3.6x their usual 40-day gap (at risk above 2.5x)"
    )


def test_recency_wording_is_used_when_both_at_risk_variants_hold():
    features = frame(
        both={"recency_days": 90.0, "days_since_last_purchase": 90.0, "interpurchase_mean_days": 10.0}
    )
    assert reasons(features) == {"both": "no activity for 90 days (at risk from 60)"}


def test_champion_quantiles_ignore_customers_without_orders():
    # Ten recent zero spenders: over everyone the 80th percentile of spend and orders would be 0 and all of
    # them would be champions; over buyers only, just the big buyer is.
    zero = {"monetary_365d": 0.0, "frequency_365d": 0.0, "recency_days": 3.0, "spend_trend": 0.0}
    features = frame(
        **{f"zero{i}": zero for i in range(10)},
        small={"monetary_365d": 100.0, "frequency_365d": 2.0},
        big={"monetary_365d": 4210.0, "frequency_365d": 12.0, "recency_days": 5.0},
    )
    result = stages(features)
    assert result["big"] == "champion"
    assert result["small"] == "steady"
    assert {result[f"zero{i}"] for i in range(10)} == {"steady"}


def test_champion_needs_both_value_and_orders_and_recent_activity():
    features = frame(
        champion={"monetary_365d": 5000.0, "frequency_365d": 12.0, "recency_days": 5.0},
        big_spender_few_orders={"monetary_365d": 5000.0, "frequency_365d": 2.0, "recency_days": 5.0},
        many_orders_small_spend={"monetary_365d": 100.0, "frequency_365d": 12.0, "recency_days": 5.0},
        top_but_quiet={"monetary_365d": 5000.0, "frequency_365d": 12.0, "recency_days": 45.0},
        a={},
        b={},
        c={},
        d={},
    )
    assert stages(features) == {
        "champion": "champion",
        "big_spender_few_orders": "steady",
        "many_orders_small_spend": "steady",
        "top_but_quiet": "steady",
        "a": "steady",
        "b": "steady",
        "c": "steady",
        "d": "steady",
    }


def test_nobody_is_a_champion_when_nobody_ordered():
    zero = {"monetary_365d": 0.0, "frequency_365d": 0.0, "recency_days": 3.0}
    features = frame(a=zero, b=zero, c=zero)
    assert set(stages(features).values()) == {"steady"}


def test_custom_thresholds_change_the_outcomes():
    features = frame(
        tenure_45={"tenure_days": 45.0},
        quiet_120={"recency_days": 120.0, "days_since_last_purchase": 120.0},
        quiet_55={"recency_days": 55.0, "days_since_last_purchase": 55.0},
        overdue_2x={"days_since_last_purchase": 80.0, "interpurchase_mean_days": 40.0},
        trend_045={"spend_trend": 0.45},
        champion={"monetary_365d": 5000.0, "frequency_365d": 12.0, "recency_days": 25.0},
    )
    keys = ["tenure_45", "quiet_120", "quiet_55", "overdue_2x", "trend_045", "champion"]
    default = stages(features)
    assert [default[k] for k in keys] == ["new", "at_risk", "steady", "steady", "growing", "champion"]
    custom = LifecycleConfig(
        new_max_tenure_days=30,
        dormant_min_recency_days=100,
        at_risk_min_recency_days=50,
        at_risk_overdue_factor=1.5,
        champion_max_recency_days=20,
        growing_min_spend_trend=0.5,
    )
    changed = stages(features, custom)
    assert [changed[k] for k in keys] == ["steady", "dormant", "at_risk", "at_risk", "steady", "steady"]
    text = reasons(features, custom)
    assert text["quiet_120"] == "no activity for 120 days (dormant from 100)"
    assert text["quiet_55"] == "no activity for 55 days (at risk from 50)"
    assert (
        text["overdue_2x"] == "80 days since the last order, 2.0x their usual 40-day gap (at risk above 1.5x)"
    )


def test_champion_quantile_is_configurable_and_named_in_the_reason():
    features = frame(
        **{
            f"buyer{i}": {
                "monetary_365d": 100.0 * (i + 1),
                "frequency_365d": float(i + 1),
                "recency_days": 10.0,
            }
            for i in range(10)
        }
    )
    default = stages(features)
    loose = stages(features, LifecycleConfig(champion_min_value_quantile=0.5))
    assert sum(s == "champion" for s in default.values()) == 2
    assert sum(s == "champion" for s in loose.values()) == 5
    assert reasons(features, LifecycleConfig(champion_min_value_quantile=0.5))["buyer9"] == (
        "365-day spend 1,000 and 10 orders, both in the top 50%, active 10 days ago (champion)"
    )


def test_works_without_any_order_columns():
    features = pd.DataFrame(
        {
            "customer_key": ["new", "dormant", "at_risk", "steady", "never"],
            "tenure_days": [20.0, 500.0, 500.0, 500.0, 500.0],
            "recency_days": [5.0, 300.0, 90.0, 5.0, np.nan],
        }
    )
    assert stages(features) == {
        "new": "new",
        "dormant": "dormant",
        "at_risk": "at_risk",
        "steady": "steady",
        "never": "dormant",
    }


def test_works_with_only_the_required_columns():
    features = pd.DataFrame({"customer_key": ["a", "b"], "tenure_days": [10.0, np.nan]})
    assert stages(features) == {"a": "new", "b": "steady"}


@pytest.mark.parametrize("column", ["customer_key", "tenure_days"])
def test_a_missing_required_column_is_named(column):
    with pytest.raises(ValueError, match=column):
        assign_lifecycle(population().drop(columns=column), RULES)


def test_empty_population():
    result = assign_lifecycle(population().iloc[:0], RULES)
    assert result.empty
    assert list(result.columns) == ["customer_key", "lifecycle_stage", "lifecycle_reason"]
    assert lifecycle_counts(result) == dict.fromkeys(LIFECYCLE_STAGES, 0)


def test_singular_units_read_naturally():
    assert reasons(frame(a={"tenure_days": 1.0})) == {"a": "customer for 1 day (new up to 90)"}
    # Alone, the customer is their own 80th percentile.
    only_buyer = frame(a={"monetary_365d": 50000.0, "frequency_365d": 1.0, "recency_days": 1.0})
    assert reasons(only_buyer) == {
        "a": "365-day spend 50,000 and 1 order, both in the top 20%, active 1 day ago (champion)"
    }


def test_days_are_rounded_not_floored():
    # Days run from the end of as_of, so a signup 45 days back is 44.99999 days ago.
    assert reasons(frame(a={"tenure_days": 44.99999})) == {"a": "customer for 45 days (new up to 90)"}


def test_lifecycle_counts_lists_every_stage_in_order_including_zeros():
    counts = lifecycle_counts(
        assign_lifecycle(frame(a={"tenure_days": 10.0}, b={"tenure_days": 20.0}, c={}), RULES)
    )
    assert list(counts) == list(LIFECYCLE_STAGES)
    assert counts == {"new": 2, "dormant": 0, "at_risk": 0, "champion": 0, "growing": 0, "steady": 1}
    assert all(type(n) is int for n in counts.values())
