"""churn_training_set: features as of snapshot dates with the churn label observed after each.

Activity labels (churn.label = activity): several snapshots stacked. The holdout is the latest fully
labelled snapshot, as_of - horizon (out of time: later than anything trained on); the training snapshots
lie from as_of - 2 x horizon back, churn.snapshot_spacing_days apart, as many as churn.snapshots allows
and history supports (a snapshot needs a horizon of history before it). Features are built by the same
point-in-time code as customer_features with the snapshot as their as_of, so nothing dated after the
snapshot can reach them; the label is 1 when the customer shows no activity (order, web visit, email open
or click, ticket) in the horizon after the snapshot. Everyone profiled at a snapshot is labelled, long
silent customers included: churn_scores scores every profiled customer, so the training population is
the scored population (recency and tenure are features, not filters).

Explicit labels (churn.label = explicit): features as of as_of, the label from a CRM column; customers
with an empty label are never trained on (they are scored); the holdout is a stratified sample.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from seg_pipeline.config import ChurnConfig
from seg_pipeline.errors import SegPipelineError
from seg_pipeline.features.build import FeatureBuild, activity_frames, as_of_end, build_features

KEY_COLUMNS = ["customer_key", "snapshot", "split", "label"]


@dataclass
class TrainingSet:
    table: pd.DataFrame  # KEY_COLUMNS + feature columns
    feature_columns: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    bg_nbd: dict[str, dict[str, float]] = field(default_factory=dict)  # snapshot -> fitted parameters
    seconds: dict[str, float] = field(default_factory=dict)


def in_training_population(features: pd.DataFrame) -> pd.Series:
    """The customers the labelled snapshots hold, by the rule the training set is built with: everyone
    profiled (consent, signed up by the date). churn_scores applies it to what it scores and reports who
    falls outside, so a narrower rule here could never silently leave scored customers unrepresented."""
    return pd.Series(True, index=features.index)


def snapshot_dates(as_of: dt.date, churn: ChurnConfig, first_activity: pd.Timestamp | None
                   ) -> tuple[list[tuple[str, dt.date]], list[str]]:  # fmt: skip
    """(split, snapshot) pairs, the holdout first, and a note for every configured snapshot left out."""
    horizon = churn.horizon_days
    dates = [("holdout", as_of - dt.timedelta(days=horizon))]
    dates += [("train", as_of - dt.timedelta(days=2 * horizon + k * churn.spacing_days))
              for k in range(churn.snapshots - 1)]  # fmt: skip
    if first_activity is None or pd.isna(first_activity):
        return dates, []
    earliest = (first_activity + pd.Timedelta(days=horizon)).date()
    kept = [(split, d) for split, d in dates if split == "holdout" or d >= earliest]
    notes = []
    if len(kept) < len(dates):
        notes.append(
            f"{len(kept) - 1} of {churn.snapshots - 1} training snapshots used: history starts "
            f"{first_activity.date()}, and a snapshot needs {horizon} days (churn.horizon_days) of history"
        )
    return kept, notes


def _first_activity(frames: list[tuple[pd.DataFrame, str]]) -> pd.Timestamp | None:
    firsts = [f[c].min() for f, c in frames if len(f)]
    firsts = [t for t in firsts if pd.notna(t)]
    return min(firsts) if firsts else None


def _activity_snapshot(sources: dict[str, pd.DataFrame], snapshot: dt.date, horizon: int, attributes: list[str],
                       customers: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int], FeatureBuild]:  # fmt: skip
    built = build_features(customers, **sources, as_of=snapshot, attributes=attributes, horizon_days=horizon)
    table = built.table
    start, end = as_of_end(snapshot), as_of_end(snapshot + dt.timedelta(days=horizon))
    frames = activity_frames(sources["orders"], sources["web"], sources["email"], sources["tickets"])
    table = table[in_training_population(table).to_numpy()]
    labels = (~table["customer_key"].isin(active_between(frames, start, end))).astype("int64")
    counts = {"profiled": len(built.table), "silent_longer_than_horizon": int((table["recency_days"].isna()
              | (table["recency_days"] > horizon)).sum())}  # fmt: skip
    return table.assign(label=labels), counts, built


def active_between(
    frames: list[tuple[pd.DataFrame, str]], after: pd.Timestamp, end: pd.Timestamp
) -> np.ndarray:
    """The customers with any activity after ``after`` up to ``end``: only their keys are taken out of
    the event tables (filtering whole tables and grouping them by key cost 13 s at 1M customers)."""
    keys = [
        f["customer_key"].to_numpy()[((f[c] > after) & (f[c] <= end)).to_numpy()] for f, c in frames if len(f)
    ]
    return pd.unique(np.concatenate(keys)) if keys else np.array([], dtype=object)


def activity_training_set(customers: pd.DataFrame, orders: pd.DataFrame, web: pd.DataFrame,
                          tickets: pd.DataFrame, email: pd.DataFrame, *, as_of: dt.date, churn: ChurnConfig,
                          attributes: list[str]) -> TrainingSet:  # fmt: skip
    sources = {"orders": orders, "web": web, "tickets": tickets, "email": email}
    if not any(len(f) for f in sources.values()):
        raise SegPipelineError(
            "churn.label is activity, but there are no orders, web, support or email events to observe "
            "activity in; provide an event extract or set churn.label: explicit with a CRM churn column"
        )
    horizon = churn.horizon_days
    first = _first_activity(activity_frames(orders, web, email, tickets))
    dates, notes = snapshot_dates(as_of, churn, first)
    training_snapshots = len(dates) - 1
    # Each training snapshot builds features for at most its share of churn.max_training_rows customers
    # (a random sample): past that the trainer would sample the rows anyway, and feature building per
    # snapshot is the cost. The holdout snapshot is never sampled.
    per_snapshot = math.ceil(churn.max_training_rows / max(training_snapshots, 1))
    rng = np.random.default_rng(churn.seed)
    parts, counts, bg_nbd, seconds = [], {"snapshots": len(dates)}, {}, {"bg_nbd": 0.0}
    for split, snapshot in dates:
        population = customers
        if split == "train" and len(customers) > per_snapshot:
            population = customers.iloc[np.sort(rng.choice(len(customers), per_snapshot, replace=False))]
        table, c, features = _activity_snapshot(sources, snapshot, horizon, attributes, population)
        fit = features.btyd
        seconds["bg_nbd"] += features.btyd_seconds
        problem = one_class_problem(table["label"])
        if split == "train" and problem:
            notes.append(f"snapshot {snapshot} left out: {problem}")
            continue
        name = f"{split}/{snapshot}"
        parts.append(table.assign(snapshot=pd.Timestamp(snapshot), split=split))
        counts |= {f"{name}/{k}": v for k, v in c.items()}
        counts |= {f"{name}/labelled": len(table), f"{name}/churned": int(table["label"].sum())}
        if len(population) < len(customers):
            counts[f"{name}/sampled_customers"] = len(population)
        if fit is not None and fit.params is not None:
            bg_nbd[str(snapshot)] = fit.params.as_dict()
        elif fit is not None:
            notes.append(f"snapshot {snapshot}: BG/NBD features left out ({fit.reason})")
    left_out = [n for n in notes if n.startswith("snapshot ") and " left out: " in n]
    built = _finish(parts, counts, notes, context=left_out, hint="check churn.horizon_days and as_of")
    built.bg_nbd, built.seconds = bg_nbd, {k: round(v, 2) for k, v in seconds.items()}
    return built


def explicit_training_set(customers: pd.DataFrame, features: pd.DataFrame, *, churn: ChurnConfig,
                          sources: dict[str, pd.DataFrame] | None = None, as_of: dt.date | None = None,
                          attributes: list[str] = ()) -> TrainingSet:  # fmt: skip
    """CRM labels. With churn dates in the CRM (and the sources to rebuild features) the features are taken
    as of as_of - horizon and customers who had churned by then are left out, so the model predicts churn
    in the horizon instead of recognising the silence after it; without churn dates, features as of as_of."""
    column = churn.explicit_column
    if column not in customers:
        raise SegPipelineError(
            f"churn.label is explicit, but the CRM extract has no column {column!r} "
            "(churn.explicit_column); map yours under sources.crm_customers.columns"
        )
    counts: dict[str, int] = {"profiled": len(features)}
    notes: list[str] = []
    snapshot = pd.NaT
    dated = "churn_date" in customers and customers["churn_date"].notna().any()
    if dated and sources is not None and as_of is not None:
        snapshot_date = as_of - dt.timedelta(days=churn.horizon_days)
        snapshot = pd.Timestamp(snapshot_date)
        features = build_features(
            customers,
            **sources,
            as_of=snapshot_date,
            attributes=list(attributes),
            horizon_days=churn.horizon_days,
        ).table
        churned_on = features["customer_key"].map(customers.set_index("customer_key")["churn_date"])
        gone = (churned_on <= as_of_end(snapshot_date)).to_numpy()
        counts |= {"profiled_at_snapshot": len(features), "churned_before_snapshot": int(gone.sum())}
        features = features[~gone]
    else:
        notes.append("no churn dates in the CRM: features as of as_of, so holdout metrics may be optimistic")
    if not any(c.startswith("btyd_") for c in features.columns):
        notes.append("no BG/NBD features: they need orders (a repeat purchase from at least a few customers)")
    label = features["customer_key"].map(customers.set_index("customer_key")[column])
    known = label.notna()
    table = features[known].assign(label=label[known].astype(bool).astype("int64"))
    rng = np.random.default_rng(churn.seed)
    holdout = np.zeros(len(table), dtype=bool)
    for value in (0, 1):  # stratified: the same churn rate in training and holdout rows
        rows = np.flatnonzero(table["label"].to_numpy() == value)
        take = int(round(len(rows) * churn.holdout_share))
        holdout[rng.choice(rows, take, replace=False)] = True
    table = table.assign(snapshot=snapshot, split=np.where(holdout, "holdout", "train"))
    table["snapshot"] = pd.to_datetime(table["snapshot"])
    counts |= {
        "label_unknown": int((~known).sum()),
        "labelled": len(table),
        "churned": int(table["label"].sum()),
    }
    if (~known).any():
        notes.append("label unknown: scored, never trained on")
    context = []
    if counts.get("churned_before_snapshot"):
        context.append(
            f"{counts['churned_before_snapshot']} customer(s) churned before the snapshot {snapshot.date()} "
            "(as_of - churn.horizon_days) and are left out: there is no churn left to predict for them"
        )
    hint = f"check the CRM column {column!r} (churn.explicit_column), churn.horizon_days and as_of"
    return _finish([table], counts, notes, context=context, hint=hint)


def one_class_problem(labels: pd.Series) -> str | None:
    """Why a model cannot learn from these labels, naming the class present; None when both are."""
    rows, churned = len(labels), int(labels.sum())
    if 0 < churned < rows:
        return None
    if rows == 0:
        return "there is no labelled customer (0 rows)"
    return f"every labelled customer {'churned' if churned else 'was retained'} ({rows} rows)"


def _finish(parts: list[pd.DataFrame], counts: dict[str, int], notes: list[str], *, context: list[str],
            hint: str) -> TrainingSet:  # fmt: skip
    """The stacked table, or an error when it (or its training or holdout rows) holds one class only."""
    table = pd.concat(parts, ignore_index=True)
    features = [c for c in table.columns if c not in KEY_COLUMNS]
    table = table[KEY_COLUMNS + features]
    # the whole table first: "every labelled customer churned" is the cause, an empty split its effect
    checks = [("", table["label"])]
    checks += [
        (f" ({split} rows)", table.loc[table["split"] == split, "label"]) for split in ("train", "holdout")
    ]
    for where, labels in checks:
        problem = one_class_problem(labels)
        if problem:
            why = "".join(f"; {c}" for c in context)
            raise SegPipelineError(
                f"churn training set{where}: {problem}{why}; the model needs both churned and retained "
                f"customers; {hint}"
            )
    return TrainingSet(table=table, feature_columns=features, counts=counts, notes=notes)
