"""The segment report is one self-contained HTML file: every section, plots embedded as PNG data URIs, no
external resource, data escaped; it survives a first run (no migration, no drift reference, no orders)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

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


def tier(score: int) -> str:
    return "automated" if score < 40 else "semi_automated" if score < 70 else "personal_outreach"


def make_inputs(**overrides) -> ReportInputs:
    """3 segments, 300 customers (12 new since the last segmentation), retention, migration, drift."""
    rng = np.random.default_rng(7)
    n = 300
    segment_id = pd.array(rng.choice([1, 2, 3], size=n, p=[0.2, 0.5, 0.3]), dtype="Int64")
    segment_id[rng.choice(n, size=12, replace=False)] = pd.NA
    ids = segment_id.to_numpy(dtype=float, na_value=0)
    base = np.select([ids == 1, ids == 2], [25, 45], 70)
    score = np.clip(base + rng.normal(0, 15, size=n), 0, 100).round().astype(int)
    monetary = np.round(rng.gamma(2.0, 400.0, size=n), 2)
    in_retention = (score >= 60) & (monetary >= np.quantile(monetary, 0.6))
    customers = pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in range(n)],
        "segment_id": segment_id,
        "segment_name": [None if pd.isna(s) else NAMES[int(s)] for s in segment_id],
        "lifecycle_stage": rng.choice(["new", "growing", "champion", "steady", "at_risk", "dormant"], size=n),
        "micro_segment_id": pd.array(rng.integers(1, 10, size=n), dtype="Int64"),
        "churn_risk_score": score,
        "risk_tier": [tier(s) for s in score],
        "in_retention_segment": in_retention,
        "as_of": pd.Timestamp(AS_OF),
        "run_id": RUN_ID,
    })  # fmt: skip
    assigned = customers.assign(monetary=monetary).dropna(subset=["segment_id"])
    rows = []
    for sid, group in assigned.groupby("segment_id"):
        rows.append({
            "segment_id": int(sid), "segment_name": NAMES[int(sid)], "customers": len(group),
            "share": len(group) / len(assigned), "revenue_365d": group["monetary"].sum(),
            "revenue_share": group["monetary"].sum() / assigned["monetary"].sum(),
            "mean_revenue_365d": group["monetary"].mean(), "observed_churn_rate": 0.1 * int(sid),
            "mean_churn_probability": group["churn_risk_score"].mean() / 100,
            "mean_churn_risk_score": group["churn_risk_score"].mean(),
            "customers_automated": int((group["risk_tier"] == "automated").sum()),
            "customers_semi_automated": int((group["risk_tier"] == "semi_automated").sum()),
            "customers_personal_outreach": int((group["risk_tier"] == "personal_outreach").sum()),
            "customers_in_retention_segment": int(group["in_retention_segment"].sum()),
            "top_traits": "avg_order_value +2.3, channel_share_app -0.7" if sid == 1 else "recency_days +1.4 <x>",
            "as_of": pd.Timestamp(AS_OF), "run_id": RUN_ID,
        })  # fmt: skip
    profiles = pd.DataFrame(rows)
    chosen = customers.assign(monetary_365d=monetary)[in_retention]
    retention = pd.DataFrame({
        "customer_id": chosen["customer_id"], "segment_name": chosen["segment_name"],
        "lifecycle_stage": chosen["lifecycle_stage"], "churn_risk_score": chosen["churn_risk_score"],
        "risk_tier": chosen["risk_tier"], "monetary_365d": chosen["monetary_365d"],
        "top_drivers": "recency_days up & frequency_365d down",
    }).reset_index(drop=True)  # fmt: skip
    migration = pd.DataFrame({
        "from_segment_id": pd.array([1, 1, 2, 2, 3, 3, None, None, 2], dtype="Int64"),
        "to_segment_id": pd.array([1, 2, 2, 3, 3, None, 1, 2, None], dtype="Int64"),
        "customers": [50, 6, 130, 11, 80, 4, 3, 9, 2],
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
        run_id=RUN_ID, job="full_refresh", as_of=AS_OF, segment_profiles=profiles, customer_segments=customers,
        retention=retention, migration=migration, first_run=False, model=model, segmentation=segmentation,
        drift=drift, drift_threshold=0.25, links=dict(LINKS),
    )  # fmt: skip
    return dataclasses.replace(inputs, **overrides)


def empty_inputs() -> ReportInputs:
    """A first run of a CRM-only company: no orders (NaN revenue), nothing to migrate from, no drift reference."""
    full = make_inputs()
    profiles = full.segment_profiles.assign(revenue_365d=np.nan, revenue_share=np.nan, mean_revenue_365d=np.nan,
                                            observed_churn_rate=np.nan)  # fmt: skip
    return dataclasses.replace(
        full, segment_profiles=profiles, retention=full.retention.iloc[0:0], migration=full.migration.iloc[0:0],
        drift=full.drift.iloc[0:0], first_run=True, links={},
    )  # fmt: skip


def retention_segments(inputs: ReportInputs) -> int:
    return inputs.retention["segment_name"].fillna("unassigned").nunique()


def section(document: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', document, flags=re.S)
    assert match, f"section {section_id} missing"
    return match.group(1)


@pytest.fixture(scope="module")
def inputs() -> ReportInputs:
    return make_inputs()


@pytest.fixture(scope="module")
def document(inputs) -> str:
    return render_report(inputs)


def test_every_section_is_present_with_a_heading_and_listed_in_the_contents(document):
    for section_id, _title in SECTIONS:
        assert f'<section id="{section_id}">' in document
        assert "<h2>" in section(document, section_id)
        assert f'href="#{section_id}"' in document
    expected = ["summary", "segments", "lifecycle", "churn-risk", "retention", "migration", "model", "drift", "identity"]
    assert set(expected) == {s for s, _ in SECTIONS}
    assert document.startswith("<!DOCTYPE html>") and document.rstrip().endswith("</html>")


def test_nothing_is_fetched_from_outside_the_file(document, inputs):
    without_images = DATA_URI.sub("data:image/png;base64,", document)
    allowed = {*inputs.links.values(), MODEL_URL, SEGMENTATION_URL}
    for url in re.findall(r"https?://[^\"'<>\s]+", without_images):
        assert url in allowed, url
    lowered = without_images.lower()
    for forbidden in ("<script", "<link", "@import", "url(", "<iframe", "<object", "<embed"):
        assert forbidden not in lowered
    sources = re.findall(r'<img src="([^"]*)"', document)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    for url in LINKS.values():
        assert f'href="{url}"' in document


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


def test_plots_are_embedded_pngs(document):
    images = DATA_URI.findall(document)
    assert len(images) >= 4
    for data in images:
        assert base64.b64decode(data).startswith(PNG_SIGNATURE)


def test_data_is_escaped(document):
    for name in NAMES.values():
        assert name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in document
    assert "<spenders>" not in document
    assert "recency_days +1.4 &lt;x&gt;" in document and "<x>" not in document
    assert "recency_days up &amp; frequency_365d down" in document


def test_flagged_drift_features_are_highlighted(document):
    drift = section(document, "drift")
    assert re.search(r'<tr class="flagged"><td>recency_days</td><td class="num">0\.410</td>', drift)
    assert not re.search(r'<tr class="flagged"><td>frequency_365d</td>', drift)
    assert "1 of 4 features above the threshold 0.25" in drift
    assert "prev-run-0001" in drift
    assert "data:image/png;base64," in drift


def test_retention_count_and_revenue_at_risk(document, inputs):
    retention = section(document, "retention")
    count = len(inputs.retention)
    assert count > 25  # so the list is cut to the top 25
    revenue = f"{inputs.retention['monetary_365d'].sum():,.0f}"
    assert f'<div class="value">{count:,}</div>' in retention
    assert revenue in retention and revenue in section(document, "summary")
    top = inputs.retention.sort_values(["churn_risk_score", "monetary_365d"], ascending=False)
    assert top["customer_id"].iloc[0] in retention
    assert retention.count("<tr>") == 2 + retention_segments(inputs) + 25  # 2 header rows


def test_segments_migration_model_and_unassigned(document):
    segments = section(document, "segments")
    assert "kmeans k=3" in segments and f'href="{SEGMENTATION_URL}"' in segments
    assert "avg_order_value +2.3<br>channel_share_app -0.7" in segments
    assert "unassigned" in section(document, "churn-risk") and "unassigned" in section(document, "lifecycle")
    assert "12 customers" in section(document, "summary")
    migration = section(document, "migration")
    assert '<div class="value">260</div>' in migration  # stayed: 50 + 130 + 80
    assert '<div class="value">17</div>' in migration  # changed: 6 + 11
    assert '<div class="value">12</div>' in migration  # joined: 3 + 9
    assert '<div class="value">6</div>' in migration  # left: 4 + 2
    assert "new customer (joined)" in migration and "Occasional buyers" in migration
    model = section(document, "model")
    assert "promoted to champion" in model and "0.831" in model and f'href="{MODEL_URL}"' in model


def test_summary_markdown_is_short_and_complete(inputs):
    text = summary_markdown(inputs)
    assert len(text.splitlines()) <= 25
    assert r"Big \<spenders\> & VIPs" in text
    for name in ("Occasional buyers", "Dormant low-value"):
        assert name in text
    assert "v7" in text and "0.831" in text and "0.512" in text
    assert f"{len(inputs.retention):,} customers" in text
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
    assert "No customers are in the retention segment" in section(document, "retention")
    assert "No order revenue" in section(document, "segments")
    assert "nan" not in re.sub(r"<[^>]+>", " ", DATA_URI.sub("", document)).lower().split()
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


def test_dollar_signs_in_names_are_not_read_as_math():
    """Matplotlib parses text between two ``$`` as mathtext; a data-derived name must never trip it."""
    base = make_inputs()
    profiles = base.segment_profiles.assign(segment_name=["Spend $5k+ & $10k", "a_b^c {d}", "$"])
    document = render_report(dataclasses.replace(base, segment_profiles=profiles))
    assert "Spend $5k+ &amp; $10k" in section(document, "segments")
    assert len(DATA_URI.findall(document)) >= 4


def test_blank_frames_and_empty_dicts_still_render():
    blank = pd.DataFrame()
    inputs = dataclasses.replace(
        make_inputs(), segment_profiles=blank, customer_segments=blank, retention=blank, migration=blank,
        drift=blank, model={}, segmentation={}, links={},
    )  # fmt: skip
    document = render_report(inputs)
    for section_id, _title in SECTIONS:
        assert f'<section id="{section_id}">' in document
    assert "No segment profiles" in document and "no reference run yet" in document.lower()
    assert "No churn model information" in section(document, "model")
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
