"""Stage 5, segmentation: one fit per run tracked in MLflow (segmentation/), plus lifecycle stages.

The fit's outputs are separate assets (and tables) so lineage shows what each consumer reads. Stable
segment ids and migration need the previous run's tables, which are read before this run replaces them.
Data that cannot be segmented (fewer customers, or distinct customers, than segmentation.k_min) fails the
step with a sentence naming the cause; customers who are all alike make one segment and a warning.
"""

import contextlib
import io
import warnings
from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd

from seg_pipeline.assets.common import current_run_id, run_as_of
from seg_pipeline.errors import SegPipelineError
from seg_pipeline.resources import PipelineSettings
from seg_pipeline.segmentation.lifecycle import LIFECYCLE_STAGES, assign_lifecycle, lifecycle_counts
from seg_pipeline.tracking import MlflowTracking, model_requirements
from seg_pipeline.warehouse import read_previous

if TYPE_CHECKING:  # scikit-learn and scipy load when the asset runs, not with the code location
    from seg_pipeline.segmentation.fit import SegmentationResult

SCHEMA = "segmentation"
EXPERIMENT = "seg_pipeline_segmentation"
REGISTERED_MODEL = "seg_pipeline_segmentation"


def _out(description: str) -> dg.AssetOut:
    return dg.AssetOut(group_name="segmentation", metadata={"schema": SCHEMA}, kinds={"pandas", "duckdb"},
                       description=description)  # fmt: skip


def _log_to_mlflow(mlflow, result: "SegmentationResult", params: dict) -> str:
    from mlflow.models import infer_signature

    from seg_pipeline.segmentation import figures
    from seg_pipeline.segmentation.selection import selection_markdown

    mlflow.log_params(params)
    table = result.selection.table
    scores = ("silhouette", "davies_bouldin", "calinski_harabasz", "stability")
    metrics = {
        f"{row['algorithm']}_k{row['k']}/{m}": float(row[m])
        for _, row in table.iterrows() for m in scores if pd.notna(row[m])
    }  # fmt: skip
    chosen = result.selection.chosen
    metrics |= {f"selected_{m}": float(chosen[m]) for m in scores if pd.notna(chosen[m])}
    mlflow.log_metrics(metrics)
    mlflow.log_text(table.to_csv(index=False), "selection/candidates.csv")
    mlflow.log_text(selection_markdown(table), "selection/candidates.md")
    mlflow.log_text(result.profiles.to_csv(index=False), "profiles/segment_profiles.csv")
    # the model predicts cluster labels; this turns them into the segment ids of this run's tables
    mlflow.log_dict({str(k): v for k, v in result.label_to_segment.items()}, "segment_ids.json")
    names = dict(zip(result.profiles["segment_id"], result.profiles["segment_name"], strict=True))
    labelled = result.deviations.rename(index=lambda s: f"{s} {names[s]}")
    mlflow.log_figure(figures.selection_figure(table), "figures/selection_by_k.png")
    mlflow.log_figure(
        figures.projection_figure(result.design_sample, result.sample_segments, names),
        "figures/projection.png",
    )
    mlflow.log_figure(figures.profile_heatmap(labelled), "figures/profile_heatmap.png")
    # the input schema only (names and types), never customer values
    columns = {c: pd.Series(dtype="float64") for c in result.columns.numeric}
    columns |= {c: pd.Series(dtype="object") for c in result.columns.categorical}
    with warnings.catch_warnings():  # its hint about missing integers: segment labels are never missing
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(pd.DataFrame(columns)[result.columns.all], pd.Series([0], dtype="int64"))
    chatter = io.StringIO()  # the registry prints progress to stderr; the console keeps to our own lines
    with contextlib.redirect_stderr(chatter):
        mlflow.sklearn.log_model(
            result.pipeline, name="segmentation_model", serialization_format="cloudpickle", signature=signature,
            registered_model_name=REGISTERED_MODEL, pip_requirements=model_requirements(),
        )  # fmt: skip
    return chatter.getvalue().strip()


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
    mlflow_tracking: MlflowTracking,
    customer_features: pd.DataFrame,
    clean_customers: pd.DataFrame,
):
    from seg_pipeline.segmentation.fit import fit_segmentation, observed_churn
    from seg_pipeline.segmentation.profiles import long_deviations, migration_summary
    from seg_pipeline.segmentation.selection import selection_markdown

    mlflow_tracking.client()  # an unavailable tracking store fails here, before minutes of fitting
    cfg = settings.get()
    as_of = run_as_of(context, cfg)
    warehouse = str(cfg.warehouse_path)
    previous_devs = read_previous(warehouse, SCHEMA, "segment_deviations")
    previous_clusters = read_previous(warehouse, SCHEMA, "customer_clusters")
    try:
        result = fit_segmentation(
            customer_features,
            config=cfg.segmentation,
            categorical=cfg.customer_attributes.categorical,
            attributes=cfg.customer_attributes.names,
            churned=observed_churn(customer_features, clean_customers, cfg.churn),
            previous_deviations=previous_devs,
            previous_assignments=previous_clusters,
        )
    except SegPipelineError as exc:  # the data or config, not the machine: a rerun would fail the same way
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    for note in result.notes:
        context.log.warning(note)
    chosen = result.selection.chosen
    tags = {"dagster_run_id": current_run_id(context), "as_of": as_of.isoformat(), "stage": "segmentation"}
    params = {
        "as_of": as_of.isoformat(),
        "customers": len(customer_features),
        "features": ", ".join(result.columns.all),
        "k_range": f"{cfg.segmentation.k_min}-{cfg.segmentation.k_max}",
        "algorithms": ", ".join(cfg.segmentation.algorithms),
        "fit_sample": cfg.segmentation.fit_sample,
        "stability_resamples": cfg.segmentation.stability_resamples,
        "seed": cfg.segmentation.seed,
        "selected": chosen["candidate"],
        "micro_segments": len(result.micro),
    }
    with mlflow_tracking.start_run(EXPERIMENT, f"segmentation {as_of.isoformat()}", tags) as (mlflow, run):
        registry_note = _log_to_mlflow(mlflow, result, params)
        run_url = mlflow_tracking.run_url(run.info.experiment_id, run.info.run_id)
        run_id = run.info.run_id
    if registry_note:
        context.log.info(registry_note)
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
    yield dg.Output(
        result.selection.table, "segmentation_candidates",
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
    stages = assign_lifecycle(customer_features, settings.get().lifecycle)
    counts = lifecycle_counts(stages)
    return dg.Output(
        stages, metadata={"dagster/row_count": len(stages), **{f"stage/{k}": v for k, v in counts.items()}}
    )


segmentation_assets = [segmentation, lifecycle_stage]
