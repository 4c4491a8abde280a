"""Checks shared by the churn and segmentation tests on how a training run reads in MLflow: its source, its
description and its start and end against the Dagster step that did the work."""

from __future__ import annotations

import math
from dataclasses import dataclass

import dagster as dg


@dataclass
class StepWindow:
    """When a Dagster step started and succeeded, in MLflow's unit (milliseconds since the epoch)."""

    start_ms: int
    end_ms: int


def step_window(instance: dg.DagsterInstance, run_id: str, step_key: str) -> StepWindow:
    types = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
    times = {
        entry.dagster_event.event_type: entry.timestamp
        for entry in instance.all_logs(run_id, of_type=types)
        if entry.step_key == step_key
    }
    # MLflow truncates to whole milliseconds: the window is widened to whole milliseconds either side
    return StepWindow(
        start_ms=math.floor(times[dg.DagsterEventType.STEP_START] * 1000),
        end_ms=math.ceil(times[dg.DagsterEventType.STEP_SUCCESS] * 1000),
    )


def assert_run_spans_the_work(run, window: StepWindow) -> None:
    """The MLflow run opened inside the step before any fitting could have ended, and lasted at least as
    long as the fitting it logs (fit_seconds); a run opened only to log the finished fit does neither."""
    fit_ms = run.data.metrics["fit_seconds"] * 1000
    start, end = run.info.start_time, run.info.end_time
    assert run.info.status == "FINISHED"
    assert window.start_ms <= start <= end <= window.end_ms, (window, start, end)
    assert start - window.start_ms < fit_ms, "the run started after the fit could have finished"
    assert end - start >= fit_ms, f"the run lasted {end - start} ms, the fit {fit_ms:.0f} ms"


def assert_source_is_the_job(run, instance: dg.DagsterInstance, dagster_run_id: str, asset: str) -> None:
    job = instance.get_run_by_id(dagster_run_id).job_name
    tags = run.data.tags
    assert tags["mlflow.source.name"] == f"seg-pipeline {job} / {asset}"
    assert tags["mlflow.source.type"] == "JOB"
    assert tags["dagster_run_id"] == dagster_run_id


def assert_names_no_customer(text: str, customer_ids) -> None:
    leaked = [i for i in customer_ids if str(i) in text]
    assert not leaked, leaked[:5]
