"""How the scores of an earlier run turned out, once its churn horizon has passed.

A run scored customers as of ``a``; its label window is (a, a + churn.horizon_days]. When a later run's as_of
is at or past the window's end, everything the label needs is in that run's clean tables, so the outcome is
computed with the training label (features/labels.py): churned = no order, web visit, email open or click, or
ticket in the window. The metrics are those of the training holdout (ROC-AUC, PR-AUC, Brier), the
calibration by probability decile and its expected calibration error, and realized churn per tier, arm and
segment, beside the recency ranking a sceptical analyst would have used instead.

Only customers the current run may still profile are evaluated: customers erased since (their history rows
are deleted at every publish), gone from the CRM, or who withdrew profiling consent are left out and counted.
Customers of the treatment arm were contacted, which is meant to lower their churn: the "all" metrics include
them (what the published probabilities met), and the per-arm rows show the difference.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from seg_pipeline.features.build import activity_frames, as_of_end
from seg_pipeline.features.labels import active_between
from seg_pipeline.outcomes.uplift import UPLIFT_COLUMNS, uplift_table

DECILES = 10
# column -> DuckDB type of monitoring.score_outcomes and monitoring.score_calibration
OUTCOME_TYPES = {
    "scored_run_id": "VARCHAR", "scored_as_of": "DATE", "evaluated_as_of": "DATE", "evaluated_run_id": "VARCHAR",
    "horizon_days": "BIGINT", "model_version": "BIGINT", "breakdown": "VARCHAR", "metric": "VARCHAR",
    "value": "DOUBLE",
}  # fmt: skip
CALIBRATION_TYPES = {
    "scored_run_id": "VARCHAR", "scored_as_of": "DATE", "evaluated_run_id": "VARCHAR", "decile": "BIGINT",
    "customers": "BIGINT", "mean_predicted": "DOUBLE", "realized_churn_rate": "DOUBLE",
}  # fmt: skip
OUTCOME_COLUMNS = list(OUTCOME_TYPES)
CALIBRATION_COLUMNS = list(CALIBRATION_TYPES)
UPLIFT_RUN_COLUMNS = ["scored_run_id", "scored_as_of", "evaluated_as_of", *UPLIFT_COLUMNS]


@dataclass
class RunOutcome:
    """One scored run's outcome: the long metric table, the decile table and the uplift of its list."""

    metrics: pd.DataFrame  # OUTCOME_COLUMNS
    calibration: pd.DataFrame  # CALIBRATION_COLUMNS
    uplift: pd.DataFrame  # UPLIFT_RUN_COLUMNS: treatment against control per tier (outcomes/uplift.py)
    notes: list[str] = field(default_factory=list)


def due_runs(scored_runs: pd.DataFrame | None, evaluated: set[str], as_of: dt.date) -> pd.DataFrame:
    """The scored runs whose label window has ended by ``as_of`` and that have no outcome yet, oldest first."""
    if scored_runs is None or scored_runs.empty:
        return pd.DataFrame(columns=["run_id", "as_of", "horizon_days"])
    window_end = pd.to_datetime(scored_runs["as_of"]) + pd.to_timedelta(scored_runs["horizon_days"], unit="D")
    due = (window_end <= pd.Timestamp(as_of)) & ~scored_runs["run_id"].isin(evaluated)
    return scored_runs[due.to_numpy()].sort_values(["as_of", "publish_sequence"], ignore_index=True)


def realized_churn(
    keys: pd.Series, scored_as_of: dt.date, horizon_days: int, orders, web, email, tickets
) -> pd.Series:
    """1 where the customer shows no activity in (scored_as_of, scored_as_of + horizon], as in training."""
    start, end = as_of_end(scored_as_of), as_of_end(scored_as_of + dt.timedelta(days=horizon_days))
    active = active_between(activity_frames(orders, web, email, tickets), start, end)
    return pd.Series((~keys.isin(active)).astype("int64").to_numpy(), index=keys.index)


def calibration_by_decile(probability: np.ndarray, churned: np.ndarray) -> pd.DataFrame:
    """Customers split into ten equal groups by predicted probability (fewer when probabilities tie): the
    mean prediction against the realized churn rate of each."""
    if len(probability) == 0:
        return pd.DataFrame(columns=["decile", "customers", "mean_predicted", "realized_churn_rate"])
    order = np.argsort(probability, kind="stable")
    decile = np.empty(len(probability), dtype="int64")
    decile[order] = np.arange(len(probability)) * DECILES // len(probability) + 1
    frame = pd.DataFrame({"decile": decile, "p": probability, "y": churned})
    table = frame.groupby("decile").agg(customers=("p", "size"), mean_predicted=("p", "mean"),
                                        realized_churn_rate=("y", "mean"))  # fmt: skip
    return table.reset_index()


def expected_calibration_error(deciles: pd.DataFrame) -> float:
    """The customers-weighted mean gap between predicted and realized churn over the deciles."""
    weight = deciles["customers"] / deciles["customers"].sum()
    return float((weight * (deciles["mean_predicted"] - deciles["realized_churn_rate"]).abs()).sum())


def _ranking_metrics(score: np.ndarray, churned: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(np.unique(churned)) < 2:  # AUCs need both outcomes
        return {"roc_auc": np.nan, "pr_auc": np.nan}
    return {
        "roc_auc": float(roc_auc_score(churned, score)),
        "pr_auc": float(average_precision_score(churned, score)),
    }


def evaluate_run(
    run: pd.Series, history: pd.DataFrame, population: pd.DataFrame, events: dict[str, pd.DataFrame], *,
    as_of: dt.date, run_id: str, erased: set[str] = frozenset(), contacts: pd.DataFrame | None = None,
) -> RunOutcome:  # fmt: skip
    """The outcome of one scored run (a row of monitoring.scored_runs). ``history``: its rows of
    monitoring.score_history; ``population``: the current clean customers (customer_key, profiling_allowed);
    ``events``: the current clean orders, web, email and tickets tables; ``erased``: history keys of customers
    with an erasure request that this run's publish has yet to delete; ``contacts``: the clean interventions
    (customer_key, date, campaign, channel), None without an interventions extract."""
    scored_as_of = pd.Timestamp(run["as_of"]).date()
    horizon = int(run["horizon_days"])
    allowed = population.set_index("customer_key")["profiling_allowed"]
    is_erased = history["customer_key"].isin(erased).to_numpy()
    present = history["customer_key"].isin(allowed.index).to_numpy() & ~is_erased
    consented = present & history["customer_key"].map(allowed).fillna(False).astype(bool).to_numpy()
    counts = {
        "customers_scored": int(run["customers_scored"]),
        # deleted from the history by earlier publishes, or still there until this one
        "excluded_erased": int(run["customers_scored"]) - len(history) + int(is_erased.sum()),
        "excluded_not_in_crm": int((~present & ~is_erased).sum()),
        "excluded_without_profiling_consent": int((present & ~consented).sum()),
    }
    kept = history[consented].reset_index(drop=True)
    churned = realized_churn(kept["customer_key"], scored_as_of, horizon, events["orders"], events["web"],
                             events["email"], events["tickets"])  # fmt: skip
    kept = kept.assign(churned=churned.to_numpy())
    counts["customers_evaluated"] = len(kept)
    p, y = kept["churn_probability"].to_numpy(dtype="float64"), kept["churned"].to_numpy()
    deciles = calibration_by_decile(p, y)
    rows: list[tuple[str, str, float]] = [("all", k, float(v)) for k, v in counts.items()]
    notes = []
    if len(kept):
        ranking = _ranking_metrics(p, y)
        rows += [
            ("all", "roc_auc", ranking["roc_auc"]), ("all", "pr_auc", ranking["pr_auc"]),
            ("all", "brier", float(np.mean((p - y) ** 2))),
            ("all", "calibration_error", expected_calibration_error(deciles)),
            ("all", "mean_probability", float(p.mean())), ("all", "churn_rate", float(y.mean())),
        ]  # fmt: skip
        if "recency_days" in kept:  # the sceptic's ranking: longest silent first (never active: most silent)
            recency = kept["recency_days"].astype("float64").fillna(np.inf).to_numpy()
            finite = np.where(
                np.isinf(recency), np.nanmax(recency[np.isfinite(recency)], initial=0) + 1, recency
            )
            rows.append(("all", "recency_baseline_roc_auc", _ranking_metrics(finite, y)["roc_auc"]))
        if np.isnan(ranking["roc_auc"]):
            notes.append("every evaluated customer had the same outcome: no ROC-AUC or PR-AUC")
    else:
        notes.append("no customer of this run can be evaluated")
    rows += _group_rows(kept, "risk_tier", "tier")
    rows += _group_rows(kept[kept["arm"].notna()].assign(tier_arm=lambda f: f["risk_tier"] + "/" + f["arm"]),
                        "tier_arm", "tier_arm")  # fmt: skip
    rows += _group_rows(kept[kept["segment_name"].notna()], "segment_name", "segment")
    stamp = {"scored_run_id": run["run_id"], "scored_as_of": pd.Timestamp(scored_as_of),
             "evaluated_as_of": pd.Timestamp(as_of), "evaluated_run_id": run_id, "horizon_days": horizon,
             "model_version": run["model_version"]}  # fmt: skip
    metrics = pd.DataFrame(rows, columns=["breakdown", "metric", "value"]).assign(**stamp)[OUTCOME_COLUMNS]
    calibration = deciles.assign(scored_run_id=run["run_id"], scored_as_of=pd.Timestamp(scored_as_of),
                                 evaluated_run_id=run_id)[CALIBRATION_COLUMNS]  # fmt: skip
    uplift = run_uplift(kept, contacts, scored_as_of, horizon).assign(
        scored_run_id=run["run_id"],
        scored_as_of=pd.Timestamp(scored_as_of),
        evaluated_as_of=pd.Timestamp(as_of),
    )[UPLIFT_RUN_COLUMNS]
    return RunOutcome(metrics, calibration, uplift, notes)


def run_uplift(evaluated: pd.DataFrame, contacts: pd.DataFrame | None, scored_as_of: dt.date, horizon_days: int
               ) -> pd.DataFrame:  # fmt: skip
    """Treatment against control among the run's action tiers, with the contacts made in its label window
    (after its as_of, up to the window's end) when an interventions extract exists."""
    assigned = evaluated[evaluated["arm"].notna()]
    customers = assigned.assign(value_365d=assigned["value_365d"].astype("float64"))[
        ["customer_key", "risk_tier", "arm", "churned", "value_365d"]]  # fmt: skip
    if contacts is not None:
        start, end = as_of_end(scored_as_of), as_of_end(scored_as_of + dt.timedelta(days=horizon_days))
        contacts = contacts[(contacts["date"] > start) & (contacts["date"] <= end)][
            ["customer_key", "campaign"]
        ]
    return uplift_table(customers, contacts)


def _group_rows(frame: pd.DataFrame, column: str, kind: str) -> list[tuple[str, str, float]]:
    rows = []
    for value, members in frame.groupby(column, sort=True):
        name = f"{kind}:{value}"
        rows += [(name, "customers", float(len(members))), (name, "churn_rate", float(members["churned"].mean())),
                 (name, "mean_probability", float(members["churn_probability"].mean()))]  # fmt: skip
    return rows


def headline(metrics: pd.DataFrame) -> dict[str, float]:
    """metric -> value of the "all" rows of one scored run."""
    rows = metrics[metrics["breakdown"] == "all"]
    return dict(zip(rows["metric"], rows["value"].astype("float64"), strict=True))
