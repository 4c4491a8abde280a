"""Stage 6, churn: training set, model with the registry's champion gate, scores, retention segment.

Promotion flows through the graph: churn_model trains and registers a version and applies the gate, its
blocking check guards the champion in effect, and churn_scores takes the champion's URI from churn_model
(loaded from the warehouse when the rescore job runs without retraining).
"""

import contextlib
import io
import json
import warnings

import dagster as dg
import numpy as np
import pandas as pd

from seg_pipeline.assets.common import current_run_id, run_as_of
from seg_pipeline.assets.features import event_inputs
from seg_pipeline.resources import PipelineSettings
from seg_pipeline.tracking import MlflowTracking, model_requirements

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
    description="Labelled rows for the churn model: features as of a snapshot, the label observed after it "
    "(activity mode: train at as_of - 2 x horizon, holdout at as_of - horizon; explicit mode: a CRM column).",
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

    cfg = settings.get()
    as_of = run_as_of(context, cfg)
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
            **{f"count/{k}": v for k, v in built.counts.items()},
        },
    )


def _training_dataset(mlflow, inputs: pd.DataFrame):
    """The training data as an MLflow dataset: name, schema, row count and a digest of every row.

    MLflow would infer the schema by looking at every value of every column and digest the first 10,000
    rows after typing every cell in Python (28 s at 1M customers); here the digest hashes all rows in
    pandas and the schema is inferred from the few rows that show each column's type and whether it has
    missing values (the first present and the first missing value of each column): the same schema."""
    import hashlib

    from mlflow.models import infer_signature

    missing = inputs.isna().to_numpy()
    telling = (
        sorted({*missing.argmin(axis=0).tolist(), *missing.argmax(axis=0).tolist()}) if len(inputs) else []
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        schema = infer_signature(inputs.iloc[telling]).inputs
    rows = pd.util.hash_pandas_object(inputs, index=False).to_numpy()
    digest = hashlib.md5(rows.tobytes() + "\x1f".join(inputs.columns).encode()).hexdigest()[:16]
    dataset = mlflow.data.from_pandas(inputs, targets="label", name="churn_training_set", digest=digest)
    dataset.__dict__["schema"] = schema  # a functools.cached_property: MLflow reads it from here
    return dataset


def _log_training(mlflow, trained, table: pd.DataFrame, params: dict) -> tuple[int, str]:
    """Params, metrics, the training data as an input (schema and digest, no rows), figures, the model."""
    from mlflow.models import infer_signature

    from seg_pipeline.churn import figures
    from seg_pipeline.churn.registry import MODEL_NAME
    from seg_pipeline.churn.train import feature_frame

    mlflow.log_params(params)
    metrics = {f"holdout_{k}": v for k, v in trained.holdout_metrics.items()}
    for _, row in trained.candidates.iterrows():
        for key, value in row.items():
            if key.startswith(("validation_", "holdout_")) and pd.notna(value):
                metrics[f"{row['candidate']}/{key}"] = float(value)
    mlflow.log_metrics(metrics)
    labels = table["label"].to_numpy(dtype="float64")  # float: MLflow warns that ints cannot be missing
    inputs = feature_frame(table, trained.numeric, trained.categorical).assign(label=labels)
    mlflow.log_input(_training_dataset(mlflow, inputs), context="training")
    mlflow.log_text(trained.candidates.to_csv(index=False), "candidates.csv")
    y = trained.holdout_labels
    mlflow.log_figure(figures.roc_figure(y, trained.holdout_probabilities), "figures/roc.png")
    mlflow.log_figure(figures.calibration_figure(y, trained.holdout_probabilities), "figures/calibration.png")
    mlflow.log_figure(
        figures.lift_figure(y, trained.holdout_probabilities["selected (refit)"]), "figures/lift.png"
    )
    sample = feature_frame(table.head(0), trained.numeric, trained.categorical)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(sample, np.zeros((0, 2)))
    chatter = io.StringIO()  # the registry prints progress to stderr; the console keeps to our own lines
    with contextlib.redirect_stderr(chatter):
        info = mlflow.sklearn.log_model(
            trained.model, name="churn_model", serialization_format="cloudpickle", signature=signature,
            registered_model_name=MODEL_NAME, pip_requirements=model_requirements(),
            pyfunc_predict_fn="predict_proba",
        )  # fmt: skip
    return int(info.registered_model_version), chatter.getvalue().strip()


@_churn_asset(
    "Trains the churn candidates, registers the chosen model as a version of seg_pipeline_churn "
    "and promotes it to alias champion only if it is no worse than the champion on the same holdout.",
    "scikitlearn",
    "mlflow",
)
def churn_model(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    mlflow_tracking: MlflowTracking,
    churn_training_set: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    from seg_pipeline.churn.registry import CHAMPION_URI, MODEL_NAME, apply_gate
    from seg_pipeline.churn.scores import important_features
    from seg_pipeline.churn.train import feature_frame, train_churn_model
    from seg_pipeline.features.labels import KEY_COLUMNS

    mlflow_tracking.client()  # an unavailable tracking store fails here, before minutes of fitting
    cfg = settings.get()
    as_of = run_as_of(context, cfg)
    table = churn_training_set
    features = [c for c in table.columns if c not in KEY_COLUMNS]
    trained = train_churn_model(table, features, cfg.customer_attributes.categorical, cfg.churn)
    holdout = table[table["split"] == "holdout"]
    X_hold = feature_frame(holdout, trained.numeric, trained.categorical)
    driver_features = important_features(trained.model, X_hold, trained.holdout_labels, cfg.churn.driver_features,
                                         cfg.churn.seed)  # fmt: skip
    params = {
        "as_of": as_of.isoformat(), "label_mode": cfg.churn.label, "horizon_days": cfg.churn.horizon_days,
        "candidates": ", ".join(cfg.churn.candidates), "selected": trained.candidate,
        "train_rows": trained.training_rows,
        "train_rows_available": trained.training_rows_available, "holdout_rows": len(holdout),
        "features": ", ".join(trained.columns), "threshold": round(trained.threshold, 4),
        "promotion_metric": cfg.churn.promotion_metric,
    }  # fmt: skip
    tags = {"dagster_run_id": current_run_id(context), "as_of": as_of.isoformat(), "stage": "churn"}
    with mlflow_tracking.start_run(EXPERIMENT, f"churn {as_of.isoformat()}", tags) as (mlflow, run):
        version, chatter = _log_training(mlflow, trained, table, params)
        client = mlflow.MlflowClient()
        for key, value in {"threshold": trained.threshold, "dagster_run_id": current_run_id(context),
                           "driver_features": json.dumps(driver_features),
                           **{f"holdout_{k}": v for k, v in trained.holdout_metrics.items()}}.items():  # fmt: skip
            client.set_model_version_tag(MODEL_NAME, str(version), key, str(value))
        gate = apply_gate(mlflow, client, version, trained.holdout_metrics, holdout, cfg.churn.promotion_metric,
                          cfg.churn.promotion_tolerance)  # fmt: skip
        mlflow.set_tags({"gate": gate.reason, "promoted": str(gate.promoted), "model_version": str(version)})
        run_url = mlflow_tracking.run_url(run.info.experiment_id, run.info.run_id)
        run_id = run.info.run_id
    if chatter:
        context.log.info(chatter)
    champion_metrics = trained.holdout_metrics if gate.promoted else gate.previous_metrics
    outcome = (
        "promoted to champion"
        if gate.promoted
        else f"kept as challenger; champion stays v{gate.champion_version}"
    )
    context.log.info(f"churn model v{version} ({trained.candidate}) {outcome}: {gate.reason}")
    row = {
        "model_name": MODEL_NAME, "version": version, "candidate": trained.candidate, "promoted": gate.promoted,
        "gate_reason": gate.reason, "champion_version": gate.champion_version, "champion_uri": CHAMPION_URI,
        "champion_holdout_roc_auc": champion_metrics["roc_auc"], "threshold": trained.threshold,
        **{f"holdout_{k}": v for k, v in trained.holdout_metrics.items()}, "mlflow_run_id": run_id,
        "as_of": pd.Timestamp(as_of),
    }  # fmt: skip
    shown = trained.candidates[["candidate", "validation_pr_auc", "holdout_roc_auc", "holdout_pr_auc",
                                "holdout_brier", "holdout_lift_top_decile", "selected"]]  # fmt: skip
    return dg.Output(
        pd.DataFrame([row]),
        metadata={
            "model_version": version, "promoted": gate.promoted, "gate": gate.reason,
            "champion_version": gate.champion_version, "candidates": _meta_table(shown),
            **{f"holdout/{k}": float(v) for k, v in trained.holdout_metrics.items()},
            "driver_features": ", ".join(driver_features), "seconds": dg.MetadataValue.json(trained.seconds),
            "mlflow_run": dg.MetadataValue.url(run_url), "mlflow_run_id": run_id,
        },
    )  # fmt: skip


@dg.asset_check(asset=churn_model, blocking=True, description="The champion in effect reaches churn.min_roc_auc "
                "on this run's holdout; otherwise no scores are produced from it.")  # fmt: skip
def churn_model_quality(settings: PipelineSettings, churn_model: pd.DataFrame) -> dg.AssetCheckResult:
    row = churn_model.iloc[0]
    floor = settings.get().churn.min_roc_auc
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
    "Every profiled customer scored by the champion: probability, risk score 0-100, tier and the "
    "three features that move their risk most.",
    "pandas",
    "mlflow",
)
def churn_scores(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    mlflow_tracking: MlflowTracking,
    customer_features: pd.DataFrame,
    churn_model: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    from seg_pipeline.churn.registry import CHAMPION, MODEL_NAME, alias_version, model_columns
    from seg_pipeline.churn.scores import drivers, risk_score, risk_tier, typical_values
    from seg_pipeline.churn.train import feature_frame

    cfg = settings.get()
    as_of = run_as_of(context, cfg)
    mlflow = mlflow_tracking.client()
    client = mlflow.MlflowClient()
    version = alias_version(client, CHAMPION)
    if version is None:
        raise dg.Failure(
            f"no champion in the MLflow registry for {MODEL_NAME}; run full_refresh to train one"
        )
    model = mlflow.sklearn.load_model(churn_model.iloc[0]["champion_uri"])
    tags = client.get_model_version(MODEL_NAME, str(version)).tags
    numeric, categorical = model_columns(model)
    X = feature_frame(customer_features, numeric, categorical)
    probability = model.predict_proba(X)[:, 1]
    driver_columns = [c for c in json.loads(tags.get("driver_features", "[]")) if c in X.columns]
    texts, _ = drivers(model, X, driver_columns, typical_values(X))
    scores = pd.DataFrame(
        {
            "customer_key": customer_features["customer_key"].to_numpy(),
            "churn_probability": probability,
            "churn_risk_score": risk_score(probability),
        }
    )
    scores["risk_tier"] = risk_tier(scores["churn_risk_score"].to_numpy(), cfg.churn.tiers)
    scores["top_drivers"] = texts
    scores["model_version"] = version
    scores["as_of"] = pd.Timestamp(as_of)
    tiers = scores["risk_tier"].value_counts().to_dict()
    return dg.Output(
        scores,
        metadata={
            "dagster/row_count": len(scores), "model_version": version, "model_uri": churn_model.iloc[0]["champion_uri"],
            "mean_probability": float(probability.mean()), **{f"tier/{k}": int(v) for k, v in tiers.items()},
        },
    )  # fmt: skip


@_churn_asset(
    "Customers at high risk (risk score from churn.retention_min_risk_score) and of high value "
    "(365-day spend in the top churn.high_value_quantile of buyers), with segment and lifecycle stage: who to "
    "call first.",
    "pandas",
)
def retention_segment(
    settings: PipelineSettings,
    churn_scores: pd.DataFrame,
    customer_features: pd.DataFrame,
    customer_clusters: pd.DataFrame,
    lifecycle_stage: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    from seg_pipeline.churn.scores import retention_segment as in_retention
    from seg_pipeline.segmentation.profiles import revenue_of

    cfg = settings.get()
    value = revenue_of(customer_features).set_axis(customer_features["customer_key"])
    scores = churn_scores.set_index("customer_key")
    chosen = scores[in_retention(scores, value, cfg.churn)]
    table = (
        chosen[["churn_probability", "churn_risk_score", "risk_tier", "top_drivers"]]
        .assign(monetary_365d=value.reindex(chosen.index))
        .join(customer_clusters.set_index("customer_key")[["segment_id", "segment_name"]], how="left")
        .join(lifecycle_stage.set_index("customer_key")[["lifecycle_stage"]], how="left")
        .sort_values(["churn_risk_score", "monetary_365d"], ascending=False)
        .reset_index()
    )
    return dg.Output(
        table,
        metadata={
            "dagster/row_count": len(table), "share_of_customers": round(len(table) / max(len(scores), 1), 4),
            "revenue_at_risk_365d": float(table["monetary_365d"].sum()),
        },
    )  # fmt: skip


@_churn_asset(
    "Churn risk per segment: mean probability, customers per tier, and retention-segment size.",
    "pandas",
)
def segment_churn_risk(
    churn_scores: pd.DataFrame, customer_clusters: pd.DataFrame, retention_segment: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    joined = customer_clusters[["customer_key", "segment_id", "segment_name"]].merge(
        churn_scores, on="customer_key"
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


churn_assets = [churn_training_set, churn_model, churn_scores, retention_segment, segment_churn_risk]
churn_checks = [churn_model_quality]
