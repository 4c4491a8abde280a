"""The code location: one Definitions object built from the resolved settings (config.py)."""

from __future__ import annotations

import dagster as dg

from seg_pipeline.assets.churn import churn_assets, churn_checks
from seg_pipeline.assets.clean import clean_assets
from seg_pipeline.assets.features import customer_features
from seg_pipeline.assets.outcomes import outcome_assets, outcome_checks
from seg_pipeline.assets.publish import (
    population_drift,
    publish_checks,
    published_tables_asset,
    segment_report,
)
from seg_pipeline.assets.quality import (
    clean_quality_checks,
    published_quality_checks,
    raw_quality_checks,
    stage_quality_checks,
)
from seg_pipeline.assets.raw import raw_assets
from seg_pipeline.assets.segmentation import segmentation_assets
from seg_pipeline.automation import failure_alert_sensor, landing_sensor, nightly_schedule
from seg_pipeline.config import Settings, load_settings
from seg_pipeline.jobs import full_refresh_job, rescore_job, stoppable_in_process_executor
from seg_pipeline.resources import PipelineSettings, PublishTarget
from seg_pipeline.tracking import MlflowTracking
from seg_pipeline.warehouse import WarehouseIOManager


def build_definitions(settings: Settings) -> dg.Definitions:
    settings.home.mkdir(parents=True, exist_ok=True)
    assets = [
        *raw_assets(settings),
        *clean_assets,
        customer_features,
        *segmentation_assets,
        *churn_assets,
        *outcome_assets,
        population_drift,
        published_tables_asset(settings),
        segment_report,
    ]
    owners = settings.orchestration.owners
    return dg.Definitions(
        assets=dg.map_asset_specs(lambda spec: spec.replace_attributes(owners=owners), assets),
        asset_checks=[
            *raw_quality_checks,
            *clean_quality_checks,
            *stage_quality_checks,
            *churn_checks,
            *outcome_checks,
            *publish_checks,
            *published_quality_checks,
        ],  # fmt: skip
        jobs=[full_refresh_job, rescore_job],
        schedules=[nightly_schedule(settings)],
        sensors=[landing_sensor(settings), failure_alert_sensor(settings)],
        resources={
            "settings": PipelineSettings.of(settings),
            "publish_target": PublishTarget.of(settings),
            "mlflow_tracking": MlflowTracking.of(settings),
            "io_manager": WarehouseIOManager(
                database=str(settings.warehouse_path),
                handoff_memory_mb=settings.orchestration.handoff_budget_mb,
            ),
        },
        # One process: the embedded DuckDB warehouse takes a single writer, and subprocess start-up
        # per step would cost more than the steps. Deployments can swap in another executor (then a Ctrl-C
        # of `seg-pipeline run` is left to that executor's own interrupt handling).
        executor=stoppable_in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by `dagster dev -w workspace.yaml` and by `seg-pipeline run`; settings from SEG_CONFIG / SEG_*."""
    return build_definitions(load_settings())
