"""Stage 5, segmentation: one fit per run tracked in MLflow (segmentation/), plus lifecycle stages.

The fit's outputs are separate assets (and tables) so lineage shows what each consumer reads. Stable
segment ids and migration need the previous run's tables, which are read before this run replaces them.
Data that cannot be segmented (fewer customers, or distinct customers, than segmentation.k_min) fails the
step with a sentence naming the cause; customers who are all alike make one segment and a warning.
"""

import dagster as dg
import pandas as pd

from seg_pipeline.defs.common import current_job_name, current_run_id
from seg_pipeline.errors import SegPipelineError
from seg_pipeline.platform.settings import PipelineSettings
from seg_pipeline.platform.tracking import MlflowTracking, log_segmentation, run_tags
from seg_pipeline.platform.warehouse import Warehouse
from seg_pipeline.segmentation.lifecycle import LIFECYCLE_STAGES, assign_lifecycle, lifecycle_counts

SCHEMA = "segmentation"
EXPERIMENT = "seg_pipeline_segmentation"


def _out(description: str) -> dg.AssetOut:
    return dg.AssetOut(group_name="segmentation", metadata={"schema": SCHEMA}, kinds={"pandas", "duckdb"},
                       description=description)  # fmt: skip


@dg.multi_asset(
    outs={
        "segmentation_candidates": _out(
            "Every candidate clusterer with its scores; the selected one marked."
        ),
        "customer_clusters": _out("Each profiled customer's segment (stable id, name) and micro-segment."),
        "segment_profiles": _out("Per segment: size, share, revenue, observed churn, strongest deviations."),
        "segment_deviations": _out(
            "Segment x feature deviation from the population (std units); the "
            "next run matches its segments against these to keep ids."
        ),  # fmt: skip
        "micro_segments": _out(
            "Finer groups nested in each segment (id = segment x 100 + n) for activation."
        ),
        "segment_migration": _out("Customers per (previous segment, current segment) since the last run."),
    },
)
def segmentation(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    mlflow_tracking: dg.ResourceParam[MlflowTracking],
    warehouse: dg.ResourceParam[Warehouse],
    customer_features: pd.DataFrame,
    clean_customers: pd.DataFrame,
):
    from seg_pipeline.segmentation.fit import fit_segmentation, observed_churn
    from seg_pipeline.segmentation.profiles import long_deviations, migration_summary
    from seg_pipeline.segmentation.selection import selection_markdown

    cfg = settings.resolved
    as_of = settings.as_of
    tags = run_tags(stage="segmentation", asset="segmentation", job_name=current_job_name(context),
                    dagster_run_id=current_run_id(context), as_of=as_of)  # fmt: skip
    # opened before fitting: an unavailable tracking store fails at once, and the run spans the fit
    with mlflow_tracking.start_run(EXPERIMENT, f"segmentation {as_of.isoformat()}", tags) as (mlflow, run):
        # the last run's segments, read before this run replaces them: stable ids and migration
        previous_devs = warehouse.read_previous("segment_deviations", SCHEMA)
        previous_clusters = warehouse.read_previous("customer_clusters", SCHEMA)
        try:
            result = fit_segmentation(
                customer_features,
                config=cfg.segmentation,
                categorical=cfg.customer_attributes.categorical,
                attributes=cfg.customer_attributes.names,
                churned=observed_churn(customer_features, clean_customers, cfg.churn),
                previous_deviations=previous_devs,
                previous_assignments=previous_clusters,
                currency=cfg.report.currency,
                locale=cfg.report.locale,
            )
        except SegPipelineError as exc:  # the data or config, not the machine: a rerun fails the same
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        for note in result.notes:
            context.log.warning(note)
        run_url = mlflow_tracking.run_url(run.info.experiment_id, run.info.run_id)
        run_id = run.info.run_id
        registered = log_segmentation(mlflow, run_url, result=result, config=cfg.segmentation, as_of=as_of)
    if registered.registry_output:
        context.log.info(registered.registry_output)
    chosen = result.selection.chosen
    context.log.info(
        f"selected {chosen['candidate']} of {len(result.selection.table)} candidates; MLflow {run_url}"
    )

    link = {"mlflow_run": dg.MetadataValue.url(run_url), "mlflow_run_id": run_id}
    previous_ids = set(previous_devs["segment_id"]) if previous_devs is not None else set()
    kept = len(previous_ids & set(result.label_to_segment.values()))
    label_map = {str(label): segment for label, segment in result.label_to_segment.items()}
    moved = result.migration
    deviations = long_deviations(result.deviations)
    notes = {"single_segment": result.single_segment, "notes": "; ".join(result.notes) or "none"}
    yield dg.Output(
        result.assignments, "customer_clusters",
        metadata={"dagster/row_count": len(result.assignments), "segments": len(result.profiles),
                  "ids_kept_from_previous_run": kept,
                  "model_label_to_segment_id": dg.MetadataValue.json(label_map), **link},
    )  # fmt: skip
    # the fit's own facts travel with its table, for the report (also when a rescore reads it back)
    candidates = result.selection.table.assign(
        fit_single_segment=result.single_segment, fit_notes=notes["notes"], mlflow_run_url=run_url
    )
    yield dg.Output(
        candidates, "segmentation_candidates",
        metadata={"selection": dg.MetadataValue.md(selection_markdown(result.selection.table)),
                  "selected": chosen["candidate"], "stability": float(chosen["stability"]),
                  "silhouette": float(chosen["silhouette"]), "seconds": dg.MetadataValue.json(result.seconds),
                  **notes, **link},
    )  # fmt: skip
    yield dg.Output(
        result.profiles, "segment_profiles",
        metadata={"dagster/row_count": len(result.profiles),
                  "profiles": dg.MetadataValue.md(result.profiles.to_markdown(index=False, floatfmt=".3f")),
                  **notes, **link},
    )  # fmt: skip
    yield dg.Output(deviations, "segment_deviations", metadata={"dagster/row_count": len(deviations)})
    yield dg.Output(result.micro, "micro_segments", metadata={"dagster/row_count": len(result.micro)})
    yield dg.Output(
        moved, "segment_migration",
        metadata={"dagster/row_count": len(moved), "first_run": previous_clusters is None,
                  **{f"customers/{k}": v for k, v in migration_summary(moved).items()}},
    )  # fmt: skip


@dg.asset(
    group_name="segmentation",
    kinds={"pandas", "duckdb"},
    metadata={"schema": SCHEMA},
    description="Each profiled customer's lifecycle stage (" + ", ".join(LIFECYCLE_STAGES) + ") and why, "
    "from the rules under `lifecycle:` in the config.",
)
def lifecycle_stage(settings: PipelineSettings, customer_features: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    stages = assign_lifecycle(customer_features, settings.resolved.lifecycle)
    counts = lifecycle_counts(stages)
    return dg.Output(
        stages, metadata={"dagster/row_count": len(stages), **{f"stage/{k}": v for k, v in counts.items()}}
    )


segmentation_assets = [segmentation, lifecycle_stage]


def definitions(settings) -> dg.Definitions:
    return dg.Definitions(assets=segmentation_assets)
