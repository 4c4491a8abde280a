"""What the retention contacts achieved: churn of the treatment arm against the random hold-out (control arm).

Each customer of the action tiers is assigned an arm, "treatment" or "control", by a stable random hash
(churn/actions.py ``assign_arms``); controls are not put on the contact lists. Once the churn horizon has
passed, ``uplift_table`` compares realized churn between the arms, per action tier, for the retention list
(personal_outreach + semi_automated) and for all action tiers together. Uplift is always the control's churn
rate minus the treatment's: positive means fewer customers churned where the contact was made.

Three estimands, from most to least trustworthy:

- ``intention_to_treat`` (ITT): churn of everyone *assigned* to treatment against everyone held out. The arms
  are randomized, so this is an unbiased estimate of what assigning a customer to the contact programme
  achieves, whether or not the contact reached them. Trust it first. It is diluted toward zero by treatment
  customers who were never reached and by controls who were contacted anyway (a contaminated control arm).
- ``effect_on_contacted``: Bloom's (1984) estimator for non-compliance, ITT / (contact share in treatment -
  contact share in control), i.e. the Wald instrumental-variable estimate with the arm as the instrument. With
  no contacted controls (one-sided non-compliance) it is the effect on the contacted customers; with some it
  is the effect on those contacted *because of* their assignment. It relies on the arm changing churn only
  through the contact and on no customer being contacted only when held out. Its interval is the ITT interval
  divided by the share difference, treating the shares as known, so it is somewhat too narrow on small arms;
  it is unstable when the share difference is small (few reached, or a heavily contaminated control).
- ``contacted_vs_control`` (per campaign): churn of the treatment customers a campaign reached against the
  whole control arm. Who is reached (answers the phone, opens the e-mail) is not random, and reachable
  customers churn less anyway, so this row is descriptive, not a causal effect: use it to compare campaigns
  with one another, not to claim what a campaign saved.

Intervals are Newcombe's (1998) hybrid score intervals for a difference of proportions (his method 10: Wilson
score intervals of each rate combined; statsmodels ``confint_proportions_2indep(method="newcomb")``), which keep
close to their nominal coverage on small arms and rates near 0 or 1, where the Wald interval does not.

Pure pandas/numpy: no Dagster, no I/O. Small or empty arms never raise: their row is kept with the counts,
NaN estimates and a note saying why; malformed input (missing columns, unknown tiers or arms, churned not 0/1)
raises ``ValueError``.
"""

from __future__ import annotations

import math
import numbers

import pandas as pd
from statsmodels.stats.proportion import confint_proportions_2indep

from seg_pipeline.churn.actions import ACTION_TIERS, RETENTION_TIERS

ARMS = ("treatment", "control")
GROUPS = (*ACTION_TIERS, "retention_list", "all_action_tiers")
GROUP_TIERS = {**{tier: (tier,) for tier in ACTION_TIERS}, "retention_list": RETENTION_TIERS,
               "all_action_tiers": ACTION_TIERS}  # fmt: skip
ESTIMANDS = ("intention_to_treat", "effect_on_contacted", "contacted_vs_control")
ALL_CAMPAIGNS = "(all)"
UNKNOWN_CAMPAIGN = "(unknown campaign)"
CUSTOMER_COLUMNS = ("customer_key", "risk_tier", "arm", "churned", "value_365d")
# channel is part of the interventions extract but no estimate here depends on it
CONTACT_COLUMNS = ("customer_key", "campaign")
# below this difference of contact shares the effect on the contacted is flagged unstable (a weak instrument)
WEAK_CONTACT_DIFFERENCE = 0.1
NO_EXTRACT_NOTE = "intention-to-treat: no interventions extract, treatment = assigned"

UPLIFT_COLUMNS = {
    "group": "an action tier, 'retention_list' (personal_outreach + semi_automated) or 'all_action_tiers'",
    "campaign": "the campaign of a contacted_vs_control row; '(all)' for the arm-level estimands",
    "estimand": "intention_to_treat (arm against arm, randomized), effect_on_contacted (Bloom 1984: ITT divided "
    "by the contact-share difference) or contacted_vs_control (treatment customers a campaign reached against the "
    "whole control arm; descriptive, not randomized)",
    "treatment_customers": "customers on the treatment side: the treatment arm, or for contacted_vs_control the "
    "treatment customers the campaign contacted",
    "treatment_churned": "of treatment_customers, those who churned within the horizon",
    "treatment_churn_rate": "treatment_churned / treatment_customers (NaN when there are none)",
    "control_customers": "customers of the control arm (the random hold-out)",
    "control_churned": "of control_customers, those who churned within the horizon",
    "control_churn_rate": "control_churned / control_customers (NaN when there are none)",
    "contact_share": "share of the treatment arm contacted (by any campaign, or by the row's campaign); 1.0 "
    "assumed without an interventions extract",
    "control_contacted": "control customers contacted all the same (by any campaign, or by the row's campaign): "
    "a contaminated control arm; empty without an interventions extract",
    "uplift": "control_churn_rate - treatment_churn_rate (effect_on_contacted: divided by the contact-share "
    "difference); positive = fewer churned with the contact; NaN when an arm is empty or below min_arm_size",
    "ci_low": "lower end of the confidence interval of uplift",
    "ci_high": "upper end of the confidence interval of uplift",
    "ci_method": "how the interval was computed (empty when no uplift was estimated)",
    "customers_saved": "uplift x the customers it applies to: treatment_customers (intention_to_treat, "
    "contacted_vs_control) or the treatment customers contacted because of the assignment, treatment_customers x "
    "(contact share in treatment - in control) (effect_on_contacted, equal to the ITT's number)",
    "revenue_retained": "customers_saved x mean value_365d (known values only) of the treatment arm "
    "(intention_to_treat) or of its contacted customers (effect_on_contacted, contacted_vs_control); NaN "
    "without values",
    "note": "why an estimate is missing, what an estimand assumes, and contamination of the control arm",
}

_COUNT_COLUMNS = ("treatment_customers", "treatment_churned", "control_customers", "control_churned",
                  "control_contacted")  # fmt: skip
_FLOAT_COLUMNS = ("treatment_churn_rate", "control_churn_rate", "contact_share", "uplift", "ci_low", "ci_high",
                  "customers_saved", "revenue_retained")  # fmt: skip
_NAN = float("nan")


def uplift_table(customers: pd.DataFrame, contacts: pd.DataFrame | None, *, confidence: float = 0.95,
                 min_arm_size: int = 1) -> pd.DataFrame:  # fmt: skip
    """One row per group and estimand (and campaign), columns and meanings as in ``UPLIFT_COLUMNS``.

    ``customers``: one row per customer of the action tiers, with customer_key, risk_tier, arm ("treatment" or
    "control"), churned (0/1) and value_365d (float, may be NaN). ``contacts``: None when there is no
    interventions extract (only intention-to-treat rows, the treatment arm taken as all contacted), or one row
    per contact within the horizon window with customer_key and campaign (channel may be there, unused).
    Contacts of customers not in ``customers`` (other tiers) are ignored; a customer contacted several times
    counts once. Rows: groups in ``GROUPS`` order, then estimand in ``ESTIMANDS`` order, then campaign by name.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")
    if isinstance(min_arm_size, bool) or not isinstance(min_arm_size, numbers.Integral) or min_arm_size < 1:
        raise ValueError(f"min_arm_size must be an integer of at least 1, got {min_arm_size!r}")
    base = _checked_customers(customers)
    pairs = None if contacts is None else _checked_contacts(contacts, base)

    if pairs is not None:
        # contacted by any campaign; the keys each campaign reached, campaigns by name for a stable row order
        base["contacted"] = base["customer_key"].isin(pairs["customer_key"])
        reached = {str(c): set(g["customer_key"]) for c, g in pairs.groupby("campaign", sort=True)}
    rows: list[dict] = []
    for group in GROUPS:
        members = base[base["risk_tier"].isin(GROUP_TIERS[group])]
        treatment = members[members["arm"] == "treatment"]
        control = members[members["arm"] == "control"]
        if pairs is None:
            rows.append(_itt_row(group, treatment, control, None, confidence, min_arm_size))
            continue
        rows.append(_itt_row(group, treatment, control, control["contacted"], confidence, min_arm_size))
        rows.append(_bloom_row(group, treatment, control, confidence, min_arm_size))
        for campaign, keys in reached.items():
            if members["customer_key"].isin(keys).any():
                rows.append(
                    _campaign_row(group, campaign, keys, treatment, control, confidence, min_arm_size)
                )

    table = pd.DataFrame(rows, columns=list(UPLIFT_COLUMNS))
    for column in _COUNT_COLUMNS:
        table[column] = table[column].astype("Int64")
    for column in _FLOAT_COLUMNS:
        table[column] = table[column].astype("float64")
    return table


def newcombe_interval(churned_control: int, control_customers: int, churned_treatment: int,
                      treatment_customers: int, confidence: float = 0.95) -> tuple[float, float]:  # fmt: skip
    """Newcombe's hybrid score interval for control churn rate - treatment churn rate (both arms non-empty)."""
    # statsmodels' difference is p1 - p2: the control arm goes first so the interval is that of the uplift
    low, high = confint_proportions_2indep(churned_control, control_customers, churned_treatment,
                                           treatment_customers, compare="diff", method="newcomb",
                                           alpha=1.0 - confidence)  # fmt: skip
    return float(low), float(high)


def _ci_method(confidence: float) -> str:
    return f"Newcombe hybrid score (method 10), {confidence * 100:g}%"


def _checked_customers(customers: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(customers, pd.DataFrame):
        raise ValueError(f"customers must be a pandas DataFrame, got {type(customers).__name__}")
    missing = [c for c in CUSTOMER_COLUMNS if c not in customers.columns]
    if missing:
        raise ValueError(f"customers lacks column(s) {missing}; needs {list(CUSTOMER_COLUMNS)}")
    base = customers.loc[:, list(CUSTOMER_COLUMNS)].reset_index(drop=True)
    _known_values(base["risk_tier"], ACTION_TIERS, "risk_tier", "action tiers")
    _known_values(base["arm"], ARMS, "arm", "arms")
    if base["customer_key"].isna().any():
        raise ValueError("customers has rows without a customer_key")
    duplicated = base.loc[base["customer_key"].duplicated(), "customer_key"]
    if len(duplicated):
        raise ValueError(f"customers must have one row per customer; repeated customer_key: "
                         f"{_few(duplicated.unique())}")  # fmt: skip
    churned = base["churned"]
    churned = pd.to_numeric(churned.astype(int) if churned.dtype == bool else churned, errors="coerce")
    if churned.isna().any() or not churned.isin([0, 1]).all():
        bad = base.loc[churned.isna() | ~churned.isin([0, 1]), "churned"]
        raise ValueError(f"churned must be 0 or 1 for every customer, got {_few(bad.unique())}")
    base["churned"] = churned.astype(int)
    try:
        base["value_365d"] = pd.to_numeric(base["value_365d"]).astype(float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"value_365d must be numeric (NaN allowed): {error}") from error
    return base


def _checked_contacts(contacts: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(contacts, pd.DataFrame):
        raise ValueError(f"contacts must be a pandas DataFrame or None, got {type(contacts).__name__}")
    missing = [c for c in CONTACT_COLUMNS if c not in contacts.columns]
    if missing:
        raise ValueError(f"contacts lacks column(s) {missing}; needs {list(CONTACT_COLUMNS)} (and channel)")
    pairs = contacts.loc[:, list(CONTACT_COLUMNS)].copy()
    pairs["campaign"] = pairs["campaign"].astype("string").fillna(UNKNOWN_CAMPAIGN).astype(str)
    # only customers of the action tiers count; a customer reached twice by one campaign counts once
    pairs = pairs[pairs["customer_key"].isin(base["customer_key"])]
    return pairs.drop_duplicates().reset_index(drop=True)


def _known_values(values: pd.Series, allowed: tuple[str, ...], column: str, what: str) -> None:
    unknown = values[~values.isin(allowed)]
    if len(unknown):
        raise ValueError(
            f"unknown {column} value(s) {_few(unknown.unique())}; the {what} are {list(allowed)}"
        )


def _few(values, limit: int = 5) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _compare(treatment: pd.DataFrame, control: pd.DataFrame, confidence: float, min_arm_size: int,
             treatment_label: str = "treatment arm") -> tuple[dict, list[str]]:  # fmt: skip
    """Counts, rates and the Newcombe interval of control rate - treatment rate; notes why it is missing."""
    n_t, n_c = len(treatment), len(control)
    k_t, k_c = int(treatment["churned"].sum()), int(control["churned"].sum())
    row = {"treatment_customers": n_t, "treatment_churned": k_t, "treatment_churn_rate": k_t / n_t if n_t else _NAN,
           "control_customers": n_c, "control_churned": k_c, "control_churn_rate": k_c / n_c if n_c else _NAN,
           "uplift": _NAN, "ci_low": _NAN, "ci_high": _NAN, "ci_method": ""}  # fmt: skip
    reasons = [r for r in (_too_small(n_t, treatment_label, min_arm_size),
                           _too_small(n_c, "control arm", min_arm_size)) if r]  # fmt: skip
    if reasons:
        return row, ["uplift not estimated: " + " and ".join(reasons)]
    low, high = newcombe_interval(k_c, n_c, k_t, n_t, confidence)
    row.update(uplift=k_c / n_c - k_t / n_t, ci_low=low, ci_high=high, ci_method=_ci_method(confidence))
    return row, []


def _too_small(n: int, label: str, min_arm_size: int) -> str | None:
    if n == 0:
        return f"{label} is empty"
    if n < min_arm_size:
        return f"{label} has {n} customer(s), fewer than min_arm_size={min_arm_size}"
    return None


def _saved(row: dict, customers: float, values: pd.Series) -> None:
    """customers_saved = uplift x customers; revenue_retained = that x the mean known value_365d."""
    saved = row["uplift"] * customers if not math.isnan(row["uplift"]) else _NAN
    known = values.dropna()
    row["customers_saved"] = saved
    row["revenue_retained"] = saved * float(known.mean()) if len(known) else _NAN


def _share(flags: pd.Series) -> float:
    return float(flags.mean()) if len(flags) else _NAN


def _itt_row(group: str, treatment: pd.DataFrame, control: pd.DataFrame, control_flags: pd.Series | None,
             confidence: float, min_arm_size: int) -> dict:  # fmt: skip
    row, notes = _compare(treatment, control, confidence, min_arm_size)
    _saved(row, row["treatment_customers"], treatment["value_365d"])
    if control_flags is None:
        row.update(contact_share=1.0, control_contacted=pd.NA)
        notes.insert(0, NO_EXTRACT_NOTE)
    else:
        row.update(contact_share=_share(treatment["contacted"]), control_contacted=int(control_flags.sum()))
        if row["control_contacted"]:
            notes.append(f"control arm contaminated: {row['control_contacted']} control customer(s) contacted, "
                         f"which pulls the intention-to-treat uplift toward zero")  # fmt: skip
    return {"group": group, "campaign": ALL_CAMPAIGNS, "estimand": "intention_to_treat", **row,
            "note": "; ".join(notes)}  # fmt: skip


def _bloom_row(group: str, treatment: pd.DataFrame, control: pd.DataFrame, confidence: float,
               min_arm_size: int) -> dict:  # fmt: skip
    row, notes = _compare(treatment, control, confidence, min_arm_size)
    share_t, share_c = _share(treatment["contacted"]), _share(control["contacted"])
    contacted_c = int(control["contacted"].sum())
    row.update(contact_share=share_t, control_contacted=contacted_c)
    difference = share_t - (share_c if contacted_c else 0.0)
    if not notes:
        if share_t == 0:
            notes.append("effect on the contacted not identified: no treatment customer was contacted")
        elif difference <= 0:
            notes.append(f"effect on the contacted not identified: the treatment arm's contact share "
                         f"({share_t:.3f}) is not above the control arm's ({share_c:.3f})")  # fmt: skip
        if notes:
            row.update(uplift=_NAN, ci_low=_NAN, ci_high=_NAN, ci_method="")
    estimated = not math.isnan(row["uplift"])
    if estimated:
        # the interval of a ratio with a known denominator: the shares are estimated too, so it is a bit narrow
        row.update(uplift=row["uplift"] / difference, ci_low=row["ci_low"] / difference,
                   ci_high=row["ci_high"] / difference,
                   ci_method=row["ci_method"] + ", divided by the contact-share difference")  # fmt: skip
        notes.append(f"Bloom (1984): intention-to-treat uplift / contact-share difference {difference:.3f}; the "
                     f"interval treats the contact share as known")  # fmt: skip
        if difference < WEAK_CONTACT_DIFFERENCE:
            notes.append(f"contact-share difference below {WEAK_CONTACT_DIFFERENCE}: dividing by it makes the "
                         f"estimate unstable, prefer the intention-to-treat row")  # fmt: skip
    if contacted_c:
        notes.append(f"control arm contaminated: {contacted_c} control customer(s) contacted (share {share_c:.3f}), "
                     f"subtracted from the treatment's contact share"
                     + (", so the estimate is the effect on those contacted because of their assignment"
                        if estimated else ""))  # fmt: skip
    # the customers the contact reached because of the assignment: the ITT's saved customers, valued as the
    # contacted treatment customers are
    compliers = row["treatment_customers"] * difference if row["treatment_customers"] else _NAN
    _saved(row, compliers, treatment.loc[treatment["contacted"], "value_365d"])
    return {"group": group, "campaign": ALL_CAMPAIGNS, "estimand": "effect_on_contacted", **row,
            "note": "; ".join(notes)}  # fmt: skip


def _campaign_row(group: str, campaign: str, keys: set, treatment: pd.DataFrame, control: pd.DataFrame,
                  confidence: float, min_arm_size: int) -> dict:  # fmt: skip
    reached = treatment[treatment["customer_key"].isin(keys)]
    row, notes = _compare(
        reached, control, confidence, min_arm_size, "group of treatment customers it contacted"
    )
    contacted_c = int(control["customer_key"].isin(keys).sum())
    row.update(contact_share=len(reached) / len(treatment) if len(treatment) else _NAN,
               control_contacted=contacted_c)  # fmt: skip
    _saved(row, row["treatment_customers"], reached["value_365d"])
    notes.insert(0, "not randomized: treatment customers the campaign reached against the whole control arm; who "
                    "was reached is not random, so this is descriptive, not the campaign's effect")  # fmt: skip
    if contacted_c:
        notes.append(
            f"control arm contaminated: the campaign also contacted {contacted_c} control customer(s)"
        )
    return {
        "group": group,
        "campaign": campaign,
        "estimand": "contacted_vs_control",
        **row,
        "note": "; ".join(notes),
    }
