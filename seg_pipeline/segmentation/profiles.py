"""What each segment is: size, value, churn, per-feature deviation from the population, a readable name,
an id that stays the same across runs, and how customers moved between segments since the last run.

Deviations are in population standard deviations of each feature after a log transform of skewed
non-negative features (so one huge order does not make a whole segment "high value"). They pick which
features set a segment apart; its traits then say so in each feature's own unit, against the average
customer ("orders 2.3× as often as the average customer"), through the features catalogue's words.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from seg_pipeline import wording
from seg_pipeline.features import catalogue

# A segment whose profile is further than this (root mean squared deviation difference) from every
# previous segment is new and gets a new id rather than an old one it merely resembles.
MAX_MATCH_DISTANCE = 1.0

# Readable traits: feature -> (words when the segment is high on it, words when low). Order = priority.
VALUE = {"monetary_365d": ("High-value", "Low-value"), "avg_order_value": ("Big-basket", "Small-basket"),
         "monthly_charges": ("High-paying", "Low-paying")}  # fmt: skip
RHYTHM = {"frequency_365d": ("frequent", "occasional"),
          "interpurchase_mean_days": ("occasional", "frequent")}  # fmt: skip
ACTIVITY = {"recency_days": ("dormant", None), "email_open_rate": ("highly engaged", "low engagement"),
            "web_sessions_90d": ("web-active", None), "tickets_365d": ("support-heavy", None),
            "satisfaction_mean": (None, "unhappy with support")}  # fmt: skip
TRAIT_THRESHOLD = 0.5  # |deviation| in standard deviations before a trait is named
MIX_THRESHOLD = 1.0  # ... before a channel or category names the segment
MIX_PREFIXES = {"channel_share_": "channel", "category_share_": "category"}
# A channel or category in a name: (before "customers"/"buyers", after "via"/"buying"); others as they are.
# "home buyers" would be people buying houses, "store buyers" people buying shops.
MIX_WORDS = {
    "channel": {"store": ("in-store", "store"), "web": ("web-shop", "web shop"), "sales_rep": ("sales-rep", "sales rep")},
    "category": {"home": ("home-goods", "home goods"), "office": ("office-supply", "office supplies"),
                 "services": ("service", "services")},
}  # fmt: skip
NOT_NAMED = ("unknown", "other")  # unrecorded or leftover channels and categories say nothing about a segment
# A segment's traits compare medians for durations and trends (a few very long gaps or swings would pull
# a mean), means for everything else.
MEDIAN_UNITS = ("days", "hours", "ratio", "log_ratio")
# A multiple ("2.3× as often") for values this far apart; closer ones, or below a tenth, read better as
# the two values ("spends €420 per order (average €390)").
RATIO_HIGH, RATIO_LOW, RATIO_FLOOR = 1.5, 0.67, 0.1


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


def _mixes(dev: pd.Series) -> list[tuple[str, str]]:
    """The channels and categories the segment buys through or in far more than others (strongest
    first), as (kind, slug): ("channel", "store")."""
    found = []
    for column, z in dev.items():
        prefix = next((p for p in MIX_PREFIXES if str(column).startswith(p)), None)
        slug = str(column).removeprefix(prefix) if prefix else ""
        if prefix and slug not in NOT_NAMED and not np.isnan(z) and z >= MIX_THRESHOLD:
            found.append((z, MIX_PREFIXES[prefix], slug))
    return [(kind, slug) for _, kind, slug in sorted(found, key=lambda t: -t[0])]


def _mix_words(kind: str, slug: str) -> tuple[str, str]:
    words = slug.replace("_", " ")
    return MIX_WORDS[kind].get(slug, (words.replace(" ", "-"), words))


def segment_name(dev: pd.Series) -> list[str]:
    """Name parts, most telling first. The first part is the name: value, buying rhythm and the channel or
    category the segment stands out on ("High-value frequent in-store buyers", "Mid-value home-goods
    buyers"); the others (another channel or category, an activity trait) tell similar segments apart."""

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
    rhythm = strongest(RHYTHM)
    mixes = _mixes(dev)
    words = [value, rhythm] if rhythm else [value]
    if mixes:
        kind, slug = mixes[0]
        words.append(_mix_words(kind, slug)[0])
    # a channel alone describes customers; buying something (or buying often or rarely) makes them buyers
    words.append("customers" if not rhythm and (not mixes or mixes[0][0] == "channel") else "buyers")
    name = " ".join(words)
    dormant = dev.get("recency_days", np.nan)
    if not np.isnan(dormant) and dormant >= 2 * TRAIT_THRESHOLD:
        name = f"Dormant {name[0].lower()}{name[1:]}"
    extras = [
        ("via " if kind == "channel" else "buying ") + _mix_words(kind, slug)[1] for kind, slug in mixes[1:]
    ]
    activity = strongest({k: v for k, v in ACTIVITY.items() if k != "recency_days"})
    if activity:
        extras.append(activity)
    return [name, *extras]


def unique_names(devs: pd.DataFrame) -> dict[int, str]:
    """One distinct readable name per segment: add traits until names differ, else number them. A name
    without a channel or category carries its first trait from the start ("..., highly engaged")."""
    parts = {seg: segment_name(devs.loc[seg]) for seg in devs.index}
    depth = {seg: 1 if _mixes(devs.loc[seg]) else min(2, len(p)) for seg, p in parts.items()}
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
                  churned: pd.Series | None, *, currency: str = "EUR", locale: str = "en") -> pd.DataFrame:  # fmt: skip
    """One row per segment: size, share, value, observed churn, its strongest deviations (for analysts)
    and the same features as traits in words (``currency`` and ``locale`` for money and numbers)."""
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
    table["top_traits"] = traits(features, segment, devs, table.index, 5, currency, locale)
    table.index.name = "segment_id"
    columns = ["segment_name", "customers", "share", "revenue_365d", "revenue_share", "mean_revenue_365d",
               "observed_churn_rate", "top_traits", "top_deviations"]  # fmt: skip
    return table[columns].reset_index()


def _strongest(devs: pd.DataFrame, group, n: int) -> pd.Series:
    return devs.loc[group].dropna().sort_values(key=abs, ascending=False).head(n)


def traits(features: pd.DataFrame, segment: pd.Series, devs: pd.DataFrame, groups, n: int,
           currency: str = "EUR", locale: str = "en") -> list[str]:  # fmt: skip
    """Per group, the features of its n largest deviations as phrases against the average customer,
    separated by "; " (numbers contain commas): "orders 2.3× as often as the average customer; last
    purchase 143 days ago (typical customer 40 days)"."""
    columns = list(devs.columns)
    if not columns:
        return [""] * len(groups)
    values = features[columns].reset_index(drop=True)
    by = values.groupby(np.asarray(segment))
    median = [c for c in columns if catalogue.unit_of(c) in MEDIAN_UNITS]
    in_segment = by.mean()
    in_segment[median] = by[median].median()
    overall = values.mean()
    overall[median] = values[median].median()
    return [
        "; ".join(
            trait(c, in_segment.at[g, c], overall[c], currency, locale) for c in _strongest(devs, g, n).index
        )
        for g in groups
    ]


def trait(column: str, in_segment: float, overall: float, currency: str = "EUR", locale: str = "en") -> str:
    """One feature of a segment against all customers, in the feature's unit: a multiple where the two
    are far apart and the catalogue has words for it ("orders 2.3× as often as the average customer"),
    else both values ("62% of orders via app (average 18%)", "last purchase 143 days ago (typical
    customer 40 days)" for medians). No "; " inside: it separates the traits."""
    unit = catalogue.unit_of(column)
    if unit == "flag":
        return f"{catalogue.share_with_flag(column, in_segment, locale)} (average {wording.percent(overall, locale)})"
    both_positive = in_segment > 0 and overall > 0  # False for missing values too
    ratio = in_segment / overall if both_positive else np.nan
    if both_positive and (ratio >= RATIO_HIGH or RATIO_FLOOR <= ratio <= RATIO_LOW):
        phrase = catalogue.comparison(column, ratio, locale)
        if phrase:
            return phrase
    reference = "typical customer" if unit in MEDIAN_UNITS else "average"
    return (f"{catalogue.describe(column, in_segment, currency, locale)} "
            f"({reference} {catalogue.amount(column, overall, currency, locale)})")  # fmt: skip


def strongest_deviations(devs: pd.DataFrame, groups, n: int) -> list[str]:
    """Per group, its n largest deviations as text: "avg_order_value +2.3, channel_share_app -0.7"."""
    return [", ".join(f"{c} {z:+.1f}" for c, z in _strongest(devs, g, n).items()) for g in groups]


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
