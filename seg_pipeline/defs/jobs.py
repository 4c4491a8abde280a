"""Jobs: what a run materializes."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from seg_pipeline.platform.runs import (
    INTERRUPTED,
    interrupt_current_step,
    step_ended_after_stop,
    stop_requested,
)

FULL_REFRESH = "full_refresh"
RESCORE = "rescore"
# Both jobs publish; dagster.yaml limits runs carrying this tag to one at a time (queued runs from the UI,
# the schedule and the sensor), and the publish step's pool to one slot (every run, also the CLI's).
PUBLISHES_TAG = {"seg_pipeline/publishes": "true"}
STARTS = (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_RESTARTED)
ENDS = (
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.STEP_UP_FOR_RETRY,
)


class _StopBeforeNextStep(dg.Executor):
    """Dagster's executor, plus: once `seg-pipeline run` was asked to stop (runner.stop_on_signals), the run
    is marked canceling and each step fails as interrupted as it starts, before it reads an input. So a
    Ctrl-C whose exception Python lost (in a finalizer) still stops the run before it publishes."""

    def __init__(self, inner: dg.Executor):
        self._inner = inner

    @property
    def retries(self):
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config

    def execute(self, plan_context, execution_plan):
        canceling = False
        run, instance = plan_context.dagster_run, plan_context.instance
        for event in self._inner.execute(plan_context, execution_plan):
            if stop_requested():
                if not canceling:  # the run ends CANCELED, not as a failure of the pipeline
                    instance.report_run_canceling(run, message=f"stopping: {INTERRUPTED}")
                    canceling = True
                if event.event_type in STARTS:
                    interrupt_current_step()
                elif event.event_type in ENDS:
                    step_ended_after_stop()
            yield event


@dg.executor(name="in_process", config_schema=dg.in_process_executor.config_schema)
def stoppable_in_process_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """The in-process executor (definitions.py) that `seg-pipeline run` can always stop."""
    return _StopBeforeNextStep(dg.in_process_executor.executor_creation_fn(init_context))


SELECTIONS = {
    FULL_REFRESH: dg.AssetSelection.all(),
    # Fresh features scored by the current champion: no segmentation fit and no training. Segments and the
    # champion's URI come from the last full refresh (loaded from the warehouse).
    RESCORE: dg.AssetSelection.groups("raw", "clean", "outcomes", "published")
    | dg.AssetSelection.assets("customer_features", "lifecycle_stage", "churn_scores", "action_tiers",
                               "retention_segment", "segment_churn_risk"),
}  # fmt: skip
DESCRIPTIONS = {
    FULL_REFRESH: "Every asset from the raw extracts to the published tables.",
    RESCORE: "Refresh features, score every customer with the champion churn model (no retraining) and "
    "publish; segments come from the last full refresh.",
}


def job(name: str, left_out: Sequence[str] = ()) -> dg.UnresolvedAssetJobDefinition:
    """The job ``name``; without the assets ``left_out`` (a rescore's reused ingestion: their checks go too)."""
    selection = SELECTIONS[name] - dg.AssetSelection.assets(*left_out) if left_out else SELECTIONS[name]
    return dg.define_asset_job(name, selection=selection, description=DESCRIPTIONS[name], tags=PUBLISHES_TAG)


full_refresh_job, rescore_job = job(FULL_REFRESH), job(RESCORE)


def definitions(jobs: Sequence[dg.UnresolvedAssetJobDefinition]) -> dg.Definitions:
    return dg.Definitions(jobs=list(jobs), executor=stoppable_in_process_executor)
