"""The published tables built from the pipeline's internal ones (pandas in, pandas out).

Internally customers are keyed by the pseudonymous ``customer_key``; published rows carry the CRM's own
``customer_id`` again (the surviving id of merged records) so a CRM or marketing tool can act on them.
The population is every scored customer: in a rescore, customers new since the last segmentation have
no segment yet (missing segment_id), and customers erased since then are gone.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from seg_pipeline.churn.actions import ACTION_TIERS, RETENTION_TIERS, TIER_LABELS, TIERS
from seg_pipeline.publish.contract import column_names
from seg_pipeline.segmentation.profiles import migration


class KeyedRows:
    """Rows of other tables picked for each of ``keys`` (unique customer_keys): left joins in which these
    keys are hashed once and every joined table is looked up against them (pandas' merge hashed both sides
    and checked both for duplicates, for each table: 21 s of the publish at 1M customers)."""

    def __init__(self, keys: pd.Series):
        self.keys = pd.Index(keys.to_numpy())
        if not self.keys.is_unique:
            raise ValueError("customer_key is not unique among the rows being published")

    def pick(self, table: pd.DataFrame, columns: list[str], what: str) -> pd.DataFrame:
        """``table``'s columns, one row per key in order, missing where the key is not in ``table`` (the
        dtypes a left merge gives); a key twice in ``table`` is an error."""
        position = self.keys.get_indexer(table["customer_key"].to_numpy())
        found = position >= 0
        if found.any() and np.bincount(position[found]).max() > 1:
            raise ValueError(f"{what}: a customer_key occurs more than once")
        row = np.full(len(self.keys), -1, dtype="int64")
        row[position[found]] = np.flatnonzero(found)
        # -1 is no label of the RangeIndex: those rows come out missing, as in a left merge
        return table[columns].reset_index(drop=True).reindex(row).reset_index(drop=True)


def scored_customers(
    ids: pd.DataFrame,
    scores: pd.DataFrame,
    tiers: pd.DataFrame,
    clusters: pd.DataFrame,
    lifecycle: pd.DataFrame,
) -> pd.DataFrame:
    """One row per scored customer with everything the published tables take from the internal ones: CRM id,
    scores, action tier and expected loss, segment and lifecycle stage (each joined once)."""
    table = scores.reset_index(drop=True)
    rows = KeyedRows(table["customer_key"])
    return pd.concat(
        [table, rows.pick(ids, ["customer_id"], "customer ids"),
         rows.pick(tiers, ["risk_tier", "action_rank", "value_365d", "expected_loss", "suggested_action", "arm",
                          "control_period"],
                   "action_tiers"),
         rows.pick(clusters, ["segment_id", "segment_name", "micro_segment_id"], "customer_clusters"),
         rows.pick(lifecycle, ["lifecycle_stage"], "lifecycle_stage")], axis=1,
    )  # fmt: skip


def _stamped(table: pd.DataFrame, name: str, as_of: dt.date, run_id: str) -> pd.DataFrame:
    return table.assign(as_of=pd.Timestamp(as_of), run_id=run_id)[column_names(name)]


def customer_segments(customers: pd.DataFrame, as_of: dt.date, run_id: str) -> pd.DataFrame:
    """One row per scored customer: segment, lifecycle stage, micro-segment, risk, tier and retention flag
    (``customers``: scored_customers)."""
    table = customers.assign(in_retention_segment=customers["risk_tier"].isin(RETENTION_TIERS))
    return _stamped(table, "customer_segments", as_of, run_id).sort_values("customer_id", ignore_index=True)


def churn_scores(customers: pd.DataFrame, as_of: dt.date, run_id: str) -> pd.DataFrame:
    return _stamped(customers, "churn_scores", as_of, run_id).sort_values("customer_id", ignore_index=True)


def retention_actions(customers: pd.DataFrame, as_of: dt.date, run_id: str) -> pd.DataFrame:
    """The customers of the three action tiers, in rank order: the lists the CRM and e-mail tools act on.
    Customers without marketing consent are in no action tier, so never here."""
    acted = customers[customers["risk_tier"].isin(ACTION_TIERS)]
    return _stamped(acted, "retention_actions", as_of, run_id).sort_values("action_rank", ignore_index=True)


def segment_profiles(
    profiles: pd.DataFrame, customers: pd.DataFrame, as_of: dt.date, run_id: str
) -> pd.DataFrame:
    """The segmentation's profile per segment with this run's churn risk, action tiers and expected loss;
    counts and shares come from ``customers`` (scored_customers, as published in customer_segments) so the
    tables always agree."""
    assigned = customers[customers["segment_id"].notna()].assign(
        in_retention_segment=lambda f: f["risk_tier"].isin(RETENTION_TIERS)
    )
    grouped = assigned.groupby("segment_id")
    risk = pd.DataFrame(
        {
            "customers": grouped.size(),
            "mean_churn_probability": grouped["churn_probability"].mean(),
            "mean_churn_risk_score": grouped["churn_risk_score"].mean(),
            "expected_loss": grouped["expected_loss"].sum(min_count=1),
            "customers_in_retention_segment": grouped["in_retention_segment"].sum(),
        }
    )
    tiers = pd.crosstab(assigned["segment_id"], assigned["risk_tier"]).reindex(
        columns=list(TIERS), fill_value=0
    )
    risk = risk.join(tiers.add_prefix("customers_"))
    risk["share"] = risk["customers"] / max(len(customers), 1)
    base = profiles.drop(columns=["customers", "share"]).rename(
        columns={"top_deviations": "trait_deviations"}
    )
    table = base.merge(risk.reset_index(), on="segment_id", how="left")
    counts = ["customers", "customers_in_retention_segment", *[f"customers_{t}" for t in TIERS]]
    table[counts] = table[counts].fillna(0).astype("int64")
    table["share"] = table["share"].fillna(0.0)
    return _stamped(table, "segment_profiles", as_of, run_id).sort_values("segment_id", ignore_index=True)


def migration_since(previous_segments: pd.DataFrame | None, segments: pd.DataFrame) -> pd.DataFrame:
    """Customers per (segment in the previous publish, segment now), by CRM customer_id; a missing
    from/to id means the customer joined / left the published population. Empty on the first publish."""
    as_keyed = {"customer_id": "customer_key"}
    previous = None if previous_segments is None else previous_segments.rename(columns=as_keyed)
    moved = migration(previous, segments.rename(columns=as_keyed))
    # customers without a segment on either side (new since the last segmentation) moved nowhere
    return moved[moved["from_segment_id"].notna() | moved["to_segment_id"].notna()].reset_index(drop=True)


def segment_history(
    previous_history: pd.DataFrame | None,
    moved: pd.DataFrame,
    first_publish: bool,
    segments: pd.DataFrame,
    profiles: pd.DataFrame,
    as_of: dt.date,
    run_id: str,
) -> pd.DataFrame:
    """The previous publish's history plus one row per segment of this run, with the customers who
    stayed in, joined or left each segment since the previous publish (``moved``: migration_since)."""
    src, dst, n = moved["from_segment_id"], moved["to_segment_id"], moved["customers"]
    same = (src == dst).fillna(False).to_numpy(dtype=bool)
    if first_publish:  # everyone joined
        n = segments["segment_id"].value_counts()
        stayed, joined, left = pd.Series(dtype="int64"), n, pd.Series(dtype="int64")
    else:
        stayed = n[same].groupby(dst[same]).sum()
        joined = n[~same & dst.notna()].groupby(dst[~same & dst.notna()]).sum()
        left = n[~same & src.notna()].groupby(src[~same & src.notna()]).sum()
    rows = profiles[
        ["segment_id", "segment_name", "customers", "share", "mean_churn_probability", "revenue_365d"]
    ]
    rows = rows.assign(
        customers_stayed=rows["segment_id"].map(stayed).fillna(0).astype("int64"),
        customers_joined=rows["segment_id"].map(joined).fillna(0).astype("int64"),
        customers_left=rows["segment_id"].map(left).fillna(0).astype("int64"),
        as_of=pd.Timestamp(as_of),
        run_id=run_id,
    )[column_names("segment_history")]
    if previous_history is not None and len(previous_history):
        earlier = previous_history[previous_history["run_id"] != run_id][column_names("segment_history")]
        rows = pd.concat([earlier, rows], ignore_index=True)
    return rows.sort_values(["as_of", "run_id", "segment_id"], ignore_index=True)


def kpi_history(
    previous_history: pd.DataFrame | None,
    customers: pd.DataFrame,
    profiles: pd.DataFrame,
    as_of: dt.date,
    run_id: str,
) -> pd.DataFrame:
    """The previous publish's KPI history plus this run's headline numbers, one row per (measure, breakdown):
    what the report's trend charts draw, kept in a table so a BI tool can draw them too."""
    tier = customers["risk_tier"]
    listed = tier.isin(RETENTION_TIERS)
    rows = [
        ("customers", "all", "All customers", len(customers)),
        ("mean_churn_probability", "all", "All customers", customers["churn_probability"].mean()),
        ("revenue_365d", "all", "All customers", customers["value_365d"].sum(min_count=1)),
        ("expected_loss", "all", "All customers", customers["expected_loss"].sum(min_count=1)),
        ("retention_list_customers", "all", "Retention list", int(listed.sum())),
        ("retention_list_expected_loss", "all", "Retention list",
         customers.loc[listed, "expected_loss"].sum(min_count=1)),
    ]  # fmt: skip
    for name in TIERS:
        members = customers[tier == name]
        rows.append(("tier_customers", name, TIER_LABELS[name], len(members)))
        rows.append(("mean_churn_probability", name, TIER_LABELS[name], members["churn_probability"].mean()))
    for profile in profiles.itertuples():
        rows.append(
            ("segment_customers", f"segment:{profile.segment_id}", profile.segment_name, profile.customers)
        )
    table = pd.DataFrame(rows, columns=["measure", "breakdown", "breakdown_label", "value"])
    earlier = None
    sequence = 1
    if previous_history is not None and len(previous_history):
        earlier = previous_history[previous_history["run_id"] != run_id][column_names("kpi_history")]
        sequence = int(earlier["publish_sequence"].max()) + 1 if len(earlier) else 1
    table = _stamped(table.astype({"value": "float64"}).assign(publish_sequence=sequence), "kpi_history", as_of,
                     run_id)  # fmt: skip
    if earlier is not None:
        table = pd.concat([earlier, table], ignore_index=True)
    return table.sort_values(["as_of", "publish_sequence"], kind="stable", ignore_index=True)


def drift_frame(features: pd.DataFrame, scores: pd.DataFrame, wanted: list[str]) -> pd.DataFrame:
    """The columns drift is measured on: the listed features present this run and the churn score."""
    present = [f for f in wanted if f in features.columns]
    frame = features[["customer_key", *present]].merge(
        scores[["customer_key", "churn_probability"]], on="customer_key", how="left"
    )
    return frame.drop(columns="customer_key").astype({c: "float64" for c in present if _numeric(frame[c])})


def _numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def retention_uplift(
    previous: pd.DataFrame | None, judged: pd.DataFrame, as_of: dt.date, run_id: str
) -> pd.DataFrame:
    """Every judged retention list's uplift rows: the previous publish's, with those of lists judged again now
    (a rerun) replaced by this run's (``judged``: the realized_uplift rows)."""
    new = judged.assign(as_of=pd.Timestamp(as_of), run_id=run_id)
    new = (
        new[column_names("retention_uplift")]
        if len(new)
        else pd.DataFrame(columns=column_names("retention_uplift"))
    )
    if previous is None or previous.empty:
        return new.reset_index(drop=True)
    kept = previous[~previous["scored_run_id"].isin(set(new["scored_run_id"]))][
        column_names("retention_uplift")
    ]
    parts = [part for part in (kept, new) if len(part)]
    table = pd.concat(parts, ignore_index=True) if parts else new
    return table.sort_values(["scored_as_of", "scored_run_id"], kind="stable", ignore_index=True)
