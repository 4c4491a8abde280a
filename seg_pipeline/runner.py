"""Runs jobs on the Dagster instance in $DAGSTER_HOME and reads back their outcome, for the CLI."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

DAGSTER_YAML = """\
# Dagster instance for seg-pipeline (sqlite storage in this folder). See dagster.yaml.example in the
# repository for a PostgreSQL-backed instance.
telemetry:
  enabled: false
concurrency:
  # the publish step (pool seg_publish) takes the only slot: two refreshes never publish at once
  pools:
    default_limit: 1
    granularity: op
  # queued runs (UI, schedule, sensor) that publish run one at a time
  runs:
    tag_concurrency_limits:
      - key: seg_pipeline/publishes
        limit: 1
"""


def prepare_dagster_home(default: Path) -> Path:
    """Use $DAGSTER_HOME if set, else ``default``; make sure it exists and has a dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or default).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML, encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@dataclass
class StepOutcome:
    step: str
    status: str
    seconds: float | None = None
    rows: int | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)


@dataclass
class RunOutcome:
    run_id: str
    job: str
    success: bool
    steps: list[StepOutcome] = field(default_factory=list)

    @property
    def failure_reason(self) -> str | None:
        failed = [s for s in self.steps if s.status == "failed"]
        if not failed:
            return None if self.success else "the run did not complete (see the run's logs in the UI)"
        first = failed[0]
        checks = [note for step in failed for note in step.notes if note.startswith("check ")]
        if checks:  # a failed gate: say which expectations failed, not Dagster's wrapper error
            return "quality gate failed; nothing downstream ran.\n  " + "\n  ".join(checks)
        return f"step {first.step} failed: {first.error}"


def execute(
    job_name: str,
    working_directory: str | None = None,
    tags: dict[str, str] | None = None,
    log_level: str = "CRITICAL",
) -> RunOutcome:
    """Execute ``job_name`` from the seg_pipeline code location on the instance in $DAGSTER_HOME."""
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    # Same pointer as `dagster job execute -m seg_pipeline.definitions -a defs`, so the run is
    # recorded against the code location the UI loads and can be re-executed from there.
    repository = ReconstructableRepository.for_module(
        "seg_pipeline.definitions", "defs", working_directory=working_directory or os.getcwd()
    )
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(
            repository.get_reconstructable_job(job_name),
            instance=instance,
            raise_on_error=False,
            tags=tags,
            # the CLI prints its own summary; Dagster's console log (with tracebacks) only on --verbose
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        return _outcome(instance, result.run_id, job_name, result.success)


def _outcome(instance, run_id: str, job_name: str, success: bool) -> RunOutcome:
    from dagster import DagsterEventType

    steps: dict[str, StepOutcome] = {}
    started: dict[str, float] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.step_key is None:
            continue
        key = event.step_key
        outcome = steps.setdefault(key, StepOutcome(step=key, status="started"))
        if event.event_type == DagsterEventType.STEP_START:
            started[key] = record.timestamp
        elif event.event_type == DagsterEventType.STEP_SUCCESS:
            outcome.status = "succeeded"
            outcome.seconds = record.timestamp - started.get(key, record.timestamp)
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            outcome.status = "failed"
            outcome.seconds = record.timestamp - started.get(key, record.timestamp)
            outcome.error = error_text(event.step_failure_data.error)
        elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            metadata = event.step_materialization_data.materialization.metadata
            if (
                "dagster/row_count" in metadata and outcome.rows is None
            ):  # a multi-asset's first output is its table
                outcome.rows = int(metadata["dagster/row_count"].value)
            if "selected" in metadata:
                outcome.notes.append(f"selected {metadata['selected'].value}")
            if "mlflow_run" in metadata:
                outcome.links["MLflow run"] = str(metadata["mlflow_run"].value)
            if "report_path" in metadata:
                outcome.links["report"] = str(metadata["report_path"].value)
            if "stores" in metadata:
                outcome.links["published to"] = str(metadata["stores"].value)
            nulled = metadata.get("values_coerced_to_null")
            if nulled is not None and nulled.value:
                outcome.notes.append(f"{nulled.value} unparseable optional values set to missing")
        elif event.event_type == DagsterEventType.STEP_SKIPPED:
            outcome.status = "skipped"
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not evaluation.passed:
                outcome.notes.append(
                    f"check {evaluation.check_name} failed: {evaluation.description or ''}".strip()
                )
    ordered = sorted(steps.values(), key=lambda s: started.get(s.step, float("inf")))
    return RunOutcome(run_id=run_id, job=job_name, success=success, steps=ordered)


def error_text(error) -> str:
    """The sentence a user needs: the innermost cause, without Dagster's wrapper."""
    if error is None:
        return "unknown error"
    while error.cause is not None and error.cls_name == "DagsterExecutionStepExecutionError":
        error = error.cause
    return _first_line_block(error.message)


def _first_line_block(message: str) -> str:
    # Dagster prefixes a Failure with the exception type; users want the sentence we wrote.
    text = message.strip()
    for prefix in ("dagster._core.definitions.events.Failure: ", "Failure: "):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text


@dataclass
class RunSummary:
    run_id: str
    job: str
    status: str
    started: dt.datetime | None
    seconds: float | None
    failure: str | None = None


def recent_runs(limit: int = 10) -> list[RunSummary]:
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        out = []
        for record in instance.get_run_records(limit=limit):
            run = record.dagster_run
            start = record.start_time
            end = record.end_time
            out.append(
                RunSummary(
                    run_id=run.run_id,
                    job=run.job_name,
                    status=run.status.value,
                    started=dt.datetime.fromtimestamp(start, dt.UTC) if start else None,
                    seconds=(end - start) if start and end else None,
                    failure=_first_failure(instance, run.run_id) if run.status.value == "FAILURE" else None,
                )
            )
        return out


def _first_failure(instance, run_id: str) -> str | None:
    from dagster import DagsterEventType

    for record in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        return f"{record.dagster_event.step_key}: {error_text(record.dagster_event.step_failure_data.error)}"
    return None
