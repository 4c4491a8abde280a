"""The churn stage on generated companies: both label modes on every input shape, the champion gate in a
real MLflow registry, rescoring without training, scores and tiers, and `explain` on a known customer."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from seg_pipeline.churn.actions import ACTION_TIERS, RETENTION_TIERS
from seg_pipeline.churn.registry import CHALLENGER, CHAMPION, MODEL_NAME
from seg_pipeline.definitions import build_definitions
from seg_pipeline.explain import explain
from seg_pipeline.platform.registry import alias_version
from tests.conftest import TEST_KEY
from tests.integration.support import QUICK_SEGMENTATION, copy_extracts, run_all, settings_for
from tests.integration.tracking_checks import (
    assert_names_no_customer,
    assert_run_spans_the_work,
    assert_source_is_the_job,
    step_window,
)

ATTRIBUTES = {
    "customer_attributes.numeric": ["monthly_charges"],
    "customer_attributes.categorical": ["plan", "contract"],
}


def read(settings, table: str, schema: str) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(f"select * from {schema}.{table}").df()


def failures(result) -> list[str]:
    return [
        f"{e.step_key}: {e.step_failure_data.error.message[:300]}"
        for e in result.all_events
        if e.is_step_failure
    ]


def registry(settings):
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return mlflow, mlflow.MlflowClient()


@pytest.fixture(scope="module")
def env():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEG_PSEUDO_KEY", TEST_KEY)
        yield


@pytest.fixture(scope="module")
def full(small_company, tmp_path_factory, env):
    """Five sources, activity labels, one full refresh on an instance the later tests keep using."""
    tmp_path = tmp_path_factory.mktemp("churn_full")
    settings = settings_for(
        tmp_path,
        copy_extracts(small_company, tmp_path / "landing"),
        quick=False,
        **ATTRIBUTES,
        **QUICK_SEGMENTATION,
    )
    with dg.instance_for_test() as instance:
        result = run_all(settings, instance)
        assert result.success, failures(result)
        yield {"settings": settings, "instance": instance, "run_id": result.run_id, "company": small_company,
               "result": result}  # fmt: skip


def test_activity_model_on_the_full_extract(full):
    settings = full["settings"]
    model = read(settings, "churn_model", "churn").iloc[0]
    assert model["promoted"] and model["gate_reason"] == "no champion yet" and model["version"] == 1
    assert model["holdout_roc_auc"] > 0.65 and model["holdout_lift_top_decile"] > 1.5
    assert 0 < model["holdout_brier"] < model["holdout_base_rate"]  # better than predicting the base rate
    training = read(settings, "churn_training_set", "features")
    # four stacked snapshots one horizon apart (two years of history allow them), the latest held out
    snapshots = sorted(training["snapshot"].unique())
    as_of = pd.Timestamp(settings.as_of)
    assert snapshots == [as_of - pd.Timedelta(days=90 * k) for k in (4, 3, 2, 1)]
    assert set(training.loc[training["snapshot"] == snapshots[-1], "split"]) == {"holdout"}
    assert set(training.loc[training["snapshot"] < snapshots[-1], "split"]) == {"train"}
    # the model is compared with every baseline on the same holdout; the verdict is recorded either way
    assert {
        "baseline_recency_holdout_roc_auc",
        "baseline_rfm_holdout_roc_auc",
        "baseline_btyd_holdout_roc_auc",
    } <= set(model.index)
    assert bool(model["beats_baselines"]) == (model["model_kind"] == "model")
    assert model["holdout_roc_auc"] >= model["baseline_recency_holdout_roc_auc"] + 0.01

    mlflow, client = registry(settings)
    run = client.get_run(model["mlflow_run_id"])
    assert run.data.tags["dagster_run_id"] == full["run_id"] and run.data.tags["promoted"] == "True"
    assert {
        "holdout_roc_auc",
        "holdout_pr_auc",
        "holdout_brier",
        "holdout_lift_top_decile",
        "holdout_f1",
    } <= set(run.data.metrics)
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["churn_training_set"]
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert figures == {"figures/roc.png", "figures/calibration.png", "figures/lift.png",
                       "figures/permutation_importance.png"}  # fmt: skip
    assert alias_version(client, CHAMPION) == 1
    # baselines are logged beside the candidates, with the comparison users read
    assert {f"baseline_{b}/holdout_roc_auc" for b in ("recency", "rfm", "btyd")} <= set(run.data.metrics)
    assert "model_vs_baselines.md" in {a.path for a in client.list_artifacts(run.info.run_id)}
    tags = client.get_model_version(MODEL_NAME, "1").tags
    assert tags["scored_by"] == model["candidate"] and tags["model_kind"] == model["model_kind"]
    holdout_model = mlflow.sklearn.load_model(tags["holdout_model_uri"])  # what later gates re-score
    assert holdout_model is not None and "holdout" in client.get_model_version(MODEL_NAME, "1").description
    meta = (
        full["instance"]
        .get_latest_materialization_event(dg.AssetKey("churn_model"))
        .asset_materialization.metadata
    )
    assert (
        "baseline" in meta["model_vs_baselines"].value and meta["published_model"].value == model["candidate"]
    )
    checks = {e.check_name: e for e in full["result"].get_asset_check_evaluations()}
    assert checks["churn_model_beats_baselines"].passed == bool(model["beats_baselines"])
    assert checks["churn_model_beats_baselines"].severity == dg.AssetCheckSeverity.WARN


def first_run_model(full) -> dict:
    """The churn_model metadata of the fixture's run (later tests train again)."""
    (event,) = [e for e in full["result"].get_asset_materialization_events()
                if e.asset_key == dg.AssetKey("churn_model")]  # fmt: skip
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_the_mlflow_run_reads_as_mlflow_users_expect(full):
    """Source named after the job, a description with the data window, the comparison and the decision,
    start and end around the training, the importance figure, and a described model version."""
    settings, instance = full["settings"], full["instance"]
    meta = first_run_model(full)
    mlflow, client = registry(settings)
    run = client.get_run(meta["mlflow_run_id"])
    assert_source_is_the_job(run, instance, full["run_id"], "churn_model")
    assert_run_spans_the_work(run, step_window(instance, full["run_id"], "churn_model"))
    assert {"seconds/holdout_fit", "seconds/final_fit"} <= set(run.data.metrics)

    description = run.data.tags["mlflow.note.content"]
    version, candidate = meta["model_version"], meta["published_model"]
    assert (
        f"**Champion decision**: seg_pipeline_churn v{version} **promoted to champion** (no champion yet)."
        in description
    )
    assert f"Published model: **{candidate}**" in description
    assert (
        "**Beats the baselines**" if meta["beats_baselines"] else "**Does not beat the baselines**"
    ) in description
    training = read(settings, "churn_training_set", "features")
    for split, name in (("train", "training"), ("holdout", "holdout")):
        rows = training[training["split"] == split]
        assert f"| {name} | {len(rows):,} | {int(rows['label'].sum()):,} |" in description
    assert f"as_of {settings.as_of.isoformat()}, horizon {settings.churn.horizon_days} days" in description
    for snapshot in training["snapshot"].unique():
        assert str(pd.Timestamp(snapshot).date()) in description
    for name in [*settings.churn.candidates, "sorting by days since the last activity", "BG/NBD model alone"]:
        assert name in description
    ids = read(settings, "customer_id_map", "clean")["customer_id"]
    assert_names_no_customer(description, ids)

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "permutation_importance.csv" in artifacts
    importance = pd.read_csv(
        mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/permutation_importance.csv")
    )
    # the drivers the scores explain are the top of the same numbers (computed once)
    drivers = json.loads(client.get_model_version(MODEL_NAME, str(version)).tags["driver_features"])
    assert drivers == importance["feature"].head(len(drivers)).tolist()
    assert (importance["importance_std"] >= 0).all() and importance["importance_mean"].iloc[0] > 0

    described = client.get_model_version(MODEL_NAME, str(version)).description
    assert described.startswith(f"**{candidate}**") and run.info.run_id in described
    assert f"Trained on {(training['split'] == 'train').sum():,} labelled rows" in described
    assert (
        "(baseline)" in described
        and "Gate at registration: no champion yet (promoted to champion)" in described
    )
    assert_names_no_customer(described, ids)


def test_every_profiled_customer_is_scored_consistently(full):
    settings = full["settings"]
    scores = read(settings, "churn_scores", "churn")
    features = read(settings, "customer_features", "features")
    assert sorted(scores["customer_key"]) == sorted(features["customer_key"])
    assert scores["churn_probability"].between(0, 1).all()
    assert (scores["churn_risk_score"] == np.rint(scores["churn_probability"] * 100)).all()
    assert scores["top_drivers"].str.contains(r"[+-]\d+(\.\d)? points?").mean() > 0.9
    assert (scores["model_version"] == 1).all()
    risk = read(settings, "segment_churn_risk", "churn")
    assert risk["customers"].sum() == len(scores)
    assert risk["mean_churn_probability"].between(0, 1).all()


def test_action_tiers_take_the_contactable_customers_with_most_to_lose_up_to_each_capacity(full):
    settings = full["settings"]
    scores = read(settings, "churn_scores", "churn").set_index("customer_key")
    tiers = read(settings, "action_tiers", "churn").set_index("customer_key")
    spend = read(settings, "customer_features", "features").set_index("customer_key")["monetary_365d"]
    consent = read(settings, "clean_customers", "clean").set_index("customer_key")["consent_marketing"]
    assert sorted(tiers.index) == sorted(scores.index)
    # computed again here: probability x 365-day spend, contactable customers with something to lose, largest first
    loss = (scores["churn_probability"] * spend.reindex(scores.index).fillna(0)).rename("loss")
    eligible = loss[consent.reindex(loss.index).fillna(False).astype(bool) & (loss > 0)]
    ranked = eligible.sort_values(ascending=False, kind="stable")
    sizes = [tier.size(len(scores)) for tier in settings.actions.tiers().values()]
    expected = pd.Series("no_action", index=scores.index)
    expected[~consent.reindex(scores.index).fillna(False).astype(bool)] = "no_consent"
    start = 0
    for name, size in zip(ACTION_TIERS, sizes, strict=True):
        expected[ranked.index[start : start + size]] = name
        start += size
    assert (tiers["risk_tier"] == expected.reindex(tiers.index)).mean() > 0.99  # ties may order differently
    assert tiers.loc[tiers["risk_tier"] == "personal_outreach", "expected_loss"].min() >= tiers.loc[
        tiers["risk_tier"] == "semi_automated", "expected_loss"].max()  # fmt: skip
    assert tiers["risk_tier"].value_counts()["personal_outreach"] == sizes[0]
    retention = read(settings, "retention_segment", "churn")
    assert set(retention["customer_key"]) == set(tiers.index[tiers["risk_tier"].isin(RETENTION_TIERS)])
    assert retention["action_rank"].is_monotonic_increasing


def test_explain_answers_for_a_known_customer(full):
    settings = full["settings"]
    ids = read(settings, "customer_id_map", "clean")
    scores = read(settings, "churn_scores", "churn").merge(ids, on="customer_key")
    customer = scores.sort_values("churn_probability").iloc[-1]
    text = explain(settings.warehouse_path, customer["customer_id"]).text()
    clusters = read(settings, "customer_clusters", "segmentation").set_index("customer_key")
    stage = read(settings, "lifecycle_stage", "segmentation").set_index("customer_key")
    assert f"Customer {customer['customer_id']}" in text
    assert clusters.loc[customer["customer_key"], "segment_name"] in text
    assert stage.loc[customer["customer_key"], "lifecycle_reason"] in text
    assert f"risk score {customer['churn_risk_score']} of 100" in text and customer["top_drivers"] in text
    assert "marketing:" in text and "profiling:" in text
    missing = explain(settings.warehouse_path, "NO-SUCH-ID")
    assert not missing.found and "No customer with id NO-SUCH-ID" in missing.text()


def test_a_better_champion_is_kept_when_a_worse_challenger_is_trained(full):
    """An overfitted 'oracle' trained on the holdout itself is made champion out of band; the next honest
    model cannot beat it on that holdout, so it stays challenger and scoring keeps using the oracle."""
    from seg_pipeline.churn.registry import model_columns
    from seg_pipeline.churn.train import calibrated, feature_frame

    settings = full["settings"]
    mlflow, client = registry(settings)
    first = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}/1")
    numeric, categorical = model_columns(first)
    holdout = read(settings, "churn_training_set", "features").query("split == 'holdout'")
    oracle = calibrated("random_forest", numeric, categorical, 0, len(holdout))
    oracle.fit(feature_frame(holdout, numeric, categorical), holdout["label"])
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("seg_pipeline_churn").experiment_id):
        info = mlflow.sklearn.log_model(oracle, name="oracle", serialization_format="cloudpickle",
                                        registered_model_name=MODEL_NAME)  # fmt: skip
    oracle_version = int(info.registered_model_version)
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, str(oracle_version))
    client.set_model_version_tag(MODEL_NAME, str(oracle_version), "threshold", "0.5")

    result = run_all(settings, full["instance"], upstream_of=("churn_scores", "churn_model"))
    assert result.success, failures(result)
    model = read(settings, "churn_model", "churn").iloc[0]
    assert not model["promoted"] and model["champion_version"] == oracle_version
    assert "worse than the champion" in model["gate_reason"]
    assert alias_version(client, CHAMPION) == oracle_version
    assert alias_version(client, CHALLENGER) == model["version"] == oracle_version + 1
    assert (read(settings, "churn_scores", "churn")["model_version"] == oracle_version).all()
    meta = (
        full["instance"]
        .get_latest_materialization_event(dg.AssetKey("churn_model"))
        .asset_materialization.metadata
    )
    assert meta["promoted"].value is False and "worse than" in meta["gate"].value
    # the run and the version say so where MLflow users look
    description = client.get_run(model["mlflow_run_id"]).data.tags["mlflow.note.content"]
    assert (
        f"v{model['version']} **not promoted**, kept as challenger; the champion stays v{oracle_version}"
        in description
    )
    version_text = client.get_model_version(MODEL_NAME, str(model["version"])).description
    assert "(kept as challenger)" in version_text and model["mlflow_run_id"] in version_text


def test_rescore_scores_with_the_champion_without_training(full):
    settings, instance = full["settings"], full["instance"]
    mlflow, client = registry(settings)
    versions_before = len(client.search_model_versions(f"name='{MODEL_NAME}'"))
    champion = alias_version(client, CHAMPION)
    job = build_definitions(settings).resolve_job_def("rescore")
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert result.success, failures(result)
    done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"churn_scores", "customer_features", "retention_segment"} <= done
    assert not done & {"churn_model", "churn_training_set", "segmentation_candidates"}
    assert len(client.search_model_versions(f"name='{MODEL_NAME}'")) == versions_before
    assert (read(settings, "churn_scores", "churn")["model_version"] == champion).all()


def shaped_run(tmp_path, company, shape: str, **overrides):
    """One churn stage on a reshaped copy of the company: crm_only (CRM with attributes and its churn
    column, no events at all) or orders_only (a CRM of ids only, plus orders)."""
    landing = copy_extracts(company, tmp_path / "landing")
    if shape == "crm_only":
        for name in ("orders", "web_events", "support_tickets", "email_events"):
            (landing / f"{name}.csv").unlink()
    elif shape == "orders_only":
        for name in ("web_events", "support_tickets", "email_events"):
            (landing / f"{name}.csv").unlink()
        crm = pd.read_csv(landing / "crm_customers.csv", dtype=str, keep_default_na=False)
        crm[["customer_id"]].to_csv(landing / "crm_customers.csv", index=False)
    settings = settings_for(tmp_path, landing, quick=False, **overrides)
    with dg.instance_for_test() as instance:  # the churn stage and what it reads; no segments, no publish
        result = run_all(settings, instance, upstream_of=("churn_scores", "churn_model"))
    return settings, result


@pytest.mark.parametrize(
    "shape, mode, overrides",
    [
        # explicit labels with churn dates: ~6 % churn in the horizon, so a 1,500-customer holdout is small
        ("full", "explicit", {**ATTRIBUTES, "churn.min_roc_auc": 0.5}),
        ("crm_only", "explicit", {**ATTRIBUTES, "churn.min_roc_auc": 0.5}),
        ("orders_only", "activity", {}),
    ],
)
def test_each_label_mode_on_each_input_shape(small_company, tmp_path, env, shape, mode, overrides):
    settings, result = shaped_run(tmp_path, small_company, shape, **{"churn.label": mode, **overrides})
    assert result.success, failures(result)
    model = read(settings, "churn_model", "churn").iloc[0]
    assert model["promoted"] and model["holdout_roc_auc"] > (0.55 if mode == "explicit" else 0.65)
    training = read(settings, "churn_training_set", "features")
    features = read(settings, "customer_features", "features")
    scores = read(settings, "churn_scores", "churn")
    assert len(scores) == len(features) and scores["churn_probability"].between(0, 1).all()
    if mode == "explicit":
        customers = read(settings, "clean_customers", "clean").set_index("customer_key")
        unknown = customers.index[customers["churned"].isna()]
        assert len(unknown) > 0 and not training["customer_key"].isin(unknown).any()
        assert scores["customer_key"].isin(unknown).any()  # unknown label: scored anyway
        # the CRM has churn dates: features from before the horizon, nobody already gone at the snapshot
        snapshot = training["snapshot"].unique()
        assert len(snapshot) == 1 and snapshot[0] == pd.Timestamp(settings.as_of) - pd.Timedelta(days=90)
        churned_on = training["customer_key"].map(customers["churn_date"])
        assert not (churned_on < snapshot[0] + pd.Timedelta(days=1)).any()
    # the baselines the data allow: recency from signup dates alone; RFM and BG/NBD need orders
    compared = {b for b in ("recency", "rfm", "btyd") if f"baseline_{b}_holdout_roc_auc" in model.index}
    assert compared == ({"recency"} if shape == "crm_only" else {"recency", "rfm", "btyd"})
    assert (scores["scored_by"] == model["candidate"]).all()
    _, client = registry(settings)
    description = client.get_run(model["mlflow_run_id"]).data.tags["mlflow.note.content"]
    assert f"({mode} labels)" in description and f"Published model: **{model['candidate']}**" in description
    if shape == "crm_only":
        assert set(features.columns) == {"customer_key", "tenure_days", "recency_days", "monthly_charges", "plan",
                                         "contract"}  # fmt: skip
    if shape == "orders_only":
        assert "frequency_365d" in features and "email_open_rate" not in features


def test_activity_labels_on_a_crm_only_extract_fail_with_the_reason(small_company, tmp_path, env):
    settings, result = shaped_run(tmp_path, small_company, "crm_only", **ATTRIBUTES)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "churn_training_set"
    error = failure.step_failure_data.error
    message = (error.cause.message if error.cause else "") + error.message
    assert "churn.label: explicit" in message


def test_cohort_scenario_end_to_end_with_baselines_visible(tmp_path, env):
    """The retailer case (one cohort, orders only) through Dagster: everyone scored was represented in
    training, the comparison with the baselines is in the metadata, the WARN check, MLflow and the report,
    and the published scores say which model produced them."""
    import shutil

    from seg_pipeline.publish.stores import read_warehouse_table
    from seg_pipeline.synthetic.cohort import CohortConfig, generate_cohort
    from tests.conftest import AS_OF

    landing = tmp_path / "landing"
    generate_cohort(CohortConfig(customers=3000, seed=5, as_of=AS_OF), landing)
    shutil.rmtree(landing / "truth")  # the pipeline never sees the truth
    settings = settings_for(
        tmp_path,
        landing,
        quick=False,
        **QUICK_SEGMENTATION,
        **{"customer_attributes.categorical": ["acquisition_channel"]},
    )
    with dg.instance_for_test() as instance:
        result = run_all(settings, instance)
        assert result.success, failures(result)
        scored = instance.get_latest_materialization_event(
            dg.AssetKey("churn_scores")
        ).asset_materialization.metadata
        trained = instance.get_latest_materialization_event(
            dg.AssetKey("churn_model")
        ).asset_materialization.metadata
    assert scored["population/outside_training"].value == 0
    assert scored["population/outside_training_share"].value == 0.0
    # a single cohort ages: at as_of most are silent longer than anyone could be at a labelled snapshot (a
    # label needs a horizon after it), which the metadata shows rather than hides
    assert 0.3 < scored["population/recency_days_beyond_training_share"].value <= 1
    model = read(settings, "churn_model", "churn").iloc[0]
    assert "sorting by days since the last activity" in trained["model_vs_baselines"].value
    (check,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "churn_model_beats_baselines"
    ]
    assert check.passed == bool(model["beats_baselines"]) and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["baseline_btyd_holdout_roc_auc"].value == model["baseline_btyd_holdout_roc_auc"]
    if not check.passed:
        assert model["candidate"] == model["best_baseline"] and "registered in its place" in check.description
    _, client = registry(settings)
    description = client.get_run(model["mlflow_run_id"]).data.tags["mlflow.note.content"]
    verdict = "**Beats the baselines**" if check.passed else "**Does not beat the baselines**"
    assert f"{verdict}: {model['baseline_verdict']}" in description
    published = read_warehouse_table(settings.warehouse_path, "churn_scores")
    champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    assert (published["scored_by"] == champion.tags["scored_by"]).all()
    assert (published["model_version"] == int(champion.version)).all()
    report = (settings.reports_dir / "latest.html").read_text(encoding="utf-8")
    assert (
        "Our model vs. sorting by last activity" in report and "BG/NBD buy-till-you-die model alone" in report
    )
