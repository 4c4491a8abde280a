"""Who to contact: action tiers sized by a team's capacity, in order of expected loss.

A fixed probability cut-off cannot size a team's work: calibrated 90-day probabilities rarely exceed 0.7 on a
healthy customer base (a cut-off at 0.7 leaves the call list nearly empty), while on a base of long-silent
customers most probabilities are high (the same cut-off puts most customers on it). So the tiers are
sized by capacity instead. Every customer with marketing consent is ranked by expected loss, the churn
probability times the customer's value (spend in the last 365 days: what they would bring in a year if
they stayed as they are). Then each action tier takes the next customers up to its configured capacity: a
count, a share of the scored customers, or a budget divided by the cost of one contact. The probability itself
is not touched: it stays calibrated and is published as it is.

Tiers, in order: personal_outreach, semi_automated, automated (the action tiers), then no_action (expected
loss at or below actions.min_expected_loss, or beyond every capacity) and no_consent (no marketing consent:
never on a contact list, whatever their risk). The retention list is the first two tiers.

Control arms (actions.control): a share of each action tier is held out, by a keyed hash of the customer key,
the campaign name and the period of the run's as_of (``assign_arms``). A uniform hash below the share puts the
customer in the control arm, so the share holds in every tier and in the retention list alike, every run of a
period agrees, and the next period draws again. Controls keep their tier and rank (the tables show what the
list would have been) but are never contacted: the difference in realized churn between the arms is what
contacting achieved (outcomes/uplift.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import numpy as np
import pandas as pd

from seg_pipeline.config import ActionsConfig, ControlGroupConfig

ACTION_TIERS = ("personal_outreach", "semi_automated", "automated")
NO_ACTION, NO_CONSENT = "no_action", "no_consent"
TIERS = (*ACTION_TIERS, NO_ACTION, NO_CONSENT)
RETENTION_TIERS = ("personal_outreach", "semi_automated")
TIER_LABELS = {
    "personal_outreach": "Personal outreach",
    "semi_automated": "Semi-automated",
    "automated": "Automated campaign",
    NO_ACTION: "No action",
    NO_CONSENT: "No marketing consent",
}

TIER_COLUMNS = ["customer_key", "risk_tier", "action_rank", "value_365d", "expected_loss", "suggested_action"]
TREATMENT, CONTROL = "treatment", "control"
ARMS = (TREATMENT, CONTROL)


def marketing_consent(recorded: pd.Series, default: bool) -> pd.Series:
    """Who may be contacted: the CRM's consent_marketing where it records one, ``default``
    (privacy.default_marketing_consent) where it records none."""
    return recorded.astype("boolean").fillna(default).astype(bool)


def assign_tiers(
    scores: pd.DataFrame, value: pd.Series, contactable: pd.Series, config: ActionsConfig
) -> pd.DataFrame:
    """One row per scored customer (``scores``: customer_key, churn_probability) with its tier.

    ``value`` (365-day spend) and ``contactable`` (marketing consent) are indexed by customer_key; a customer
    missing from ``contactable`` is not contactable. When no customer has a value (no orders extract), every
    value counts as 1, so expected loss is the probability (the report says the list is ranked by
    probability). Ties in expected loss are broken by probability, then by customer_key, so a rerun on
    the same data gives the same list."""
    keys = scores["customer_key"].to_numpy()
    probability = scores["churn_probability"].to_numpy(dtype="float64")
    spend = value.reindex(keys).to_numpy(dtype="float64")
    ranked_by_value = bool(np.isfinite(spend).any())
    weight = np.nan_to_num(spend, nan=0.0) if ranked_by_value else np.ones(len(keys))
    expected = probability * np.clip(weight, 0, None)
    consent = contactable.reindex(keys).astype("boolean").fillna(False).to_numpy(dtype=bool)
    eligible = consent & (expected > config.min_expected_loss)
    order = np.lexsort((keys, -probability, -expected))  # last key sorts first
    order = order[eligible[order]]
    rank = np.full(len(keys), -1, dtype="int64")
    rank[order] = np.arange(1, len(order) + 1)
    tier = np.where(consent, NO_ACTION, NO_CONSENT).astype(object)
    start = 0
    for name, capacity in config.tiers().items():
        end = min(start + capacity.size(len(keys)), len(order))
        tier[order[start:end]] = name
        start = end
    suggested = {name: capacity.suggested_action for name, capacity in config.tiers().items()}
    action_rank = pd.array(rank, dtype="Int64")
    action_rank[rank <= 0] = pd.NA  # not ranked: no consent, or nothing to lose
    return pd.DataFrame(
        {
            "customer_key": keys,
            "risk_tier": tier,
            "action_rank": action_rank,
            "value_365d": spend if ranked_by_value else np.full(len(keys), np.nan),
            "expected_loss": expected if ranked_by_value else np.full(len(keys), np.nan),
            "suggested_action": [suggested.get(t, "") for t in tier],
        }
    )[TIER_COLUMNS]


def control_period(as_of: dt.date, period: str) -> str:
    """The period an as_of falls in, as a label: ``2026-W49`` (ISO week), ``2026-12`` or ``2026-Q4``."""
    if period == "week":
        year, week, _ = as_of.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{as_of.year}-{as_of.month:02d}"
    if period == "quarter":
        return f"{as_of.year}-Q{(as_of.month - 1) // 3 + 1}"
    raise ValueError(f"unknown control period {period!r}: week, month or quarter")


def arm_draws(customer_keys: pd.Series, key: bytes, campaign: str, period: str) -> np.ndarray:
    """A uniform number in [0, 1) per customer from HMAC-SHA256(key, campaign|period|customer_key): the same
    for a customer all period long, unrelated across periods and campaigns, and unguessable without the
    pseudonymization key (nobody can steer a customer into an arm)."""
    prefix = f"arm|{campaign}|{period}|".encode()
    draws = np.empty(len(customer_keys), dtype="float64")
    for i, customer in enumerate(customer_keys.astype(str)):
        digest = hmac.new(key, prefix + customer.encode(), hashlib.sha256).digest()
        draws[i] = int.from_bytes(digest[:8], "big") / 2**64
    return draws


def assign_arms(tiers: pd.DataFrame, key: bytes, control: ControlGroupConfig, as_of: dt.date) -> pd.DataFrame:
    """``tiers`` (assign_tiers) with ``arm`` (treatment / control for the action tiers, missing otherwise) and
    ``control_period``."""
    period = control_period(as_of, control.period)
    acting = tiers["risk_tier"].isin(ACTION_TIERS).to_numpy()
    arm = np.full(len(tiers), None, dtype=object)
    draws = arm_draws(tiers.loc[acting, "customer_key"], key, control.campaign, period)
    arm[acting] = np.where(draws < control.share, CONTROL, TREATMENT)
    return tiers.assign(arm=arm, control_period=period)


def ranked_by(tiers: pd.DataFrame) -> str:
    """What the ranking used: "expected_loss", or "probability" when there was no value to weigh it by."""
    return "expected_loss" if tiers["value_365d"].notna().any() or tiers.empty else "probability"


PLAN_COLUMNS = [
    "tier", "customers", "control_customers", "contacts", "capacity", "capacity_rule", "mean_churn_probability",
    "value_365d", "expected_loss", "lowest_expected_loss", "save_rate", "expected_customers_saved", "expected_revenue_saved", "contact_cost",
    "suggested_action",
]  # fmt: skip


def action_plan(tiers: pd.DataFrame, probability: pd.Series, config: ActionsConfig) -> pd.DataFrame:
    """One row per tier (TIERS order): its size against its capacity, its control arm and the contacts left
    (the treatment arm), what is at stake in it and, at the tier's assumed save rate, the customers and
    revenue the contacts are expected to keep. ``probability`` is indexed like ``tiers``; without an ``arm``
    column every member of an action tier is a contact."""
    frame = tiers.assign(churn_probability=probability.to_numpy())
    arm = frame["arm"] if "arm" in frame else pd.Series(TREATMENT, index=frame.index)
    frame = frame.assign(is_control=arm.eq(CONTROL).fillna(False).to_numpy(dtype=bool))
    scored = len(frame)
    rows = []
    for tier in TIERS:
        members = frame[frame["risk_tier"] == tier]
        contacted = members[~members["is_control"]]
        capacity = config.tiers().get(tier)
        save = capacity.save_rate if capacity else np.nan
        cost = capacity.cost_per_contact if capacity and capacity.cost_per_contact is not None else np.nan
        loss = members["expected_loss"]
        contacted_loss = contacted["expected_loss"]
        rows.append({
            "tier": tier, "customers": len(members), "control_customers": int(members["is_control"].sum()),
            "contacts": len(contacted) if capacity else 0,
            "capacity": capacity.size(scored) if capacity else pd.NA,
            "capacity_rule": capacity.rule() if capacity else None,
            "mean_churn_probability": members["churn_probability"].mean() if len(members) else np.nan,
            "value_365d": members["value_365d"].sum(min_count=1),
            "expected_loss": loss.sum(min_count=1),
            "lowest_expected_loss": loss.min() if capacity and len(members) else np.nan,  # an action tier's cut-off
            "save_rate": save,
            "expected_customers_saved": float(contacted["churn_probability"].sum() * save) if capacity else np.nan,
            "expected_revenue_saved": contacted_loss.sum(min_count=1) * save if capacity else np.nan,
            "contact_cost": len(contacted) * cost,
            "suggested_action": capacity.suggested_action if capacity else "",
        })  # fmt: skip
    plan = pd.DataFrame(rows, columns=PLAN_COLUMNS)
    return plan.astype(
        {"customers": "int64", "control_customers": "int64", "contacts": "int64", "capacity": "Int64"}
    )
