"""Closing the loop: a publish as of T0 is judged by a run as of T1 = T0 + 120 days (horizon 90).

Between the runs the T0 retention list is worked: the company is generated again with a simulated campaign
(`seg-pipeline generate --campaign`'s plan: the published list's treatment arm contacted, a known effect,
an interventions extract). The company has no messiness, so the churn label can be recomputed independently
from the raw extracts by CRM id; the realized metrics must equal that recomputation, and the measured uplift
must bracket the planted one. Also: the score history is appended, never rewritten; arms are recorded; an
erased customer leaves the history and is counted.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from seg_pipeline.cleaning.privacy import pseudonymize, record_erasure
from seg_pipeline.cli.app import _campaign_plan
from seg_pipeline.synthetic.generator import GeneratorConfig, MessinessRates, generate
from tests.conftest import AS_OF, TEST_KEY
from tests.integration.support import run_all, settings_for

T0 = AS_OF - dt.timedelta(days=120)
HORIZON = 90


def _tables(settings, *names: str) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return {name: con.execute(f"select * from {name}").df() for name in names}


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("outcomes")
    landing = tmp_path / "landing"
    company = GeneratorConfig(customers=3000, seed=5, as_of=AS_OF, rates=MessinessRates().scaled(0))
    generate(company, landing)
    early = settings_for(tmp_path, landing, as_of=T0.isoformat())
    late = settings_for(tmp_path, landing, as_of=AS_OF.isoformat())
    with pytest.MonkeyPatch.context() as env, dg.instance_for_test() as instance:
        env.setenv("SEG_PSEUDO_KEY", TEST_KEY)
        first = run_all(early, instance)
        assert first.success, [
            e.step_failure_data.error.message[:400] for e in first.all_events if e.is_step_failure
        ]
        before = _tables(early, "monitoring.score_history", "monitoring.scored_runs", "published.retention_actions",
                         "published.churn_scores")  # fmt: skip
        # an erasure request between the runs, for a customer on the T0 retention list
        erased_id = before["published.retention_actions"]["customer_id"].iloc[0]
        record_erasure(early.home, erased_id, TEST_KEY.encode())
        generate(company, landing, campaign=_campaign_plan(early, []))  # the list worked after T0
        second = run_all(late, instance)
        assert second.success, [e.step_failure_data.error.message[:400] for e in second.all_events
                                if e.is_step_failure]  # fmt: skip
        checks = {e.check_name: e for e in second.get_asset_check_evaluations()}
        event = instance.get_latest_materialization_event(dg.AssetKey("realized_outcomes"))
        metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    after = _tables(late, "monitoring.score_history", "monitoring.scored_runs", "monitoring.score_outcomes",
                    "monitoring.score_calibration", "clean.customer_id_map", "clean.clean_customers",
                    "clean.clean_interventions", "published.retention_uplift")  # fmt: skip
    return {"early": early, "late": late, "before": before, "after": after, "checks": checks,
            "metadata": metadata, "erased_id": erased_id, "landing": landing}  # fmt: skip


def _independent_labels(landing, scored_as_of: dt.date) -> set[str]:
    """CRM ids with any activity in (scored_as_of, scored_as_of + horizon], read from the raw extracts."""
    start = pd.Timestamp(scored_as_of) + pd.Timedelta(days=1)
    end = start + pd.Timedelta(days=HORIZON)
    active = set()
    for name, column in (("orders", "order_date"), ("web_events", "ts"), ("support_tickets", "created_at"),
                         ("email_events", "ts")):  # fmt: skip
        frame = pd.read_csv(landing / f"{name}.csv", dtype=str)
        if name == "email_events":
            frame = frame[frame["event_type"].isin(["open", "click"])]
        when = pd.to_datetime(frame[column], utc=True, format="mixed").dt.tz_localize(None)
        active |= set(frame.loc[(when >= start) & (when < end), "customer_id"].dropna())
    return active


def test_every_publish_appends_its_scores_to_the_history(judged):
    before, after = judged["before"], judged["after"]
    runs = after["monitoring.scored_runs"].sort_values("publish_sequence")
    assert runs["publish_sequence"].tolist() == [1, 2]
    assert [r.date() for r in pd.to_datetime(runs["as_of"])] == [T0, AS_OF]
    first = runs.iloc[0]
    assert first["customers_scored"] == len(before["published.churn_scores"])
    assert first["horizon_days"] == HORIZON and first["label"] == "activity"
    assert first["control_period"] == f"{T0.year}-{T0.month:02d}" and first["control_share"] == 0.1
    history = after["monitoring.score_history"]
    kept = history[history["run_id"] == first["run_id"]]
    assert len(kept) == len(before["monitoring.score_history"]) - 1  # the erased customer's row left
    # the rest of the first publish's rows are untouched by the second
    merged = before["monitoring.score_history"].merge(
        kept, on=["run_id", "customer_key"], suffixes=("", "_now")
    )
    for column in ("churn_probability", "risk_tier", "arm"):
        assert merged[column].fillna("-").astype(str).equals(merged[f"{column}_now"].fillna("-").astype(str))


def test_arms_are_recorded_for_the_action_tiers_only(judged):
    history = judged["before"]["monitoring.score_history"]
    acting = history["risk_tier"].isin(["personal_outreach", "semi_automated", "automated"])
    assert history.loc[acting, "arm"].isin(["treatment", "control"]).all()
    assert history.loc[~acting, "arm"].isna().all()
    share = history.loc[acting, "arm"].eq("control").mean()
    assert 0.05 < share < 0.15, share
    actions = judged["before"]["published.retention_actions"]
    assert actions["arm"].isin(["treatment", "control"]).all() and actions["arm"].eq("control").any()


def test_the_realized_metrics_equal_an_independent_computation(judged):
    after = judged["after"]
    outcomes = after["monitoring.score_outcomes"]
    first_run = after["monitoring.scored_runs"].sort_values("publish_sequence")["run_id"].iloc[0]
    assert set(outcomes["scored_run_id"]) == {first_run}  # the second run's horizon has not passed
    values = outcomes[outcomes["breakdown"] == "all"].set_index("metric")["value"]
    ids = (
        after["clean.customer_id_map"]
        .drop_duplicates("customer_key")
        .set_index("customer_key")["customer_id"]
    )
    allowed = after["clean.clean_customers"].set_index("customer_key")["profiling_allowed"]
    history = after["monitoring.score_history"]
    scored = history[(history["run_id"] == first_run) & history["customer_key"].map(allowed).fillna(False)]
    active = _independent_labels(judged["landing"], T0)
    churned = (~scored["customer_key"].map(ids).isin(active)).astype(int).to_numpy()
    p = scored["churn_probability"].to_numpy()
    assert values["customers_evaluated"] == len(scored)
    assert values["excluded_erased"] == 1
    assert values["roc_auc"] == pytest.approx(roc_auc_score(churned, p), abs=1e-9)
    assert values["pr_auc"] == pytest.approx(average_precision_score(churned, p), abs=1e-9)
    assert values["brier"] == pytest.approx(np.mean((p - churned) ** 2), abs=1e-9)
    assert values["churn_rate"] == pytest.approx(churned.mean(), abs=1e-12)
    assert 0.5 < values["roc_auc"] <= 1
    calibration = after["monitoring.score_calibration"]
    assert calibration["decile"].tolist() == list(range(1, 11))
    assert calibration["customers"].sum() == len(scored)
    gap = (
        calibration["customers"] * (calibration["mean_predicted"] - calibration["realized_churn_rate"]).abs()
    )
    assert values["calibration_error"] == pytest.approx(gap.sum() / len(scored), abs=1e-9)
    tiers = outcomes[outcomes["breakdown"].str.startswith("tier:") & (outcomes["metric"] == "customers")]
    assert tiers["value"].sum() == len(scored)


def test_erased_customers_never_appear_in_the_history_again(judged):
    key = pseudonymize(pd.Series([judged["erased_id"]]), TEST_KEY.encode()).iloc[0]
    assert key in set(judged["before"]["monitoring.score_history"]["customer_key"])
    assert key not in set(judged["after"]["monitoring.score_history"]["customer_key"])


def test_the_outcome_check_and_metadata_show_the_numbers(judged):
    check = judged["checks"]["realized_outcomes_within_bounds"]
    metadata = {k: v.value for k, v in check.metadata.items()}
    assert metadata[f"{T0}/roc_auc"] > 0.5 and "min_realized_roc_auc" in metadata
    assert check.passed == (metadata[f"{T0}/roc_auc"] >= 0.6 and metadata[f"{T0}/calibration_error"] <= 0.1)
    assert judged["metadata"]["runs_judged"] == 1 and judged["metadata"]["logged_to_model_versions"] == 1


def test_the_realized_metrics_are_on_the_model_version_in_mlflow(judged):
    import mlflow

    settings = judged["late"]
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    runs = judged["after"]["monitoring.scored_runs"].sort_values("publish_sequence")
    version = client.get_model_version("seg_pipeline_churn", str(int(runs["model_version"].iloc[0])))
    history = client.get_metric_history(version.run_id, "realized_roc_auc")
    assert [m.step for m in history] == [int(T0.strftime("%Y%m%d"))]
    outcomes = judged["after"]["monitoring.score_outcomes"]
    auc = outcomes[(outcomes["breakdown"] == "all") & (outcomes["metric"] == "roc_auc")]["value"].iloc[0]
    assert history[0].value == pytest.approx(auc)
    assert version.tags[f"realized_roc_auc_{T0}"] == f"{auc:.4f}"


def test_the_report_says_how_the_scores_turned_out_and_what_the_list_achieved(judged):
    html = (judged["late"].reports_dir / "latest.html").read_text(encoding="utf-8")
    assert f"How the scores of {T0} turned out" in html
    outcomes = judged["after"]["monitoring.score_outcomes"]
    auc = outcomes[(outcomes["breakdown"] == "all") & (outcomes["metric"] == "roc_auc")]["value"].iloc[0]
    assert f"{auc:.3f}" in html
    assert "What the retention list achieved" in html and "No interventions extract" not in html
    assert "Assigned to contact vs held out" in html and "Effect on the contacted" in html
    assert "winback-personal" in html and "Every judged publish" in html
    [page] = judged["early"].reports_dir.glob(f"segment_report_{T0}_*.html")  # the first publish's own page
    first = page.read_text(encoding="utf-8")
    # the first publish's report: nothing judged yet, and when the first judgement comes
    assert (
        f"The scores published as of {T0} are judged by the first run as of {T0 + dt.timedelta(days=90)}"
        in first
    )


def test_the_published_uplift_compares_the_arms_of_the_judged_list(judged):
    with duckdb.connect(str(judged["late"].warehouse_path), read_only=True) as con:
        uplift = con.execute("select * from published.retention_uplift").df()
    history = judged["after"]["monitoring.score_history"]
    first_run = judged["after"]["monitoring.scored_runs"].sort_values("publish_sequence")["run_id"].iloc[0]
    itt = uplift[(uplift["estimand"] == "intention_to_treat")].set_index("group")
    assert set(uplift["scored_run_id"]) == {first_run}
    assert set(itt.index) == {"personal_outreach", "semi_automated", "automated", "retention_list",
                              "all_action_tiers"}  # fmt: skip
    assigned = history[(history["run_id"] == first_run) & history["arm"].notna()]
    # every judged customer of the action tiers is in one arm (the erased one and non-consenting ones are not)
    total = (
        itt.loc["all_action_tiers", "treatment_customers"] + itt.loc["all_action_tiers", "control_customers"]
    )
    assert 0 < total <= len(assigned)
    row = itt.loc["all_action_tiers"]
    assert row["uplift"] == pytest.approx(row["control_churn_rate"] - row["treatment_churn_rate"])
    assert row["ci_low"] <= row["uplift"] <= row["ci_high"]
    # the planted effect (truth/: churned without - with the campaign, over the treatment arm) is bracketed
    truth = pd.read_csv(judged["landing"] / "truth" / "campaign.csv")
    treated = truth[truth["arm"] == "treatment"]
    planted = (treated["churned_without_campaign"] - treated["churned_with_campaign"]).mean()
    assert planted > 0.02 and row["ci_low"] <= planted <= row["ci_high"], (planted, row.to_dict())
    # the interventions extract: contacts counted, the effect on the contacted and each campaign measured
    assert 0.8 < row["contact_share"] <= 1.0
    assert set(uplift["estimand"]) == {"intention_to_treat", "effect_on_contacted", "contacted_vs_control"}
    campaigns = set(uplift.loc[uplift["estimand"] == "contacted_vs_control", "campaign"])
    assert campaigns == {"winback-personal", "winback-assisted", "winback-automated"}
    bloom = uplift[(uplift["estimand"] == "effect_on_contacted")].set_index("group").loc["all_action_tiers"]
    assert bloom["uplift"] == pytest.approx(row["uplift"] / row["contact_share"], rel=1e-6)


def test_the_interventions_extract_is_cleaned_like_any_source(judged):
    contacts = pd.read_csv(judged["landing"] / "interventions.csv", dtype=str)
    clean = judged["after"]["clean.clean_interventions"]
    erased_contacts = int((contacts["customer_id"] == judged["erased_id"]).sum())
    assert len(clean) == len(contacts) - erased_contacts  # the erased customer's contact is dropped
    key = pseudonymize(pd.Series([judged["erased_id"]]), TEST_KEY.encode()).iloc[0]
    assert key not in set(clean["customer_key"]) and clean["customer_key"].notna().all()
    assert set(clean.columns) >= {"customer_key", "date", "campaign", "channel"}
