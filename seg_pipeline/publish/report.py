"""The segment report: one self-contained HTML page per run for marketing and customer success.

The page has to open from a shared drive, an e-mail attachment or an air-gapped laptop, so everything is
inside the one file: inline CSS, plots as base64 PNG data URIs, no scripts, fonts or network requests.
Every string that comes from data (segment names, traits, drivers, ids) is HTML-escaped. Plots are drawn
with ``matplotlib.figure.Figure`` (no pyplot: no GUI backend, no global state). ``summary_markdown`` is the
short version for the Dagster asset metadata.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import inspect
import io
import os
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seg_pipeline.churn.scores import TIERS

TIER_LABELS = {
    "automated": "Automated",
    "semi_automated": "Semi-automated",
    "personal_outreach": "Personal outreach",
}
TIER_COLORS = {"automated": "#56B4E9", "semi_automated": "#E69F00", "personal_outreach": "#D55E00"}
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
DPI = 100
MISSING = "—"

SECTIONS = (
    ("summary", "Summary"),
    ("segments", "Segments"),
    ("lifecycle", "Lifecycle stages"),
    ("churn-risk", "Churn risk"),
    ("retention", "Retention segment"),
    ("migration", "Segment migration"),
    ("model", "Churn model"),
    ("drift", "Data drift"),
    ("identity", "Duplicate customers"),
)
IDENTITY_REVIEW_ROWS = 15  # pairs of the review list shown; the full list is clean.identity_review

JOB_DESCRIPTIONS = {
    "full_refresh": "full refresh: segments refitted and the churn model retrained",
    "rescore": "rescore: existing segments and the champion churn model applied to fresh data",
}


@dataclass
class ReportInputs:
    """Everything one run's report shows; the assets gather it, the report only formats it."""

    run_id: str
    job: str
    as_of: dt.date
    segment_profiles: pd.DataFrame
    customer_segments: pd.DataFrame
    retention: pd.DataFrame
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


# --------------------------------------------------------------------------------------------- formatting


class _Html(str):
    """A table cell that is already safe HTML (built from escaped parts), so it is not escaped again."""


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


def _esc(value: Any) -> str:
    return MISSING if _missing(value) else html.escape(str(value), quote=True)


def _int(value: Any) -> str:
    return MISSING if _missing(value) else f"{int(round(float(value))):,}"


def _pct(value: Any, digits: int = 1) -> str:
    return MISSING if _missing(value) else f"{float(value) * 100:.{digits}f}%"


def _money(value: Any, digits: int = 0) -> str:
    """Thousands separators, no currency symbol: the report does not know the company's currency."""
    return MISSING if _missing(value) else f"{float(value):,.{digits}f}"


def _num(value: Any, digits: int = 3) -> str:
    return MISSING if _missing(value) else f"{float(value):.{digits}f}"


def _date(value: Any) -> str:
    """ISO date whether given a date, a datetime, a Timestamp or a string (file names depend on it)."""
    if _missing(value):
        return MISSING
    return pd.Timestamp(value).date().isoformat()


def _safe_href(url: str) -> str | None:
    """Links come from configuration; still, never emit a scriptable or inline-data href."""
    scheme = re.sub(r"\s", "", str(url)).lower().split(":", 1)[0]
    return None if scheme in {"javascript", "vbscript", "data"} else html.escape(str(url), quote=True)


def _link(label: str, url: Any) -> str:
    if _missing(url) or not str(url).strip():
        return _esc(label)
    href = _safe_href(str(url))
    if href is None:
        return f"{_esc(label)} ({_esc(url)})"
    return f'<a href="{href}">{_esc(label)}</a>'


def _file_note(path: str | None) -> str:
    """`` (file: <path>)``, the path a link to the docs server serves, linked for a page opened as a file."""
    if not path:
        return ""
    return f' <span class="note">(file: {_link(path, Path(path).absolute().as_uri())})</span>'


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    numeric: Iterable[int] = (),
    row_classes: Sequence[str | None] | None = None,
    css: str = "data",
) -> str:
    """A plain HTML table; every cell is escaped unless it is ``_Html``. Numeric columns align right."""
    numeric = set(numeric)

    def cell(tag: str, i: int, value: Any) -> str:
        text = value if isinstance(value, _Html) else _esc(value)
        cls = ' class="num"' if i in numeric else ""
        return f"<{tag}{cls}>{text}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cls = row_classes[r] if row_classes is not None else None
        attr = f' class="{html.escape(cls)}"' if cls else ""
        body.append(f"<tr{attr}>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>")
    return (
        f'<div class="table-wrap"><table class="{css}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _section(section_id: str, body: str, intro: str = "") -> str:
    title = dict(SECTIONS)[section_id]
    note = f'<p class="note">{intro}</p>' if intro else ""
    return f'<section id="{section_id}">\n<h2>{html.escape(title)}</h2>\n{note}\n{body}\n</section>'


def _empty(message: str) -> str:
    return f'<p class="empty">{html.escape(message)}</p>'


def _md(text: Any) -> str:
    """Markdown-safe text: names must not open a table cell, emphasis, a link or inline HTML."""
    if _missing(text):
        return MISSING
    return re.sub(r"([\\|*_`\[\]<>])", r"\\\1", str(text)).replace("\n", " ")


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
    sid = pd.array(ids, dtype="Int64")
    sid = pd.Series(sid, index=ids.index)
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


def _readable(code: Any) -> str:
    return str(code).replace("_", " ")


@dataclass
class _Prepared:
    """Derived views used by several sections (computed once)."""

    names: dict[int, str]
    customers: pd.DataFrame  # customer_segments plus a "segment" display label
    order: list[str]
    retention: pd.DataFrame  # retention plus a "segment" display label


def _prepare(inputs: ReportInputs) -> _Prepared:
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
    return _Prepared(names=names, customers=cs, order=order, retention=ret)


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


def _revenue_at_risk(retention: pd.DataFrame) -> float:
    if retention.empty or "monetary_365d" not in retention:
        return float("nan")
    return float(pd.to_numeric(retention["monetary_365d"], errors="coerce").sum(min_count=1))


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
    """Axis text from data: wrapped, and with ``$`` escaped so matplotlib never parses it as math."""
    return "\n".join(textwrap.wrap(str(label), width) or [""]).replace("$", r"\$")


def _img(fig, alt: str, caption: str = "") -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt, quote=True)}">{cap}</figure>'
    )


def _colors(labels: Sequence[str], fixed: dict[str, str]) -> list[str]:
    spare = iter(PALETTE * (len(labels) // len(PALETTE) + 1))
    return [fixed.get(label) or next(spare) for label in labels]


def _segment_size_chart(profiles: pd.DataFrame, names: dict[int, str]) -> str:
    from matplotlib.ticker import MaxNLocator

    frame = profiles.dropna(subset=["segment_id"]).sort_values("segment_id")
    labels = [names[int(s)] for s in frame["segment_id"]]
    counts = pd.to_numeric(frame["customers"], errors="coerce").fillna(0).to_numpy()
    shares = pd.to_numeric(frame["share"], errors="coerce").to_numpy()
    fig, ax = _figure(8, 0.45 * len(labels) + 1.2)
    y = np.arange(len(labels))
    bars = ax.barh(y, counts, color=_colors(labels, {}))
    ax.set_yticks(y, [_plain(lbl) for lbl in labels])
    ax.invert_yaxis()
    ax.bar_label(bars, labels=[f"{_int(c)} ({_pct(s)})" for c, s in zip(counts, shares, strict=True)],
                 padding=3, fontsize=9)  # fmt: skip
    ax.set_xlabel("customers")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0, max(float(counts.max(initial=0)), 1.0) * 1.25)
    _style(ax)
    return _img(fig, "Customers per segment", "Customers per segment (share of all segmented customers).")


def _stacked_share_chart(table: pd.DataFrame, colors: dict[str, str], title: str, alt: str) -> str:
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


def _risk_box_chart(customers: pd.DataFrame, order: list[str]) -> str:
    scores = pd.to_numeric(customers["churn_risk_score"], errors="coerce")
    groups = [(label, scores[customers["segment"] == label].dropna().to_numpy()) for label in order]
    groups = [(label, values) for label, values in groups if len(values)]
    fig, ax = _figure(8, 0.5 * len(groups) + 1.3)
    data = [values for _, values in groups]
    horizontal = (
        {"orientation": "horizontal"} if "orientation" in inspect.signature(ax.boxplot).parameters
        else {"vert": False}
    )  # fmt: skip
    parts = ax.boxplot(data, widths=0.6, patch_artist=True, showfliers=False, **horizontal)
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


def _retention_chart(by_segment: pd.DataFrame) -> str:
    fig, ax = _figure(8, 0.45 * len(by_segment) + 1.2)
    y = np.arange(len(by_segment))
    from matplotlib.ticker import MaxNLocator

    bars = ax.barh(y, by_segment["customers"].to_numpy(), color="#D55E00")
    labels = [f"{_int(c)}" + ("" if _missing(r) else f" · {_money(r)} at risk")
              for c, r in zip(by_segment["customers"], by_segment["revenue"], strict=True)]  # fmt: skip
    ax.bar_label(bars, labels=labels, padding=3, fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_yticks(y, [_plain(s) for s in by_segment.index])
    ax.invert_yaxis()
    ax.set_xlim(0, max(float(by_segment["customers"].max()), 1.0) * 1.45)
    ax.set_xlabel("customers in the retention segment")
    _style(ax)
    return _img(fig, "Retention segment customers per segment")


def _drift_chart(drift: pd.DataFrame, threshold: float) -> str:
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


# --------------------------------------------------------------------------------------------- sections


def _cards(items: Sequence[tuple[str, str]]) -> str:
    cards = "".join(
        f'<div class="card"><div class="value">{html.escape(value)}</div>'
        f'<div class="label">{html.escape(label)}</div></div>'
        for label, value in items
    )
    return f'<div class="cards">{cards}</div>'


def _summary_section(inputs: ReportInputs, prep: _Prepared) -> str:
    cs = prep.customers
    scores = (
        pd.to_numeric(cs["churn_risk_score"], errors="coerce") if "churn_risk_score" in cs else pd.Series()
    )
    unassigned = int((cs["segment"] == UNASSIGNED).sum())
    flagged = _flagged_drift(inputs)
    auc = inputs.model.get("holdout_roc_auc")
    version = inputs.model.get("model_version")
    cards = [
        ("customers scored", _int(len(cs))),
        ("segments", _int(len(prep.names))),
        ("mean churn risk score (0-100)", _num(scores.mean(), 0) if len(scores) else MISSING),
        ("customers in retention segment", _int(len(inputs.retention))),
        ("revenue at risk (365 d)", _money(_revenue_at_risk(inputs.retention))),
        ("churn model", f"v{version}" if not _missing(version) else MISSING),
        ("model ROC-AUC (holdout)", _num(auc)),
        (
            "drifted features",
            "no reference" if inputs.drift.empty else f"{len(flagged)} of {len(inputs.drift)}",
        ),
    ]
    meta = _table(
        ["", ""],
        [
            ["Run", inputs.run_id],
            ["Job", JOB_DESCRIPTIONS.get(inputs.job, inputs.job)],
            ["Data as of", _date(inputs.as_of)],
            ["Segmentation", inputs.segmentation.get("selected")],
        ],
        css="meta",
    )
    notes = []
    if inputs.segmentation.get("single_segment"):
        notes.append(
            "One segment: every customer has the same profile features, so all are in \u201cAll customers\u201d "
            f"({inputs.segmentation.get('notes')})."
        )
    if unassigned:
        notes.append(
            f"{unassigned:,} customers ({unassigned / max(len(cs), 1):.1%}) joined since the segments were "
            "last fitted and are shown as \u201cunassigned\u201d until the next full refresh."
        )
    if len(flagged):
        notes.append(
            "Drift: "
            + ", ".join(
                f"{f} (PSI {_num(p, 2)})" for f, p in zip(flagged["feature"], flagged["psi"], strict=True)
            )  # fmt: skip
            + " changed noticeably since the reference run; see Data drift."
        )
    note_html = "".join(f'<p class="callout">{html.escape(n)}</p>' for n in notes)
    if inputs.links:
        items = "".join(
            f"<li>{_link(label, url)}{_file_note(inputs.link_files.get(label))}</li>"
            for label, url in inputs.links.items()
        )
        links = f'<h3>Links</h3><ul class="links">{items}</ul>'
    else:
        links = ""
    return _section("summary", meta + _cards(cards) + note_html + links)


def _segments_section(inputs: ReportInputs, prep: _Prepared) -> str:
    profiles = inputs.segment_profiles
    intro = (
        "Customers grouped by similar behaviour and value. <em>Traits</em> say how the segment differs from "
        "the average customer, in standard deviations (+ above average, &minus; below). Revenue is the last "
        "365 days; observed churn is the share of the segment's customers who churned in the last window."
    )
    if profiles.empty:
        return _section("segments", _empty("No segment profiles in this run."), intro)
    frame = profiles.dropna(subset=["segment_id"]).sort_values("segment_id")
    rows = []
    for _, p in frame.iterrows():
        traits = [t.strip() for t in str(p.get("top_traits") or "").split(",") if t.strip()]
        traits_html = _Html("<br>".join(html.escape(t) for t in traits)) if traits else MISSING
        rows.append([
            prep.names[int(p["segment_id"])], _int(p.get("customers")), _pct(p.get("share")),
            _money(p.get("revenue_365d")), _pct(p.get("revenue_share")), _money(p.get("mean_revenue_365d"), 2),
            _pct(p.get("observed_churn_rate")), _num(p.get("mean_churn_risk_score"), 0),
            _int(p.get("customers_in_retention_segment")), traits_html,
        ])  # fmt: skip
    table = _table(
        ["Segment", "Customers", "Share", "Revenue (365 d)", "Revenue share", "Avg revenue per customer",
         "Observed churn", "Avg churn risk (0-100)", "In retention segment", "Top traits"],
        rows, numeric=range(1, 9),
    )  # fmt: skip
    seg = inputs.segmentation
    facts = [f"Method: {_esc(seg.get('selected'))}", f"silhouette {_num(seg.get('silhouette'))}",
             f"stability {_num(seg.get('stability'))}"]  # fmt: skip
    if not _missing(seg.get("mlflow_run_url")):
        facts.append(_link("segmentation run in MLflow", seg.get("mlflow_run_url")))
    method = f'<p class="note">{" · ".join(facts)}</p>'
    missing_revenue = frame["revenue_365d"].isna().all() if "revenue_365d" in frame else True
    note = (
        _empty("No order revenue in the source data: revenue columns show \u201c—\u201d.")
        if missing_revenue
        else ""
    )
    return _section("segments", _segment_size_chart(frame, prep.names) + table + method + note, intro)


def _lifecycle_section(prep: _Prepared) -> str:
    cs = prep.customers
    intro = "Where customers are in their relationship with the company, overall and within each segment."
    if cs.empty or "lifecycle_stage" not in cs:
        return _section("lifecycle", _empty("No customers in this run."), intro)
    stages = cs["lifecycle_stage"].fillna("unknown").astype(str)
    order = _stage_order(stages)
    counts = pd.crosstab(cs["segment"], stages).reindex(index=prep.order, columns=order, fill_value=0)
    overall = stages.value_counts().reindex(order, fill_value=0)
    chart_table = pd.concat([overall.rename("All customers").to_frame().T, counts])
    chart = _stacked_share_chart(
        chart_table, STAGE_COLORS, "Lifecycle stage mix", "Lifecycle stages by segment"
    )
    total = len(cs)
    overall_table = _table(
        ["Lifecycle stage", "Customers", "Share"],
        [[_readable(s), _int(n), _pct(n / total)] for s, n in overall.items()],
        numeric=(1, 2),
    )
    rows = []
    for label, row in chart_table.iterrows():
        n = int(row.sum())
        rows.append([label, _int(n), *(f"{_int(v)} ({_pct(v / n, 0) if n else MISSING})" for v in row)])
    by_segment = _table(["Segment", "Customers", *(_readable(s) for s in order)], rows,
                        numeric=range(1, len(order) + 2))  # fmt: skip
    return _section("lifecycle", chart + "<h3>Overall</h3>" + overall_table + "<h3>By segment</h3>" + by_segment,
                    intro)  # fmt: skip


def _churn_section(prep: _Prepared) -> str:
    cs = prep.customers
    intro = (
        "The churn risk score (0-100) comes from the churn model's calibrated probability. Each customer is in "
        "one action tier: <em>automated</em> (campaigns), <em>semi-automated</em> (triggered offers, light "
        "touch) or <em>personal outreach</em> (a person from customer success should call)."
    )
    if cs.empty or "churn_risk_score" not in cs:
        return _section("churn-risk", _empty("No churn scores in this run."), intro)
    tiers = cs["risk_tier"].astype(object).where(cs["risk_tier"].notna(), "unknown").astype(str)
    tier_order = list(TIERS) + sorted(set(tiers) - set(TIERS))  # all three tiers, even when one is empty
    counts = pd.crosstab(cs["segment"], tiers).reindex(index=prep.order, columns=tier_order, fill_value=0)
    scores = pd.to_numeric(cs["churn_risk_score"], errors="coerce")
    in_ret = cs["in_retention_segment"].fillna(False).astype(bool) if "in_retention_segment" in cs else None
    rows = []
    for label, row in counts.iterrows():
        mask = cs["segment"] == label
        rows.append([
            label, _int(row.sum()), *(_int(v) for v in row), _num(scores[mask].mean(), 0),
            _num(scores[mask].median(), 0), _int(in_ret[mask].sum()) if in_ret is not None else MISSING,
        ])  # fmt: skip
    rows.append([
        "All customers", _int(len(cs)), *(_int(v) for v in counts.sum()), _num(scores.mean(), 0),
        _num(scores.median(), 0), _int(in_ret.sum()) if in_ret is not None else MISSING,
    ])  # fmt: skip
    headers = ["Segment", "Customers", *(TIER_LABELS.get(t, _readable(t)) for t in tier_order),
               "Mean score", "Median score", "In retention segment"]  # fmt: skip
    table = _table(
        headers, rows, numeric=range(1, len(headers)), row_classes=[None] * (len(rows) - 1) + ["total"]
    )
    chart = _risk_box_chart(cs, prep.order) if scores.notna().any() else ""
    return _section("churn-risk", chart + "<h3>Action tiers per segment</h3>" + table, intro)


def _retention_section(inputs: ReportInputs, prep: _Prepared) -> str:
    ret = prep.retention
    intro = (
        "High churn risk <em>and</em> high value: the customers most worth a retention effort. Revenue at risk "
        "is their spend over the last 365 days."
    )
    if ret.empty:
        return _section("retention", _empty("No customers are in the retention segment in this run."), intro)
    money = pd.to_numeric(ret["monetary_365d"], errors="coerce") if "monetary_365d" in ret else pd.Series(
        np.nan, index=ret.index)  # fmt: skip
    scores = pd.to_numeric(ret["churn_risk_score"], errors="coerce")
    at_risk = _revenue_at_risk(ret)
    cards = _cards([
        ("customers in retention segment", _int(len(ret))),
        ("revenue at risk (365 d)", _money(at_risk)),
        ("share of scored customers", _pct(len(ret) / len(prep.customers)) if len(prep.customers) else MISSING),
    ])  # fmt: skip
    grouped = pd.DataFrame({"segment": ret["segment"], "money": money, "score": scores})
    by = grouped.groupby("segment", sort=False).agg(customers=("score", "size"),
                                                    revenue=("money", lambda m: m.sum(min_count=1)),
                                                    mean_score=("score", "mean"))  # fmt: skip
    order = [s for s in prep.order if s in by.index] + sorted(set(by.index) - set(prep.order))
    by = by.reindex(order)
    breakdown = _table(
        ["Segment", "Customers", "Revenue at risk", "Share of revenue at risk", "Mean risk score"],
        [[s, _int(r.customers), _money(r.revenue),
          _pct(r.revenue / at_risk) if not _missing(r.revenue) and at_risk else MISSING, _num(r.mean_score, 0)]
         for s, r in by.iterrows()],
        numeric=range(1, 5),
    )  # fmt: skip
    top = ret.assign(_score=scores, _money=money).sort_values(
        ["_score", "_money", "customer_id"], ascending=[False, False, True], na_position="last"
    ).head(RETENTION_ROWS)  # fmt: skip
    top_rows = [
        [r.get("customer_id"), r.get("segment"), _readable(r.get("lifecycle_stage")) if not _missing(
            r.get("lifecycle_stage")) else MISSING, _int(r["_score"]),
         TIER_LABELS.get(str(r.get("risk_tier")), r.get("risk_tier")), _money(r["_money"], 2), r.get("top_drivers")]
        for _, r in top.iterrows()
    ]  # fmt: skip
    top_table = _table(
        ["Customer id", "Segment", "Lifecycle stage", "Risk score", "Tier", "Revenue (365 d)", "Top drivers"],
        top_rows, numeric=(3, 5),
    )  # fmt: skip
    shown = (
        f"Top {len(top)} of {len(ret):,} by risk score, then revenue; the full list is the published table."
    )
    return _section(
        "retention",
        cards + _retention_chart(by) + "<h3>By segment</h3>" + breakdown + f"<h3>Highest risk</h3>"
        f'<p class="note">{html.escape(shown)}</p>' + top_table,
        intro,
    )


def _migration_section(inputs: ReportInputs, prep: _Prepared) -> str:
    intro = "How customers moved between segments since the previous run."
    if inputs.first_run:
        return _section("migration", _empty("This is the first run: there is no previous run to compare against."),
                        intro)  # fmt: skip
    mig = inputs.migration
    if mig.empty:
        return _section("migration", _empty("No segment migration was recorded for this run."), intro)
    totals = _migration_totals(mig)
    cards = _cards([("stayed in their segment", _int(totals["stayed"])),
                    ("changed segment", _int(totals["changed"])),
                    ("joined", _int(totals["joined"])), ("left", _int(totals["left"]))])  # fmt: skip

    def label(ids: pd.Series, none: str) -> pd.Series:
        sid = pd.Series(pd.array(ids, dtype="Int64"), index=ids.index)
        out = sid.map(lambda s: none if _missing(s) else prep.names.get(int(s), f"segment {int(s)}"))
        return out.astype(object)

    frame = pd.DataFrame({
        "from": label(mig["from_segment_id"], JOINED), "to": label(mig["to_segment_id"], LEFT),
        "customers": pd.to_numeric(mig["customers"], errors="coerce").fillna(0).astype(int),
    })  # fmt: skip
    matrix = frame.pivot_table(index="from", columns="to", values="customers", aggfunc="sum", fill_value=0)
    known = list(prep.names.values())
    rows_order = [n for n in known if n in matrix.index] + sorted(set(matrix.index) - set(known) - {JOINED})
    rows_order += [JOINED] if JOINED in matrix.index else []
    cols_order = [n for n in known if n in matrix.columns] + sorted(set(matrix.columns) - set(known) - {LEFT})
    cols_order += [LEFT] if LEFT in matrix.columns else []
    matrix = matrix.reindex(index=rows_order, columns=cols_order, fill_value=0)
    peak = max(int(matrix.to_numpy().max(initial=0)), 1)

    def cell(src: str, dst: str, n: int) -> str:
        strength = 0.08 + 0.55 * n / peak if n else 0.0
        style = f' style="background: rgba(0, 114, 178, {strength:.2f})"' if n else ""
        cls = "num diag" if src == dst else "num"
        return f'<td class="{cls}"{style}>{_int(n)}</td>'

    head = "".join(f'<th class="num">{html.escape(c)}</th>' for c in cols_order)
    body = "".join(
        f"<tr><th>{html.escape(src)}</th>" + "".join(cell(src, dst, int(row[dst])) for dst in cols_order)
        + f'<td class="num total">{_int(row.sum())}</td></tr>'
        for src, row in matrix.iterrows()
    )  # fmt: skip
    table = (
        '<div class="table-wrap"><table class="data matrix"><thead><tr><th>from \u2193 / to \u2192</th>'
        f'{head}<th class="num">total</th></tr></thead><tbody>{body}</tbody></table></div>'
    )
    note = ('<p class="note">Rows: segment in the previous run; columns: segment now. The diagonal (bold) is '
            "customers who stayed; \u201cnew customer\u201d joined since the previous run, \u201cleft\u201d are "
            "no longer in the customer base.</p>")  # fmt: skip
    return _section("migration", cards + table + note, intro)


def _model_section(inputs: ReportInputs) -> str:
    m = inputs.model
    intro = "The churn model that produced this run's scores, how well it did on customers it never saw, and "
    intro += "whether it replaced the previous model."
    version, champion = m.get("model_version"), m.get("champion_version")
    reason = _esc(str(m.get("gate_reason")).rstrip(". ") if not _missing(m.get("gate_reason")) else None)
    if inputs.job == "rescore":
        shown = champion if not _missing(champion) else version
        gate = (f"Not retrained in this run (rescore): customers were scored with the champion model, "
                f"version {_esc(shown)}.")  # fmt: skip
    elif _missing(version):
        gate = "No churn model information for this run."
    elif _truthy(m.get("promoted")):
        gate = f"Version {_esc(version)} was <strong>promoted to champion</strong>: {reason}."
    else:
        gate = (f"Version {_esc(version)} was <strong>not promoted</strong>: {reason}. "
                f"The champion stays version {_esc(champion)}.")  # fmt: skip
    metrics = [
        ("Model version", _esc(version), "version in the MLflow model registry"),
        ("Model type", _esc(m.get("candidate")), "the candidate algorithm chosen on validation data"),
        ("Champion version", _esc(champion), "the model the pipeline scores with after this run"),
        ("ROC-AUC", _num(m.get("holdout_roc_auc")), "ranking quality: 0.5 = coin flip, 1 = perfect"),
        ("PR-AUC", _num(m.get("holdout_pr_auc")), "precision over all recall levels; compare with the churn rate"),
        ("Brier score", _num(m.get("holdout_brier")), "probability error; lower is better"),
        ("Lift, top decile", _num(m.get("holdout_lift_top_decile"), 2),
         "how many times more churners among the riskiest 10% than on average"),
        ("F1 at threshold", _num(m.get("holdout_f1")), "balance of precision and recall at the threshold"),
        ("Decision threshold", _num(m.get("threshold")), "probability above which a customer counts as a churner"),
    ]  # fmt: skip
    table = _table(["Metric", "Value", "What it means"], [[_Html(a), _Html(b), c] for a, b, c in metrics])
    link = ""
    if not _missing(m.get("mlflow_run_url")):
        link = f"<p>{_link('Model training run in MLflow', m.get('mlflow_run_url'))}</p>"
    return _section("model", f'<p class="callout">{gate}</p>' + table
                    + '<p class="note">Metrics are on the holdout: the latest labelled period, which the model '
                    "was not fitted on (it is refitted on it afterwards for scoring).</p>"
                    + _baselines_block(m) + link, intro)  # fmt: skip


BASELINE_NAMES = {
    "recency": "Sorting by days since the last activity (orders only: last purchase)",
    "rfm": "RFM: recency, frequency and spend in a logistic regression",
    "btyd": "BG/NBD buy-till-you-die model alone",
}


def _baselines_block(m: dict) -> str:
    """Our model vs. the naive baselines on the same holdout: the comparison a sceptical reader asks for."""
    names = [b for b in BASELINE_NAMES if not _missing(m.get(f"baseline_{b}_holdout_roc_auc"))]
    if not names:
        return ""
    published = m.get("candidate")
    kind = m.get("model_kind")
    model_name = m.get("selected_candidate") if not _missing(m.get("selected_candidate")) else published
    own = (
        "selected_candidate_holdout"
        if not _missing(m.get("selected_candidate_holdout_roc_auc"))
        else "holdout"
    )
    rows = [[_Html(f"<strong>Our model</strong> ({_esc(model_name)})"
                   + (" <strong>(used for the scores)</strong>" if kind != "baseline" else "")),
             _Html(_num(m.get(f"{own}_roc_auc"))), _Html(_num(m.get(f"{own}_pr_auc"))),
             _Html(_num(m.get(f"{own}_lift_top_decile"), 2))]]  # fmt: skip
    for b in names:
        label = _esc(BASELINE_NAMES[b]) + (
            " <strong>(used for the scores)</strong>" if published == f"baseline_{b}" else ""
        )
        rows.append([_Html(label), _Html(_num(m.get(f"baseline_{b}_holdout_roc_auc"))),
                     _Html(_num(m.get(f"baseline_{b}_holdout_pr_auc"))),
                     _Html(_num(m.get(f"baseline_{b}_holdout_lift_top_decile"), 2))])  # fmt: skip
    if kind == "baseline":
        verdict = (f"Our model ({_esc(model_name)}) did <strong>not</strong> rank customers better than the "
                   f"naive baselines on the holdout, so this run's scores come from the best baseline, "
                   f"{_esc(published)}. {_esc(m.get('baseline_verdict'))}.")  # fmt: skip
    elif _missing(m.get("baseline_verdict")):
        verdict = ""
    else:
        verdict = (
            f"Our model ranks customers better than every naive baseline: {_esc(m.get('baseline_verdict'))}."
        )
    table = _table(["Model", "ROC-AUC", "PR-AUC", "Lift, top decile"], rows)
    return ("<h3>Our model vs. sorting by last activity</h3>"
            f'<p class="{"callout" if kind == "baseline" else "note"}">{verdict}</p>' + table
            + '<p class="note">Each baseline is fitted on the same training rows and scored on the same holdout. '
            "A churn model earns its place only by ranking customers better than these.</p>")  # fmt: skip


def _drift_section(inputs: ReportInputs) -> str:
    threshold = inputs.drift_threshold
    intro = (
        "Whether this run's customers look different from the reference run's, per feature. PSI (population "
        "stability index) is 0 for identical distributions; under 0.1 is usually noise, over 0.25 a large shift. "
        f"Features above {threshold:g} are flagged: they can make segments and churn scores less reliable."
    )
    drift = inputs.drift
    if drift.empty:
        return _section(
            "drift", _empty("No reference run yet: drift is measured against a previous run from the next run on."),
            intro,
        )  # fmt: skip
    frame = drift.copy()
    frame["psi"] = pd.to_numeric(frame["psi"], errors="coerce")
    frame["_flagged"] = (frame["flagged"].fillna(False).astype(bool) if "flagged" in frame
                         else frame["psi"] > threshold)  # fmt: skip
    frame = frame.sort_values(["_flagged", "psi"], ascending=[False, False], na_position="last")
    refs = []
    if {"reference_as_of", "reference_run_id"} <= set(frame.columns):
        pairs = zip(frame["reference_as_of"], frame["reference_run_id"], strict=True)
        refs = sorted({(_date(a), _esc(r)) for a, r in pairs})
    ref_text = "; ".join(f"as of {a}, run {r}" for a, r in refs)
    ref = f'<p class="note">Reference: {ref_text}.</p>' if refs else ""
    table = _table(
        ["Feature", "PSI", "Flagged"],
        [[f, _num(p), "yes" if fl else "no"] for f, p, fl in zip(frame["feature"], frame["psi"], frame["_flagged"],
                                                                  strict=True)],
        numeric=(1,), row_classes=["flagged" if fl else None for fl in frame["_flagged"]],
    )  # fmt: skip
    n = int(frame["_flagged"].sum())
    summary = f"{n} of {len(frame)} features above the threshold {threshold:g}."
    body = ref + f'<p class="{"callout" if n else "note"}">{html.escape(summary)}</p>'
    if "churn_probability" in set(frame["feature"]):
        body += ('<p class="note">&ldquo;churn_probability&rdquo; is the model\'s own output: when it drifts, the '
                 "share of risky customers changed, through the customers or through the model.</p>")  # fmt: skip
    return _section("drift", body + _drift_chart(frame, threshold) + table, intro)


STYLE = """
*{box-sizing:border-box}
body{margin:0;background:#f3f4f6;color:#1f2933;line-height:1.5;
 font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:28px 32px 64px;background:#fff;min-height:100vh}
h1{font-size:1.75rem;margin:0 0 2px}
h2{font-size:1.3rem;margin:44px 0 8px;padding-bottom:4px;border-bottom:2px solid #e4e7eb}
h3{font-size:1.02rem;margin:22px 0 6px}
.subtitle{color:#52606d;margin:0 0 18px}
nav.toc{background:#f8fafc;border:1px solid #e4e7eb;border-radius:8px;padding:10px 16px;margin:0 0 8px}
nav.toc ol{margin:0;padding-left:20px;columns:2}
nav.toc a,section a{color:#0b5cad}
.note{color:#52606d;font-size:.92rem;margin:6px 0}
.callout{background:#fff7e6;border-left:4px solid #e69f00;padding:8px 12px;margin:10px 0}
.empty{background:#f0f4f8;border-left:4px solid #9fb3c8;padding:10px 14px;margin:10px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:12px;margin:14px 0}
.card{border:1px solid #e4e7eb;border-radius:8px;padding:10px 14px;background:#fcfcfd}
.card .value{font-size:1.35rem;font-weight:700;font-variant-numeric:tabular-nums}
.card .label{color:#52606d;font-size:.85rem}
.table-wrap{overflow-x:auto;margin:10px 0}
table{border-collapse:collapse;width:100%;font-size:.88rem}
th,td{padding:6px 10px;text-align:left;vertical-align:top;border-bottom:1px solid #e4e7eb}
thead th{background:#eef1f4;font-weight:600;position:sticky;top:0}
table.data tbody td:first-child{min-width:11em}
tbody tr:nth-child(even){background:#f8f9fb}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.meta{width:auto}
table.meta thead{display:none}
table.meta td:first-child{color:#52606d;padding-right:24px}
tr.total td{font-weight:600;border-top:2px solid #cbd2d9}
tr.flagged td{background:#fde8e1;font-weight:600}
tr.flagged td:first-child{border-left:4px solid #c0392b}
table.matrix td.diag{font-weight:700}
table.matrix tbody th{background:#f8f9fb;font-weight:600}
figure{margin:14px 0}
figure img{max-width:100%;height:auto;display:block}
figcaption{color:#52606d;font-size:.85rem}
footer{color:#7b8794;font-size:.8rem;margin-top:48px}
@media print{body{background:#fff}main{padding:0}h2{break-after:avoid}figure,tr{break-inside:avoid}}
"""


def _identity_section(inputs: ReportInputs) -> str:
    intro = (
        "CRM records merged into one customer, by the rule that matched (exact rules, or the probabilistic "
        "matcher's probability at or above the merge threshold), and the pairs that looked alike but were not "
        "merged: someone who knows the customers should decide them in the CRM. Only CRM ids and the names of "
        "the fields that agreed are shown, never the contact data."
    )
    rules = {k: v for k, v in inputs.merged_by_rule.items() if v}
    merged = sum(rules.values())
    table = (
        _table(["Rule", "Records merged"], [[_readable(k), _int(v)] for k, v in sorted(rules.items())], numeric=(1,))
        if rules else _empty("No duplicate records were found.")
    )  # fmt: skip
    review = inputs.identity_review
    if review.empty:
        body = f"<p>{_int(merged)} CRM records were merged into other customers.</p>" + table
        return _section("identity", body + _empty("No pair is waiting for review."), intro)
    shown = review.head(IDENTITY_REVIEW_ROWS)
    pairs = _table(
        ["CRM id", "CRM id", "Probability", "Agreed", "Similar", "Disagreed", "Not merged because"],
        [[r.customer_id_a, r.customer_id_b, _num(r.match_probability), r.fields_agreed, r.fields_similar,
          r.fields_disagreed, r.not_merged_because] for r in shown.itertuples()],
        numeric=(2,),
    )  # fmt: skip
    more = len(review) - len(shown)
    note = f'<p class="note">{_int(more)} more pairs in clean.identity_review.</p>' if more > 0 else ""
    body = (
        f"<p>{_int(merged)} CRM records were merged into other customers; "
        f"<strong>{_int(len(review))} pairs</strong> are waiting for review.</p>" + table + pairs + note
    )
    return _section("identity", body, intro)


def render_report(inputs: ReportInputs) -> str:
    """The complete HTML document: a single file with every plot embedded, nothing fetched when opened."""
    prep = _prepare(inputs)
    as_of = _date(inputs.as_of)
    sections = [
        _summary_section(inputs, prep),
        _segments_section(inputs, prep),
        _lifecycle_section(prep),
        _churn_section(prep),
        _retention_section(inputs, prep),
        _migration_section(inputs, prep),
        _model_section(inputs),
        _drift_section(inputs),
        _identity_section(inputs),
    ]
    toc = "".join(f'<li><a href="#{sid}">{html.escape(title)}</a></li>' for sid, title in SECTIONS)
    title = f"Customer segment report · {as_of}"
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="subtitle">Run {_esc(inputs.run_id)} · {_esc(JOB_DESCRIPTIONS.get(inputs.job, inputs.job))}</p>',
        f'<nav class="toc"><ol>{toc}</ol></nav>',
        *sections,
        f"<footer>Generated by seg_pipeline for run {_esc(inputs.run_id)}. Contains customer ids only: no "
        "names, e-mail addresses or phone numbers.</footer>",
        "</main>",
        "</body>",
        "</html>",
    ])  # fmt: skip


def summary_markdown(inputs: ReportInputs) -> str:
    """A few lines for the Dagster asset metadata: the headline numbers, with the full page one click away."""
    prep = _prepare(inputs)
    cs = prep.customers
    unassigned = int((cs["segment"] == UNASSIGNED).sum())
    lines = [
        f"**Segment report** · run `{str(inputs.run_id)[:8].replace('`', '')}` · {_md(inputs.job)} · as of {_date(inputs.as_of)}",
        "",
        f"{len(cs):,} customers in {len(prep.names)} segments"
        + (f" ({unassigned:,} unassigned, new since the last segmentation)" if unassigned else ""),
        "",
    ]
    profiles = inputs.segment_profiles
    if not profiles.empty:
        frame = profiles.dropna(subset=["segment_id"]).sort_values("segment_id")
        lines += ["| Segment | Customers | Share | Mean churn risk |", "|---|---:|---:|---:|"]
        for _, p in frame.head(MARKDOWN_SEGMENTS).iterrows():
            lines.append(f"| {_md(prep.names[int(p['segment_id'])])} | {_int(p.get('customers'))} | "
                         f"{_pct(p.get('share'))} | {_num(p.get('mean_churn_risk_score'), 0)} |")  # fmt: skip
        if len(frame) > MARKDOWN_SEGMENTS:
            lines.append(f"| … and {len(frame) - MARKDOWN_SEGMENTS} more | | | |")
        lines.append("")
    lines.append(f"- **Retention segment:** {len(inputs.retention):,} customers, revenue at risk "
                 f"{_money(_revenue_at_risk(inputs.retention))}")  # fmt: skip
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
    lines.append(f"- **Churn model:** v{_md(m.get('model_version'))} ({_md(m.get('candidate'))}), ROC-AUC "
                 f"{_num(m.get('holdout_roc_auc'))}, PR-AUC {_num(m.get('holdout_pr_auc'))}; {outcome}")  # fmt: skip
    if not _missing(m.get("baseline_verdict")):
        lines.append(f"- **Against baselines:** {_md(m.get('baseline_verdict'))}")
    if inputs.first_run:
        lines.append("- **Migration:** first run, no previous run to compare against")
    elif inputs.migration.empty:
        lines.append("- **Migration:** none recorded")
    else:
        t = _migration_totals(inputs.migration)
        lines.append(f"- **Migration:** {t['stayed']:,} stayed, {t['changed']:,} changed segment, "
                     f"{t['joined']:,} joined, {t['left']:,} left")  # fmt: skip
    if inputs.drift.empty:
        lines.append("- **Drift:** no reference run yet")
    else:
        flagged = _flagged_drift(inputs)
        if flagged.empty:
            lines.append(f"- **Drift:** no feature above PSI {inputs.drift_threshold:g}")
        else:
            names = ", ".join(
                f"{_md(f)} ({_num(p, 2)})"
                for f, p in zip(flagged["feature"].head(5), flagged["psi"].head(5), strict=True)
            )
            more = f" and {len(flagged) - 5} more" if len(flagged) > 5 else ""
            lines.append(f"- **Drift:** ⚠ {len(flagged)} of {len(inputs.drift)} features above PSI "
                         f"{inputs.drift_threshold:g}: {names}{more}")  # fmt: skip
    return "\n".join(lines)


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
