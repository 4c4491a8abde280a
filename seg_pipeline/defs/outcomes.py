"""Stage 8, outcomes: how the scores of earlier publishes turned out, once their churn horizon has passed.

Reads the score history that every publish appends (monitoring.score_history, monitoring.scored_runs) and
this run's clean tables; what it evaluates is appended by the publish to monitoring.score_outcomes and
monitoring.score_calibration, so each scored run is judged once, by the first run whose as_of is past its
label window.
"""

import dagster as dg
import pandas as pd

from seg_pipeline.defs.common import current_run_id
from seg_pipeline.defs.features import event_inputs
from seg_pipeline.platform.settings import PipelineSettings
from seg_pipeline.platform.tracking import MlflowTracking
from seg_pipeline.platform.warehouse import Warehouse
from seg_pipeline.publish.stores import MONITORING_SCHEMA

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
    mlflow_tracking: dg.ResourceParam[MlflowTracking],
    warehouse: dg.ResourceParam[Warehouse],
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
    cfg = settings.resolved
    as_of, run_id = settings.as_of, current_run_id(context)
    scored = warehouse.read_previous("scored_runs", MONITORING_SCHEMA)
    judged = warehouse.read_previous("score_outcomes", MONITORING_SCHEMA)
    evaluated = set() if judged is None else set(judged["scored_run_id"])
    due = due_runs(scored, evaluated, as_of)
    events = {"orders": clean_orders, "web": clean_web_events, "email": clean_email_events,
              "tickets": clean_support_tickets}  # fmt: skip
    history = warehouse.read_previous_rows(MONITORING_SCHEMA, "score_history", "run_id", due["run_id"].tolist())
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
    logged = mlflow_tracking.log_realized_outcomes(results) if results else 0
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


@dg.asset_check(
    asset="realized_outcomes", blocking=False,
    description="Warns when the scores of an earlier publish ranked realized churn worse than "
    "monitoring.min_realized_roc_auc or their calibration error exceeds monitoring.max_calibration_error.",
)  # fmt: skip
def realized_outcomes_within_bounds(settings: PipelineSettings, realized_outcomes: pd.DataFrame):
    from seg_pipeline.outcomes.realized import headline

    monitoring = settings.resolved.monitoring
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


def definitions(settings) -> dg.Definitions:
    return dg.Definitions(assets=outcome_assets, asset_checks=outcome_checks)
