"""The resources every run binds: the settings (run config: the config file and overrides) and the ones
derived from them at run time, so a run's overrides (e.g. `seg-pipeline run --home`) move all of them."""

from __future__ import annotations

from seg_pipeline.config import Settings
from seg_pipeline.platform.settings import PipelineSettings
from seg_pipeline.platform.tracking import mlflow_tracking_resource
from seg_pipeline.platform.validations import validations_resource
from seg_pipeline.platform.warehouse import warehouse_io_manager, warehouse_resource


def resources(settings: Settings, source: PipelineSettings | None = None) -> dict:
    """``source``: where the run's settings come from (the code location: $SEG_CONFIG; the CLI: its flags);
    by default ``settings`` itself, as overrides."""
    return {
        "settings": source if source is not None else PipelineSettings.of(settings),
        "warehouse": warehouse_resource,
        "io_manager": warehouse_io_manager,
        "mlflow_tracking": mlflow_tracking_resource,
        "validations": validations_resource,
    }
