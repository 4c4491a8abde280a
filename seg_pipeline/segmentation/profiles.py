"""What each segment is: size, value, churn, per-feature deviation from the population, a readable name,
an id that stays the same across runs, and how customers moved between segments since the last run.

Deviations are in population standard deviations of each feature after a log transform of skewed
non-negative features (so one huge order does not make a whole segment "high value").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# A segment whose profile is further than this (root mean squared deviation difference) from every
# previous segment is new and gets a new id rather than an old one it merely resembles.
MAX_MATCH_DISTANCE = 1.0

# Readable traits: feature -> (words when the segment is high on it, words when low). Order = priority.
VALUE = {"monetary_365d": ("High-value", "Low-value"), "avg_order_value": ("Big-basket", "Small-basket"),
         "monthly_charges": ("High-paying", "Low-paying")}  # fmt: skip
RHYTHM = {"frequency_365d": ("frequent buyers", "occasional buyers"),
          "interpurchase_mean_days": ("occasional buyers", "frequent buyers")}  # fmt: skip
ACTIVITY = {"recency_days": ("dormant", None), "email_open_rate": ("highly engaged", "low engagement"),
            "web_sessions_90d": ("web-active", None), "tickets_365d": ("support-heavy", None),
            "satisfaction_mean": (None, "unhappy with support")}  # fmt: skip
TRAIT_THRESHOLD = 0.5  # |deviation| in standard deviations before a trait is named


def _comparable(values: pd.Series) -> pd.Series:
    """log1p for skewed non-negative features, as they are otherwise."""
    v = values.astype("float64")
    if v.min(skipna=True) >= 0 and v.skew(skipna=True) > 1:
        return np.log1p(v)
    return v


def deviations(features: pd.DataFrame, labels: pd.Series, columns: list[str]) -> pd.DataFrame:
    """Segment x feature: (segment mean - population mean) / population std, on comparable scales."""
    groups = pd.Index(np.unique(labels.to_numpy()))
    if len(groups) < 2:  # one group is the whole population: it deviates from it nowhere
        return pd.DataFrame(index=groups)
    rows = {}
    for column in columns:
        v = _comparable(features[column])
        std = v.std()
        if not std or np.isnan(std):
            continue
        rows[column] = (v.groupby(labels.to_numpy()).mean() - v.mean()) / std
    return pd.DataFrame(rows, index=groups)


def _slug_words(column: str, prefix: str) -> str:
    return column.removeprefix(prefix).replace("_", " ")


def segment_name(dev: pd.Series) -> list[str]:
    """Name parts, most telling first: value, buying rhythm, then the strongest channel/category/activity trait."""

    def strongest(traits: dict) -> str | None:
        best, best_z = None, TRAIT_THRESHOLD
        for column, (high, low) in traits.items():
            z = dev.get(column, np.nan)
            if np.isnan(z):
                continue
            word = high if z > 0 else low
            if word and abs(z) >= best_z:
                best, best_z = word, abs(z)
        return best

    value = strongest(VALUE) or "Mid-value"
    rhythm = strongest(RHYTHM) or "customers"
    extras = []
    dormant = dev.get("recency_days", np.nan)
    if not np.isnan(dormant) and dormant >= 2 * TRAIT_THRESHOLD:
        value = f"Dormant, {value.lower()}"
    mixes = {c: z for c, z in dev.items() if c.startswith(("channel_share_", "category_share_")) and z >= 1}
    for column, _ in sorted(mixes.items(), key=lambda kv: -kv[1]):
        if column.startswith("channel_share_"):
            extras.append(f"via {_slug_words(column, 'channel_share_')}")
        else:
            extras.append(f"buying {_slug_words(column, 'category_share_')}")
    activity = strongest({k: v for k, v in ACTIVITY.items() if k != "recency_days"})
    if activity:
        extras.append(activity)
    return [f"{value} {rhythm}", *extras]


def unique_names(devs: pd.DataFrame) -> dict[int, str]:
    """One distinct readable name per segment: add traits until names differ, else number them."""
    parts = {seg: segment_name(devs.loc[seg]) for seg in devs.index}
    depth = {seg: min(2, len(p)) for seg, p in parts.items()}  # base name plus the most telling trait
    while True:
        names = {seg: ", ".join(p[: depth[seg]]) for seg, p in parts.items()}
        clashes = pd.Series(names).duplicated(keep=False)
        grow = [seg for seg in clashes[clashes].index if depth[seg] < len(parts[seg])]
        if not grow:
            break
        for seg in grow:
            depth[seg] += 1
    counts = pd.Series(names).value_counts()
    seen: dict[str, int] = {}
    for seg in sorted(names):
        if counts[names[seg]] > 1:
            seen[names[seg]] = seen.get(names[seg], 0) + 1
            names[seg] = f"{names[seg]} ({seen[names[seg]]})"
    return names


def stable_ids(devs: pd.DataFrame, previous: pd.DataFrame | None) -> tuple[dict[int, int], dict[int, float]]:
    """Map this fit's cluster labels to segment ids: the previous run's id of the nearest previous profile
    (optimal one-to-one matching), a new id for a cluster that matches none. Also the match distances."""
    labels = list(devs.index)
    if previous is None or previous.empty:
        return {label: i + 1 for i, label in enumerate(labels)}, {}
    prev = previous.pivot_table(index="segment_id", columns="feature", values="deviation")
    common = [c for c in devs.columns if c in prev.columns]
    if not common:
        start = int(prev.index.max()) + 1
        return {label: start + i for i, label in enumerate(labels)}, {}
    from scipy.optimize import linear_sum_assignment

    a = devs[common].fillna(0).to_numpy()
    b = prev[common].fillna(0).to_numpy()
    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).mean(axis=2))
    rows, cols = linear_sum_assignment(cost)
    mapping, distance = {}, {}
    for r, c in zip(rows, cols, strict=True):
        if cost[r, c] <= MAX_MATCH_DISTANCE:
            mapping[labels[r]] = int(prev.index[c])
            distance[labels[r]] = float(cost[r, c])
    next_id = int(prev.index.max()) + 1
    for label in labels:
        if label not in mapping:
            mapping[label] = next_id
            next_id += 1
    return mapping, distance


def profile_table(features: pd.DataFrame, segment: pd.Series, names: dict[int, str], devs: pd.DataFrame,
                  churned: pd.Series | None) -> pd.DataFrame:  # fmt: skip
    """One row per segment: size, share, value, observed churn and its strongest deviations in words."""
    frame = pd.DataFrame({"segment_id": segment.to_numpy()})
    frame["revenue"] = revenue_of(features).to_numpy()
    frame["churned"] = churned.to_numpy() if churned is not None else np.nan
    grouped = frame.groupby("segment_id")
    table = pd.DataFrame(
        {
            "customers": grouped.size(),
            "revenue_365d": grouped["revenue"].sum(min_count=1),
            "mean_revenue_365d": grouped["revenue"].mean(),
            "observed_churn_rate": grouped["churned"].mean(),
        }
    )
    table["share"] = table["customers"] / table["customers"].sum()
    total = table["revenue_365d"].sum()
    table["revenue_share"] = table["revenue_365d"] / total if total else np.nan
    table["segment_name"] = table.index.map(names)
    table["top_deviations"] = strongest_deviations(devs, table.index, 5)
    table.index.name = "segment_id"
    columns = ["segment_name", "customers", "share", "revenue_365d", "revenue_share", "mean_revenue_365d",
               "observed_churn_rate", "top_deviations"]  # fmt: skip
    return table[columns].reset_index()


def strongest_deviations(devs: pd.DataFrame, groups, n: int) -> list[str]:
    """Per group, its n largest deviations as text: "avg_order_value +2.3, channel_share_app -0.7"."""
    return [
        ", ".join(
            f"{c} {z:+.1f}"
            for c, z in devs.loc[g].dropna().sort_values(key=abs, ascending=False).head(n).items()
        )
        for g in groups
    ]


def revenue_of(features: pd.DataFrame) -> pd.Series:
    """365-day spend per customer, missing when there is no orders extract."""
    if "monetary_365d" in features:
        return features["monetary_365d"]
    return pd.Series(np.nan, index=features.index)


def long_deviations(devs: pd.DataFrame) -> pd.DataFrame:
    """segment_id, feature, deviation: what the next run matches its segments against."""
    out = devs.rename_axis(index="segment_id", columns="feature").stack().rename("deviation").reset_index()
    # feature names are text even when there are none (a single segment deviates nowhere)
    return out.astype({"segment_id": "int64", "feature": "object", "deviation": "float64"})


def migration(previous: pd.DataFrame | None, current: pd.DataFrame) -> pd.DataFrame:
    """Customers per (previous segment, current segment); missing ids mean joined or left the population."""
    columns = ["from_segment_id", "to_segment_id", "customers"]
    if previous is None:
        return pd.DataFrame({c: pd.Series(dtype="Int64") for c in columns})
    joined = previous[["customer_key", "segment_id"]].merge(
        current[["customer_key", "segment_id"]], on="customer_key", how="outer", suffixes=("_from", "_to")
    )
    counts = (
        joined.groupby(["segment_id_from", "segment_id_to"], dropna=False)
        .size()
        .rename("customers")
        .reset_index()
    )
    counts.columns = columns
    return counts.astype("Int64").sort_values(columns[:2]).reset_index(drop=True)


def micro_segment_counts(sizes: pd.Series, total: int) -> pd.Series:
    """Micro-segments per segment, proportional to size (largest remainder), at least one each."""
    raw = sizes / sizes.sum() * total
    counts = np.maximum(np.floor(raw).astype(int), 1)
    order = (raw - np.floor(raw)).sort_values(ascending=False).index
    i = 0
    while counts.sum() < total:
        counts[order[i % len(order)]] += 1
        i += 1
    while counts.sum() > total:  # the at-least-one floor overshot: take from the largest
        counts[counts.idxmax()] -= 1
    return np.minimum(counts, sizes)


def migration_summary(moved: pd.DataFrame) -> dict[str, int]:
    """Customers who stayed, changed segment, joined the population or left it since the last run."""
    src, dst, n = moved["from_segment_id"], moved["to_segment_id"], moved["customers"]
    both = src.notna() & dst.notna()
    return {
        "stayed": int(n[both & (src == dst).fillna(False)].sum()),
        "changed_segment": int(n[both & (src != dst).fillna(False)].sum()),
        "joined": int(n[src.isna()].sum()),
        "left": int(n[dst.isna()].sum()),
    }
