"""The segment report: one self-contained HTML page per run for marketing and customer success.

The page has to open from a shared drive, an e-mail attachment or an air-gapped laptop, so everything is
inside the one file: the CSS inlined, plots as base64 PNG data URIs, no scripts, fonts or network requests.

The page's structure and wording live in one Jinja2 template (``templates/segment_report.html.j2``, its CSS
in ``templates/segment_report.css``). This module only prepares plain data for it: per section a dict of
already formatted strings, tables as headers and rows, charts as data URIs. The template environment
autoescapes every value (segment names, traits, drivers and ids come from data) and is strict: a value the
template asks for and this module did not provide is an error, not an empty cell. Plots are drawn with
``matplotlib.figure.Figure`` (no pyplot: no GUI backend, no global state). ``summary_markdown`` is the short
version for the Dagster asset metadata.
"""

from __future__ import annotations

import base64
import datetime as dt
import inspect
import io
import math
import os
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seg_pipeline import wording
from seg_pipeline.churn.actions import ACTION_TIERS, RETENTION_TIERS, TIER_LABELS, TIERS

TIER_COLORS = {"personal_outreach": "#D55E00", "semi_automated": "#E69F00", "automated": "#56B4E9",
               "no_action": "#B0B7BF", "no_consent": "#6B7280"}  # fmt: skip
# Reading order of lifecycle stages, from the start of a relationship to its end; unknown stages go last.
STAGE_ORDER = ("new", "growing", "champion", "steady", "at_risk", "dormant")
STAGE_COLORS = {"new": "#56B4E9", "growing": "#009E73", "champion": "#0072B2", "steady": "#B0B7BF",
                "at_risk": "#E69F00", "dormant": "#D55E00"}  # fmt: skip
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#6B7280",
           "#1B9E77", "#7570B3", "#E7298A", "#66A61E", "#A6761D", "#1F78B4", "#B15928")  # fmt: skip
UNASSIGNED = "unassigned"
JOINED = "new customer (joined)"
LEFT = "left"
RETENTION_ROWS = 25  # rows of the retention list shown in the report; the full list is the published table
DRIFT_CHART_FEATURES = 30  # bars in the PSI chart; the table lists every feature
MARKDOWN_SEGMENTS = 15  # segment rows in the markdown summary, to keep it short
IDENTITY_REVIEW_ROWS = 15  # pairs of the review list shown; the full list is clean.identity_review
# A from x to matrix stays readable up to this many destination columns; with more segments each origin
# becomes one row listing where its customers went (a 13-column matrix does not fit a page).
MATRIX_MAX_COLUMNS = 6
TREND_TABLE_RUNS = 6  # runs in the trends section's table of headline numbers; the charts show trend_runs
DPI = 100
MISSING = "—"
TEMPLATE = "segment_report.html.j2"
TEMPLATES = Path(__file__).with_name("templates")

SECTIONS = (
    ("summary", "Summary"),
    ("segments", "Segments"),
    ("lifecycle", "Lifecycle stages"),
    ("churn-risk", "Churn risk"),
    ("retention", "Retention list"),
    ("outcomes", "How earlier scores turned out"),
    ("trends", "Trends"),
    ("migration", "Segment migration"),
    ("model", "Churn model"),
    ("drift", "Data drift"),
    ("identity", "Duplicate customers"),
    ("analysts", "For analysts"),
)

JOB_DESCRIPTIONS = {
    "full_refresh": "full refresh: segments refitted and the churn model retrained",
    "rescore": "rescore: existing segments and the champion churn model applied to fresh data",
}
BASELINE_NAMES = {
    "recency": "Sorting by days since the last activity (orders only: last purchase)",
    "rfm": "RFM: recency, frequency and spend in a logistic regression",
    "btyd": "BG/NBD buy-till-you-die model alone",
}


@dataclass
class ReportInputs:
    """Everything one run's report shows; the assets gather it, the report only formats it."""

    run_id: str
    job: str
    as_of: dt.date
    segment_profiles: pd.DataFrame
    customer_segments: pd.DataFrame
    retention: pd.DataFrame  # the retention list (the RETENTION_TIERS), one row per customer
    migration: pd.DataFrame
    first_run: bool
    model: dict
    segmentation: dict
    drift: pd.DataFrame
    drift_threshold: float
    links: dict[str, str] = field(default_factory=dict)
    # merged CRM records per match rule, and the pairs left for review (ids and field names, no contact data)
    merged_by_rule: dict[str, int] = field(default_factory=dict)
    identity_review: pd.DataFrame = field(default_factory=pd.DataFrame)
    # label of a link -> the file it serves, shown beside it for readers without the docs server
    link_files: dict[str, str] = field(default_factory=dict)
    # one row per tier in TIERS order: size, capacity, what is at stake, what a contact is expected to save
    action_plan: pd.DataFrame = field(default_factory=pd.DataFrame)
    # long format (as_of, run_id, measure, breakdown, breakdown_label, value), this run included
    kpi_history: pd.DataFrame = field(default_factory=pd.DataFrame)
    currency: str = "EUR"
    locale: str = "en"
    # "probability" when there was no order revenue to weigh the probability by (no money columns then)
    ranked_by: str = "expected_loss"
    trend_runs: int = 12
    # closing the loop (monitoring schema and published.retention_uplift; empty before the first judgement)
    scored_runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    score_outcomes: pd.DataFrame = field(default_factory=pd.DataFrame)
    score_calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    retention_uplift: pd.DataFrame = field(default_factory=pd.DataFrame)


# --------------------------------------------------------------------------------------------- formatting


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _truthy(value: Any) -> bool:
    """True for True and numpy.True_, False for False, None and NA (a missing decision is not a promotion)."""
    return not _missing(value) and bool(value)


def _text(value: Any) -> str:
    return MISSING if _missing(value) else str(value)


def _pct(value: Any, digits: int = 1) -> str:
    return MISSING if _missing(value) else f"{float(value) * 100:.{digits}f}%"


def _num(value: Any, digits: int = 3) -> str:
    return MISSING if _missing(value) else f"{float(value):.{digits}f}"


def _date(value: Any) -> str:
    """ISO date whether given a date, a datetime, a Timestamp or a string (file names depend on it)."""
    if _missing(value):
        return MISSING
    return pd.Timestamp(value).date().isoformat()


def _readable(code: Any) -> str:
    return str(code).replace("_", " ")


def _tier_label(tier: Any) -> str:
    return MISSING if _missing(tier) else TIER_LABELS.get(str(tier), _readable(tier))


@dataclass(frozen=True)
class _Numbers:
    """Money and counts in the reader's currency and locale (seg_pipeline.wording), one place for both."""

    currency: str = "EUR"
    locale: str = "en"

    def money(self, value: Any, digits: int = 0) -> str:
        return MISSING if _missing(value) else wording.money(value, self.currency, self.locale, digits)

    def count(self, value: Any) -> str:
        return MISSING if _missing(value) else wording.count(value, self.locale)

    def saved(self, value: Any) -> str:
        """Expected customers saved is a sum of probabilities: one decimal while it is small."""
        if _missing(value) or abs(float(value)) >= 10:
            return self.count(value)
        from babel.numbers import format_decimal

        return format_decimal(round(float(value), 1), format="#,##0.0", locale=self.locale)


def _safe_href(url: Any) -> str | None:
    """Links come from configuration; still, never emit a scriptable or inline-data href."""
    scheme = re.sub(r"\s", "", str(url)).lower().split(":", 1)[0]
    return None if scheme in {"javascript", "vbscript", "data"} else str(url)


def _link(label: Any, url: Any) -> dict:
    """A link for the template: ``href`` when safe; an unsafe URL is shown as text (``raw``), never linked."""
    if _missing(url) or not str(url).strip():
        return {"label": _text(label), "href": None, "raw": None}
    href = _safe_href(url)
    return {"label": _text(label), "href": href, "raw": None if href else str(url)}


def _file_link(path: str | None) -> dict | None:
    """The file a docs-server link serves, linked for a page opened as a file."""
    return _link(path, Path(path).absolute().as_uri()) if path else None


def _cell(value: Any) -> Any:
    """A table cell: a string, a list of lines, or a link dict; missing values show as a dash."""
    if isinstance(value, list | dict):
        return value
    return _text(value)


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    numeric: Iterable[int] = (),
    css: str = "data",
    row_classes: Sequence[str | None] | None = None,
) -> dict:
    """A table for the template's ``table`` macro. ``css`` names the table so the stylesheet can give its
    columns widths; numeric columns align right."""
    numeric = set(numeric)
    body = []
    for r, row in enumerate(rows):
        cells = [{"value": _cell(v), "num": i in numeric} for i, v in enumerate(row)]
        body.append({"cls": row_classes[r] if row_classes is not None else None, "cells": cells})
    return {"css": css, "headers": [{"text": h, "num": i in numeric} for i, h in enumerate(headers)],
            "rows": body}  # fmt: skip


def _card(label: str, value: str, detail: str | None = None) -> dict:
    return {"label": label, "value": value, "detail": detail}


def _split_traits(text: Any) -> list[str]:
    """Traits are separated by "; " (business phrases may hold commas inside numbers); older runs used ", "."""
    if _missing(text):
        return []
    text = str(text)
    return [t.strip() for t in text.split("; " if "; " in text else ", ") if t.strip()]


def _drivers(text: Any) -> list[str] | str:
    lines = [t.strip() for t in str(text).split("; ") if t.strip()] if not _missing(text) else []
    return lines or MISSING


def _md(text: Any) -> str:
    """Markdown-safe text: names must not open a table cell, emphasis, a link or inline HTML."""
    if _missing(text):
        return MISSING
    return re.sub(r"([\\|*_`\[\]<>])", r"\\\1", str(text)).replace("\n", " ")


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column as numbers; all-NaN when the frame does not have it (older runs, first runs)."""
    if column in frame:
        return pd.to_numeric(frame[column], errors="coerce")
    return pd.Series(np.nan, index=frame.index, dtype="float64")


def _sum(values: pd.Series) -> float:
    return float(values.sum(min_count=1)) if len(values) else float("nan")


# ------------------------------------------------------------------------------------------------- data


def _segment_names(profiles: pd.DataFrame) -> dict[int, str]:
    """segment_id -> display name, in profile order; duplicate or missing names get the id so groups stay apart."""
    if profiles.empty or "segment_id" not in profiles:
        return {}
    frame = profiles.dropna(subset=["segment_id"]).sort_values("segment_id")
    raw = {}
    for sid, name in zip(frame["segment_id"], frame.get("segment_name", pd.Series(index=frame.index)),
                         strict=True):  # fmt: skip
        raw[int(sid)] = str(name) if not _missing(name) and str(name).strip() else f"segment {int(sid)}"
    counts = pd.Series(list(raw.values())).value_counts()
    return {sid: (f"{name} (#{sid})" if counts[name] > 1 else name) for sid, name in raw.items()}


def _label_segments(ids: pd.Series, given_names: pd.Series | None, names: dict[int, str]) -> pd.Series:
    """A display label per row: the profile's name, else the row's own name, else the id; <NA> -> unassigned."""
    sid = pd.Series(pd.array(ids, dtype="Int64"), index=ids.index)
    label = sid.map(names).astype(object)
    if given_names is not None:
        label = label.where(label.notna(), given_names.where(given_names.notna() & (given_names != "")))
    fallback = "segment " + sid.astype("string")
    label = label.where(label.notna(), fallback.astype(object))
    return label.where(sid.notna(), UNASSIGNED).astype(object)


def _segment_order(labels: Iterable[str], names: dict[int, str]) -> list[str]:
    """Profile order first, then segments without a profile, then the unassigned customers."""
    present = set(labels)
    order = [n for n in names.values() if n in present]
    order += sorted(present - set(order) - {UNASSIGNED})
    return order + ([UNASSIGNED] if UNASSIGNED in present else [])


def _stage_order(stages: Iterable[str]) -> list[str]:
    present = {str(s) for s in stages}
    return [s for s in STAGE_ORDER if s in present] + sorted(present - set(STAGE_ORDER))


@dataclass
class _Run:
    """One run's inputs with the views several sections share (computed once)."""

    inputs: ReportInputs
    n: _Numbers
    names: dict[int, str]
    customers: pd.DataFrame  # customer_segments plus a "segment" display label
    order: list[str]
    retention: pd.DataFrame  # the retention list plus a "segment" display label
    plan: pd.DataFrame  # the action plan indexed by tier (empty for runs before it existed)

    @property
    def has_money(self) -> bool:
        """Whether the list was ranked by expected loss (there was order revenue to weigh it by)."""
        return self.inputs.ranked_by != "probability"

    def plan_total(self, column: str, tiers: Sequence[str]) -> float:
        if self.plan.empty or column not in self.plan:
            return float("nan")
        return _sum(pd.to_numeric(self.plan.reindex(list(tiers))[column], errors="coerce"))


def _prepare(inputs: ReportInputs) -> _Run:
    names = _segment_names(inputs.segment_profiles)
    cs = inputs.customer_segments.copy()
    if len(cs) and "segment_id" in cs:
        cs["segment"] = _label_segments(cs["segment_id"], cs.get("segment_name"), names)
    else:
        cs["segment"] = pd.Series(UNASSIGNED, index=cs.index, dtype=object)
    order = _segment_order(cs["segment"], names) if len(cs) else list(names.values())
    ret = inputs.retention.copy()
    if len(ret):
        given = (
            ret["segment_name"] if "segment_name" in ret else pd.Series(None, index=ret.index, dtype=object)
        )
        ret["segment"] = given.where(given.notna() & (given != ""), UNASSIGNED).astype(object)
    else:
        ret["segment"] = pd.Series(dtype=object)
    plan = inputs.action_plan
    plan = plan.set_index("tier") if not plan.empty and "tier" in plan else pd.DataFrame()
    return _Run(inputs=inputs, n=_Numbers(inputs.currency, inputs.locale), names=names, customers=cs,
                order=order, retention=ret, plan=plan)  # fmt: skip


def _migration_totals(migration: pd.DataFrame) -> dict[str, int]:
    """stayed / changed segment / joined / left customer counts from the from x to rows."""
    if migration.empty:
        return {"stayed": 0, "changed": 0, "joined": 0, "left": 0}
    src = pd.Series(pd.array(migration["from_segment_id"], dtype="Int64"), index=migration.index)
    dst = pd.Series(pd.array(migration["to_segment_id"], dtype="Int64"), index=migration.index)
    n = pd.to_numeric(migration["customers"], errors="coerce").fillna(0)
    both = src.notna() & dst.notna()
    same = both & (src.fillna(-1) == dst.fillna(-2))
    return {
        "stayed": int(n[same].sum()),
        "changed": int(n[both & ~same].sum()),
        "joined": int(n[src.isna() & dst.notna()].sum()),
        "left": int(n[src.notna() & dst.isna()].sum()),
    }


def _list_expected_loss(run: _Run) -> float:
    return _sum(_numeric(run.retention, "expected_loss")) if run.has_money else float("nan")


def _flagged_drift(inputs: ReportInputs) -> pd.DataFrame:
    drift = inputs.drift
    if drift.empty:
        return drift
    flagged = (
        drift["flagged"].fillna(False).astype(bool)
        if "flagged" in drift
        else drift["psi"] > inputs.drift_threshold
    )
    return drift[flagged].sort_values("psi", ascending=False)


# ----------------------------------------------------------------------------------------------- charts


def _figure(width: float, height: float):
    """A pyplot-free figure (Agg when saved): safe in any thread, nothing left open afterwards."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


def _style(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=9)


def _plain(label: Any, width: int = 28) -> str:
    """Chart text from data (names, money): wrapped, with ``$`` escaped so matplotlib never reads math."""
    return "\n".join(textwrap.wrap(str(label), width) or [""]).replace("$", r"\$")


def _img(fig, alt: str, caption: str = "") -> dict:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"uri": f"data:image/png;base64,{data}", "alt": alt, "caption": caption}


def _colors(labels: Sequence[str], fixed: dict[str, str]) -> list[str]:
    spare = iter(PALETTE * (len(labels) // len(PALETTE) + 1))
    return [fixed.get(label) or next(spare) for label in labels]


def _segment_size_chart(profiles: pd.DataFrame, run: _Run) -> dict:
    from matplotlib.ticker import MaxNLocator

    labels = [run.names[int(s)] for s in profiles["segment_id"]]
    counts = _numeric(profiles, "customers").fillna(0).to_numpy()
    shares = _numeric(profiles, "share").to_numpy()
    fig, ax = _figure(8, 0.45 * len(labels) + 1.2)
    y = np.arange(len(labels))
    bars = ax.barh(y, counts, color=_colors(labels, {}))
    ax.set_yticks(y, [_plain(lbl) for lbl in labels])
    ax.invert_yaxis()
    labels = [_plain(f"{run.n.count(c)} ({_pct(s)})", 60) for c, s in zip(counts, shares, strict=True)]
    ax.bar_label(bars, labels=labels, padding=3, fontsize=9)
    ax.set_xlabel("customers")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0, max(float(counts.max(initial=0)), 1.0) * 1.25)
    _style(ax)
    return _img(fig, "Customers per segment", "Customers per segment (share of all segmented customers).")


def _stacked_share_chart(table: pd.DataFrame, colors: dict[str, str], title: str, alt: str) -> dict:
    """Rows of 100% bars, one colour per column: how each group splits into the column categories."""
    shares = table.div(table.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
    fig, ax = _figure(8.5, 0.45 * len(shares) + 1.6)
    y = np.arange(len(shares))
    left = np.zeros(len(shares))
    for column, color in zip(shares.columns, _colors(list(shares.columns), colors), strict=True):
        values = shares[column].to_numpy()
        bars = ax.barh(y, values, left=left, color=color, label=_plain(_readable(column)))
        ax.bar_label(bars, labels=[f"{v:.0%}" if v >= 0.07 else "" for v in values], label_type="center",
                     fontsize=8)  # fmt: skip
        left += values
    ax.set_yticks(y, [_plain(lbl) for lbl in shares.index])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
    ax.set_title(title, fontsize=10, loc="left")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(len(shares.columns), 6), fontsize=8,
              frameon=False)  # fmt: skip
    _style(ax)
    return _img(fig, alt)


def _risk_box_chart(customers: pd.DataFrame, order: list[str]) -> dict:
    scores = _numeric(customers, "churn_risk_score")
    groups = [(label, scores[customers["segment"] == label].dropna().to_numpy()) for label in order]
    groups = [(label, values) for label, values in groups if len(values)]
    fig, ax = _figure(8, 0.5 * len(groups) + 1.3)
    horizontal = (
        {"orientation": "horizontal"} if "orientation" in inspect.signature(ax.boxplot).parameters
        else {"vert": False}
    )  # fmt: skip
    parts = ax.boxplot([v for _, v in groups], widths=0.6, patch_artist=True, showfliers=False, **horizontal)
    for patch in parts["boxes"]:
        patch.set(facecolor="#D6E4F0", edgecolor="#0072B2")
    for median in parts["medians"]:
        median.set(color="#D55E00", linewidth=2)
    ax.set_yticks(np.arange(1, len(groups) + 1), [_plain(label) for label, _ in groups])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("churn risk score (0 = safe, 100 = very likely to churn)")
    _style(ax)
    return _img(fig, "Churn risk score by segment",
                "Box: middle half of the segment's customers; orange line: median; whiskers: typical range.")  # fmt: skip


def _retention_chart(by_segment: pd.DataFrame, run: _Run) -> dict:
    from matplotlib.ticker import MaxNLocator

    fig, ax = _figure(8, 0.45 * len(by_segment) + 1.2)
    y = np.arange(len(by_segment))
    bars = ax.barh(y, by_segment["customers"].to_numpy(), color="#D55E00")
    labels = [run.n.count(c) + ("" if _missing(loss) else f" · {run.n.money(loss)} expected loss")
              for c, loss in zip(by_segment["customers"], by_segment["expected_loss"], strict=True)]  # fmt: skip
    ax.bar_label(bars, labels=[_plain(lbl, 80) for lbl in labels], padding=3, fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_yticks(y, [_plain(s) for s in by_segment.index])
    ax.invert_yaxis()
    ax.set_xlim(0, max(float(by_segment["customers"].max()), 1.0) * 1.6)
    ax.set_xlabel("customers in the retention list")
    _style(ax)
    return _img(fig, "Retention list customers per segment")


def _drift_chart(drift: pd.DataFrame, threshold: float) -> dict:
    shown = drift.head(DRIFT_CHART_FEATURES)
    fig, ax = _figure(8, 0.3 * len(shown) + 1.3)
    y = np.arange(len(shown))
    colors = ["#D55E00" if f else "#7B8794" for f in shown["_flagged"]]
    ax.barh(y, shown["psi"].fillna(0).to_numpy(), color=colors)
    ax.axvline(threshold, color="#1F2933", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_yticks(y, [_plain(f, 40) for f in shown["feature"]])
    ax.invert_yaxis()
    ax.set_xlabel("PSI (population stability index) against the reference run")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    _style(ax)
    more = f" Largest {len(shown)} of {len(drift)} features." if len(drift) > len(shown) else ""
    return _img(fig, "PSI per feature", "Orange: above the threshold." + more)


def _line_chart(ticks: list[str], series: dict[str, np.ndarray], title: str, axis: str, tick_format,
                colors: dict[str, str] | None = None) -> dict:  # fmt: skip
    """One line per series over the runs (x = run order, labelled with the run's date: several runs may
    share a date, so dates cannot be the x values)."""
    fig, ax = _figure(5.6, 3.1 + (0.22 * math.ceil(len(series) / 2) if len(series) > 1 else 0))
    x = np.arange(len(ticks))
    for label, color in zip(series, _colors(list(series), colors or {}), strict=True):
        ax.plot(
            x, series[label], marker="o", markersize=3.5, linewidth=1.8, color=color, label=_plain(label, 34)
        )
    step = max(1, math.ceil(len(ticks) / 8))  # at most ~8 date labels, whatever trend_runs is
    ax.set_xticks(x[::step], [ticks[i] for i in x[::step]], rotation=30, ha="right")
    ax.yaxis.set_major_formatter(lambda v, _pos: _plain(tick_format(v), 40))
    ax.set_ylim(bottom=0)
    ax.set_ylabel(axis, fontsize=9)
    ax.set_title(title, fontsize=10, loc="left")
    if len(series) > 1:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=2, fontsize=7.5, frameon=False)
    _style(ax)
    return _img(fig, title)


# --------------------------------------------------------------------------------------------- sections


def _summary(run: _Run) -> dict:
    inputs, cs, n = run.inputs, run.customers, run.n
    scores = _numeric(cs, "churn_risk_score")
    unassigned = int((cs["segment"] == UNASSIGNED).sum())
    flagged = _flagged_drift(inputs)
    listed, scored = len(run.retention), len(cs)
    version = inputs.model.get("model_version")
    cards = [
        _card("customers scored", n.count(scored)),
        _card("segments", n.count(len(run.names))),
        _card("mean churn risk score (0-100)", _num(scores.mean(), 0) if len(scores) else MISSING),
        _card("customers in the retention list", n.count(listed),
              f"{_pct(listed / scored)} of scored customers" if scored else None),
        _card("expected revenue at risk in the list", n.money(_list_expected_loss(run)),
              "churn probability × spend in the last 365 days" if run.has_money else "no order revenue"),
        _card("expected customers saved", n.saved(run.plan_total("expected_customers_saved", ACTION_TIERS)),
              "all action tiers, at their save rates"),
        _card("churn model", f"v{version}" if not _missing(version) else MISSING),
        _card("model ROC-AUC (holdout)", _num(inputs.model.get("holdout_roc_auc"))),
        _card("drifted features", "no reference" if inputs.drift.empty else f"{len(flagged)} of {len(inputs.drift)}"),
    ]  # fmt: skip
    meta = [("Run", _text(inputs.run_id)), ("Job", JOB_DESCRIPTIONS.get(inputs.job, _text(inputs.job))),
            ("Data as of", _date(inputs.as_of)), ("Segmentation", _text(inputs.segmentation.get("selected")))]  # fmt: skip
    notes = []
    if inputs.segmentation.get("single_segment"):
        notes.append("One segment: every customer has the same profile features, so all are in \u201cAll "
                     f"customers\u201d ({inputs.segmentation.get('notes')}).")  # fmt: skip
    if unassigned:
        notes.append(f"{n.count(unassigned)} customers ({unassigned / max(scored, 1):.1%}) joined since the segments "
                     "were last fitted and are shown as \u201cunassigned\u201d until the next full refresh.")  # fmt: skip
    if len(flagged):
        changed = ", ".join(
            f"{f} (PSI {_num(p, 2)})" for f, p in zip(flagged["feature"], flagged["psi"], strict=True)
        )
        notes.append(f"Drift: {changed} changed noticeably since the reference run; see Data drift.")
    links = [{"link": _link(label, url), "file": _file_link(inputs.link_files.get(label))}
             for label, url in inputs.links.items()]  # fmt: skip
    return {"meta": meta, "cards": cards, "notes": notes, "links": links}


def _segment_row(p: pd.Series, run: _Run) -> list:
    in_list = p.get("customers_in_retention_segment")
    if _missing(in_list) and all(f"customers_{t}" in p.index for t in RETENTION_TIERS):
        in_list = sum(p[f"customers_{t}"] for t in RETENTION_TIERS)
    n = run.n
    return [
        run.names[int(p["segment_id"])], _with_share(n.count(p.get("customers")), p.get("share")),
        _with_share(n.money(p.get("revenue_365d")), p.get("revenue_share")), n.money(p.get("mean_revenue_365d"), 2),
        _pct(p.get("observed_churn_rate")), _pct(p.get("mean_churn_probability")), n.count(in_list),
        _split_traits(p.get("top_traits")) or MISSING,
    ]  # fmt: skip


def _with_share(amount: str, share: Any) -> str:
    """An amount and its share in one cell, "1,234 (28.5%)", so the table has room for the traits."""
    return amount if _missing(share) or amount == MISSING else f"{amount} ({_pct(share)})"


def _segments(run: _Run) -> dict:
    profiles = run.inputs.segment_profiles
    if profiles.empty:
        return {"empty": True, "chart": None, "table": None, "no_revenue": False}
    frame = profiles.dropna(subset=["segment_id"]).sort_values("segment_id")
    table = _table(
        ["Segment", "Customers (share)", "Revenue, 365 days (share)", "Avg revenue per customer", "Observed churn",
         "Mean churn probability", "In retention list", "Top traits"],
        [_segment_row(p, run) for _, p in frame.iterrows()], numeric=range(1, 7), css="data segments",
    )  # fmt: skip
    no_revenue = bool(_numeric(frame, "revenue_365d").isna().all())
    return {
        "empty": False,
        "chart": _segment_size_chart(frame, run),
        "table": table,
        "no_revenue": no_revenue,
    }


def _lifecycle(run: _Run) -> dict:
    cs, n = run.customers, run.n
    if cs.empty or "lifecycle_stage" not in cs:
        return {"empty": True, "chart": None, "overall": None, "by_segment": None}
    stages = cs["lifecycle_stage"].fillna("unknown").astype(str)
    order = _stage_order(stages)
    counts = pd.crosstab(cs["segment"], stages).reindex(index=run.order, columns=order, fill_value=0)
    overall = stages.value_counts().reindex(order, fill_value=0)
    mix = pd.concat([overall.rename("All customers").to_frame().T, counts])
    overall_table = _table(["Lifecycle stage", "Customers", "Share"],
                           [[_readable(s), n.count(c), _pct(c / len(cs))] for s, c in overall.items()],
                           numeric=(1, 2), css="data narrow")  # fmt: skip
    rows = [
        [label, n.count(row.sum()), *(_count_share(v, row.sum(), n) for v in row)]
        for label, row in mix.iterrows()
    ]
    by_segment = _table(["Segment", "Customers", *(_readable(s) for s in order)], rows,
                        numeric=range(1, len(order) + 2), css="data stages")  # fmt: skip
    chart = _stacked_share_chart(mix, STAGE_COLORS, "Lifecycle stage mix", "Lifecycle stages by segment")
    return {"empty": False, "chart": chart, "overall": overall_table, "by_segment": by_segment}


def _count_share(count: int, total: int, n: _Numbers) -> str:
    return f"{n.count(count)} ({_pct(count / total, 0) if total else MISSING})"


def _in_retention_list(cs: pd.DataFrame) -> pd.Series | None:
    if "in_retention_segment" in cs:
        return cs["in_retention_segment"].fillna(False).astype(bool)
    return cs["risk_tier"].isin(RETENTION_TIERS) if "risk_tier" in cs else None


def _churn_risk(run: _Run) -> dict:
    cs, n = run.customers, run.n
    if cs.empty or "churn_risk_score" not in cs:
        return {"empty": True, "chart": None, "table": None}
    tiers = cs["risk_tier"].astype(object).where(cs["risk_tier"].notna(), "unknown").astype(str)
    tier_order = list(TIERS) + sorted(set(tiers) - set(TIERS))  # all five tiers, even when one is empty
    counts = pd.crosstab(cs["segment"], tiers).reindex(index=run.order, columns=tier_order, fill_value=0)
    scores = _numeric(cs, "churn_risk_score")
    listed = _in_retention_list(cs)

    def row(label: str, mask: pd.Series, tier_counts: Iterable) -> list:
        return [label, n.count(mask.sum()), *(n.count(v) for v in tier_counts), _num(scores[mask].mean(), 0),
                _num(scores[mask].median(), 0), n.count(listed[mask].sum()) if listed is not None else MISSING]  # fmt: skip

    rows = [row(label, cs["segment"] == label, counts.loc[label]) for label in counts.index]
    rows.append(row("All customers", pd.Series(True, index=cs.index), counts.sum()))
    headers = ["Segment", "Customers", *(_tier_label(t) for t in tier_order), "Mean risk score",
               "Median risk score", "In retention list"]  # fmt: skip
    table = _table(headers, rows, numeric=range(1, len(headers)), css="data tiers",
                   row_classes=[None] * (len(rows) - 1) + ["total"])  # fmt: skip
    chart = _risk_box_chart(cs, run.order) if scores.notna().any() else None
    return {"empty": False, "chart": chart, "table": table}


def _plan_table(run: _Run) -> dict | None:
    """The action plan, one column per tier (twelve measures side by side would not fit a page): each
    tier's capacity, who is in it, what is at stake and what contacting them is expected to save."""
    if run.plan.empty:
        return None
    n, money = run.n, run.has_money
    measures = [
        ("Capacity rule", True, lambda r: _text(r.get("capacity_rule"))),
        ("Capacity", True, lambda r: n.count(r.get("capacity"))),
        ("Customers", True, lambda r: n.count(r.get("customers"))),
        (
            "Control arm (not contacted)",
            "control_customers" in run.plan,
            lambda r: n.count(r.get("control_customers")),
        ),
        ("Contacts (treatment arm)", "contacts" in run.plan, lambda r: n.count(r.get("contacts"))),
        ("Mean churn probability", True, lambda r: _pct(r.get("mean_churn_probability"))),
        ("Value, 365 days", money, lambda r: n.money(r.get("value_365d"))),
        ("Expected loss", money, lambda r: n.money(r.get("expected_loss"))),
        ("Cut-off (lowest expected loss)", money, lambda r: n.money(r.get("lowest_expected_loss"), 2)),
        ("Save rate", True, lambda r: _pct(r.get("save_rate"), 0)),
        ("Expected customers saved", True, lambda r: n.saved(r.get("expected_customers_saved"))),
        ("Expected revenue saved", money, lambda r: n.money(r.get("expected_revenue_saved"))),
        ("Contact cost", True, lambda r: n.money(r.get("contact_cost"))),
        ("Suggested action", True, lambda r: _text(r.get("suggested_action") or None)),
    ]
    shown = [(label, value) for label, keep, value in measures if keep]
    tiers = [t for t in TIERS if t in run.plan.index] + [t for t in run.plan.index if t not in TIERS]
    rows = [[label, *(value(run.plan.loc[t]) for t in tiers)] for label, value in shown]
    # left-aligned throughout: a row mixes numbers and sentences, and is read along the row
    return _table(["Per tier", *(_tier_label(t) for t in tiers)], rows, css="data plan")


def _capacities(run: _Run) -> list[dict]:
    """The action tiers' capacities, for the sentence on how the list is made."""
    if run.plan.empty:
        return []
    return [{"tier": _tier_label(t), "rule": _text(run.plan.loc[t].get("capacity_rule")),
             "capacity": run.n.count(run.plan.loc[t].get("capacity")),
             "customers": run.n.count(run.plan.loc[t].get("customers")), "listed": t in RETENTION_TIERS}
            for t in ACTION_TIERS if t in run.plan.index]  # fmt: skip


def _retention_by_segment(run: _Run) -> tuple[pd.DataFrame, dict]:
    ret = run.retention
    frame = pd.DataFrame({"segment": ret["segment"], "value": _numeric(ret, "value_365d"),
                          "loss": _numeric(ret, "expected_loss"), "p": _numeric(ret, "churn_probability")})  # fmt: skip
    by = frame.groupby("segment", sort=False).agg(
        customers=("p", "size"), value=("value", lambda v: v.sum(min_count=1)),
        expected_loss=("loss", lambda v: v.sum(min_count=1)), probability=("p", "mean"),
    )  # fmt: skip
    by = by.reindex([s for s in run.order if s in by.index] + sorted(set(by.index) - set(run.order)))
    total = _list_expected_loss(run)
    n, money = run.n, run.has_money
    money_headers = ["Value, 365 days", "Expected loss", "Share of expected loss"] if money else []
    headers = ["Segment", "Customers", *money_headers, "Mean churn probability"]
    rows = [[s, n.count(r.customers),
             *([n.money(r.value), n.money(r.expected_loss), _pct(r.expected_loss / total) if total else MISSING]
               if money else []),
             _pct(r.probability)] for s, r in by.iterrows()]  # fmt: skip
    return by, _table(headers, rows, numeric=range(1, len(headers)), css="data by-segment")


def _retention_top(run: _Run) -> dict:
    ret, n, money = run.retention, run.n, run.has_money
    ranked = ret.assign(_rank=_numeric(ret, "action_rank"), _loss=_numeric(ret, "expected_loss"),
                        _p=_numeric(ret, "churn_probability"))  # fmt: skip
    top = ranked.sort_values(["_rank", "_loss", "_p", "customer_id"], ascending=[True, False, False, True],
                             na_position="last").head(RETENTION_ROWS)  # fmt: skip
    headers = ["Rank", "Customer id", "Tier", "Segment", "Lifecycle stage", "Churn probability",
               *(["Value, 365 days", "Expected loss"] if money else []), "Why (top drivers)"]  # fmt: skip
    rows = [[n.count(r["_rank"]), _text(r.get("customer_id")), _tier_arm(r), r["segment"],
             _readable(r["lifecycle_stage"]) if not _missing(r.get("lifecycle_stage")) else MISSING, _pct(r["_p"]),
             *([n.money(r.get("value_365d")), n.money(r["_loss"])] if money else []), _drivers(r.get("top_drivers"))]
            for _, r in top.iterrows()]  # fmt: skip
    numeric = [0, 5, 6, 7] if money else [0, 5]
    return _table(headers, rows, numeric=numeric, css="data top" if money else "data top no-money")


def _tier_arm(row: pd.Series) -> str:
    """The tier, and for the control arm a warning: the row is on the list to be measured, not contacted."""
    tier = _tier_label(row.get("risk_tier"))
    return f"{tier} · control: do not contact" if row.get("arm") == "control" else tier


def _retention(run: _Run) -> dict:
    ret, n, plan = run.retention, run.n, run.plan
    scored = len(run.customers)
    cards = [
        _card("customers in the retention list", n.count(len(ret)),
              f"{_pct(len(ret) / scored)} of scored customers" if scored else None),
        _card("expected revenue at risk in the list", n.money(_list_expected_loss(run))),
        _card("value of the list (365 days)", n.money(_sum(_numeric(ret, "value_365d")) if run.has_money else None)),
        _card("expected customers saved (list)",
              n.saved(run.plan_total("expected_customers_saved", RETENTION_TIERS))),
        _card("expected revenue saved (list)",
              n.money(run.plan_total("expected_revenue_saved", RETENTION_TIERS) if run.has_money else None)),
    ]  # fmt: skip
    not_listed = {t: (n.count(plan.loc[t].get("customers")) if t in plan.index else None)
                  for t in ("no_action", "no_consent")}  # fmt: skip
    # the smallest expected loss any action tier took: below it, no action
    cut_off = run.plan.reindex(list(ACTION_TIERS)).get("lowest_expected_loss", pd.Series(dtype=float))
    result = {"ranked_by_probability": not run.has_money, "capacities": _capacities(run), "cards": cards,
              "plan": _plan_table(run), "no_action": not_listed["no_action"], "no_consent": not_listed["no_consent"],
              "cut_off": n.money(pd.to_numeric(cut_off, errors="coerce").min(), 2),
              "empty": ret.empty, "chart": None, "by_segment": None, "top": None, "shown": None}  # fmt: skip
    if ret.empty:
        return result
    by, by_table = _retention_by_segment(run)
    top = _retention_top(run)
    result |= {"chart": _retention_chart(by, run), "by_segment": by_table, "top": top,
               "shown": f"Top {len(top['rows'])} of {n.count(len(ret))}"}  # fmt: skip
    return result


# ------------------------------------------------------------------------------------------------ trends


def _trend_runs(history: pd.DataFrame, last: int) -> pd.DataFrame:
    """The last ``last`` runs, by as_of and then in publish order (several runs may share a date); one row
    per run with its tick label."""
    runs = history.assign(as_of=pd.to_datetime(history["as_of"])).drop_duplicates("run_id")
    order = ["as_of", "publish_sequence"] if "publish_sequence" in runs else ["as_of"]
    runs = (
        runs.sort_values(order, kind="stable")[["run_id", "as_of"]]
        .tail(max(int(last), 1))
        .reset_index(drop=True)
    )
    runs["tick"] = [_date(a) for a in runs["as_of"]]
    return runs


def _series(history: pd.DataFrame, runs: pd.DataFrame, measure: str, breakdown: str = "all") -> np.ndarray:
    rows = history[(history["measure"] == measure) & (history["breakdown"] == breakdown)]
    values = pd.to_numeric(
        rows.drop_duplicates("run_id", keep="last").set_index("run_id")["value"], errors="coerce"
    )
    return values.reindex(runs["run_id"]).to_numpy(dtype="float64")


def _breakdowns(history: pd.DataFrame, measure: str) -> dict[str, str]:
    """breakdown -> its latest label, in the order the breakdowns first appear."""
    rows = history[history["measure"] == measure]
    labels = rows.drop_duplicates("breakdown", keep="last").set_index("breakdown")["breakdown_label"]
    return {
        b: (str(labels[b]) if not _missing(labels[b]) else str(b))
        for b in rows["breakdown"].drop_duplicates()
    }


def _trend_charts(history: pd.DataFrame, runs: pd.DataFrame, run: _Run) -> list[dict]:
    ticks, n = list(runs["tick"]), run.n

    def tiers() -> dict[str, np.ndarray]:
        present = _breakdowns(history, "mean_churn_probability")
        order = ["all", *TIERS, *sorted(set(present) - {"all", *TIERS})]
        label = {b: "All scored customers" if b == "all" else _tier_label(b) for b in present}
        return {label[b]: _series(history, runs, "mean_churn_probability", b) for b in order if b in present}

    segments = {label: _series(history, runs, "segment_customers", b)
                for b, label in _breakdowns(history, "segment_customers").items()}  # fmt: skip
    tier_colors = {_tier_label(t): c for t, c in TIER_COLORS.items()} | {"All scored customers": "#1F2933"}
    return [
        _line_chart(ticks, {"Customers": _series(history, runs, "customers")}, "Customers scored", "customers",
                    n.count),
        _line_chart(ticks, segments, "Customers per segment", "customers", n.count),
        _line_chart(ticks, tiers(), "Mean churn probability by tier", "churn probability",
                    lambda v: f"{v:.0%}", tier_colors),
        _line_chart(ticks, {"All scored customers": _series(history, runs, "expected_loss"),
                            "Retention list": _series(history, runs, "retention_list_expected_loss")},
                    "Expected revenue at risk", run.inputs.currency, n.money),
        _line_chart(ticks, {"Retention list": _series(history, runs, "retention_list_customers")},
                    "Customers in the retention list", "customers", n.count),
    ]  # fmt: skip


def _trend_table(history: pd.DataFrame, runs: pd.DataFrame, run: _Run) -> dict:
    shown = runs.tail(TREND_TABLE_RUNS)
    n = run.n

    def column(measure: str, fmt) -> list[str]:
        return [fmt(v) for v in _series(history, shown, measure)]

    columns = [
        ("As of", list(shown["tick"])), ("Run", [str(r)[:8] for r in shown["run_id"]]),
        ("Customers", column("customers", n.count)),
        ("Retention list", column("retention_list_customers", n.count)),
        ("Expected loss in the list", column("retention_list_expected_loss", n.money)),
        ("Revenue at risk (all scored)", column("expected_loss", n.money)),
        ("Revenue, 365 days", column("revenue_365d", n.money)),
        ("Mean churn probability", column("mean_churn_probability", _pct)),
    ]  # fmt: skip
    rows = [list(r) for r in zip(*(values for _, values in columns), strict=True)]
    return _table([h for h, _ in columns], rows, numeric=range(2, len(columns)), css="data trend")


def _trends(run: _Run) -> dict:
    history = run.inputs.kpi_history
    needed = {"as_of", "run_id", "measure", "breakdown", "value"}
    if history.empty or not needed <= set(history.columns):
        return {"runs": 0, "first": None, "last": None, "charts": [], "table": None}
    if "breakdown_label" not in history:
        history = history.assign(breakdown_label=history["breakdown"])
    runs = _trend_runs(history, run.inputs.trend_runs)
    charts = _trend_charts(history, runs, run) if len(runs) > 1 else []
    return {"runs": len(runs), "first": runs["tick"].iloc[0], "last": runs["tick"].iloc[-1], "charts": charts,
            "table": _trend_table(history, runs, run)}  # fmt: skip


# ------------------------------------------------------------------------------------------ migration


def _migration(run: _Run) -> dict:
    inputs = run.inputs
    result = {"first_run": inputs.first_run, "empty": inputs.migration.empty, "cards": [], "matrix": None,
              "moves": None}  # fmt: skip
    if inputs.first_run or inputs.migration.empty:
        return result
    mig, n = inputs.migration, run.n
    totals = _migration_totals(mig)
    result["cards"] = [_card("stayed in their segment", n.count(totals["stayed"])),
                       _card("changed segment", n.count(totals["changed"])),
                       _card("joined", n.count(totals["joined"])), _card("left", n.count(totals["left"]))]  # fmt: skip

    def label(ids: pd.Series, none: str) -> pd.Series:
        def name(sid: Any) -> str:
            return none if _missing(sid) else run.names.get(int(sid), f"segment {int(sid)}")

        return pd.Series(pd.array(ids, dtype="Int64"), index=ids.index).map(name).astype(object)

    frame = pd.DataFrame({"from": label(mig["from_segment_id"], JOINED), "to": label(mig["to_segment_id"], LEFT),
                          "customers": pd.to_numeric(mig["customers"], errors="coerce").fillna(0).astype(int)})  # fmt: skip
    matrix = frame.pivot_table(index="from", columns="to", values="customers", aggfunc="sum", fill_value=0)
    known = list(run.names.values())
    rows = [s for s in known if s in matrix.index] + sorted(set(matrix.index) - set(known) - {JOINED})
    rows += [JOINED] if JOINED in matrix.index else []
    cols = [s for s in known if s in matrix.columns] + sorted(set(matrix.columns) - set(known) - {LEFT})
    cols += [LEFT] if LEFT in matrix.columns else []
    matrix = matrix.reindex(index=rows, columns=cols, fill_value=0)
    if len(cols) <= MATRIX_MAX_COLUMNS:
        result["matrix"] = _matrix(matrix, n)
    else:
        result["moves"] = _moves(matrix, n)
    return result


def _matrix(matrix: pd.DataFrame, n: _Numbers) -> dict:
    """From x to counts, each cell shaded by its size (the diagonal, customers who stayed, in bold)."""
    peak = max(int(matrix.to_numpy().max(initial=0)), 1)
    rows = []
    for src, row in matrix.iterrows():
        cells = [{"text": n.count(row[dst]), "diag": src == dst,
                  "shade": f"{0.08 + 0.55 * row[dst] / peak:.2f}" if row[dst] else None}
                 for dst in matrix.columns]  # fmt: skip
        rows.append({"label": src, "cells": cells, "total": n.count(row.sum())})
    return {"columns": list(matrix.columns), "rows": rows}


def _moves(matrix: pd.DataFrame, n: _Numbers) -> dict:
    """The matrix as wrapped rows: per origin, who stayed, where the others went (largest first), who left."""
    rows = []
    for src, row in matrix.iterrows():
        moved = row.drop([c for c in (src, LEFT) if c in row.index])
        moved = moved[moved > 0].sort_values(ascending=False, kind="stable")
        rows.append([src, n.count(row.sum()), n.count(row[src]) if src in row.index else MISSING,
                     [f"{dst}: {n.count(c)}" for dst, c in moved.items()] or MISSING,
                     n.count(row[LEFT]) if LEFT in row.index else MISSING])  # fmt: skip
    return _table(["Previous segment", "Customers", "Stayed", "Moved to", "Left"], rows, numeric=(1, 2, 4),
                  css="data moves")  # fmt: skip


# ------------------------------------------------------------------------------------ model, drift, identity


def _gate(inputs: ReportInputs) -> dict:
    """What happened to the model in this run; the template words it."""
    m = inputs.model
    version, champion = m.get("model_version"), m.get("champion_version")
    reason = str(m.get("gate_reason")).rstrip(". ") if not _missing(m.get("gate_reason")) else MISSING
    if inputs.job == "rescore":
        kind = "rescore"
    elif _missing(version):
        kind = "none"
    else:
        kind = "promoted" if _truthy(m.get("promoted")) else "kept"
    shown = champion if kind == "rescore" and not _missing(champion) else version
    return {"kind": kind, "version": _text(shown), "champion": _text(champion), "reason": reason}


def _baselines(m: dict) -> dict | None:
    """Our model vs. the naive baselines on the same holdout: the comparison a sceptical reader asks for."""
    names = [b for b in BASELINE_NAMES if not _missing(m.get(f"baseline_{b}_holdout_roc_auc"))]
    if not names:
        return None
    published, kind = m.get("candidate"), m.get("model_kind")
    model_name = m.get("selected_candidate") if not _missing(m.get("selected_candidate")) else published
    own = (
        "selected_candidate_holdout"
        if not _missing(m.get("selected_candidate_holdout_roc_auc"))
        else "holdout"
    )
    rows = [{"name": f"Our model ({_text(model_name)})", "ours": True, "used": kind != "baseline",
             "roc": _num(m.get(f"{own}_roc_auc")), "pr": _num(m.get(f"{own}_pr_auc")),
             "lift": _num(m.get(f"{own}_lift_top_decile"), 2)}]  # fmt: skip
    for b in names:
        rows.append({"name": BASELINE_NAMES[b], "ours": False, "used": published == f"baseline_{b}",
                     "roc": _num(m.get(f"baseline_{b}_holdout_roc_auc")),
                     "pr": _num(m.get(f"baseline_{b}_holdout_pr_auc")),
                     "lift": _num(m.get(f"baseline_{b}_holdout_lift_top_decile"), 2)})  # fmt: skip
    return {"lost": kind == "baseline", "model": _text(model_name), "published": _text(published),
            "verdict": None if _missing(m.get("baseline_verdict")) else str(m.get("baseline_verdict")),
            "rows": rows}  # fmt: skip


def _model(inputs: ReportInputs) -> dict:
    m = inputs.model
    metrics = [
        ("Model version", _text(m.get("model_version")), "version in the MLflow model registry"),
        ("Model type", _text(m.get("candidate")), "the candidate algorithm chosen on validation data"),
        ("Champion version", _text(m.get("champion_version")), "the model the pipeline scores with after this run"),
        ("ROC-AUC", _num(m.get("holdout_roc_auc")), "ranking quality: 0.5 = coin flip, 1 = perfect"),
        ("PR-AUC", _num(m.get("holdout_pr_auc")), "precision over all recall levels; compare with the churn rate"),
        ("Brier score", _num(m.get("holdout_brier")), "probability error; lower is better"),
        ("Lift, top decile", _num(m.get("holdout_lift_top_decile"), 2),
         "how many times more churners among the riskiest 10% than on average"),
        ("F1 at threshold", _num(m.get("holdout_f1")), "balance of precision and recall at the threshold"),
        ("Decision threshold", _num(m.get("threshold")), "probability above which a customer counts as a churner"),
    ]  # fmt: skip
    url = m.get("mlflow_run_url")
    return {"gate": _gate(inputs), "metrics": _table(["Metric", "Value", "What it means"], metrics, css="data metrics"),
            "baselines": _baselines(m),
            "link": None if _missing(url) else _link("Model training run in MLflow", url)}  # fmt: skip


def _drift(inputs: ReportInputs) -> dict:
    threshold = inputs.drift_threshold
    result = {"threshold": f"{threshold:g}", "empty": inputs.drift.empty, "references": [], "summary": None,
              "flagged": 0, "model_output": False, "chart": None, "table": None}  # fmt: skip
    if inputs.drift.empty:
        return result
    frame = inputs.drift.copy()
    frame["psi"] = pd.to_numeric(frame["psi"], errors="coerce")
    frame["_flagged"] = (
        frame["flagged"].fillna(False).astype(bool) if "flagged" in frame else frame["psi"] > threshold
    )
    frame = frame.sort_values(["_flagged", "psi"], ascending=[False, False], na_position="last")
    if {"reference_as_of", "reference_run_id"} <= set(frame.columns):
        pairs = zip(frame["reference_as_of"], frame["reference_run_id"], strict=True)
        result["references"] = [
            f"as of {a}, run {r}" for a, r in sorted({(_date(a), _text(r)) for a, r in pairs})
        ]
    flagged = int(frame["_flagged"].sum())
    table = _table(["Feature", "PSI", "Flagged"],
                   [[f, _num(p), "yes" if fl else "no"] for f, p, fl in zip(frame["feature"], frame["psi"],
                                                                             frame["_flagged"], strict=True)],
                   numeric=(1,), css="data narrow",
                   row_classes=["flagged" if fl else None for fl in frame["_flagged"]])  # fmt: skip
    return result | {"summary": f"{flagged} of {len(frame)} features above the threshold {threshold:g}.",
                     "flagged": flagged, "model_output": "churn_probability" in set(frame["feature"]),
                     "chart": _drift_chart(frame, threshold), "table": table}  # fmt: skip


def _identity(run: _Run) -> dict:
    inputs, n = run.inputs, run.n
    rules = {k: v for k, v in inputs.merged_by_rule.items() if v}
    review = inputs.identity_review
    shown = review.head(IDENTITY_REVIEW_ROWS)
    pairs = _table(
        ["CRM id", "CRM id", "Probability", "Agreed", "Similar", "Disagreed", "Not merged because"],
        [[r.customer_id_a, r.customer_id_b, _num(r.match_probability), r.fields_agreed, r.fields_similar,
          r.fields_disagreed, r.not_merged_because] for r in shown.itertuples()],
        numeric=(2,), css="data pairs",
    )  # fmt: skip
    return {
        "merged": n.count(sum(rules.values())),
        "rules": _table(["Rule", "Records merged"], [[_readable(k), n.count(v)] for k, v in sorted(rules.items())],
                        numeric=(1,), css="data narrow") if rules else None,
        "review": n.count(len(review)), "pairs": pairs if len(review) else None,
        "more": n.count(len(review) - len(shown)) if len(review) > len(shown) else None,
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------ outcomes

OUTCOME_HISTORY_ROWS = 12  # judged runs in the model-decay table
ESTIMAND_LABELS = {
    "intention_to_treat": "Assigned to contact vs held out",
    "effect_on_contacted": "Effect on the contacted",
    "contacted_vs_control": "Reached by the campaign vs held out (descriptive)",
}
GROUP_LABELS = {**TIER_LABELS, "retention_list": "Retention list", "all_action_tiers": "All action tiers"}


def _judged_runs(inputs: ReportInputs) -> pd.DataFrame:
    """One row per judged publish, newest first: its date, model, training and realized metrics."""
    outcomes = inputs.score_outcomes
    if outcomes.empty:
        return pd.DataFrame()
    rows = outcomes[outcomes["breakdown"] == "all"]
    wide = rows.pivot_table(index=["scored_run_id", "scored_as_of"], columns="metric", values="value",
                            aggfunc="first").reset_index()  # fmt: skip
    runs = inputs.scored_runs
    if not runs.empty:
        extra = runs.rename(columns={"run_id": "scored_run_id"})[
            ["scored_run_id", "model_version", "holdout_roc_auc", "publish_sequence"]]  # fmt: skip
        wide = wide.merge(extra, on="scored_run_id", how="left")
    sort = ["scored_as_of", "publish_sequence"] if "publish_sequence" in wide else ["scored_as_of"]
    return wide.sort_values(sort, ascending=False, ignore_index=True)


def _calibration_chart(deciles: pd.DataFrame) -> dict:
    fig, ax = _figure(5.6, 3.2)
    x = deciles["decile"].to_numpy()
    ax.bar(x - 0.2, deciles["mean_predicted"].to_numpy(), width=0.4, color="#7B8794", label="predicted")
    ax.bar(x + 0.2, deciles["realized_churn_rate"].to_numpy(), width=0.4, color="#D55E00", label="realized")
    ax.set_xticks(x, [str(int(d)) for d in x])
    ax.set_xlabel("probability decile (1 = lowest predicted churn)", fontsize=9)
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    _style(ax)
    return _img(
        fig,
        "Predicted and realized churn per probability decile",
        "Grey: the mean probability published for the decile; orange: the share that churned.",
    )


def _outcomes(run: _Run) -> dict:
    """How the scores of the latest judged publish turned out, the uplift of its retention list, and
    realized against training metrics of every judged publish (model decay)."""
    inputs, n = run.inputs, run.n
    judged = _judged_runs(inputs)
    result = {"title": "How earlier scores turned out", "judged": not judged.empty, "waiting": None, "cards": [],
              "chart": None, "deciles": None, "tiers": None, "uplift": None, "intention_to_treat_only": False,
              "history": None, "scored_on": None, "judged_on": None, "horizon": None}  # fmt: skip
    if judged.empty:
        runs = inputs.scored_runs
        if not runs.empty:
            first = runs.sort_values(["as_of", "publish_sequence"]).iloc[0]
            due = pd.Timestamp(first["as_of"]) + pd.Timedelta(days=int(first["horizon_days"]))
            result["waiting"] = (f"The scores published as of {_date(first['as_of'])} are judged by the first run "
                                 f"as of {_date(due)} or later, when their {int(first['horizon_days'])}-day horizon "
                                 "has passed.")  # fmt: skip
        return result
    latest = judged.iloc[0]
    run_id = latest["scored_run_id"]
    scored_on = _date(latest["scored_as_of"])
    outcomes = inputs.score_outcomes[inputs.score_outcomes["scored_run_id"] == run_id]
    value = latest.get
    result |= {"title": f"How the scores of {scored_on} turned out", "scored_on": scored_on,
               "judged_on": _date(outcomes["evaluated_as_of"].iloc[0]),
               "horizon": n.count(outcomes["horizon_days"].iloc[0])}  # fmt: skip
    left_out = [f"{n.count(value(k))} {label}" for k, label in (
        ("excluded_erased", "erased"), ("excluded_not_in_crm", "no longer in the CRM"),
        ("excluded_without_profiling_consent", "without profiling consent")) if value(k)]  # fmt: skip
    result["cards"] = [
        _card("customers judged", n.count(value("customers_evaluated")),
              ("left out: " + ", ".join(left_out)) if left_out else "nobody left out"),
        _card("realized ROC-AUC", _num(value("roc_auc")),
              f"at training (holdout): {_num(value('holdout_roc_auc'))}; sorting by recency: "
              f"{_num(value('recency_baseline_roc_auc'))}"),
        _card("realized churn", _pct(value("churn_rate")), f"predicted: {_pct(value('mean_probability'))}"),
        _card("calibration error", _pct(value("calibration_error")),
              "mean gap between predicted and realized churn over the probability deciles"),
        _card("PR-AUC · Brier", f"{_num(value('pr_auc'))} · {_num(value('brier'))}"),
    ]  # fmt: skip
    deciles = inputs.score_calibration
    deciles = (
        deciles[deciles["scored_run_id"] == run_id].sort_values("decile") if not deciles.empty else deciles
    )
    if not deciles.empty:
        result["chart"] = _calibration_chart(deciles)
        result["deciles"] = _table(
            ["Decile", "Customers", "Mean predicted", "Realized churn"],
            [[n.count(d.decile), n.count(d.customers), _pct(d.mean_predicted), _pct(d.realized_churn_rate)]
             for d in deciles.itertuples()], numeric=range(4), css="data deciles")  # fmt: skip
    result["tiers"] = _realized_tiers(outcomes, n)
    result["uplift"], result["intention_to_treat_only"] = _uplift(
        inputs.retention_uplift, run_id, n, run.has_money
    )
    history = judged.head(OUTCOME_HISTORY_ROWS)
    result["history"] = _table(
        ["Scored as of", "Model version", "ROC-AUC at training", "Realized ROC-AUC", "Realized by recency",
         "Calibration error", "Realized churn", "Customers"],
        [[_date(r["scored_as_of"]), _text(r.get("model_version")), _num(r.get("holdout_roc_auc")),
          _num(r.get("roc_auc")), _num(r.get("recency_baseline_roc_auc")), _pct(r.get("calibration_error")),
          _pct(r.get("churn_rate")), n.count(r.get("customers_evaluated"))] for _, r in history.iterrows()],
        numeric=range(2, 8), css="data judged")  # fmt: skip
    return result


def _realized_tiers(outcomes: pd.DataFrame, n: _Numbers) -> dict | None:
    """Per tier: customers, mean predicted and realized churn, and realized churn per arm."""

    def metric(breakdown: str, name: str):
        found = outcomes[(outcomes["breakdown"] == breakdown) & (outcomes["metric"] == name)]["value"]
        return found.iloc[0] if len(found) else None

    tiers = [t for t in TIERS if metric(f"tier:{t}", "customers")]
    if not tiers:
        return None
    rows = [[_tier_label(t), n.count(metric(f"tier:{t}", "customers")), _pct(metric(f"tier:{t}", "mean_probability")),
             _pct(metric(f"tier:{t}", "churn_rate")), _pct(metric(f"tier_arm:{t}/treatment", "churn_rate")),
             _pct(metric(f"tier_arm:{t}/control", "churn_rate"))] for t in tiers]  # fmt: skip
    return _table(["Tier", "Customers", "Predicted churn", "Realized churn", "Treatment arm", "Control arm"],
                  rows, numeric=range(1, 6), css="data realized-tiers")  # fmt: skip


def _uplift(uplift: pd.DataFrame, run_id: str, n: _Numbers, money: bool) -> tuple[dict | None, bool]:
    """The retention list's measured effect: churn of the treatment arm against the control arm, per group."""
    if uplift.empty:
        return None, False
    rows = uplift[uplift["scored_run_id"] == run_id]
    if rows.empty:
        return None, False
    body = []
    for r in rows.itertuples():
        interval = MISSING if _missing(r.ci_low) else f"{_points(r.ci_low)} to {_points(r.ci_high)}"
        campaign = "" if r.campaign == "(all)" else f" · {r.campaign}"
        body.append([GROUP_LABELS.get(r.group, _readable(r.group)), ESTIMAND_LABELS.get(r.estimand, r.estimand) + campaign,
                     f"{_pct(r.treatment_churn_rate)} of {n.count(r.treatment_customers)}",
                     f"{_pct(r.control_churn_rate)} of {n.count(r.control_customers)}",
                     _points(r.uplift), interval, n.saved(r.customers_saved),
                     *([n.money(r.revenue_retained)] if money else []), _text(r.note or None)])  # fmt: skip
    headers = ["Group", "Comparison", "Churn, treatment", "Churn, control", "Uplift", "95 % interval",
               "Customers saved", *(["Revenue retained"] if money else []), "Note"]  # fmt: skip
    itt_only = bool(rows["note"].fillna("").str.contains("no interventions extract").any())
    return _table(headers, body, numeric=range(2, 8 if money else 7), css="data uplift"), itt_only


def _points(value: Any) -> str:
    """A difference of two rates in percentage points, signed."""
    return MISSING if _missing(value) else f"{100 * float(value):+.1f} pts"


# ------------------------------------------------------------------------------------------------ analysts


def _analysts(run: _Run) -> dict:
    """The data-science details the other sections leave out: std-unit trait deviations and the method."""
    profiles = run.inputs.segment_profiles
    deviations = None
    if not profiles.empty and "segment_id" in profiles:
        frame = profiles.dropna(subset=["segment_id"]).sort_values("segment_id")
        column = "trait_deviations" if "trait_deviations" in frame else None
        deviations = _table(
            ["Segment", "Customers", "Deviations from the average customer (standard deviations)"],
            [[run.names[int(p["segment_id"])], run.n.count(p.get("customers")),
              _split_traits(p.get(column)) if column else MISSING] for _, p in frame.iterrows()],
            numeric=(1,), css="data deviations",
        )  # fmt: skip
    seg = run.inputs.segmentation
    url = seg.get("mlflow_run_url")
    method = {"selected": _text(seg.get("selected")), "silhouette": _num(seg.get("silhouette")),
              "stability": _num(seg.get("stability")),
              "link": None if _missing(url) else _link("segmentation run in MLflow", url)}  # fmt: skip
    return {"deviations": deviations, "method": method, "ranked_by_probability": not run.has_money}


# ---------------------------------------------------------------------------------------------- rendering


@lru_cache(maxsize=1)
def _environment():
    """Autoescaping (every value from data is escaped) and strict (a missing value fails the render)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)  # fmt: skip


def _context(inputs: ReportInputs) -> dict:
    """Everything the template shows, as plain data."""
    run = _prepare(inputs)
    as_of = _date(inputs.as_of)
    outcomes = _outcomes(run)
    titles = dict(SECTIONS) | {"outcomes": outcomes["title"]}
    return {
        "title": f"Customer segment report · {as_of}",
        "run_id": _text(inputs.run_id),
        "job": JOB_DESCRIPTIONS.get(inputs.job, _text(inputs.job)),
        "sections": [{"id": sid, "title": titles[sid]} for sid, _ in SECTIONS],
        "titles": titles,
        "retention_rows": RETENTION_ROWS,
        "summary": _summary(run),
        "segments": _segments(run),
        "lifecycle": _lifecycle(run),
        "churn": _churn_risk(run),
        "retention": _retention(run),
        "outcomes": outcomes,
        "trends": _trends(run),
        "migration": _migration(run),
        "model": _model(inputs),
        "drift": _drift(inputs),
        "identity": _identity(run),
        "analysts": _analysts(run),
    }


def render_report(inputs: ReportInputs) -> str:
    """The complete HTML document: a single file with every plot embedded, nothing fetched when opened."""
    return _environment().get_template(TEMPLATE).render(_context(inputs))


def summary_markdown(inputs: ReportInputs) -> str:
    """A few lines for the Dagster asset metadata: the headline numbers, with the full page one click away."""
    run = _prepare(inputs)
    cs, n = run.customers, run.n
    unassigned = int((cs["segment"] == UNASSIGNED).sum())
    lines = [
        f"**Segment report** · run `{str(inputs.run_id)[:8].replace('`', '')}` · {_md(inputs.job)} · as of {_date(inputs.as_of)}",
        "",
        f"{n.count(len(cs))} customers in {len(run.names)} segments"
        + (f" ({n.count(unassigned)} unassigned, new since the last segmentation)" if unassigned else ""),
        "",
    ]
    profiles = inputs.segment_profiles
    if not profiles.empty:
        frame = profiles.dropna(subset=["segment_id"]).sort_values("segment_id")
        lines += ["| Segment | Customers | Share | Mean churn risk |", "|---|---:|---:|---:|"]
        for _, p in frame.head(MARKDOWN_SEGMENTS).iterrows():
            lines.append(f"| {_md(run.names[int(p['segment_id'])])} | {n.count(p.get('customers'))} | "
                         f"{_pct(p.get('share'))} | {_num(p.get('mean_churn_risk_score'), 0)} |")  # fmt: skip
        if len(frame) > MARKDOWN_SEGMENTS:
            lines.append(f"| … and {len(frame) - MARKDOWN_SEGMENTS} more | | | |")
        lines.append("")
    lines.append(_retention_line(run))
    lines += _model_lines(inputs)
    lines += [_migration_line(inputs), _drift_line(inputs)]
    return "\n".join(lines)


def _retention_line(run: _Run) -> str:
    n, listed, scored = run.n, len(run.retention), len(run.customers)
    share = f" ({_pct(listed / scored)} of scored)" if scored else ""
    if run.has_money:
        ranking = f"expected revenue at risk {_md(n.money(_list_expected_loss(run)))}"
    else:
        ranking = "ranked by churn probability (no order revenue)"
    saved = run.plan_total("expected_customers_saved", ACTION_TIERS)
    saved_text = "" if _missing(saved) else f"; expected customers saved {n.saved(saved)} (all action tiers)"
    return f"- **Retention list:** {n.count(listed)} customers{share}, {ranking}{saved_text}"


def _model_lines(inputs: ReportInputs) -> list[str]:
    m = inputs.model
    if inputs.job == "rescore":
        outcome = "not retrained (rescore)"
    elif m.get("promoted") is None:
        outcome = "gate: " + _md(m.get("gate_reason"))
    else:
        outcome = (
            "promoted"
            if _truthy(m.get("promoted"))
            else f"not promoted, champion v{_md(m.get('champion_version'))}"
        )
    lines = [f"- **Churn model:** v{_md(m.get('model_version'))} ({_md(m.get('candidate'))}), ROC-AUC "
             f"{_num(m.get('holdout_roc_auc'))}, PR-AUC {_num(m.get('holdout_pr_auc'))}; {outcome}"]  # fmt: skip
    if not _missing(m.get("baseline_verdict")):
        lines.append(f"- **Against baselines:** {_md(m.get('baseline_verdict'))}")
    return lines


def _migration_line(inputs: ReportInputs) -> str:
    if inputs.first_run:
        return "- **Migration:** first run, no previous run to compare against"
    if inputs.migration.empty:
        return "- **Migration:** none recorded"
    t = _migration_totals(inputs.migration)
    return (f"- **Migration:** {t['stayed']:,} stayed, {t['changed']:,} changed segment, {t['joined']:,} joined, "
            f"{t['left']:,} left")  # fmt: skip


def _drift_line(inputs: ReportInputs) -> str:
    if inputs.drift.empty:
        return "- **Drift:** no reference run yet"
    flagged = _flagged_drift(inputs)
    if flagged.empty:
        return f"- **Drift:** no feature above PSI {inputs.drift_threshold:g}"
    names = ", ".join(f"{_md(f)} ({_num(p, 2)})" for f, p in zip(flagged["feature"].head(5), flagged["psi"].head(5),
                                                                  strict=True))  # fmt: skip
    more = f" and {len(flagged) - 5} more" if len(flagged) > 5 else ""
    return (f"- **Drift:** ⚠ {len(flagged)} of {len(inputs.drift)} features above PSI {inputs.drift_threshold:g}: "
            f"{names}{more}")  # fmt: skip


def write_report(inputs: ReportInputs, directory: Path) -> Path:
    """Write the per-run page and refresh ``latest.html`` (replaced atomically, so a reader never sees half)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    document = render_report(inputs).encode("utf-8")
    run = re.sub(r"[^A-Za-z0-9_-]", "_", str(inputs.run_id)[:8])
    path = directory / f"segment_report_{_date(inputs.as_of)}_{run}.html"
    path.write_bytes(document)
    latest = directory / "latest.html"
    temporary = directory / f".latest.html.{os.getpid()}.tmp"
    temporary.write_bytes(document)
    os.replace(temporary, latest)
    return path


__all__ = ["ReportInputs", "render_report", "summary_markdown", "write_report"]
