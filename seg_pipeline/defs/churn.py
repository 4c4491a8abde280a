"""Stage 6, churn: training set, model with the registry's champion gate, scores, action tiers and the
retention list.

Promotion flows through the graph: churn_model trains and registers a version and applies the gate, its
blocking check guards the champion in effect, and churn_scores takes the champion's URI from churn_model
(loaded from the warehouse when the rescore job runs without retraining).
"""

import json

import dagster as dg
import pandas as pd

from seg_pipeline.defs.common import current_job_name, current_run_id
from seg_pipeline.defs.features import event_inputs
from seg_pipeline.platform.settings import PipelineSettings
from seg_pipeline.platform.tracking import MlflowTracking, log_churn_model, model_comparison, run_tags

EXPERIMENT = "seg_pipeline_churn"


def _churn_asset(description: str, *kinds: str):
    """An asset of the churn group, stored as table churn.<name>."""
    return dg.asset(group_name="churn", kinds={*kinds, "duckdb"}, metadata={"schema": "churn"},
                    description=description)  # fmt: skip


def _meta_table(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.to_markdown(index=False, floatfmt=".3f"))


@dg.asset(
    group_name="features",
    kinds={"pandas", "duckdb"},
    metadata={"schema": "features"},
    ins=event_inputs(),
    description="Labelled rows for the churn model: features as of snapshot dates, the label observed after "
    "each (activity mode: everyone profiled at up to churn.snapshots stacked snapshots, the latest, as_of - "
    "horizon, held out; explicit mode: a CRM column).",
)
def churn_training_set(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    clean_customers: pd.DataFrame,
    clean_orders: pd.DataFrame,
    clean_web_events: pd.DataFrame,
    clean_support_tickets: pd.DataFrame,
    clean_email_events: pd.DataFrame,
    customer_features: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    from seg_pipeline.features.labels import activity_training_set, explicit_training_set

    cfg = settings.resolved
    as_of = settings.as_of
    if cfg.churn.label == "activity":
        built = activity_training_set(
            clean_customers, clean_orders, clean_web_events, clean_support_tickets, clean_email_events,
            as_of=as_of, churn=cfg.churn, attributes=cfg.customer_attributes.names,
        )  # fmt: skip
    else:
        sources = {"orders": clean_orders, "web": clean_web_events, "tickets": clean_support_tickets,
                   "email": clean_email_events}  # fmt: skip
        built = explicit_training_set(clean_customers, customer_features, churn=cfg.churn, sources=sources,
                                      as_of=as_of, attributes=cfg.customer_attributes.names)  # fmt: skip
    for note in built.notes:
        context.log.info(note)
    table = built.table
    by_split = (
        table.groupby("split")["label"]
        .agg(["size", "mean"])
        .rename(columns={"size": "rows", "mean": "churn_rate"})
    )
    return dg.Output(
        table,
        metadata={
            "dagster/row_count": len(table),
            "label_mode": cfg.churn.label,
            "horizon_days": cfg.churn.horizon_days,
            "snapshots": ", ".join(str(d.date()) for d in table["snapshot"].dropna().unique())
            or "as_of (explicit)",
            "rows_by_split": _meta_table(by_split.reset_index()),
            "features": len(built.feature_columns),
            "notes": "; ".join(built.notes) or "none",
            **({"bg_nbd_by_snapshot": dg.MetadataValue.json(built.bg_nbd)} if built.bg_nbd else {}),
            **{f"seconds/{k}": v for k, v in built.seconds.items()},
            **{f"count/{k}": v for k, v in built.counts.items()},
        },
    )


@_churn_asset(
    "Trains the churn candidates and the naive baselines on the same rows, registers the chosen model (or "
    "the best baseline when no candidate beats it) as a version of seg_pipeline_churn and promotes it to alias "
    "champion only if it is no worse than the champion on the same out-of-time holdout.",
    "scikitlearn",
    "mlflow",
)
def churn_model(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    mlflow_tracking: dg.ResourceParam[MlflowTracking],
    churn_training_set: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    from seg_pipeline.churn.registry import CHAMPION_URI, MODEL_NAME
    from seg_pipeline.churn.scores import important_features, permutation_importances
    from seg_pipeline.churn.train import feature_frame, train_churn_model
    from seg_pipeline.features.labels import KEY_COLUMNS

    cfg = settings.resolved
    as_of = settings.as_of
    table = churn_training_set
    features = [c for c in table.columns if c not in KEY_COLUMNS]
    tags = run_tags(stage="churn", asset="churn_model", job_name=current_job_name(context),
                    dagster_run_id=current_run_id(context), as_of=as_of)  # fmt: skip
    # opened before fitting: an unavailable tracking store fails at once, and the run spans the training
    with mlflow_tracking.start_run(EXPERIMENT, f"churn {as_of.isoformat()}", tags) as (mlflow, run):
        trained = train_churn_model(table, features, cfg.customer_attributes.categorical, cfg.churn)
        holdout = table[table["split"] == "holdout"]
        X_hold = feature_frame(holdout, trained.numeric, trained.categorical)
        # measured with the model that has not seen the holdout rows; logged as a figure, used for drivers
        importances = permutation_importances(trained.holdout_model, X_hold, trained.holdout_labels,
                                              cfg.churn.seed)  # fmt: skip
        driver_features = important_features(importances, cfg.churn.driver_features)
        run_url = mlflow_tracking.run_url(run.info.experiment_id, run.info.run_id)
        run_id = run.info.run_id
        registered = log_churn_model(mlflow, run_url, trained=trained, table=table, importances=importances,
                                     driver_features=driver_features, config=cfg.churn, as_of=as_of,
                                     dagster_run_id=current_run_id(context))  # fmt: skip
    version, gate = registered.version, registered.gate
    if registered.registry_output:
        context.log.info(registered.registry_output)
    champion_metrics = trained.holdout_metrics if gate.promoted else gate.previous_metrics
    outcome = (
        "promoted to champion"
        if gate.promoted
        else f"kept as challenger; champion stays v{gate.champion_version}"
    )
    context.log.info(f"churn model v{version} ({trained.candidate}) {outcome}: {gate.reason}")
    context.log.info(f"baselines: {trained.baseline_verdict}")
    for note in trained.baseline_notes:
        context.log.info(note)
    baseline_rows = trained.candidates[trained.candidates["kind"] == "baseline"]
    baselines = {f"{name}_holdout_{k}": float(r[f"holdout_{k}"]) for name, r in
                 baseline_rows.set_index("candidate").iterrows() for k in ("roc_auc", "pr_auc", "lift_top_decile")}  # fmt: skip
    row = {
        "model_name": MODEL_NAME, "version": version, "candidate": trained.candidate, "promoted": gate.promoted,
        "selected_candidate": trained.selected_candidate, "model_kind": trained.kind,
        "beats_baselines": trained.beats_baselines, "best_baseline": trained.best_baseline,
        "baseline_verdict": trained.baseline_verdict, "baseline_metric": cfg.churn.baseline_metric,
        "baseline_margin": cfg.churn.baseline_margin, **baselines,
        **{f"selected_candidate_holdout_{k}": float(trained.candidate_metrics[k])
           for k in ("roc_auc", "pr_auc", "lift_top_decile")},
        "gate_reason": gate.reason, "champion_version": gate.champion_version, "champion_uri": CHAMPION_URI,
        "champion_holdout_roc_auc": champion_metrics["roc_auc"], "threshold": trained.threshold,
        **{f"holdout_{k}": v for k, v in trained.holdout_metrics.items()}, "mlflow_run_id": run_id,
        "mlflow_run_url": run_url,
        "as_of": pd.Timestamp(as_of),
    }  # fmt: skip
    shown = trained.candidates[["candidate", "kind", "validation_pr_auc", "holdout_roc_auc", "holdout_pr_auc",
                                "holdout_brier", "holdout_lift_top_decile", "selected", "published"]]  # fmt: skip
    return dg.Output(
        pd.DataFrame([row]),
        metadata={
            "model_version": version, "promoted": gate.promoted, "gate": gate.reason,
            "champion_version": gate.champion_version, "candidates": _meta_table(shown),
            "model_vs_baselines": dg.MetadataValue.md(model_comparison(trained).to_markdown(index=False, floatfmt=".3f")
                                                      + f"\n\n{trained.baseline_verdict}"),
            "published_model": trained.candidate, "beats_baselines": trained.beats_baselines,
            "holdout_metrics_from": f"{trained.candidate} fitted on the {trained.training_rows:,} training rows "
            f"without the holdout; the registered model is refitted on {trained.final_rows:,} labelled rows",
            **{f"baseline/{k}": v for k, v in baselines.items()},
            **{f"holdout/{k}": float(v) for k, v in trained.holdout_metrics.items()},
            "driver_features": ", ".join(driver_features), "seconds": dg.MetadataValue.json(trained.seconds),
            "mlflow_run": dg.MetadataValue.url(run_url), "mlflow_run_id": run_id,
        },
    )  # fmt: skip


@dg.asset_check(asset=churn_model, description="The chosen model beats every naive baseline (recency, RFM, "
                "BG/NBD) on the holdout by churn.baseline_margin; when it does not, the run publishes the best "
                "baseline's scores instead, and this check warns.")  # fmt: skip
def churn_model_beats_baselines(churn_model: pd.DataFrame) -> dg.AssetCheckResult:
    row = churn_model.iloc[0]
    numbers = {
        k: float(v) for k, v in row.items() if k.startswith("baseline_") and k.endswith("_holdout_roc_auc")
    }
    return dg.AssetCheckResult(
        passed=bool(row["beats_baselines"]),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "verdict": str(row["baseline_verdict"]),
            "published_model": str(row["candidate"]),
            "selected_candidate": str(row["selected_candidate"]),
            "model_holdout_roc_auc": float(row["holdout_roc_auc"]),
            **numbers,
        },  # fmt: skip
        description=None if row["beats_baselines"] else _baseline_used(row),
    )


def _baseline_used(row: pd.Series) -> str:
    then = ("it is the champion now and scores every customer" if row["promoted"] else
            f"the champion v{row['champion_version']} stays, being better on this holdout")  # fmt: skip
    return f"{row['baseline_verdict']}: {row['candidate']} was registered in its place as v{row['version']}; {then}"


@dg.asset_check(asset=churn_model, blocking=True, description="The champion in effect reaches churn.min_roc_auc "
                "on this run's holdout; otherwise no scores are produced from it.")  # fmt: skip
def churn_model_quality(settings: PipelineSettings, churn_model: pd.DataFrame) -> dg.AssetCheckResult:
    row = churn_model.iloc[0]
    floor = settings.resolved.churn.min_roc_auc
    auc = float(row["champion_holdout_roc_auc"])
    return dg.AssetCheckResult(
        passed=auc >= floor,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "champion_version": int(row["champion_version"]),
            "champion_holdout_roc_auc": auc,
            "min_roc_auc": floor,
        },  # fmt: skip
        description=None
        if auc >= floor
        else f"champion v{row['champion_version']} has holdout ROC-AUC {auc:.3f}, "
        f"below churn.min_roc_auc {floor}",
    )


@_churn_asset(
    "Every profiled customer scored by the champion: probability, risk score 0-100 and the "
    "three features that move their risk most.",
    "pandas",
    "mlflow",
)
def churn_scores(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    mlflow_tracking: dg.ResourceParam[MlflowTracking],
    customer_features: pd.DataFrame,
    churn_model: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    from seg_pipeline.churn.registry import MODEL_NAME, model_columns
    from seg_pipeline.churn.scores import drivers, risk_score, typical_values
    from seg_pipeline.churn.train import feature_frame

    cfg = settings.resolved
    as_of = settings.as_of
    champion = mlflow_tracking.champion(churn_model.iloc[0]["champion_uri"])
    if champion is None:
        raise dg.Failure(
            f"no champion in the MLflow registry for {MODEL_NAME}; run full_refresh to train one"
        )
    model, tags, version = champion.model, champion.tags, champion.version
    numeric, categorical = model_columns(model)
    X = feature_frame(customer_features, numeric, categorical)
    probability = model.predict_proba(X)[:, 1]
    driver_columns = [c for c in json.loads(tags.get("driver_features", "[]")) if c in X.columns]
    texts, _ = drivers(
        model, X, driver_columns, typical_values(X), currency=cfg.report.currency, locale=cfg.report.locale
    )
    scores = pd.DataFrame(
        {
            "customer_key": customer_features["customer_key"].to_numpy(),
            "churn_probability": probability,
            "churn_risk_score": risk_score(probability),
        }
    )
    scores["top_drivers"] = texts
    scores["model_version"] = version
    # versions registered before baselines existed carry no scored_by tag: they were always a candidate
    scores["scored_by"] = tags.get("scored_by", "model")
    scores["as_of"] = pd.Timestamp(as_of)
    return dg.Output(
        scores,
        metadata={
            "dagster/row_count": len(scores), "model_version": version, "model_uri": churn_model.iloc[0]["champion_uri"],
            "scored_by": scores["scored_by"].iloc[0] if len(scores) else tags.get("scored_by", "model"),
            "mean_probability": float(probability.mean()) if len(probability) else 0.0,
            **_population_metadata(customer_features, tags),
        },
    )  # fmt: skip


def _population_metadata(features: pd.DataFrame, tags: dict[str, str]) -> dict[str, float]:
    """Who is scored beyond what the model was trained on: outside the training set's population rule (0 by
    construction: everyone profiled is labelled), and silent or old beyond any labelled row (extrapolation)."""
    from seg_pipeline.features.labels import in_training_population

    scored = max(len(features), 1)
    outside = int((~in_training_population(features)).sum())
    meta = {"population/outside_training": outside, "population/outside_training_share": outside / scored}
    for column in ("recency_days", "tenure_days"):
        limit = tags.get(f"train_max_{column}")
        if limit is not None and column in features:
            beyond = int((features[column] > float(limit)).sum())
            meta[f"population/{column}_beyond_training_share"] = round(beyond / scored, 4)
    return meta


@_churn_asset(
    "Every scored customer's action tier: customers with marketing consent ranked by expected loss (churn "
    "probability x 365-day spend), each tier (personal outreach, semi-automated, automated campaign) taking the "
    "next customers up to its capacity (actions.*); the rest no_action, and no_consent without marketing consent. "
    "In the action tiers, arm: treatment, or control (actions.control.share, never contacted; a keyed hash per "
    "period).",
    "pandas",
)
def action_tiers(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    churn_scores: pd.DataFrame,
    customer_features: pd.DataFrame,
    clean_customers: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    from seg_pipeline.churn.actions import (
        ACTION_TIERS,
        TIER_LABELS,
        action_plan,
        assign_arms,
        assign_tiers,
        marketing_consent,
        ranked_by,
    )
    from seg_pipeline.cleaning.privacy import resolve_key
    from seg_pipeline.segmentation.profiles import revenue_of
    from seg_pipeline.wording import money

    cfg = settings.resolved
    value = revenue_of(customer_features).set_axis(customer_features["customer_key"])
    contactable = marketing_consent(
        clean_customers.set_index("customer_key")["consent_marketing"], cfg.privacy.default_marketing_consent
    )
    tiers = assign_tiers(churn_scores, value, contactable, cfg.actions)
    key = resolve_key(cfg.privacy.pseudonymization_key_env, cfg.home)
    tiers = assign_arms(tiers, key, cfg.actions.control, settings.as_of)
    plan = action_plan(tiers, churn_scores["churn_probability"], cfg.actions)
    shown = plan.assign(
        tier=plan["tier"].map(TIER_LABELS),
        expected_loss=[money(v, cfg.report.currency, cfg.report.locale) for v in plan["expected_loss"]],
    )[
        [
            "tier",
            "customers",
            "control_customers",
            "contacts",
            "capacity_rule",
            "mean_churn_probability",
            "expected_loss",
        ]
    ]
    acted = plan[plan["tier"].isin(ACTION_TIERS)]
    return dg.Output(
        tiers,
        metadata={
            "dagster/row_count": len(tiers), "ranked_by": ranked_by(tiers),
            **{f"tier/{row.tier}": int(row.customers) for row in plan.itertuples()},
            **{f"control/{row.tier}": int(row.control_customers) for row in acted.itertuples()},
            "control_period": tiers["control_period"].iloc[0] if len(tiers) else "",
            "control_share": cfg.actions.control.share,
            "expected_loss_in_action_tiers": float(acted["expected_loss"].sum()),
            "expected_customers_saved": float(acted["expected_customers_saved"].sum()),
            "action_plan": dg.MetadataValue.md(shown.to_markdown(index=False, floatfmt=".3f")),
        },
    )  # fmt: skip


RETENTION_COLUMNS = [
    "customer_key", "action_rank", "risk_tier", "churn_probability", "churn_risk_score", "value_365d",
    "expected_loss", "top_drivers", "suggested_action", "segment_id", "segment_name", "lifecycle_stage", "arm",
]  # fmt: skip


@_churn_asset(
    "The retention list: the personal-outreach and semi-automated tiers of action_tiers, largest expected loss "
    "first, with segment, lifecycle stage and what drives each customer's risk: who to contact first.",
    "pandas",
)
def retention_segment(
    settings: PipelineSettings,
    action_tiers: pd.DataFrame,
    churn_scores: pd.DataFrame,
    customer_clusters: pd.DataFrame,
    lifecycle_stage: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    from seg_pipeline.churn.actions import RETENTION_TIERS

    listed = action_tiers[action_tiers["risk_tier"].isin(RETENTION_TIERS)]
    table = (
        listed.merge(churn_scores[["customer_key", "churn_probability", "churn_risk_score", "top_drivers"]],
                     on="customer_key", how="left")
        .merge(customer_clusters[["customer_key", "segment_id", "segment_name"]], on="customer_key", how="left")
        .merge(lifecycle_stage[["customer_key", "lifecycle_stage"]], on="customer_key", how="left")
        .sort_values("action_rank", ignore_index=True)[RETENTION_COLUMNS]
    )  # fmt: skip
    return dg.Output(
        table,
        metadata={
            "dagster/row_count": len(table),
            "share_of_customers": round(len(table) / max(len(action_tiers), 1), 4),
            "expected_loss": float(table["expected_loss"].sum()),
            "value_365d": float(table["value_365d"].sum()),
        },
    )


@_churn_asset(
    "Churn risk per segment: mean probability, customers per action tier, and retention-list size.",
    "pandas",
)
def segment_churn_risk(
    churn_scores: pd.DataFrame,
    action_tiers: pd.DataFrame,
    customer_clusters: pd.DataFrame,
    retention_segment: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    joined = (
        customer_clusters[["customer_key", "segment_id", "segment_name"]]
        .merge(churn_scores, on="customer_key")
        .merge(action_tiers[["customer_key", "risk_tier"]], on="customer_key", how="left")
    )
    joined["in_retention_segment"] = joined["customer_key"].isin(retention_segment["customer_key"])
    grouped = joined.groupby(["segment_id", "segment_name"])
    table = grouped.agg(
        customers=("customer_key", "size"),
        mean_churn_probability=("churn_probability", "mean"),
        mean_risk_score=("churn_risk_score", "mean"),
        retention_segment_customers=("in_retention_segment", "sum"),
    )
    tiers = pd.crosstab(
        [joined["segment_id"], joined["segment_name"]], joined["risk_tier"], normalize="index"
    )
    table = table.join(tiers.add_prefix("share_"), how="left").fillna(0).reset_index()
    return dg.Output(table, metadata={"dagster/row_count": len(table), "by_segment": _meta_table(table)})


churn_assets = [
    churn_training_set,
    churn_model,
    churn_scores,
    action_tiers,
    retention_segment,
    segment_churn_risk,
]
churn_checks = [churn_model_quality, churn_model_beats_baselines]


def definitions(settings) -> dg.Definitions:
    return dg.Definitions(assets=churn_assets, asset_checks=churn_checks)
