"""Action tiers: customers with marketing consent ranked by expected loss, each tier taking its capacity."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from seg_pipeline.churn.actions import (
    ACTION_TIERS,
    CONTROL,
    NO_ACTION,
    NO_CONSENT,
    TIERS,
    TREATMENT,
    action_plan,
    arm_draws,
    assign_arms,
    assign_tiers,
    control_period,
    marketing_consent,
    ranked_by,
)
from seg_pipeline.config import ActionsConfig, ControlGroupConfig, Settings, TierCapacity


def _customers(probability, value, consent):
    keys = [f"k{i}" for i in range(len(probability))]
    scores = pd.DataFrame({"customer_key": keys, "churn_probability": probability})
    return scores, pd.Series(value, index=keys, dtype="float64"), pd.Series(consent, index=keys)


def _config(personal, semi, automated, **extra) -> ActionsConfig:
    return ActionsConfig(personal_outreach={"customers": personal}, semi_automated={"customers": semi},
                         automated={"customers": automated}, **extra)  # fmt: skip


def test_customers_are_ranked_by_probability_times_value_and_tiers_take_their_capacity():
    # expected loss: 0.9*10=9, 0.2*1000=200, 0.5*100=50, 0.6*500=300, 0.1*20=2
    scores, value, consent = _customers([0.9, 0.2, 0.5, 0.6, 0.1], [10, 1000, 100, 500, 20], [True] * 5)
    tiers = assign_tiers(scores, value, consent, _config(1, 1, 2)).set_index("customer_key")
    assert tiers["action_rank"].tolist() == [4, 2, 3, 1, 5]
    assert tiers["risk_tier"].tolist() == ["automated", "semi_automated", "automated", "personal_outreach",
                                           NO_ACTION]  # fmt: skip
    np.testing.assert_allclose(tiers["expected_loss"], [9, 200, 50, 300, 2])
    assert tiers.loc["k3", "suggested_action"] == ActionsConfig().personal_outreach.suggested_action
    assert tiers.loc["k4", "suggested_action"] == ""


def test_customers_without_marketing_consent_are_never_in_an_action_tier_nor_ranked():
    scores, value, consent = _customers([0.9, 0.8, 0.1], [1000, 900, 10], [False, None, True])
    tiers = assign_tiers(scores, value, consent.astype("boolean"), _config(5, 5, 5))
    assert tiers["risk_tier"].tolist() == [NO_CONSENT, NO_CONSENT, "personal_outreach"]
    assert tiers["action_rank"].isna().tolist() == [True, True, False]
    # a customer the consent table does not know is not contactable either
    scores, value, consent = _customers([0.5, 0.5], [10, 10], [True, True])
    tiers = assign_tiers(scores, value, consent.iloc[:1], _config(5, 5, 5))
    assert tiers["risk_tier"].tolist() == ["personal_outreach", NO_CONSENT]


def test_customers_with_nothing_to_lose_are_no_action_whatever_the_capacity():
    scores, value, consent = _customers([0.99, 0.5, 0.4], [0, 100, np.nan], [True] * 3)
    tiers = assign_tiers(scores, value, consent, _config(10, 10, 10))
    assert tiers["risk_tier"].tolist() == [NO_ACTION, "personal_outreach", NO_ACTION]
    raised = assign_tiers(scores, value, consent, _config(10, 10, 10, min_expected_loss=60.0))
    assert raised["risk_tier"].tolist() == [NO_ACTION, NO_ACTION, NO_ACTION]


def test_without_any_revenue_the_list_is_ranked_by_probability():
    scores, value, consent = _customers([0.3, 0.9, 0.6], [np.nan] * 3, [True] * 3)
    tiers = assign_tiers(scores, value, consent, _config(1, 1, 0))
    assert tiers["action_rank"].tolist() == [3, 1, 2]
    assert tiers["risk_tier"].tolist() == [NO_ACTION, "personal_outreach", "semi_automated"]
    assert tiers["expected_loss"].isna().all() and ranked_by(tiers) == "probability"


def test_ties_are_broken_by_probability_then_key_so_reruns_agree():
    scores, value, consent = _customers([0.5, 0.25, 0.5, 0.5], [100, 200, 100, 100], [True] * 4)
    scores = scores.assign(customer_key=["b", "z", "a", "c"])
    value.index, consent.index = scores["customer_key"], scores["customer_key"]
    first = assign_tiers(scores, value, consent, _config(1, 1, 1))
    again = assign_tiers(scores.iloc[::-1], value, consent, _config(1, 1, 1)).set_index("customer_key")
    # all four lose 50: the higher probabilities first, among them by key
    assert first.set_index("customer_key")["action_rank"].to_dict() == {"a": 1, "b": 2, "c": 3, "z": 4}
    assert again["action_rank"].to_dict() == first.set_index("customer_key")["action_rank"].to_dict()


def test_capacities_by_count_share_and_budget():
    n = 1000
    assert TierCapacity(customers=7).size(n) == 7
    assert TierCapacity(share=0.015).size(n) == 15
    assert TierCapacity(budget=1000, cost_per_contact=30).size(n) == 33  # whole contacts the budget pays
    assert TierCapacity(budget=1000, cost_per_contact=30).rule() == "budget 1,000 at 30.00 per contact"
    defaults = ActionsConfig()
    assert [t.size(20_000) for t in defaults.tiers().values()] == [200, 800, 3000]


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({}, "exactly one of customers, share or budget (given: none)"),
        ({"customers": 5, "share": 0.1}, "given: customers, share"),
        ({"budget": 100}, "budget needs cost_per_contact"),
        ({"budget": 100, "cost_per_contact": 0}, "budget needs cost_per_contact"),
    ],
)
def test_a_tier_capacity_says_what_is_wrong(given, words):
    with pytest.raises(ValidationError, match=words.replace("(", r"\(").replace(")", r"\)")):
        TierCapacity(**given)


def test_a_tier_given_only_its_size_keeps_its_default_action_and_save_rate():
    config = ActionsConfig(personal_outreach={"customers": 50})
    default = ActionsConfig().personal_outreach
    assert config.personal_outreach.save_rate == default.save_rate
    assert config.personal_outreach.suggested_action == default.suggested_action


def test_the_old_score_cut_offs_say_where_they_went():
    for key in ("tiers", "high_value_quantile", "retention_min_risk_score"):
        with pytest.raises(ValidationError, match=f"churn.{key} was replaced by actions"):
            Settings(churn={key: {} if key == "tiers" else 0.5})


def test_the_action_plan_adds_up_per_tier():
    scores, value, consent = _customers([0.5, 0.4, 0.2, 0.9, 0.1], [100, 100, 100, 100, 0],
                                        [True, True, True, False, True])  # fmt: skip
    config = ActionsConfig(
        personal_outreach={"customers": 1, "save_rate": 0.5, "cost_per_contact": 20},
        semi_automated={"customers": 1, "save_rate": 0.2},
        automated={"share": 0.2, "save_rate": 0.0},
    )
    tiers = assign_tiers(scores, value, consent, config)
    plan = action_plan(tiers, scores["churn_probability"], config).set_index("tier")
    assert plan.index.tolist() == list(TIERS)
    assert plan["customers"].tolist() == [1, 1, 1, 1, 1]
    assert plan["capacity"].tolist()[:3] == [1, 1, 1] and plan["capacity"].isna().tolist()[3:] == [True, True]
    assert plan.loc["personal_outreach", "expected_loss"] == pytest.approx(50)
    assert plan.loc["personal_outreach", "expected_customers_saved"] == pytest.approx(0.25)
    assert plan.loc["personal_outreach", "expected_revenue_saved"] == pytest.approx(25)
    assert plan.loc["personal_outreach", "contact_cost"] == pytest.approx(20)
    assert np.isnan(plan.loc["semi_automated", "contact_cost"])  # no cost given
    assert plan.loc["semi_automated", "lowest_expected_loss"] == pytest.approx(40)
    assert plan.loc[NO_CONSENT, "value_365d"] == pytest.approx(100)
    assert np.isnan(plan.loc[NO_ACTION, "save_rate"]) and plan.loc[NO_ACTION, "suggested_action"] == ""
    assert np.isnan(plan.loc[NO_ACTION, "lowest_expected_loss"])  # a cut-off only where a capacity cuts


def test_marketing_consent_the_crm_does_not_record_follows_the_configured_default():
    recorded = pd.Series([True, False, None, pd.NA], dtype="object")
    assert marketing_consent(recorded, False).tolist() == [True, False, False, False]
    assert marketing_consent(recorded, True).tolist() == [True, False, True, True]
    absent = pd.Series([None, None], dtype="boolean")  # a CRM without the column: all missing
    assert not marketing_consent(absent, False).any() and marketing_consent(absent, True).all()


KEY = b"test-pseudonymization-key"


def _population(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    keys = [f"{i:064x}" for i in rng.integers(0, 2**62, n)]
    scores = pd.DataFrame({"customer_key": keys, "churn_probability": rng.uniform(0.05, 0.95, n)})
    value = pd.Series(rng.gamma(2.0, 100.0, n), index=keys)
    return scores, value, pd.Series(True, index=keys)


@pytest.mark.parametrize(
    ("day", "period", "label"),
    [(dt.date(2026, 12, 7), "week", "2026-W50"), (dt.date(2027, 1, 1), "week", "2026-W53"),
     (dt.date(2026, 12, 7), "month", "2026-12"), (dt.date(2026, 11, 30), "quarter", "2026-Q4"),
     (dt.date(2026, 1, 1), "quarter", "2026-Q1")],
)  # fmt: skip
def test_the_control_period_of_an_as_of(day, period, label):
    assert control_period(day, period) == label


def test_a_share_of_every_action_tier_is_held_out_and_nobody_else_has_an_arm():
    scores, value, consent = _population(20_000)
    config = ActionsConfig(personal_outreach={"share": 0.05}, semi_automated={"share": 0.15},
                           automated={"share": 0.3}, control={"share": 0.1})  # fmt: skip
    tiers = assign_arms(
        assign_tiers(scores, value, consent, config), KEY, config.control, dt.date(2026, 12, 7)
    )
    assert set(tiers["control_period"]) == {"2026-12"}
    acting = tiers["risk_tier"].isin(ACTION_TIERS)
    assert (
        tiers.loc[~acting, "arm"].isna().all() and tiers.loc[acting, "arm"].isin([TREATMENT, CONTROL]).all()
    )
    for tier in ACTION_TIERS:  # binomial: 1,000 to 6,000 customers per tier, 4 standard deviations
        members = tiers[tiers["risk_tier"] == tier]
        share = members["arm"].eq(CONTROL).mean()
        assert abs(share - 0.1) < 4 * np.sqrt(0.09 / len(members)), (tier, share)
    plan = action_plan(tiers, scores["churn_probability"], config).set_index("tier")
    held = tiers[acting].groupby("risk_tier")["arm"].apply(lambda a: int(a.eq(CONTROL).sum()))
    for tier in ACTION_TIERS:  # contacts (and what they are expected to save) are the treatment arm only
        assert plan.loc[tier, "control_customers"] == held[tier]
        assert plan.loc[tier, "contacts"] == plan.loc[tier, "customers"] - held[tier]
        treated = tiers[(tiers["risk_tier"] == tier) & (tiers["arm"] == TREATMENT)]
        expected = scores.set_index("customer_key").loc[treated["customer_key"], "churn_probability"].sum()
        assert plan.loc[tier, "expected_customers_saved"] == pytest.approx(
            expected * config.tiers()[tier].save_rate
        )


def test_arms_hold_for_a_period_and_are_drawn_again_in_the_next():
    scores, value, consent = _population(5_000, seed=1)
    config = ActionsConfig(automated={"share": 1.0}, control={"share": 0.2, "period": "month"})
    tiers = assign_tiers(scores, value, consent, config)
    early, late = (assign_arms(tiers, KEY, config.control, day).set_index("customer_key")["arm"]
                   for day in (dt.date(2026, 12, 1), dt.date(2026, 12, 31)))  # fmt: skip
    assert early.equals(late)  # the same month: every run agrees
    # and whatever else changed: a customer's arm does not depend on the rest of the list
    alone = assign_arms(tiers.iloc[:100], KEY, config.control, dt.date(2026, 12, 15)).set_index(
        "customer_key"
    )
    assert alone["arm"].equals(early.iloc[:100])
    january = assign_arms(tiers, KEY, config.control, dt.date(2027, 1, 2)).set_index("customer_key")["arm"]
    moved = (january != early).mean()
    assert 0.25 < moved < 0.39  # independent draws: 2 x 0.2 x 0.8 = 0.32 change arm
    renamed = ControlGroupConfig(share=0.2, campaign="winter-winback")
    other = assign_arms(tiers, KEY, renamed, dt.date(2026, 12, 1)).set_index("customer_key")["arm"]
    assert 0.25 < (other != early).mean() < 0.39  # a new campaign name draws again
    assert not (
        arm_draws(scores["customer_key"], b"another key", "retention", "2026-12")
        == arm_draws(scores["customer_key"], KEY, "retention", "2026-12")
    ).any()


def test_no_control_group_when_the_share_is_zero():
    scores, value, consent = _population(1_000, seed=2)
    config = ActionsConfig(control={"share": 0.0})
    tiers = assign_arms(
        assign_tiers(scores, value, consent, config), KEY, config.control, dt.date(2026, 12, 7)
    )
    assert not tiers["arm"].eq(CONTROL).any()
