"""The code location: one Definitions merged from the stage modules of defs/, built from the settings.

`dagster dev -w workspace.yaml` loads ``defs`` (settings from $SEG_CONFIG and SEG_* variables); `seg-pipeline
run` launches ``job_for_cli`` with its own flags (cli/launch.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg

from seg_pipeline.config import Settings, load_settings
from seg_pipeline.defs import (
    automation,
    churn,
    clean,
    features,
    jobs,
    outcomes,
    publish,
    quality,
    raw,
    segmentation,
)
from seg_pipeline.defs.resources import resources
from seg_pipeline.platform.settings import PipelineSettings

STAGES = (raw, clean, features, segmentation, churn, outcomes, publish, quality)


def build_definitions(settings: Settings, source: PipelineSettings | None = None,
                      left_out: Sequence[str] = ()) -> dg.Definitions:  # fmt: skip
    """Every stage's definitions merged, with the jobs, automation and resources; ``source``: where runs take
    their settings from (defs/resources.py); ``left_out``: assets the jobs leave out (job_for_cli)."""
    settings.home.mkdir(parents=True, exist_ok=True)
    owners = settings.orchestration.owners
    stages = [stage.definitions(settings) for stage in STAGES]
    job_defs = {name: jobs.job(name, left_out) for name in jobs.SELECTIONS}
    merged = dg.Definitions.merge(
        *stages,
        automation.definitions(settings, job_defs),
        # One process (jobs.py): the embedded DuckDB warehouse takes a single writer, and subprocess start-up
        # per step would cost more than the steps. Deployments can swap in another executor.
        jobs.definitions(list(job_defs.values())),
        dg.Definitions(resources=resources(settings, source)),
    )
    return dg.Definitions(
        assets=dg.map_asset_specs(lambda spec: spec.replace_attributes(owners=owners), merged.assets),
        asset_checks=merged.asset_checks, jobs=merged.jobs, schedules=merged.schedules, sensors=merged.sensors,
        resources=merged.resources, executor=merged.executor,
    )  # fmt: skip


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by `dagster dev -w workspace.yaml`: settings from $SEG_CONFIG and SEG_* variables."""
    settings = load_settings()
    return build_definitions(settings, PipelineSettings())


def job_for_cli(job_name: str, config_file: str | None = None, overrides: Mapping[str, str] | None = None,
                left_out: Sequence[str] = ()) -> dg.JobDefinition:  # fmt: skip
    """The job `seg-pipeline run` launches (cli/launch.py, through dg.build_reconstructable_job): built from the
    CLI's config file and overrides, which the run's config repeats for the settings resource. ``left_out``:
    assets the run does not materialize (a rescore's reused ingestion; their checks go with them)."""
    items = [f"{key}={value}" for key, value in (overrides or {}).items()]
    settings = load_settings(config_file, items)
    source = PipelineSettings(config_file=config_file, overrides=dict(overrides or {}))
    return build_definitions(settings, source, left_out).resolve_job_def(job_name)
