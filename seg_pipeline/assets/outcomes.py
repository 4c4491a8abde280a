"""Stage 8, outcomes: how the scores of earlier publishes turned out, once their churn horizon has passed.

Reads the score history that every publish appends (monitoring.score_history, monitoring.scored_runs) and
this run's clean tables; what it evaluates is appended by the publish to monitoring.score_outcomes and
monitoring.score_calibration, so each scored run is judged once, by the first run whose as_of is past its
label window.
"""

import dagster as dg
import pandas as pd

from seg_pipeline.assets.common import current_run_id, run_as_of
from seg_pipeline.assets.features import event_inputs
from seg_pipeline.publish.writers import MONITORING_SCHEMA
from seg_pipeline.resources import PipelineSettings
from seg_pipeline.tracking import MlflowTracking

GROUP = "outcomes"
SCHEMA = "outcomes"  # this run's evaluation; the monitoring schema keeps every run's (appended at publish)


@dg.multi_asset(
    group_name=GROUP,
    outs={
        "realized_outcomes": dg.AssetOut(
            metadata={"schema": SCHEMA}, kinds={"pandas", "duckdb"},
            description="Earlier publishes whose horizon has passed, judged on what happened: realized ROC-AUC, "
            "PR-AUC, Brier, calibration error and churn per tier, arm and segment, against the recency ranking "
            "(one row per scored run, breakdown and metric; empty when no horizon passed since the last run)."),
        "realized_calibration": dg.AssetOut(
            metadata={"schema": SCHEMA}, kinds={"pandas", "duckdb"},
            description="Per scored run and probability decile: customers, mean predicted and realized churn."),
        "realized_uplift": dg.AssetOut(
            metadata={"schema": SCHEMA}, kinds={"pandas", "duckdb"},
            description="Per scored run, action tier and campaign: realized churn of the treatment arm against "
            "the control arm, the uplift with a 95 % interval (Newcombe), customers saved and revenue retained; "
            "intention-to-treat, and with an interventions extract the effect on the contacted."),
    },
    ins={**event_inputs(), "clean_customers": dg.AssetIn(metadata={"columns": ["customer_key", "profiling_allowed"]}),
         "erasure_index": dg.AssetIn(),
         "clean_interventions": dg.AssetIn(metadata={"columns": ["customer_key", "date", "campaign", "channel"]})},
)  # fmt: skip
def realized_outcomes(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    mlflow_tracking: MlflowTracking,
    clean_customers: pd.DataFrame,
    clean_orders: pd.DataFrame,
    clean_web_events: pd.DataFrame,
    clean_support_tickets: pd.DataFrame,
    clean_email_events: pd.DataFrame,
    erasure_index: pd.DataFrame,
    clean_interventions: pd.DataFrame,
):
    from seg_pipeline.cleaning.privacy import resolve_key
    from seg_pipeline.outcomes.history import erased_history_keys
    from seg_pipeline.outcomes.realized import (
        CALIBRATION_COLUMNS,
        OUTCOME_COLUMNS,
        UPLIFT_RUN_COLUMNS,
        due_runs,
        evaluate_run,
        headline,
    )
    from seg_pipeline.warehouse import read_previous, read_previous_rows

    cfg = settings.get()
    as_of, run_id = run_as_of(context, cfg), current_run_id(context)
    warehouse = str(cfg.warehouse_path)
    scored = read_previous(warehouse, MONITORING_SCHEMA, "scored_runs")
    judged = read_previous(warehouse, MONITORING_SCHEMA, "score_outcomes")
    evaluated = set() if judged is None else set(judged["scored_run_id"])
    due = due_runs(scored, evaluated, as_of)
    events = {"orders": clean_orders, "web": clean_web_events, "email": clean_email_events,
              "tickets": clean_support_tickets}  # fmt: skip
    history = read_previous_rows(
        warehouse, MONITORING_SCHEMA, "score_history", "run_id", due["run_id"].tolist()
    )
    erased = set()
    if history is not None and len(history):
        key = resolve_key(cfg.privacy.pseudonymization_key_env, cfg.home)
        erased = set(erased_history_keys(history["customer_key"], erasure_index, key))
    # an empty interventions table: no extract (or one without a row), so treatment means assigned
    contacts = clean_interventions if len(clean_interventions) else None
    results = []
    for run in due.itertuples(index=False):
        rows = history[history["run_id"] == run.run_id] if history is not None else pd.DataFrame()
        if cfg.churn.label != "activity" or run.label != "activity":
            context.log.info(f"run {run.run_id} ({pd.Timestamp(run.as_of).date()}) not judged: its outcome needs "
                             "the activity label (churn.label: activity)")  # fmt: skip
            continue
        results.append(evaluate_run(pd.Series(run._asdict()), rows, clean_customers, events, as_of=as_of,
                                    run_id=run_id, erased=erased, contacts=contacts))  # fmt: skip
    metrics = (
        pd.concat([r.metrics for r in results], ignore_index=True)
        if results
        else pd.DataFrame(columns=OUTCOME_COLUMNS)
    )
    calibration = (
        pd.concat([r.calibration for r in results], ignore_index=True)
        if results
        else pd.DataFrame(columns=CALIBRATION_COLUMNS)
    )
    uplift = (
        pd.concat([r.uplift for r in results], ignore_index=True)
        if results
        else pd.DataFrame(columns=UPLIFT_RUN_COLUMNS)
    )
    logged = _log_to_registry(mlflow_tracking, results) if results else 0
    meta = {"dagster/row_count": len(metrics), "runs_judged": len(results),
            "runs_waiting": 0 if scored is None else int(len(scored) - len(evaluated) - len(results)),
            "logged_to_model_versions": logged}  # fmt: skip
    if results:
        latest = results[-1]
        values = headline(latest.metrics)
        meta |= {"latest_scored_run": str(latest.metrics["scored_run_id"].iloc[0]),
                 "latest_scored_as_of": str(pd.Timestamp(latest.metrics["scored_as_of"].iloc[0]).date()),
                 **{f"latest/{k}": round(float(v), 4) for k, v in values.items() if pd.notna(v)}}  # fmt: skip
        for result in results:
            for note in result.notes:
                context.log.info(note)
    yield dg.Output(metrics, output_name="realized_outcomes", metadata=meta)
    yield dg.Output(calibration, output_name="realized_calibration",
                    metadata={"dagster/row_count": len(calibration)})  # fmt: skip
    yield dg.Output(
        uplift, output_name="realized_uplift", metadata=_uplift_metadata(uplift, contacts is None)
    )


def _uplift_metadata(uplift: pd.DataFrame, intention_to_treat_only: bool) -> dict:
    itt = uplift[(uplift["estimand"] == "intention_to_treat")] if len(uplift) else uplift
    meta = {"dagster/row_count": len(uplift),
            "interventions": "none: treatment = assigned (intention-to-treat)" if intention_to_treat_only
            else "extract given: effect on the contacted estimated too"}  # fmt: skip
    for row in itt.itertuples():
        day = pd.Timestamp(row.scored_as_of).date()
        if pd.notna(row.uplift):
            meta[f"{day}/{row.group}/uplift"] = round(float(row.uplift), 4)
            meta[f"{day}/{row.group}/ci"] = f"{row.ci_low:+.3f} .. {row.ci_high:+.3f}"
    return meta


def _log_to_registry(mlflow_tracking: MlflowTracking, results) -> int:
    """Each judged run's headline metrics on the MLflow run of the model version that scored it."""
    from seg_pipeline.churn.registry import MODEL_NAME
    from seg_pipeline.outcomes.realized import headline
    from seg_pipeline.tracking import log_realized_outcome

    mlflow = mlflow_tracking.client()
    logged = 0
    for result in results:
        first = result.metrics.iloc[0]
        if pd.isna(first["model_version"]):
            continue
        logged += log_realized_outcome(
            mlflow, model_name=MODEL_NAME, version=int(first["model_version"]),
            scored_as_of=pd.Timestamp(first["scored_as_of"]).date(),
            evaluated_as_of=pd.Timestamp(first["evaluated_as_of"]).date(), values=headline(result.metrics),
        )  # fmt: skip
    return logged


@dg.asset_check(
    asset="realized_outcomes", blocking=False,
    description="Warns when the scores of an earlier publish ranked realized churn worse than "
    "monitoring.min_realized_roc_auc or their calibration error exceeds monitoring.max_calibration_error.",
)  # fmt: skip
def realized_outcomes_within_bounds(settings: PipelineSettings, realized_outcomes: pd.DataFrame):
    from seg_pipeline.outcomes.realized import headline

    monitoring = settings.get().monitoring
    bounds = {"min_realized_roc_auc": monitoring.min_realized_roc_auc,
              "max_calibration_error": monitoring.max_calibration_error}  # fmt: skip
    if realized_outcomes.empty:
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN, metadata=bounds,
                                   description="no earlier publish's horizon ended since the last run")  # fmt: skip
    problems, metadata = [], dict(bounds)
    for run_id, rows in realized_outcomes.groupby("scored_run_id", sort=False):
        values = headline(rows)
        day = pd.Timestamp(rows["scored_as_of"].iloc[0]).date()
        auc, error = values.get("roc_auc", float("nan")), values.get("calibration_error", float("nan"))
        metadata |= {f"{day}/roc_auc": round(auc, 4), f"{day}/calibration_error": round(error, 4),
                     f"{day}/customers_evaluated": int(values.get("customers_evaluated", 0))}  # fmt: skip
        if auc < monitoring.min_realized_roc_auc:
            problems.append(f"scores of {day} (run {run_id}): realized ROC-AUC {auc:.3f} below "
                            f"{monitoring.min_realized_roc_auc:.2f}")  # fmt: skip
        if error > monitoring.max_calibration_error:
            problems.append(f"scores of {day} (run {run_id}): calibration error {error:.3f} above "
                            f"{monitoring.max_calibration_error:.2f}")  # fmt: skip
    return dg.AssetCheckResult(passed=not problems, severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
                               description="; ".join(problems) or None)  # fmt: skip


outcome_assets = [realized_outcomes]
outcome_checks = [realized_outcomes_within_bounds]
