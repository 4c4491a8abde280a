"""The feature catalogue: every feature of customer_features, defined once (the README table mirrors it),
with the words a marketing manager reads it in.

Each feature has a label (what it is, for a table) and a unit kind, and phrases that put a value into a
sentence: ``describe("days_since_last_purchase", 143)`` is "last purchase 143 days ago",
``describe("channel_share_app", 0.62)`` is "62% of orders via app". The report, `explain`, segment traits
and churn drivers all word features here, so a feature is named the same way everywhere.

Phrase templates: "{}" is the value with its unit, "(s)" a plural ending (dropped for exactly 1), and a
templated name's placeholder ("<channel>") the column's level in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import pandas as pd

from seg_pipeline import wording

YEAR_DAYS = 365
QUARTER_DAYS = 90

# How a value is measured, hence worded and compared.
UNITS = {
    "days": "days (a time ago or a duration)",
    "hours": "hours",
    "count": "a number of things (orders, visits, tickets)",
    "money": "an amount in report.currency",
    "share": "a share of the customer's orders",
    "rate": "a share of e-mails sent",
    "probability": "a model's probability",
    "score": "a score from 1 to 5",
    "flag": "yes (1) or no (0)",
    "ratio": "a ratio around 1 (1 = as usual)",
    "log_ratio": "log(1 + now) - log(1 + before) (0 = no change)",
    "attribute": "a CRM attribute, as it is",
}
# Units whose segment and population means may be compared as a multiple ("2.3× as often"), where the
# feature has words for it (its compare phrase; shares have none: two percentages say more)
RATIO_UNITS = ("count", "money", "share", "rate")


@dataclass(frozen=True)
class Feature:
    name: str
    source: str
    definition: str
    # "profile": what kind of customer (value, rhythm, mix, engagement rates) -> clustered into segments.
    # "state": where the customer is now (volume in a window, recency, tenure, trends) -> lifecycle and churn.
    role: str = "state"
    label: str = ""  # what the feature is, for a table header: "days since the last purchase"
    unit: str = "attribute"  # a key of UNITS
    phrase: str = ""  # a value in a sentence: "last purchase {} ago"
    zero: str = ""  # ... when the value is 0, if that reads better: "no orders in the last 365 days"
    missing: str = ""  # ... when the value is missing: "no purchase yet"
    compare: str = ""  # a segment against the average customer: "orders {} as often as the average customer"
    among: str = ""  # flags: the share of a group with the flag set: "{} have unsubscribed from e-mails"
    # ratio and log_ratio units: (rising by a percentage, rising by a multiple, falling, steady)
    trend: tuple[str, str, str, str] = ("", "", "", "")


def _orders_mix(where: str) -> dict:
    """A share of the customer's orders: "62% of orders via app". No multiple: a segment's 52% against
    18% says more than "2.9× the average share"."""
    return {"label": f"share of orders {where}", "unit": "share", "phrase": f"{{}} of orders {where}",
            "missing": "no orders"}  # fmt: skip


def _count(things: str, window: str, compare: str) -> dict:
    """A count: ``things`` with a plural mark ("order(s)"), then its window: "12 orders in the last 365
    days", "1 order in the last 365 days", "no orders in the last 365 days"."""
    text = f"{things} {window}".strip()
    return {"label": text.replace("(s)", "s"), "unit": "count", "phrase": "{} " + text,
            "zero": "no " + text.replace("(s)", "s"), "compare": compare}  # fmt: skip


CATALOGUE: tuple[Feature, ...] = (
    Feature("tenure_days", "crm_customers", "days from signup (else first activity) to as_of",
            label="days as a customer", unit="days", phrase="customer for {}", missing="signup date unknown"),
    Feature("recency_days", "all events", "days since the last order, page view, email open/click or ticket",
            label="days since the last activity", unit="days", phrase="last active {} ago",
            missing="no activity recorded"),
    Feature("days_since_last_purchase", "orders", "days since the last order",
            label="days since the last purchase", unit="days", phrase="last purchase {} ago",
            missing="no purchase yet"),
    Feature("frequency_365d", "orders", "orders in the 365 days up to as_of",
            **_count("order(s)", "in the last 365 days", "orders {} as often as the average customer")),
    Feature("monetary_365d", "orders", "sum of order amounts in the 365 days up to as_of",
            label="spend in the last 365 days", unit="money", phrase="{} spent in the last 365 days",
            zero="nothing spent in the last 365 days", compare="spends {} as much as the average customer"),
    Feature("avg_order_value", "orders", "mean order amount over all orders up to as_of", "profile",
            label="average order value", unit="money", phrase="spends {} per order", missing="no orders",
            compare="spends {} as much per order as the average customer"),
    Feature("orders_total", "orders", "orders up to as_of",
            **_count("order(s)", "in total", "{} as many orders in total as the average customer")),
    Feature("interpurchase_mean_days", "orders", "mean days between consecutive orders", "profile",
            label="days between orders", unit="days", phrase="orders every {}",
            missing="fewer than two orders"),
    Feature("interpurchase_trend", "orders", "mean of the last 3 gaps between orders / mean of all gaps (>1 = slowing)",
            label="pace of recent orders (last 3 gaps vs all)", unit="ratio", missing="fewer than two orders",
            trend=("ordering more slowly: last 3 gaps between orders {} longer than usual",
                   "ordering more slowly: last 3 gaps between orders {} as long as usual",
                   "ordering faster: last 3 gaps between orders {} shorter than usual",
                   "ordering at the usual pace")),
    Feature("spend_trend", "orders", "log(1 + spend in the last 90 days) - log(1 + spend in the 90 days before)",
            label="spend, last 90 days vs the 90 days before", unit="log_ratio",
            trend=("spend rising: last 90 days {} above the 90 days before",
                   "spend rising: last 90 days {} the 90 days before",
                   "spend falling: last 90 days {} below the 90 days before",
                   "spend steady: last 90 days within 10% of the 90 days before")),
    Feature("channel_share_<channel>", "orders", "share of orders through each sales channel (top 8 channels); missing without orders", "profile",
            **_orders_mix("via <channel>")),
    Feature("category_share_<category>", "orders", "share of orders in each product category (top 8); missing without orders", "profile",
            **_orders_mix("in <category>")),
    Feature("btyd_p_alive", "orders", "BG/NBD probability that the customer is still a buyer (model fitted on the orders up to as_of)",
            label="chance still an active buyer (BG/NBD)", unit="probability",
            phrase="{} chance of still being an active buyer", missing="no purchase-pattern estimate"),
    Feature("btyd_expected_orders_horizon", "orders", "BG/NBD expected orders in the churn horizon after as_of",
            label="orders expected in the churn window (BG/NBD)", unit="count",
            phrase="{} order(s) expected in the churn window", zero="no orders expected in the churn window",
            missing="no purchase-pattern estimate",
            compare="expected to order {} as much as the average customer"),
    Feature("btyd_p_no_order_horizon", "orders", "BG/NBD probability of no order in the churn horizon after as_of",
            label="chance of no order in the churn window (BG/NBD)", unit="probability",
            phrase="{} chance of no order in the churn window", missing="no purchase-pattern estimate"),
    Feature("web_sessions_90d", "web_events", "distinct sessions in the 90 days up to as_of",
            **_count("website visit(s)", "in the last 90 days", "visits the website {} as often as the average customer")),
    Feature("web_page_views_90d", "web_events", "page views in the 90 days up to as_of",
            **_count("page(s) viewed", "in the last 90 days", "views {} as many pages as the average customer")),
    Feature("web_recency_days", "web_events", "days since the last web event",
            label="days since the last website visit", unit="days", phrase="last website visit {} ago",
            missing="no website visit recorded"),
    Feature("email_open_rate", "email_events", "opens / emails sent, 365 days", "profile",
            label="e-mails opened (365 days)", unit="rate", phrase="opens {} of e-mails",
            zero="opened none of the e-mails of the last 365 days", missing="no e-mails sent in the last 365 days",
            compare="opens e-mails {} as often as the average customer"),
    Feature("email_click_rate", "email_events", "clicks / emails sent, 365 days", "profile",
            label="e-mails clicked (365 days)", unit="rate", phrase="clicks {} of e-mails",
            zero="clicked none of the e-mails of the last 365 days", missing="no e-mails sent in the last 365 days",
            compare="clicks e-mails {} as often as the average customer"),
    Feature("email_unsubscribed", "email_events", "1 if the customer unsubscribed up to as_of, else 0",
            label="unsubscribed from e-mails", unit="flag", phrase="unsubscribed from e-mails",
            zero="subscribed to e-mails", among="{} have unsubscribed from e-mails"),
    Feature("tickets_365d", "support_tickets", "tickets opened in the 365 days up to as_of",
            **_count("support ticket(s)", "in the last 365 days", "opens {} as many support tickets as the average customer")),
    Feature("tickets_<topic>_365d", "support_tickets", "tickets per topic in the 365 days up to as_of (top 8)",
            **_count("<topic> support ticket(s)", "in the last 365 days",
                     "{} as many <topic> support tickets as the average customer")),
    Feature("resolution_hours_mean", "support_tickets", "mean hours from ticket creation to resolution (resolved by as_of)",
            label="hours to resolve a ticket", unit="hours", phrase="tickets resolved in {}",
            missing="no resolved tickets"),
    Feature("satisfaction_mean", "support_tickets", "mean satisfaction score (1-5) of tickets up to as_of", "profile",
            label="satisfaction with support (1-5)", unit="score", phrase="rates support {}",
            missing="no rated support tickets"),
    Feature("low_satisfaction_tickets", "support_tickets", "tickets scored 1 or 2 up to as_of",
            **_count("ticket(s) rated 1 or 2 out of 5", "", "{} as many poorly rated tickets as the average customer")),
    Feature("<attribute>", "crm_customers", "each customer_attributes.numeric / .categorical column as it is", "profile",
            label="the attribute's name"),
)  # fmt: skip

# A templated column's level in words where the slug alone reads badly ("channel_share_unknown" is the share
# of orders whose channel was not recorded, not a channel called "unknown").
SPECIAL_LEVELS = {
    "<channel>": {"unknown": "an unrecorded channel", "other": "other channels"},
    "<category>": {"unknown": "an unrecorded category", "other": "other categories"},
    "<topic>": {"unknown": "unlabelled", "other": "other"},
}
LEVEL_WORDING = {"<category>": "the {} category"}  # "in the home category"; channels and topics as they are


def catalogue_markdown() -> str:
    rows = [f"| `{f.name}` | {f.label} | {f.source} | {f.definition} | {f.role} |" for f in CATALOGUE]
    return "| feature | label | source | definition | role |\n|---|---|---|---|---|\n" + "\n".join(rows)


def catalogue_entry(column: str) -> Feature | None:
    """The catalogue's feature a column is (``channel_share_app`` is ``channel_share_<channel>``), if any."""
    for feature in CATALOGUE:
        if "<" not in feature.name:
            if feature.name == column:
                return feature
            continue
        prefix, suffix = feature.name.split("<")[0], feature.name.split(">")[-1]
        if (
            prefix
            and column.startswith(prefix)
            and column.endswith(suffix)
            and len(column) > len(prefix + suffix)
        ):
            return feature
    return None


def feature_role(column: str, attributes: list[str]) -> str:
    """The catalogue role of a customer_features column; "unknown" shares are data quality, not behaviour."""
    if column in attributes:
        return "profile"
    if column.endswith("_unknown"):
        return "state"
    feature = catalogue_entry(column)
    return feature.role if feature is not None else "state"


# ---------------------------------------------------------------------------------------------------------
# Words for values


def _words(slug: str) -> str:
    return slug.replace("_", " ").strip()


@lru_cache(maxsize=4096)
def worded(column: str) -> Feature:
    """The column's catalogue entry with its level filled into label and phrases ("via <channel>" becomes
    "via app"); a column the catalogue does not know (a CRM attribute) worded as its name."""
    feature = catalogue_entry(column)
    if feature is None or feature.name == "<attribute>":
        return Feature(column, "crm_customers", "", "profile", label=_words(column), unit="attribute")
    if "<" not in feature.name:
        return feature
    placeholder = "<" + feature.name.split("<")[1].split(">")[0] + ">"
    prefix, suffix = feature.name.split("<")[0], feature.name.split(">")[-1]
    slug = column[len(prefix) : len(column) - len(suffix)]
    level = SPECIAL_LEVELS[placeholder].get(slug) or LEVEL_WORDING.get(placeholder, "{}").format(_words(slug))

    def fill(text: str) -> str:
        return text.replace(placeholder, level)

    return replace(feature, name=column, label=fill(feature.label), phrase=fill(feature.phrase),
                   zero=fill(feature.zero), missing=fill(feature.missing), compare=fill(feature.compare),
                   among=fill(feature.among))  # fmt: skip


def label(column: str) -> str:
    """What the column is, for a table header: "days since the last purchase", "share of orders via app"."""
    return worded(column).label


def unit_of(column: str) -> str:
    return worded(column).unit


def _missing(value) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def displayed(unit: str, values):
    """Values rounded to what their words show (whole days, whole percent, cents dropped), so formatting
    can be done once per distinct shown value. Takes a number or an array of numbers."""
    v = np.asarray(values, dtype="float64")
    if unit in ("days", "money"):
        out = np.round(v)
    elif unit == "hours":  # whole hours up to two days, whole days beyond
        out = np.where(v >= 48, np.round(v / 24) * 24, np.round(v))
    elif unit in ("share", "rate", "probability"):
        out = np.where(np.abs(v) < 0.01, np.round(v, 3), np.round(v, 2))
    elif unit == "count":
        out = np.where(np.abs(v) >= 10, np.round(v), np.round(v, 1))
    elif unit in ("score", "ratio", "log_ratio"):
        out = np.round(v, 2 if unit != "score" else 1)
    elif unit == "flag":
        out = v
    else:  # a numeric attribute
        out = np.where(np.abs(v) >= 100, np.round(v), np.round(v, 2))
    return out if out.ndim else float(out)


def _plural(text: str, value: float) -> str:
    return text.replace("(s)", "" if value == 1 else "s")


def _trend_change(unit: str, value: float) -> float:
    """The trend as "now / before" (1 = no change): log ratios are turned back into a ratio."""
    return math.exp(value) if unit == "log_ratio" else value


def _days(value: float, locale: str) -> str:
    if value < 1:
        return "less than a day"
    return "1 day" if value == 1 else f"{wording.number(value, locale, 0)} days"


def _hours(value: float, locale: str) -> str:
    if value < 1:
        return "less than an hour"
    if value >= 48:
        return _days(value / 24, locale)
    return "1 hour" if value == 1 else f"{wording.number(value, locale, 0)} hours"


def _value_text(feature: Feature, value, currency: str, locale: str) -> str:
    """The value with its unit, short: "143 days", "€1,240", "62%", "3.5 of 5"."""
    unit = feature.unit
    if unit == "days":
        return _days(value, locale)
    if unit == "hours":
        return _hours(value, locale)
    if unit == "money":
        return wording.money(value, currency, locale)
    if unit in ("share", "rate", "probability"):
        return wording.percent(value, locale)
    if unit == "count":
        return wording.number(value, locale, 1)
    if unit == "score":
        return f"{wording.number(value, locale, 1)} of 5"
    if unit == "flag":
        return feature.phrase if value else feature.zero
    if unit in ("ratio", "log_ratio"):
        ratio = _trend_change(unit, value)
        if abs(ratio - 1) < 0.1:
            return "no change"
        if ratio >= 2:
            return wording.times(ratio, locale) if ratio < 10 else "more than 10×"
        return ("+" if ratio > 1 else "") + wording.percent(ratio - 1, locale)
    if isinstance(value, float | np.floating):
        return wording.number(value, locale, 2)
    return str(value)


def _trend_phrase(feature: Feature, value: float, locale: str) -> str:
    rising_pct, rising_times, falling, steady = feature.trend
    ratio = _trend_change(feature.unit, value)
    if abs(ratio - 1) < 0.1:
        return steady
    if ratio >= 2:
        return rising_times.format(_value_text(feature, value, "", locale))
    if ratio > 1:
        return rising_pct.format(wording.percent(ratio - 1, locale))
    return falling.format(wording.percent(1 - ratio, locale))


@lru_cache(maxsize=200_000)
def _describe_shown(column: str, value, currency: str, locale: str) -> str:
    feature = worded(column)
    if _missing(value):
        return feature.missing or f"{feature.label} unknown"
    if feature.unit == "attribute":
        return f"{feature.label} {_value_text(feature, value, currency, locale)}"
    if feature.unit in ("ratio", "log_ratio"):
        return _trend_phrase(feature, value, locale)
    if feature.unit == "flag":
        return _value_text(feature, value, currency, locale)
    if value == 0 and feature.zero:
        return feature.zero
    return _plural(feature.phrase, value).format(_value_text(feature, value, currency, locale))


def _shown(column: str, value):
    """The value as it is shown: rounded for numbers (a cache key), as it is otherwise."""
    if _missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        value = float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return displayed(unit_of(column), float(value))
    return value


def describe(column: str, value, currency: str = "EUR", locale: str = "en") -> str:
    """``value`` of ``column`` in words a marketing manager reads without help: "last purchase 143 days
    ago", "12 orders in the last 365 days", "€1,240 spent in the last 365 days", "62% of orders via app",
    "unsubscribed from e-mails"; a column the catalogue does not know as "its name value" ("plan basic")."""
    return _describe_shown(column, _shown(column, value), currency, locale)


def amount(column: str, value, currency: str = "EUR", locale: str = "en") -> str:
    """``value`` with its unit and no sentence around it, for "typical: 40 days" or "average €540";
    "unknown" when missing."""
    shown = _shown(column, value)
    if shown is None:
        return "unknown"
    return _value_text(worded(column), shown, currency, locale)


def describe_many(column: str, values, currency: str = "EUR", locale: str = "en") -> np.ndarray:
    """``describe`` of each value: an object array of texts (see ``describe_distinct``)."""
    codes, texts = describe_distinct(column, values, currency, locale)
    return texts[codes]


def describe_distinct(
    column: str, values, currency: str = "EUR", locale: str = "en"
) -> tuple[np.ndarray, np.ndarray]:
    """``describe`` of each value as (codes, texts), ``texts[codes]`` being the texts: worded once per
    distinct shown value (a million customers' recency in days has a few hundred), so callers can build
    on the distinct texts alone."""
    values = pd.Series(values, dtype=object).infer_objects()
    if pd.api.types.is_numeric_dtype(values):
        keys = pd.Series(displayed(unit_of(column), values.to_numpy(dtype="float64")))
    else:
        keys = values
    codes, uniques = pd.factorize(keys, use_na_sentinel=True)
    texts = [describe(column, u, currency, locale) for u in uniques] + [describe(column, None)]
    return codes, np.array(texts, dtype=object)  # the sentinel -1 picks the last text: the missing phrase


def comparison(column: str, ratio: float, locale: str = "en") -> str | None:
    """A segment against the average customer as a multiple ("orders 2.3× as often as the average
    customer"), None for a unit a multiple does not suit (days, scores, probabilities)."""
    feature = worded(column)
    if feature.unit not in RATIO_UNITS or not feature.compare:
        return None
    return feature.compare.format(wording.times(ratio, locale))


def share_with_flag(column: str, share: float, locale: str = "en") -> str:
    """The share of a group with a flag feature set: "12% have unsubscribed from e-mails"."""
    feature = worded(column)
    template = feature.among or f"{{}} with {feature.label}"
    return template.format(wording.percent(share, locale))
