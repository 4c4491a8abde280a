"""lifecycle_stage: where each customer is now, from transparent rules on customer_features.

The rules are tried in this order and the first a customer meets wins; everyone else is "steady":

- new: a customer for at most ``new_max_tenure_days``.
- dormant: no activity for at least ``dormant_min_recency_days``, or no recorded activity at all.
- at_risk: no activity for at least ``at_risk_min_recency_days``, or the days since the last order exceed
  ``at_risk_overdue_factor`` times the customer's own mean gap between orders.
- champion: 365-day spend and 365-day orders both at or above their ``champion_min_value_quantile``
  (among customers with an order in those 365 days), and active within ``champion_max_recency_days``.
- growing: ``spend_trend`` (log spend last 90 days minus the 90 before) at least ``growing_min_spend_trend``.

Every threshold is configurable under ``lifecycle:`` in the YAML config. A rule whose input columns are
absent (e.g. no orders extract) is skipped rather than guessed at. Each customer also gets a short reason
with their own numbers and the threshold that applied, so a stage can be checked by a person.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from seg_pipeline.config import LifecycleConfig

LIFECYCLE_STAGES = ("new", "dormant", "at_risk", "champion", "growing", "steady")
REQUIRED_COLUMNS = ("customer_key", "tenure_days")


def _whole(values: pd.Series) -> pd.Series:
    """Rounded, not floored: days run from the end of as_of, so 44.99999 is an order 45 days back."""
    return values.round().astype("int64").astype(str)


def _count(values: pd.Series, unit: str) -> pd.Series:
    """ "45 days", "1 day": a whole count with its unit."""
    rounded = values.round()
    units = pd.Series(np.where(rounded == 1, f" {unit}", f" {unit}s"), index=values.index, dtype=object)
    return _whole(rounded) + units


def _sign(rounded: pd.Series) -> pd.Series:
    return pd.Series(np.where(rounded < 0, "-", ""), index=rounded.index, dtype=object)


def _amount(values: pd.Series) -> pd.Series:
    """Rounded money with thousands separators, vectorised (a regex, not a Python call per row)."""
    rounded = values.round().astype("int64")
    digits = rounded.abs().astype(str).str.replace(r"\B(?=(\d{3})+(?!\d))", ",", regex=True)
    return _sign(rounded) + digits


def _fixed(values: pd.Series, decimals: int) -> pd.Series:
    """Fixed-point text ("0.45", "3.6") from integer arithmetic, so no Python call per row."""
    scale = 10**decimals
    scaled = (values * scale).round().astype("int64")
    whole, fraction = scaled.abs() // scale, scaled.abs() % scale
    return _sign(scaled) + whole.astype(str) + "." + fraction.astype(str).str.zfill(decimals)


def _column(features: pd.DataFrame, name: str) -> pd.Series | None:
    return features[name].astype("float64") if name in features.columns else None


def _champions(features: pd.DataFrame, rules: LifecycleConfig) -> pd.Series:
    monetary = _column(features, "monetary_365d")
    frequency = _column(features, "frequency_365d")
    recency = _column(features, "recency_days")
    if monetary is None or frequency is None or recency is None:
        return pd.Series(False, index=features.index)
    # Quantiles among buyers only: in a population of mostly zero spenders the 80th percentile would be
    # 0 and every zero spender would "reach" it.
    buyers = frequency > 0
    if not buyers.any():
        return pd.Series(False, index=features.index)
    q = rules.champion_min_value_quantile
    return (
        buyers
        & (monetary >= monetary[buyers].quantile(q))
        & (frequency >= frequency[buyers].quantile(q))
        & (recency <= rules.champion_max_recency_days)
    )


def assign_lifecycle(features: pd.DataFrame, rules: LifecycleConfig) -> pd.DataFrame:
    """customer_key, lifecycle_stage (one of LIFECYCLE_STAGES) and lifecycle_reason for every row."""
    missing = [c for c in REQUIRED_COLUMNS if c not in features.columns]
    if missing:
        raise ValueError(f"customer_features has no column {', '.join(repr(c) for c in missing)}")
    features = features.reset_index(drop=True)
    none = pd.Series(False, index=features.index)
    tenure = _column(features, "tenure_days")
    recency = _column(features, "recency_days")
    since_order = _column(features, "days_since_last_purchase")
    usual_gap = _column(features, "interpurchase_mean_days")
    trend = _column(features, "spend_trend")

    new = tenure <= rules.new_max_tenure_days
    inactive = recency >= rules.dormant_min_recency_days if recency is not None else none
    never_active = recency.isna() if recency is not None else none
    quiet = recency >= rules.at_risk_min_recency_days if recency is not None else none
    if since_order is not None and usual_gap is not None:
        # A zero usual gap (orders on one day only) is no rhythm to be overdue on; NaN compares False.
        overdue = (usual_gap > 0) & (since_order > rules.at_risk_overdue_factor * usual_gap)
    else:
        overdue = none
    growing = trend >= rules.growing_min_spend_trend if trend is not None else none

    conditions = [
        new,
        inactive | never_active,
        quiet | overdue,
        _champions(features, rules),
        growing,
    ]
    # Integer codes, not strings, while building: comparing a million strings per stage is slow.
    code = pd.Series(
        np.select(conditions, list(range(len(conditions))), default=len(conditions)), index=features.index
    )
    code_of = {name: i for i, name in enumerate(LIFECYCLE_STAGES)}

    # Reasons are built only for the rows in each stage, so each row is formatted once.
    reason = pd.Series("none of the rules apply", index=features.index, dtype=object)
    rows = code == code_of["new"]
    reason[rows] = "customer for " + _count(tenure[rows], "day") + f" (new up to {rules.new_max_tenure_days})"
    if recency is not None:
        rows = (code == code_of["dormant"]) & recency.notna()
        reason[rows] = (
            "no activity for "
            + _count(recency[rows], "day")
            + f" (dormant from {rules.dormant_min_recency_days})"
        )
        reason[(code == code_of["dormant"]) & recency.isna()] = "no recorded activity (dormant)"
        rows = (code == code_of["at_risk"]) & quiet
        reason[rows] = (
            "no activity for "
            + _count(recency[rows], "day")
            + f" (at risk from {rules.at_risk_min_recency_days})"
        )
    # The recency wording wins when both at-risk variants hold; this covers the rest.
    rows = (code == code_of["at_risk"]) & ~quiet
    if rows.any():
        reason[rows] = (
            _count(since_order[rows], "day")
            + " since the last order, "
            + _fixed(since_order[rows] / usual_gap[rows], 1)
            + "x their usual "
            + _whole(usual_gap[rows])
            + f"-day gap (at risk above {rules.at_risk_overdue_factor:g}x)"
        )
    rows = code == code_of["champion"]
    if rows.any():
        top = f"{round((1 - rules.champion_min_value_quantile) * 100, 1):g}"
        reason[rows] = (
            "365-day spend "
            + _amount(features.loc[rows, "monetary_365d"].astype("float64"))
            + " and "
            + _count(features.loc[rows, "frequency_365d"].astype("float64"), "order")
            + f", both in the top {top}%, active "
            + _count(recency[rows], "day")
            + " ago (champion)"
        )
    rows = code == code_of["growing"]
    if rows.any():
        reason[rows] = (
            "spend last 90 days up "
            + _fixed(trend[rows], 2)
            + f" on the 90 before (growing from {rules.growing_min_spend_trend:.2f})"
        )
    return pd.DataFrame(
        {
            "customer_key": features["customer_key"],
            "lifecycle_stage": np.asarray(LIFECYCLE_STAGES, dtype=object)[code.to_numpy()],
            "lifecycle_reason": reason,
        }
    )


def lifecycle_counts(stages: pd.DataFrame) -> dict[str, int]:
    """Customers per stage, in LIFECYCLE_STAGES order, with 0 for a stage nobody is in."""
    counts = stages["lifecycle_stage"].value_counts().reindex(LIFECYCLE_STAGES, fill_value=0)
    return {stage: int(n) for stage, n in counts.items()}
