"""The segment report is one self-contained HTML file rendered from a Jinja2 template: every section, plots
embedded as PNG data URIs, no external resource, data escaped (autoescape) and no silently missing value
(StrictUndefined); money in the configured currency; it survives a first run (no migration, no drift
reference, no orders, one run of KPI history)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import re

import jinja2
import numpy as np
import pandas as pd
import pytest

from seg_pipeline.publish import report
from seg_pipeline.publish.report import SECTIONS, ReportInputs, render_report, summary_markdown, write_report

AS_OF = dt.date(2024, 6, 30)
RUN_ID = "3f2b9c1e-8d4a-4e7b-9a61-0c5d2e7f1a88"
NAMES = {1: "Big <spenders> & VIPs", 2: "Occasional buyers", 3: "Dormant low-value"}
LINKS = {
    "Dagster run": "http://localhost:3000/runs/3f2b9c1e-8d4a-4e7b-9a61-0c5d2e7f1a88",
    "MLflow runs": "http://127.0.0.1:5000/#/experiments/2",
    "Data Docs": "http://127.0.0.1:3001/datadocs/index.html",
}
MODEL_URL = "http://127.0.0.1:5000/#/experiments/2/runs/abc123"
SEGMENTATION_URL = "http://127.0.0.1:5000/#/experiments/1/runs/def456"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DATA_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")
TIERS = ("personal_outreach", "semi_automated", "automated", "no_action", "no_consent")
TIER_LABELS = (
    "Personal outreach",
    "Semi-automated",
    "Automated campaign",
    "No action",
    "No marketing consent",
)
# the action tiers' capacities (customers), save rates and suggested actions in the test runs
CAPACITY = {"personal_outreach": 10, "semi_automated": 30, "automated": 60}
SAVE_RATE = {"personal_outreach": 0.25, "semi_automated": 0.1, "automated": 0.03}
ACTION = {"personal_outreach": "Call within a week", "semi_automated": "Personal e-mail with an offer",
          "automated": "Automated win-back campaign"}  # fmt: skip
COST_PER_CONTACT = {"personal_outreach": 25.0, "semi_automated": 4.0, "automated": None}


def assign_tiers(frame: pd.DataFrame) -> pd.DataFrame:
    """What churn.actions does: consenting customers ranked by expected loss fill the tiers in order."""
    ranked = frame[frame["consent"]].sort_values(["expected_loss", "churn_probability", "customer_id"],
                                                 ascending=[False, False, True])  # fmt: skip
    rank = pd.Series(pd.NA, index=frame.index, dtype="Int64")
    rank[ranked.index] = np.arange(1, len(ranked) + 1)
    tier = pd.Series(np.where(frame["consent"], "no_action", "no_consent"), index=frame.index, dtype=object)
    start = 0
    for name, size in CAPACITY.items():
        tier[ranked.index[start : start + size]] = name
        start += size
    return frame.assign(action_rank=rank, risk_tier=tier,
                        suggested_action=tier.map(ACTION).fillna(""))  # fmt: skip


def action_plan(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for tier in TIERS:
        members = frame[frame["risk_tier"] == tier]
        acting = tier in CAPACITY
        save = SAVE_RATE.get(tier, np.nan)
        cost = COST_PER_CONTACT.get(tier)
        rows.append({
            "tier": tier, "customers": len(members), "capacity": CAPACITY.get(tier, pd.NA),
            "capacity_rule": f"{CAPACITY[tier]:,} customers" if acting else None,
            "mean_churn_probability": members["churn_probability"].mean() if len(members) else np.nan,
            "value_365d": members["value_365d"].sum(min_count=1), "expected_loss": members["expected_loss"].sum(min_count=1),
            "lowest_expected_loss": members["expected_loss"].min() if len(members) else np.nan, "save_rate": save,
            "expected_customers_saved": members["churn_probability"].sum() * save if acting else np.nan,
            "expected_revenue_saved": members["expected_loss"].sum() * save if acting else np.nan,
            "contact_cost": len(members) * cost if cost else np.nan, "suggested_action": ACTION.get(tier, ""),
        })  # fmt: skip
    return pd.DataFrame(rows).astype({"customers": "int64", "capacity": "Int64"})


def kpi_history(
    customers: pd.DataFrame, plan: pd.DataFrame, names: dict[int, str], runs: int
) -> pd.DataFrame:
    """``runs`` runs of the long KPI table, this run last; two of them on the same day."""
    rows = []
    listed = plan.set_index("tier").loc[["personal_outreach", "semi_automated"]]
    for i in range(runs):
        # monthly runs, the last two on the same day (a rescore after the full refresh): they keep run order
        months_back = max(runs - 2 - i, 0) if runs > 2 else runs - 1 - i
        as_of = pd.Timestamp(AS_OF) - pd.DateOffset(months=months_back)
        run_id = RUN_ID if i == runs - 1 else f"run-{i:04d}-earlier"
        grow = 1 + 0.05 * (i - runs + 1)

        def add(measure, value, breakdown="all", label="All customers", as_of=as_of, run_id=run_id):
            rows.append({"as_of": as_of, "run_id": run_id, "measure": measure, "breakdown": breakdown,
                         "breakdown_label": label, "value": float(value)})  # fmt: skip

        add("customers", len(customers) * grow)
        for sid, name in names.items():
            add("segment_customers", (customers["segment_id"] == sid).sum() * grow, f"segment:{sid}", name)
        add("mean_churn_probability", customers["churn_probability"].mean())
        for tier in TIERS:
            members = customers[customers["risk_tier"] == tier]
            add("tier_customers", len(members) * grow, tier, tier)
            add("mean_churn_probability", members["churn_probability"].mean(), tier, tier)
        add("revenue_365d", customers["value_365d"].sum() * grow)
        add("expected_loss", customers["expected_loss"].sum() * grow)
        add("retention_list_customers", listed["customers"].sum())
        add("retention_list_expected_loss", listed["expected_loss"].sum() * grow)
    return pd.DataFrame(rows)


def make_inputs(
    names: dict[int, str] = NAMES, n: int = 300, history_runs: int = 3, judged: bool = True, **overrides
) -> ReportInputs:
    """Segments of ``names``, ``n`` customers (12 new since the last segmentation), the tiers and action
    plan, the retention list, migration, drift and ``history_runs`` runs of KPI history."""
    rng = np.random.default_rng(7)
    ids = list(names)
    segment_id = pd.array(rng.choice(ids, size=n), dtype="Int64")
    segment_id[rng.choice(n, size=12, replace=False)] = pd.NA
    position = np.array([ids.index(s) if not pd.isna(s) else len(ids) for s in segment_id])
    probability = np.clip(0.2 + 0.5 * position / len(ids) + rng.normal(0, 0.15, size=n), 0.01, 0.99)
    value = np.round(rng.gamma(2.0, 400.0, size=n), 2)
    customers = pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in range(n)],
        "segment_id": segment_id,
        "segment_name": [None if pd.isna(s) else names[int(s)] for s in segment_id],
        "lifecycle_stage": rng.choice(["new", "growing", "champion", "steady", "at_risk", "dormant"], size=n),
        "micro_segment_id": pd.array(rng.integers(1, 10, size=n), dtype="Int64"),
        "churn_probability": probability, "churn_risk_score": np.rint(probability * 100).astype(int),
        "value_365d": value, "expected_loss": probability * value, "consent": rng.random(n) > 0.1,
        "as_of": pd.Timestamp(AS_OF), "run_id": RUN_ID,
    })  # fmt: skip
    customers = assign_tiers(customers)
    customers["in_retention_segment"] = customers["risk_tier"].isin(["personal_outreach", "semi_automated"])
    plan = action_plan(customers)
    assigned = customers.dropna(subset=["segment_id"])
    rows = []
    for sid, group in assigned.groupby("segment_id"):
        rows.append({
            "segment_id": int(sid), "segment_name": names[int(sid)], "customers": len(group),
            "share": len(group) / len(assigned), "revenue_365d": group["value_365d"].sum(),
            "revenue_share": group["value_365d"].sum() / assigned["value_365d"].sum(),
            "mean_revenue_365d": group["value_365d"].mean(), "observed_churn_rate": 0.1 * (ids.index(sid) % 5 + 1),
            "mean_churn_probability": group["churn_probability"].mean(),
            "mean_churn_risk_score": group["churn_risk_score"].mean(),
            **{f"customers_{t}": int((group["risk_tier"] == t).sum()) for t in TIERS},
            "customers_in_retention_segment": int(group["in_retention_segment"].sum()),
            "top_traits": ("orders 2.3× as often as the average customer; spends 1,250 a year (typical: 480)"
                           if sid == ids[0] else "last purchase 143 days ago (typical: 40) <x>"),
            "trait_deviations": "avg_order_value +2.3, channel_share_app -0.7" if sid == ids[0] else "recency_days +1.4",
            "as_of": pd.Timestamp(AS_OF), "run_id": RUN_ID,
        })  # fmt: skip
    profiles = pd.DataFrame(rows)
    chosen = customers[customers["in_retention_segment"]]
    retention = pd.DataFrame({
        "customer_id": chosen["customer_id"], "action_rank": chosen["action_rank"].astype(int),
        "risk_tier": chosen["risk_tier"], "segment_name": chosen["segment_name"],
        "lifecycle_stage": chosen["lifecycle_stage"], "churn_probability": chosen["churn_probability"],
        "churn_risk_score": chosen["churn_risk_score"], "value_365d": chosen["value_365d"],
        "expected_loss": chosen["expected_loss"],
        "top_drivers": "Last purchase 143 days ago (typical: 40 days): +21 points; Support tickets 3 & more: +4 points",
        "suggested_action": chosen["suggested_action"],
        "arm": np.where(np.arange(len(chosen)) % 10 == 3, "control", "treatment"),
    }).sample(frac=1, random_state=1).reset_index(drop=True)  # fmt: skip
    first, second, last = ids[0], ids[1], ids[-1]
    moves = [(first, first, 50), (first, second, 6), (second, second, 130), (second, last, 11), (last, last, 80),
             (last, None, 4), (None, first, 3), (None, second, 9), (second, None, 2)]  # fmt: skip
    moves += [move for s in ids[2:-1] for move in ((s, s, 7), (s, first, 1))]  # reports with many segments
    migration = pd.DataFrame({
        "from_segment_id": pd.array([m[0] for m in moves], dtype="Int64"),
        "to_segment_id": pd.array([m[1] for m in moves], dtype="Int64"),
        "customers": [m[2] for m in moves],
    })  # fmt: skip
    drift = pd.DataFrame({
        "feature": ["recency_days", "frequency_365d", "monetary_365d", "churn_probability"],
        "psi": [0.41, 0.03, 0.08, 0.12],
        "reference_as_of": dt.date(2024, 5, 31),
        "reference_run_id": "prev-run-0001",
        "flagged": [True, False, False, False],
    })  # fmt: skip
    model = {
        "model_version": 7, "candidate": "hist_gradient_boosting", "promoted": True,
        "gate_reason": "holdout PR-AUC 0.512 beats champion v6 (0.488)", "champion_version": 7,
        "holdout_roc_auc": 0.8312, "holdout_pr_auc": 0.5124, "holdout_brier": 0.1123,
        "holdout_lift_top_decile": 3.1, "holdout_f1": 0.47, "threshold": 0.31, "mlflow_run_url": MODEL_URL,
    }  # fmt: skip
    segmentation = {
        "selected": "kmeans k=3",
        "silhouette": 0.31,
        "stability": 0.88,
        "mlflow_run_url": SEGMENTATION_URL,
    }
    inputs = ReportInputs(
        run_id=RUN_ID, job="full_refresh", as_of=AS_OF, segment_profiles=profiles,
        customer_segments=customers.drop(columns=["consent", "value_365d", "expected_loss", "action_rank",
                                                  "suggested_action", "churn_probability"]),
        retention=retention, migration=migration, first_run=False, model=model, segmentation=segmentation,
        drift=drift, drift_threshold=0.25, links=dict(LINKS), action_plan=plan,
        kpi_history=kpi_history(customers, plan, names, history_runs) if history_runs else pd.DataFrame(),
        **(judged_outcomes(customers) if judged else {}),
    )  # fmt: skip
    return dataclasses.replace(inputs, **overrides)


SCORED_AS_OF = AS_OF - dt.timedelta(days=120)
SCORED_RUN = "run-scored-120-days-earlier"


def judged_outcomes(customers: pd.DataFrame) -> dict:
    """The monitoring tables after a publish 120 days earlier was judged: its customers are this run's, churn
    drawn from their probabilities, 10 % of the action tiers held out, the treatment arm churning less."""
    from seg_pipeline.outcomes.realized import UPLIFT_RUN_COLUMNS, calibration_by_decile
    from seg_pipeline.outcomes.uplift import uplift_table

    rng = np.random.default_rng(11)
    p = customers["churn_probability"].to_numpy()
    acting = customers["risk_tier"].isin(["personal_outreach", "semi_automated", "automated"]).to_numpy()
    arm = np.where(acting, np.where(rng.random(len(p)) < 0.1, "control", "treatment"), None)
    churned = (rng.random(len(p)) < p * np.where(arm == "treatment", 0.8, 1.0)).astype(int)
    rows = [("all", "customers_scored", len(p) + 3), ("all", "excluded_erased", 2), ("all", "excluded_not_in_crm", 1),
            ("all", "excluded_without_profiling_consent", 0), ("all", "customers_evaluated", len(p)),
            ("all", "roc_auc", 0.7712), ("all", "pr_auc", 0.5011), ("all", "brier", 0.1811),
            ("all", "calibration_error", 0.043), ("all", "mean_probability", p.mean()),
            ("all", "churn_rate", churned.mean()), ("all", "recency_baseline_roc_auc", 0.7021)]  # fmt: skip
    for tier in ("personal_outreach", "semi_automated", "automated", "no_action", "no_consent"):
        members = (customers["risk_tier"] == tier).to_numpy()
        rows += [(f"tier:{tier}", "customers", members.sum()), (f"tier:{tier}", "churn_rate", churned[members].mean()),
                 (f"tier:{tier}", "mean_probability", p[members].mean())]  # fmt: skip
        for name in ("treatment", "control"):
            in_arm = members & (arm == name)
            if in_arm.any():
                rows.append((f"tier_arm:{tier}/{name}", "churn_rate", churned[in_arm].mean()))
    stamp = {"scored_run_id": SCORED_RUN, "scored_as_of": pd.Timestamp(SCORED_AS_OF),
             "evaluated_as_of": pd.Timestamp(AS_OF), "evaluated_run_id": RUN_ID, "horizon_days": 90,
             "model_version": 6}  # fmt: skip
    outcomes = pd.DataFrame(rows, columns=["breakdown", "metric", "value"]).assign(**stamp)
    earlier = outcomes[outcomes["breakdown"] == "all"].assign(
        scored_run_id="run-scored-earlier", scored_as_of=pd.Timestamp(SCORED_AS_OF) - pd.Timedelta(days=30)
    )
    calibration = calibration_by_decile(p, churned).assign(scored_run_id=SCORED_RUN)
    frame = pd.DataFrame({"customer_key": customers["customer_id"], "risk_tier": customers["risk_tier"], "arm": arm,
                          "churned": churned, "value_365d": customers["value_365d"]})[acting]  # fmt: skip
    uplift = uplift_table(frame, None).assign(scored_run_id=SCORED_RUN, scored_as_of=pd.Timestamp(SCORED_AS_OF),
                                              evaluated_as_of=pd.Timestamp(AS_OF))[UPLIFT_RUN_COLUMNS]  # fmt: skip
    scored_runs = pd.DataFrame({"run_id": [SCORED_RUN, "run-scored-earlier"], "model_version": [6, 5],
                                "holdout_roc_auc": [0.8012, 0.7911], "publish_sequence": [2, 1],
                                "as_of": [pd.Timestamp(SCORED_AS_OF), pd.Timestamp(SCORED_AS_OF) - pd.Timedelta(days=30)],
                                "horizon_days": [90, 90]})  # fmt: skip
    return {
        "scored_runs": scored_runs,
        "score_outcomes": pd.concat([earlier, outcomes], ignore_index=True),
        "score_calibration": calibration,
        "retention_uplift": uplift,
    }


def empty_inputs() -> ReportInputs:
    """A first run of a CRM-only company: no orders (no revenue, ranked by probability), nothing to migrate
    from, no drift reference, one run of KPI history."""
    full = make_inputs(history_runs=1)
    profiles = full.segment_profiles.assign(revenue_365d=np.nan, revenue_share=np.nan, mean_revenue_365d=np.nan,
                                            observed_churn_rate=np.nan)  # fmt: skip
    money = ["value_365d", "expected_loss", "lowest_expected_loss", "expected_revenue_saved"]
    return dataclasses.replace(
        full, segment_profiles=profiles, retention=full.retention.iloc[0:0], migration=full.migration.iloc[0:0],
        drift=full.drift.iloc[0:0], first_run=True, links={}, ranked_by="probability",
        action_plan=full.action_plan.assign(**{c: np.nan for c in money}),
    )  # fmt: skip


def retention_segments(inputs: ReportInputs) -> int:
    return inputs.retention["segment_name"].fillna("unassigned").nunique()


def section(document: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', document, flags=re.S)
    assert match, f"section {section_id} missing"
    return match.group(1)


def text_of(html: str) -> str:
    """The visible text: inline tags dropped, other tags (cells, paragraphs) a space, whitespace collapsed."""
    inline = re.sub(r"</?(strong|em|a|span)\b[^>]*>", "", DATA_URI.sub("", html))
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", inline))


def headers(html: str) -> list[str]:
    return [text_of(h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", html, flags=re.S)]


@pytest.fixture(scope="module")
def inputs() -> ReportInputs:
    return make_inputs()


@pytest.fixture(scope="module")
def document(inputs) -> str:
    return render_report(inputs)


def test_every_section_is_present_with_a_heading_and_listed_in_the_contents_in_order(document):
    positions = []
    for section_id, title in SECTIONS:
        assert f'<section id="{section_id}">' in document
        # the outcome section names the date of the scores it judges
        shown = f"How the scores of {SCORED_AS_OF} turned out" if section_id == "outcomes" else title
        assert f"<h2>{shown}</h2>" in section(document, section_id)
        assert f'href="#{section_id}"' in document
        positions.append(document.index(f'<section id="{section_id}">'))
    assert positions == sorted(positions)  # the page shows them in SECTIONS order
    expected = ["summary", "segments", "lifecycle", "churn-risk", "retention", "outcomes", "trends", "migration",
                "model", "drift", "identity", "analysts"]  # fmt: skip
    assert [s for s, _ in SECTIONS] == expected
    assert document.startswith("<!DOCTYPE html>") and document.rstrip().endswith("</html>")


def test_nothing_is_fetched_from_outside_the_file(document, inputs):
    without_images = DATA_URI.sub("data:image/png;base64,", document)
    allowed = {*inputs.links.values(), MODEL_URL, SEGMENTATION_URL}
    for url in re.findall(r"https?://[^\"'<>\s]+", without_images):
        assert url in allowed, url
    lowered = without_images.lower()
    for forbidden in ("<script", "<link", "@import", "url(", "<iframe", "<object", "<embed", "@font-face"):
        assert forbidden not in lowered
    sources = re.findall(r'<img src="([^"]*)"', document)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    for url in LINKS.values():
        assert f'href="{url}"' in document
    assert "@page{size:A4" in document and "@media print" in document  # the stylesheet is inline


def test_a_served_link_shows_the_file_it_serves_beside_it():
    """Links to the docs server work only while `seg-pipeline dev` runs: the file is named (and linked, for a
    report opened as a file) beside them."""
    docs = "/srv/seg & co/<home>/datadocs/index.html"
    summary = section(render_report(make_inputs(link_files={"Data Docs": docs})), "summary")
    assert (
        '<li><a href="http://127.0.0.1:3001/datadocs/index.html">Data Docs</a> <span class="note">(file: '
        '<a href="file:///srv/seg%20%26%20co/%3Chome%3E/datadocs/index.html">'
        "/srv/seg &amp; co/&lt;home&gt;/datadocs/index.html</a>)</span></li>"
    ) in summary
    assert "(file:" not in section(render_report(make_inputs()), "summary")


def test_a_scriptable_link_is_shown_as_text_never_linked():
    document = render_report(make_inputs(links={"Bad": "javascript:alert(1)", "Data": "data:text/html,x"}))
    assert "javascript:" not in re.findall(r'href="([^"]*)"', document).__str__()
    assert "Bad (javascript:alert(1))" in section(document, "summary")


def test_plots_are_embedded_pngs(document):
    images = DATA_URI.findall(document)
    assert len(images) >= 9  # segments, lifecycle, churn risk, retention, drift and five trend charts
    for data in images:
        assert base64.b64decode(data).startswith(PNG_SIGNATURE)


def test_data_is_escaped(document):
    for name in NAMES.values():
        assert name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in document
    assert "<spenders>" not in document
    assert "last purchase 143 days ago (typical: 40) &lt;x&gt;" in document and "<x>" not in document
    assert "Support tickets 3 &amp; more: +4 points" in document


def test_flagged_drift_features_are_highlighted(document):
    drift = section(document, "drift")
    assert re.search(r'<tr class="flagged"><td>recency_days</td><td class="num">0\.410</td>', drift)
    assert not re.search(r'<tr class="flagged"><td>frequency_365d</td>', drift)
    assert "1 of 4 features above the threshold 0.25" in drift
    assert "prev-run-0001" in drift
    assert "data:image/png;base64," in drift


def test_retention_list_count_expected_loss_and_top_rows(document, inputs):
    retention = section(document, "retention")
    count = len(inputs.retention)
    assert count > 25  # so the list is cut to the top 25
    loss = f"€{inputs.retention['expected_loss'].sum():,.0f}"
    assert f'<div class="value">{count:,}</div>' in retention
    assert loss in retention and loss in section(document, "summary")
    first = inputs.retention.sort_values("action_rank")
    top = section(document, "retention").split("First on the list")[1]
    assert top.index(first["customer_id"].iloc[0]) < top.index(first["customer_id"].iloc[1])
    assert first["customer_id"].iloc[24] in top and first["customer_id"].iloc[25] not in top
    rows = re.findall(r"<tr>(.*?)</tr>", top, flags=re.S)
    assert len(rows) == 1 + 25  # header + the first 25 ranks
    assert re.search(r'<td class="num">1</td><td>C\d{5}</td><td>Personal outreach</td>', rows[1])
    assert f"Top 25 of {count}" in top
    assert "<li>Last purchase 143 days ago (typical: 40 days): +21 points</li>" in top  # drivers, one a line
    probability = f"{first['churn_probability'].iloc[0]:.1%}"
    assert f'<td class="num">{probability}</td>' in rows[1]
    by_segment = retention.split("By segment")[1].split("First on the list")[0]
    assert len(re.findall(r"<tr>", by_segment)) == 1 + retention_segments(inputs)


def test_the_retention_list_says_how_it_is_made(document, inputs):
    retention = text_of(section(document, "retention"))
    assert "ranked by expected loss" in retention and "calibrated one and is published unchanged" in retention
    assert (
        "Personal outreach (retention list): 10 customers (capacity 10); 10 customers in the tier"
        in retention
    )
    assert "Automated campaign: 60 customers (capacity 60)" in retention
    plan = inputs.action_plan.set_index("tier")
    no_consent, no_action = plan.loc["no_consent", "customers"], plan.loc["no_action", "customers"]
    assert f"{no_consent} customers without marketing consent are never listed" in retention
    cut_off = f"€{plan.loc['automated', 'lowest_expected_loss']:,.2f}"
    assert f"{no_action} customers are in no action tier" in retention and cut_off in retention


def test_the_action_plan_table_has_a_column_per_tier_and_every_measure(document, inputs):
    plan_html = section(document, "retention").split("Action plan")[1].split("By segment")[0]
    assert headers(plan_html) == ["Per tier", "Personal outreach", "Semi-automated", "Automated campaign",
                                  "No action", "No marketing consent"]  # fmt: skip
    labels = re.findall(r"<tr><td>(.*?)</td>", plan_html)
    assert labels == ["Capacity rule", "Capacity", "Customers", "Mean churn probability", "Value, 365 days",
                      "Expected loss", "Cut-off (lowest expected loss)", "Save rate", "Expected customers saved",
                      "Expected revenue saved", "Contact cost", "Suggested action"]  # fmt: skip
    plan = inputs.action_plan.set_index("tier")
    text = text_of(plan_html)
    assert "10 customers 30 customers 60 customers — —" in text  # capacity rules; none for the last two
    assert "Save rate 25% 10% 3% — —" in text
    assert "Contact cost €250 €120 — — —" in text  # 10 x 25, 30 x 4, no cost given for automated
    saved = plan.loc["personal_outreach", "expected_revenue_saved"]
    assert f"Expected revenue saved €{saved:,.0f}" in text
    assert "Call within a week Personal e-mail with an offer Automated win-back campaign — —" in text


def test_ranked_by_probability_leaves_the_money_out_and_says_so():
    base = make_inputs()
    money = ["value_365d", "expected_loss", "lowest_expected_loss", "expected_revenue_saved"]
    inputs = dataclasses.replace(
        base, ranked_by="probability", action_plan=base.action_plan.assign(**{c: np.nan for c in money}),
        retention=base.retention.assign(value_365d=np.nan, expected_loss=np.nan),
    )  # fmt: skip
    document = render_report(inputs)
    retention = section(document, "retention")
    assert "the list is ranked by churn probability alone" in text_of(retention)
    assert "by churn probability (rank 1 first)" in text_of(retention)
    for gone in (
        "Value, 365 days",
        "Expected loss",
        "Cut-off",
        "Expected revenue saved",
        "Share of expected loss",
    ):
        assert gone not in headers(retention) and f"<td>{gone}</td>" not in retention, gone
    assert "Expected customers saved" in retention and "Contact cost" in retention
    assert "ranked by churn probability (no order revenue)" in summary_markdown(inputs)
    assert "This run had no order revenue" in section(document, "analysts")


def test_money_is_in_the_configured_currency_and_locale():
    base = make_inputs()
    revenue = base.segment_profiles["revenue_365d"].iloc[0]
    loss = base.retention["expected_loss"].sum()
    dollars = render_report(dataclasses.replace(base, currency="USD"))
    assert f"${revenue:,.0f}" in section(dollars, "segments")
    assert f"${loss:,.0f}" in section(dollars, "summary") and f"${loss:,.0f}" in section(dollars, "retention")
    assert "€" not in text_of(dollars)
    assert f"${loss:,.0f}" in summary_markdown(dataclasses.replace(base, currency="USD"))
    german = dataclasses.replace(base, locale="de_DE")
    grouped = f"{loss:,.0f}".replace(",", ".")
    assert f"{grouped}\xa0€" in section(render_report(german), "retention")  # 12.345 €, German style
    assert f"{grouped}\xa0€" in summary_markdown(german)
    assert f"{len(base.customer_segments):,}".replace(",", ".") in summary_markdown(german)


def test_the_tiers_per_segment_table_shows_all_five_tiers():
    document = render_report(make_inputs())
    churn = section(document, "churn-risk")
    assert headers(churn) == ["Segment", "Customers", *TIER_LABELS, "Mean risk score", "Median risk score",
                              "In retention list"]  # fmt: skip
    total = re.search(r'<tr class="total">(.*?)</tr>', churn, flags=re.S).group(1)
    counts = [int(c.replace(",", "")) for c in re.findall(r'<td class="num">([\d,]+)</td>', total)]
    assert counts[0] == 300 and sum(counts[1:6]) == 300 and counts[1:4] == list(CAPACITY.values())
    # old segment profiles without the new tiers' columns still render
    old = make_inputs()
    profiles = old.segment_profiles.drop(columns=["customers_no_action", "customers_no_consent"])
    assert "No marketing consent" in section(render_report(dataclasses.replace(old, segment_profiles=profiles)),
                                             "churn-risk")  # fmt: skip


def test_trends_with_three_runs_draw_the_charts_and_list_the_runs(document, inputs):
    trends = section(document, "trends")
    assert len(DATA_URI.findall(trends)) == 5
    alts = re.findall(r'<img src="[^"]*" alt="([^"]*)"', trends)
    assert alts == ["Customers scored", "Customers per segment", "Mean churn probability by tier",
                    "Expected revenue at risk", "Customers in the retention list"]  # fmt: skip
    assert "The last 3 runs, 2024-06-30 to 2024-06-30." not in trends
    table = trends.split("Latest runs")[1]
    dates = re.findall(r"<tr><td>(\d{4}-\d\d-\d\d)</td><td>([^<]*)</td>", table)
    # oldest first; the last two share a day and keep the order they ran in
    assert [d for d, _ in dates] == ["2024-05-30", "2024-06-30", "2024-06-30"]
    assert [r for _, r in dates] == ["run-0000", "run-0001", RUN_ID[:8]]
    listed = len(inputs.retention)
    assert re.search(
        rf"<td>{RUN_ID[:8]}</td><td class=\"num\">300</td><td class=\"num\">{listed}</td>", table
    )


def test_trends_show_the_last_trend_runs_only():
    inputs = make_inputs(history_runs=6, trend_runs=4)
    trends = section(render_report(inputs), "trends")
    assert "The last 4 runs" in trends
    assert "run-0001" not in trends and "run-0002" in trends


def test_trends_with_one_run_say_they_start_with_the_second_run():
    inputs = make_inputs(history_runs=1)
    trends = section(render_report(inputs), "trends")
    assert "trends appear from the second run on" in trends
    assert not DATA_URI.findall(trends)
    assert re.search(rf"<td>2024-06-30</td><td>{RUN_ID[:8]}</td><td class=\"num\">300</td>", trends)
    assert "No KPI history" in section(render_report(make_inputs(history_runs=0)), "trends")


def test_the_analysts_section_holds_the_std_unit_traits_method_and_definitions(document):
    analysts = section(document, "analysts")
    assert "<li>avg_order_value +2.3</li><li>channel_share_app -0.7</li>" in analysts
    assert (
        "kmeans k=3" in analysts
        and "silhouette 0.310" in analysts
        and f'href="{SEGMENTATION_URL}"' in analysts
    )
    for term in ("Expected loss", "Capacity", "Cut-off", "Standard deviations (std units)", "Save rate"):
        assert f"<dt>{term}" in analysts
    # the business sections no longer speak in standard deviations
    segments = section(document, "segments")
    assert "avg_order_value" not in segments and "silhouette" not in segments
    assert (
        "<li>orders 2.3× as often as the average customer</li><li>spends 1,250 a year (typical: 480)</li>"
        in segments
    )
    # profiles from before trait_deviations existed
    old = make_inputs()
    old = dataclasses.replace(old, segment_profiles=old.segment_profiles.drop(columns=["trait_deviations"]))
    assert "—" in section(render_report(old), "analysts")


def test_a_script_in_a_segment_name_is_escaped_in_every_section():
    attack = "<script>alert(1)</script>"
    inputs = make_inputs(names={1: attack, 2: "Occasional buyers", 3: "Dormant low-value"})
    document = render_report(inputs)
    assert "<script" not in document.lower()
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for section_id in ("segments", "lifecycle", "churn-risk", "retention", "migration", "analysts"):
        assert escaped in section(document, section_id), section_id
    # the trends section names segments only in its chart legend (a picture), so put the name in a table
    history = inputs.kpi_history.assign(run_id=lambda h: h["run_id"].where(h["run_id"] != RUN_ID, attack))
    trends = section(render_report(dataclasses.replace(inputs, kpi_history=history)), "trends")
    assert "&lt;script" in trends and "<script" not in trends
    plan = inputs.action_plan.assign(capacity_rule=attack, suggested_action=attack)
    retention = section(render_report(dataclasses.replace(inputs, action_plan=plan)), "retention")
    assert retention.count(escaped) >= 6 and "<script" not in retention
    assert r"\<script\>alert(1)\</script\>" in summary_markdown(inputs)


def test_the_template_is_strict_about_missing_values(inputs):
    context = report._context(inputs)
    template = report._environment().get_template(report.TEMPLATE)
    assert template.render(context) == render_report(inputs)
    for key in ("summary", "retention", "trends", "analysts", "titles"):
        with pytest.raises(jinja2.UndefinedError):
            template.render({k: v for k, v in context.items() if k != key})
    broken = {**context, "retention": {k: v for k, v in context["retention"].items() if k != "cut_off"}}
    with pytest.raises(jinja2.UndefinedError):
        template.render(broken)
    assert report._environment().autoescape is True


def test_segments_migration_model_and_unassigned(document):
    segments = section(document, "segments")
    assert "Top traits" in headers(segments) and "In retention list" in headers(segments)
    assert "unassigned" in section(document, "churn-risk") and "unassigned" in section(document, "lifecycle")
    assert "12 customers" in section(document, "summary")
    migration = section(document, "migration")
    assert '<div class="value">260</div>' in migration  # stayed: 50 + 130 + 80
    assert '<div class="value">17</div>' in migration  # changed: 6 + 11
    assert '<div class="value">12</div>' in migration  # joined: 3 + 9
    assert '<div class="value">6</div>' in migration  # left: 4 + 2
    assert 'class="data matrix"' in migration  # 3 segments and "left": a from x to matrix
    assert "new customer (joined)" in migration and "Occasional buyers" in migration
    model = section(document, "model")
    assert "promoted to champion" in model and "0.831" in model and f'href="{MODEL_URL}"' in model


def test_many_segments_migrate_as_wrapped_rows_not_a_matrix():
    names = {i: f"Segment number {i} with a long descriptive name" for i in range(1, 10)}
    migration = section(render_report(make_inputs(names=names)), "migration")
    assert "matrix" not in migration and 'class="data moves"' in migration
    assert headers(migration) == ["Previous segment", "Customers", "Stayed", "Moved to", "Left"]
    first = re.search(r"<tr><td>Segment number 1 with[^<]*</td>(.*?)</tr>", migration, flags=re.S).group(1)
    assert '<td class="num">56</td><td class="num">50</td>' in first  # 50 stayed of 56
    assert "<li>Segment number 2 with a long descriptive name: 6</li>" in first
    assert '<div class="value">' in migration  # the totals stay


def test_summary_markdown_is_short_and_complete(inputs):
    text = summary_markdown(inputs)
    assert len(text.splitlines()) <= 25
    assert r"Big \<spenders\> & VIPs" in text
    for name in ("Occasional buyers", "Dormant low-value"):
        assert name in text
    assert "v7" in text and "0.831" in text and "0.512" in text
    plan = inputs.action_plan.set_index("tier")
    saved = plan.loc[["personal_outreach", "semi_automated", "automated"], "expected_customers_saved"].sum()
    assert (f"**Retention list:** {len(inputs.retention):,} customers (13.3% of scored), expected revenue at risk "
            f"€{inputs.retention['expected_loss'].sum():,.0f}; expected customers saved {saved:.1f}") in text  # fmt: skip
    assert "260 stayed, 17 changed segment, 12 joined, 6 left" in text
    assert "recency\\_days (0.41)" in text


def test_write_report_writes_the_run_page_and_latest(tmp_path, inputs):
    directory = tmp_path / "reports" / "nested"
    path = write_report(inputs, directory)
    assert path == directory / "segment_report_2024-06-30_3f2b9c1e.html"
    latest = directory / "latest.html"
    assert path.is_file() and latest.is_file()
    assert path.read_bytes() == latest.read_bytes()
    assert sorted(p.name for p in directory.iterdir()) == ["latest.html", path.name]
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_first_run_without_orders_migration_or_drift_reference():
    inputs = empty_inputs()
    document = render_report(inputs)
    for section_id, _title in SECTIONS:
        assert f'<section id="{section_id}">' in document
    assert "no previous run" in section(document, "migration").lower()
    assert "no reference run yet" in section(document, "drift").lower()
    assert "No customers are in the retention list" in section(document, "retention")
    assert "ranked by churn probability alone" in section(document, "retention")
    assert "No order revenue" in section(document, "segments")
    assert "trends appear from the second run on" in section(document, "trends")
    assert "nan" not in text_of(document).lower().split()
    assert len(DATA_URI.findall(document)) >= 3  # segments, lifecycle, churn risk
    assert set(re.findall(r"https?://[^\"'<>\s]+", DATA_URI.sub("", document))) == {
        MODEL_URL,
        SEGMENTATION_URL,
    }
    text = summary_markdown(inputs)
    assert "no previous run" in text and "no reference run yet" in text and "0 customers" in text


def test_rescore_says_the_model_was_not_retrained(inputs):
    rescore = dataclasses.replace(
        inputs,
        job="rescore",
        model={**inputs.model, "promoted": None, "gate_reason": None},
        drift=inputs.drift,
    )
    model = section(render_report(rescore), "model")
    assert "Not retrained in this run" in model and "version 7" in model
    assert "not retrained" in summary_markdown(rescore)


def test_dollar_signs_in_names_and_money_are_not_read_as_math():
    """Matplotlib parses text between two ``$`` as mathtext; a data-derived name or a dollar amount in a chart
    label must never trip it."""
    base = make_inputs(currency="USD")
    profiles = base.segment_profiles.assign(segment_name=["Spend $5k+ & $10k", "a_b^c {d}", "$"])
    document = render_report(dataclasses.replace(base, segment_profiles=profiles))
    assert "Spend $5k+ &amp; $10k" in section(document, "segments")
    assert len(DATA_URI.findall(document)) >= 9


def test_blank_frames_and_empty_dicts_still_render():
    blank = pd.DataFrame()
    inputs = dataclasses.replace(
        make_inputs(), segment_profiles=blank, customer_segments=blank, retention=blank, migration=blank,
        drift=blank, model={}, segmentation={}, links={}, action_plan=blank, kpi_history=blank,
    )  # fmt: skip
    document = render_report(inputs)
    for section_id, _title in SECTIONS:
        assert f'<section id="{section_id}">' in document
    assert "No segment profiles" in document and "no reference run yet" in document.lower()
    assert "No churn model information" in section(document, "model")
    assert "No KPI history" in section(document, "trends")
    assert "0 customers in 0 segments" in summary_markdown(inputs)


BASELINES = {
    "baseline_recency_holdout_roc_auc": 0.7012, "baseline_recency_holdout_pr_auc": 0.41,
    "baseline_recency_holdout_lift_top_decile": 2.0, "baseline_rfm_holdout_roc_auc": 0.7345,
    "baseline_rfm_holdout_pr_auc": 0.44, "baseline_rfm_holdout_lift_top_decile": 2.2,
    "selected_candidate": "hist_gradient_boosting", "selected_candidate_holdout_roc_auc": 0.8312,
    "selected_candidate_holdout_pr_auc": 0.5124, "selected_candidate_holdout_lift_top_decile": 3.1,
}  # fmt: skip


def test_the_model_section_compares_the_model_with_the_baselines(inputs):
    beaten = dataclasses.replace(inputs, model={**inputs.model, **BASELINES, "model_kind": "model",
        "baseline_verdict": "hist_gradient_boosting roc_auc 0.8312 on the holdout beats the best baseline"})  # fmt: skip
    part = section(render_report(beaten), "model")
    assert "Our model vs. sorting by last activity" in part and "ranks customers better" in part
    assert "0.701" in part and "0.735" in part and "0.831" in part  # every row with its number
    assert "BG/NBD" not in part  # a baseline the data did not allow is not shown
    lost = dataclasses.replace(inputs, model={**inputs.model, **BASELINES, "model_kind": "baseline",
        "candidate": "baseline_rfm", "selected_candidate_holdout_roc_auc": 0.7101,
        "baseline_verdict": "hist_gradient_boosting roc_auc 0.7101 on the holdout does not beat the best baseline"})  # fmt: skip
    part = section(render_report(lost), "model")
    assert "did <strong>not</strong> rank customers better" in part and "baseline_rfm" in part
    assert "0.710" in part  # what the model scored, beside the baseline it lost to
    assert part.index("RFM") < part.index("(used for the scores)")
    assert "Against baselines" in summary_markdown(lost)
    # a run from before baselines existed: no comparison block, nothing breaks
    assert "Our model vs." not in section(render_report(inputs), "model")


def test_a_single_segment_is_explained_in_the_summary(inputs):
    note = "all 300 customers have the same features after scaling (avg_order_value, orders_365d)"
    alike = dataclasses.replace(
        inputs, segmentation={**inputs.segmentation, "single_segment": True, "notes": note}
    )
    document = render_report(alike)
    assert "One segment: every customer has the same profile features" in document and note in document
    assert "One segment" not in render_report(inputs)


def review_pairs(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id_a": [f"C{i:03d}" for i in range(n)],
            "customer_key_a": [f"k{i}" for i in range(n)],
            "customer_id_b": [f"D{i:03d}" for i in range(n)],
            "customer_key_b": [f"m{i}" for i in range(n)],
            "match_probability": np.linspace(0.94, 0.5, n),
            "fields_agreed": "address, phone",
            "fields_similar": "name",
            "fields_disagreed": "email, birth date",
            "not_merged_because": "different forenames; different birth dates",
            "run_id": RUN_ID,
        }
    )


def test_identity_section_counts_merges_and_shows_the_first_review_pairs():
    inputs = make_inputs(
        merged_by_rule={"email": 40, "probabilistic": 7, "phone+name": 0}, identity_review=review_pairs(20)
    )
    body = section(render_report(inputs), "identity")
    assert "47 CRM records were merged" in body and "<strong>20 pairs</strong>" in body
    assert "C000" in body and "C014" in body and "C015" not in body  # the first 15, by probability
    assert "5 more pairs in clean.identity_review" in body
    assert (
        "different forenames" in body and "Phone+name" not in body
    )  # rules that merged nothing are left out


def test_identity_section_without_duplicates_says_so():
    body = section(render_report(make_inputs()), "identity")
    assert "No duplicate records were found." in body and "No pair is waiting for review." in body


def test_the_outcome_section_says_how_the_scores_of_a_date_turned_out():
    document = render_report(make_inputs())
    part = text_of(section(document, "outcomes"))
    assert f"How the scores of {SCORED_AS_OF} turned out" in document
    assert f"Scores published as of {SCORED_AS_OF}, judged by the run as of {AS_OF}" in part
    assert "0.771" in part and "at training (holdout): 0.801" in part and "sorting by recency: 0.702" in part
    assert "left out: 2 erased, 1 no longer in the CRM" in part
    assert "Calibration" in part and "Realized churn per tier" in part
    assert "No interventions extract" in part and "Assigned to contact vs held out" in part
    assert re.search(r"[+-]\d+\.\d pts to [+-]\d+\.\d pts", part)  # the interval, in points
    history = headers(section(document, "outcomes"))
    assert "Realized ROC-AUC" in history and "ROC-AUC at training" in history
    assert part.index(str(SCORED_AS_OF)) < part.index(
        str(SCORED_AS_OF - dt.timedelta(days=30))
    )  # newest first


def test_before_any_judgement_the_section_says_when_the_first_comes():
    scored = pd.DataFrame({"run_id": ["r1"], "as_of": [pd.Timestamp(AS_OF)], "horizon_days": [90],
                           "publish_sequence": [1]})  # fmt: skip
    document = render_report(make_inputs(judged=False, scored_runs=scored))
    part = text_of(section(document, "outcomes"))
    assert "How earlier scores turned out" in document
    assert (
        f"The scores published as of {AS_OF} are judged by the first run as of {AS_OF + dt.timedelta(days=90)}"
        in part
    )
    first = text_of(section(render_report(make_inputs(judged=False)), "outcomes"))
    assert "No publish has been recorded yet" in first


def test_controls_are_marked_on_the_list_and_counted_in_the_plan():
    inputs = make_inputs()
    plan = inputs.action_plan.assign(
        control_customers=[2, 5, 30, 0, 0], contacts=lambda f: f["customers"] - f["control_customers"]
    )
    document = render_report(dataclasses.replace(inputs, action_plan=plan))
    retention = text_of(section(document, "retention"))
    assert "control: do not contact" in retention
    assert "Control arm (not contacted)" in retention and "Contacts (treatment arm)" in retention
