"""Retention uplift: treatment against the random hold-out, with Newcombe intervals, Bloom and per campaign."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from seg_pipeline.outcomes.uplift import (
    ESTIMANDS,
    GROUPS,
    NO_EXTRACT_NOTE,
    UPLIFT_COLUMNS,
    newcombe_interval,
    uplift_table,
)


def _arm(tier: str, arm: str, n: int, churned: int, value: float = 100.0, start: int = 0) -> pd.DataFrame:
    """n customers of one tier and arm, the first `churned` of them churned, keys tier-arm-i."""
    return pd.DataFrame({
        "customer_key": [f"{tier}-{arm}-{i}" for i in range(start, start + n)],
        "risk_tier": tier, "arm": arm,
        "churned": [1] * churned + [0] * (n - churned),
        "value_365d": value,
    })  # fmt: skip


def _customers(*arms: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(arms, ignore_index=True)


def _row(table: pd.DataFrame, group: str, estimand: str = "intention_to_treat", campaign: str = "(all)"):
    found = table[
        (table["group"] == group) & (table["estimand"] == estimand) & (table["campaign"] == campaign)
    ]
    assert len(found) == 1, (group, estimand, campaign)
    return found.iloc[0]


def _contacts(keys, campaign: str = "call", channel: str = "phone") -> pd.DataFrame:
    return pd.DataFrame({"customer_key": list(keys), "campaign": campaign, "channel": channel})


def test_newcombe_1998_example_known_answer():
    # Newcombe (1998) Stat Med 17:873, example (a): 56/70 - 48/80 = 0.2000, method 10 interval 0.0524 to 0.3339.
    # Uplift is control churn - treatment churn, so the control arm has 56/70 churned and the treatment 48/80.
    customers = _customers(
        _arm("personal_outreach", "control", 70, 56), _arm("personal_outreach", "treatment", 80, 48)
    )
    row = _row(uplift_table(customers, None), "personal_outreach")
    assert row["control_churn_rate"] == pytest.approx(0.8)
    assert row["treatment_churn_rate"] == pytest.approx(0.6)
    assert row["uplift"] == pytest.approx(0.2)
    assert round(row["ci_low"], 4) == 0.0524
    assert round(row["ci_high"], 4) == 0.3339
    assert "Newcombe" in row["ci_method"] and "95%" in row["ci_method"]
    # reversed orientation (treatment churning more) flips the sign and the interval
    flipped = _customers(_arm("automated", "control", 80, 48), _arm("automated", "treatment", 70, 56))
    row = _row(uplift_table(flipped, None), "automated")
    assert row["uplift"] == pytest.approx(-0.2)
    assert (round(row["ci_low"], 4), round(row["ci_high"], 4)) == (-0.3339, -0.0524)


def test_confidence_level_widens_the_interval():
    customers = _customers(_arm("automated", "control", 70, 56), _arm("automated", "treatment", 80, 48))
    at_95 = _row(uplift_table(customers, None), "automated")
    at_99 = _row(uplift_table(customers, None, confidence=0.99), "automated")
    assert at_99["ci_low"] < at_95["ci_low"] and at_99["ci_high"] > at_95["ci_high"]
    assert "99%" in at_99["ci_method"]


def test_newcombe_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(20261207)
    n_treatment, n_control, p_treatment, p_control = 300, 60, 0.30, 0.40
    churned_t = rng.binomial(n_treatment, p_treatment, size=2000)
    churned_c = rng.binomial(n_control, p_control, size=2000)
    truth = p_control - p_treatment
    covered = 0
    for k_t, k_c in zip(churned_t, churned_c, strict=True):
        low, high = newcombe_interval(int(k_c), n_control, int(k_t), n_treatment, 0.95)
        covered += low <= truth <= high
    assert 0.93 <= covered / 2000 <= 0.97


def test_table_uses_the_same_interval_as_newcombe_interval():
    customers = _customers(_arm("automated", "control", 60, 25), _arm("automated", "treatment", 300, 90))
    row = _row(uplift_table(customers, None), "automated")
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(newcombe_interval(25, 60, 90, 300))


def test_intention_to_treat_without_contacts():
    customers = _customers(
        _arm("semi_automated", "treatment", 100, 20), _arm("semi_automated", "control", 50, 15)
    )
    table = uplift_table(customers, None)
    assert list(table.columns) == list(UPLIFT_COLUMNS)
    assert set(table["estimand"]) == {"intention_to_treat"}
    assert list(table["group"]) == list(GROUPS)
    row = _row(table, "semi_automated")
    assert (row["treatment_customers"], row["treatment_churned"]) == (100, 20)
    assert (row["control_customers"], row["control_churned"]) == (50, 15)
    assert row["uplift"] == pytest.approx(0.30 - 0.20)
    assert row["customers_saved"] == pytest.approx(0.1 * 100)
    assert row["contact_share"] == 1.0
    assert pd.isna(row["control_contacted"])
    assert row["note"] == NO_EXTRACT_NOTE
    assert row["ci_low"] < row["uplift"] < row["ci_high"]


def test_bloom_divides_the_intention_to_treat_uplift_by_the_contact_share():
    treatment = _arm("personal_outreach", "treatment", 200, 40)  # 20 % churned
    control = _arm("personal_outreach", "control", 100, 30)  # 30 % churned
    reached = treatment["customer_key"].iloc[::2]  # half the treatment arm, churned and not alike
    table = uplift_table(_customers(treatment, control), _contacts(reached))
    itt = _row(table, "personal_outreach")
    bloom = _row(table, "personal_outreach", "effect_on_contacted")
    assert itt["contact_share"] == pytest.approx(0.5) and itt["control_contacted"] == 0
    assert itt["uplift"] == pytest.approx(0.1)
    assert "no interventions extract" not in itt["note"]
    assert bloom["contact_share"] == pytest.approx(0.5)
    assert bloom["uplift"] == pytest.approx(0.1 / 0.5)
    assert bloom["ci_low"] == pytest.approx(itt["ci_low"] / 0.5)
    assert bloom["ci_high"] == pytest.approx(itt["ci_high"] / 0.5)
    assert "Bloom" in bloom["note"] and "contact share as known" in bloom["note"]
    assert "contaminated" not in bloom["note"]
    # the customers saved are the ITT's: the effect on the contacted times the contacted treatment customers
    assert bloom["customers_saved"] == pytest.approx(itt["customers_saved"]) == pytest.approx(0.2 * 100)


def test_contaminated_control_arm_is_counted_subtracted_and_named():
    treatment = _arm("semi_automated", "treatment", 100, 20)
    control = _arm("semi_automated", "control", 100, 40)
    keys = [*treatment["customer_key"].iloc[:80], *control["customer_key"].iloc[:20]]
    table = uplift_table(_customers(treatment, control), _contacts(keys))
    itt = _row(table, "semi_automated")
    bloom = _row(table, "semi_automated", "effect_on_contacted")
    assert itt["control_contacted"] == 20 and bloom["control_contacted"] == 20
    assert "contaminated" in itt["note"] and "contaminated" in bloom["note"]
    # (0.40 - 0.20) / (0.80 - 0.20)
    assert bloom["uplift"] == pytest.approx(0.2 / 0.6)
    assert bloom["ci_high"] == pytest.approx(itt["ci_high"] / 0.6)


def test_no_contact_in_a_group_leaves_the_effect_on_contacted_unidentified():
    customers = _customers(_arm("automated", "treatment", 50, 10), _arm("automated", "control", 50, 20))
    table = uplift_table(customers, _contacts([], campaign="call"))
    bloom = _row(table, "automated", "effect_on_contacted")
    assert bloom["contact_share"] == 0.0
    assert math.isnan(bloom["uplift"]) and math.isnan(bloom["ci_low"]) and bloom["ci_method"] == ""
    assert "no treatment customer was contacted" in bloom["note"]
    assert _row(table, "automated")["uplift"] == pytest.approx(0.2)
    assert not (table["estimand"] == "contacted_vs_control").any()


def test_per_campaign_rows_compare_the_contacted_with_the_whole_control_arm():
    treatment = _arm("personal_outreach", "treatment", 100, 30)
    control = _arm("personal_outreach", "control", 40, 16)
    keys = treatment["customer_key"]
    contacts = pd.concat([
        _contacts(keys.iloc[:10], "winback_call"),  # 10 contacted, all churned
        _contacts(keys.iloc[50:90], "april_mail", "email"),  # 40 contacted, none churned
        _contacts(keys.iloc[50:60], "april_mail", "email"),  # contacted twice: counted once
        _contacts(control["customer_key"].iloc[:2], "april_mail", "email"),
    ])  # fmt: skip
    table = uplift_table(_customers(treatment, control), contacts)
    group = table[table["group"] == "personal_outreach"]
    assert list(zip(group["estimand"], group["campaign"], strict=True)) == [
        ("intention_to_treat", "(all)"), ("effect_on_contacted", "(all)"),
        ("contacted_vs_control", "april_mail"), ("contacted_vs_control", "winback_call"),
    ]  # fmt: skip
    mail = _row(table, "personal_outreach", "contacted_vs_control", "april_mail")
    assert (mail["treatment_customers"], mail["treatment_churned"]) == (40, 0)
    assert (mail["control_customers"], mail["control_churned"]) == (40, 16)
    assert mail["contact_share"] == pytest.approx(0.4)
    assert mail["control_contacted"] == 2
    assert mail["uplift"] == pytest.approx(0.4)
    assert mail["ci_low"] < 0.4 < mail["ci_high"]
    assert mail["customers_saved"] == pytest.approx(0.4 * 40)
    assert (
        "not randomized" in mail["note"] and "descriptive" in mail["note"] and "contaminated" in mail["note"]
    )
    call = _row(table, "personal_outreach", "contacted_vs_control", "winback_call")
    assert call["uplift"] == pytest.approx(0.4 - 1.0)
    assert call["control_contacted"] == 0 and "contaminated" not in call["note"]
    # campaigns appear only in the groups whose customers they reached
    assert not ((table["group"] == "automated") & (table["estimand"] == "contacted_vs_control")).any()
    assert (
        len(table[(table["group"] == "retention_list") & (table["estimand"] == "contacted_vs_control")]) == 2
    )


def test_empty_control_arm_keeps_the_row_with_nan_and_a_note():
    customers = _customers(_arm("automated", "treatment", 30, 6), _arm("semi_automated", "control", 10, 3))
    table = uplift_table(customers, None)
    row = _row(table, "automated")
    assert (row["treatment_customers"], row["treatment_churned"], row["control_customers"]) == (30, 6, 0)
    assert row["treatment_churn_rate"] == pytest.approx(0.2)
    assert math.isnan(row["control_churn_rate"]) and math.isnan(row["uplift"])
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"]) and math.isnan(row["customers_saved"])
    assert "control arm is empty" in row["note"]
    assert "treatment arm is empty" in _row(table, "semi_automated")["note"]
    # the pooled group has both arms
    assert _row(table, "all_action_tiers")["uplift"] == pytest.approx(0.3 - 0.2)


def test_arms_below_min_arm_size_are_not_estimated():
    customers = _customers(_arm("automated", "treatment", 30, 6), _arm("automated", "control", 4, 1))
    contacts = _contacts(customers["customer_key"].iloc[:3], "mail")
    table = uplift_table(customers, contacts, min_arm_size=5)
    for estimand, campaign in (("intention_to_treat", "(all)"), ("effect_on_contacted", "(all)"),
                               ("contacted_vs_control", "mail")):  # fmt: skip
        row = _row(table, "automated", estimand, campaign)
        assert math.isnan(row["uplift"]) and row["control_customers"] == 4
        assert "fewer than min_arm_size=5" in row["note"]
    assert "group of treatment customers it contacted has 3" in _row(table, "automated", "contacted_vs_control",
                                                                      "mail")["note"]  # fmt: skip
    assert _row(uplift_table(customers, contacts, min_arm_size=4), "automated")["uplift"] == pytest.approx(
        0.05
    )


def test_empty_input_gives_every_group_without_raising():
    customers = _arm("automated", "treatment", 0, 0)
    table = uplift_table(customers, _contacts(["nobody"]))
    assert list(table["group"]) == [g for g in GROUPS for _ in range(2)]
    assert table["uplift"].isna().all() and (table["treatment_customers"] == 0).all()


def test_revenue_retained_is_customers_saved_times_the_mean_value():
    treatment = _arm("semi_automated", "treatment", 10, 2, value=50.0)
    treatment.loc[0, "value_365d"] = 150.0  # mean of the treatment arm: (150 + 9 x 50) / 10 = 60
    treatment.loc[1, "value_365d"] = np.nan  # unknown values are left out of the mean: (150 + 8 x 50) / 9
    control = _arm("semi_automated", "control", 10, 4, value=1_000.0)  # the control's value plays no part
    row = _row(uplift_table(_customers(treatment, control), None), "semi_automated")
    assert row["uplift"] == pytest.approx(0.2)
    assert row["customers_saved"] == pytest.approx(2.0)
    assert row["revenue_retained"] == pytest.approx(2.0 * (150 + 8 * 50) / 9)
    # contacted rows value their saved customers at the mean of the contacted treatment customers
    table = uplift_table(_customers(treatment, control), _contacts(treatment["customer_key"].iloc[:5]))
    bloom = _row(table, "semi_automated", "effect_on_contacted")
    assert bloom["uplift"] == pytest.approx(0.2 / 0.5)
    assert bloom["customers_saved"] == pytest.approx(2.0)
    assert bloom["revenue_retained"] == pytest.approx(2.0 * (150 + 3 * 50) / 4)
    # without any value: NaN, the rest unchanged
    treatment["value_365d"] = np.nan
    row = _row(uplift_table(_customers(treatment, control), None), "semi_automated")
    assert row["customers_saved"] == pytest.approx(2.0) and math.isnan(row["revenue_retained"])


def test_retention_list_and_all_action_tiers_pool_their_tiers():
    customers = _customers(
        _arm("personal_outreach", "treatment", 20, 4), _arm("personal_outreach", "control", 10, 5),
        _arm("semi_automated", "treatment", 30, 9), _arm("semi_automated", "control", 10, 4),
        _arm("automated", "treatment", 50, 25), _arm("automated", "control", 20, 8),
    )  # fmt: skip
    table = uplift_table(customers, None)
    retention = _row(table, "retention_list")
    assert (retention["treatment_customers"], retention["treatment_churned"]) == (50, 13)
    assert (retention["control_customers"], retention["control_churned"]) == (20, 9)
    assert retention["uplift"] == pytest.approx(9 / 20 - 13 / 50)
    pooled = _row(table, "all_action_tiers")
    assert (pooled["treatment_customers"], pooled["treatment_churned"]) == (100, 38)
    assert (pooled["control_customers"], pooled["control_churned"]) == (40, 17)
    assert pooled["uplift"] == pytest.approx(17 / 40 - 38 / 100)
    assert pooled["customers_saved"] == pytest.approx((17 / 40 - 38 / 100) * 100)


def test_row_order_is_deterministic_whatever_the_input_order():
    customers = _customers(
        _arm("automated", "treatment", 40, 10), _arm("automated", "control", 20, 8),
        _arm("personal_outreach", "treatment", 40, 10), _arm("personal_outreach", "control", 20, 8),
    )  # fmt: skip
    keys = customers.loc[customers["arm"] == "treatment", "customer_key"]
    contacts = pd.concat([_contacts(keys.iloc[::3], "zeta"), _contacts(keys.iloc[1::3], "alpha")])
    table = uplift_table(customers, contacts)
    shuffled = uplift_table(customers.sample(frac=1, random_state=3), contacts.sample(frac=1, random_state=4))
    pd.testing.assert_frame_equal(table, shuffled)
    order = {estimand: i for i, estimand in enumerate(ESTIMANDS)}
    keys_in_order = [(GROUPS.index(g), order[e], c) for g, e, c in zip(table["group"], table["estimand"],
                                                                       table["campaign"], strict=True)]  # fmt: skip
    assert keys_in_order == sorted(keys_in_order)
    assert list(table.loc[table["group"] == "automated", "campaign"]) == ["(all)", "(all)", "alpha", "zeta"]


def test_booleans_and_contacts_of_other_customers_are_accepted():
    customers = _customers(_arm("automated", "treatment", 10, 2), _arm("automated", "control", 10, 4))
    customers["churned"] = customers["churned"].astype(bool)
    contacts = _contacts([*customers["customer_key"].iloc[:5], "no-action-customer"])
    contacts.loc[0, "campaign"] = None
    row = _row(uplift_table(customers, contacts), "automated")
    assert row["uplift"] == pytest.approx(0.2) and row["contact_share"] == pytest.approx(0.5)
    assert set(uplift_table(customers, contacts)["campaign"]) == {"(all)", "call", "(unknown campaign)"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c, k: (c.drop(columns="arm"), k), "lacks column"),
        (lambda c, k: (c.drop(columns="value_365d"), k), "lacks column"),
        (lambda c, k: (c, k.drop(columns="campaign")), "contacts lacks column"),
        (lambda c, k: (c.assign(arm="holdout"), k), "unknown arm"),
        (lambda c, k: (c.assign(risk_tier="no_action"), k), "unknown risk_tier"),
        (lambda c, k: (c.assign(churned=2), k), "churned must be 0 or 1"),
        (lambda c, k: (c.assign(churned=np.nan), k), "churned must be 0 or 1"),
        (lambda c, k: (c.assign(value_365d="a lot"), k), "value_365d must be numeric"),
        (lambda c, k: (pd.concat([c, c.iloc[:1]]), k), "one row per customer"),
        (lambda c, k: (c.to_dict(), k), "must be a pandas DataFrame"),
        (lambda c, k: (c, k["customer_key"]), "contacts must be a pandas DataFrame"),
    ],
)
def test_bad_input_raises_a_clear_value_error(change, message):
    customers = _customers(_arm("automated", "treatment", 10, 2), _arm("automated", "control", 10, 4))
    bad_customers, bad_contacts = change(customers, _contacts(customers["customer_key"].iloc[:3]))
    with pytest.raises(ValueError, match=message):
        uplift_table(bad_customers, bad_contacts)


@pytest.mark.parametrize(("options", "message"), [({"confidence": 1.0}, "confidence"),
                                                  ({"confidence": 0}, "confidence"),
                                                  ({"min_arm_size": 0}, "min_arm_size"),
                                                  ({"min_arm_size": 2.5}, "min_arm_size")])  # fmt: skip
def test_bad_options_raise(options, message):
    customers = _customers(_arm("automated", "treatment", 10, 2), _arm("automated", "control", 10, 4))
    with pytest.raises(ValueError, match=message):
        uplift_table(customers, None, **options)


def test_every_column_is_documented():
    assert all(isinstance(text, str) and text for text in UPLIFT_COLUMNS.values())
    assert len(UPLIFT_COLUMNS) == 18
