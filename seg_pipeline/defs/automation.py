"""When runs start and what happens when they fail: nightly schedule, landing-folder sensor, failure alerts.

All three need the Dagster daemon (`dagster dev` runs one). The schedule and the landing sensor start
stopped, so nothing runs until someone turns them on in the UI; the alert sensor starts running.
"""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg

from seg_pipeline.config import Settings
from seg_pipeline.defs.jobs import FULL_REFRESH, RESCORE, full_refresh_job, rescore_job
from seg_pipeline.redact import redact
from seg_pipeline.sources.landing import (
    decode_cursor,
    encode_cursor,
    extract_set,
    fingerprint,
    still_settling,
)

EXTRACT_SET_TAG = "seg_pipeline/extract_set"
TRIGGER_TAG = "seg_pipeline/trigger"


def nightly_schedule(settings: Settings, job=full_refresh_job) -> dg.ScheduleDefinition:
    orchestration = settings.orchestration
    return dg.ScheduleDefinition(
        name="nightly_full_refresh",
        job=job,
        cron_schedule=orchestration.schedule_cron,
        execution_timezone=orchestration.schedule_timezone,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        tags={TRIGGER_TAG: "schedule"},
        description=f"full_refresh at '{orchestration.schedule_cron}' ({orchestration.schedule_timezone}); "
        "set orchestration.schedule_cron / schedule_timezone in the config.",
    )


def landing_sensor(settings: Settings, job=full_refresh_job) -> dg.SensorDefinition:
    orchestration = settings.orchestration

    @dg.sensor(
        name="landing_extracts",
        job=job,
        minimum_interval_seconds=orchestration.landing_sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"Starts one full_refresh per new or changed set of extracts in {settings.landing_dir} "
        f"(by content; files must be unchanged for {orchestration.landing_settle_seconds} s).",
    )
    def landing_extracts(context: dg.SensorEvaluationContext):
        last, known = decode_cursor(context.cursor)
        files = extract_set(settings, known)
        if "crm_customers" not in files:
            return dg.SkipReason(
                f"no CRM extract (crm_customers) in {settings.landing_dir} or at its configured path"
            )
        settling = still_settling(files, orchestration.landing_settle_seconds)
        if settling:  # cursor untouched: the set is judged again once it is complete
            return dg.SkipReason(f"waiting for {', '.join(settling)} to stay unchanged for "
                                 f"{orchestration.landing_settle_seconds} s")  # fmt: skip
        current = fingerprint(files)
        if current == last:
            return dg.SensorResult(
                skip_reason=f"extract set {current} already ran", cursor=encode_cursor(files)
            )
        changed = sorted(s for s, f in files.items() if known.get(s) is None or known[s].sha256 != f.sha256)
        changed += sorted(s for s in known if s not in files)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"extracts-{current}",  # Dagster never starts two runs for one key
                    tags={
                        EXTRACT_SET_TAG: current,
                        TRIGGER_TAG: "landing_sensor",
                        "seg_pipeline/changed_sources": ",".join(changed),
                    },
                )  # fmt: skip
            ],
            cursor=encode_cursor(files),
        )

    return landing_extracts


def failure_alert_sensor(settings: Settings, jobs=(full_refresh_job, rescore_job)) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="run_failure_alerts",
        monitored_jobs=list(jobs),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Records every failed full_refresh or rescore run in {settings.alerts_path} "
        "(JSON lines: when, run, job, failed steps, the error).",
    )
    def run_failure_alerts(context: dg.RunFailureSensorContext):
        write_alert(settings, alert_record(context))

    return run_failure_alerts


def alert_record(context: dg.RunFailureSensorContext) -> dict:
    """The alert of a failed run; error texts with passwords and known secrets masked (redact.py)."""
    steps = [
        {"step": event.step_key, "error": redact(_error_text(event))}
        for event in context.get_step_failure_events()
    ]
    message = context.failure_event.message
    return {
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "run_id": context.dagster_run.run_id,
        "job": context.dagster_run.job_name,
        "trigger": context.dagster_run.tags.get(TRIGGER_TAG, "manual"),
        "message": redact(message) if message is not None else None,
        "failed_steps": steps,
    }


def _error_text(event: dg.DagsterEvent) -> str:
    from seg_pipeline.platform.runs import error_text

    return error_text(event.step_failure_data.error) if event.step_failure_data else "unknown error"


def write_alert(settings: Settings, record: dict) -> None:
    settings.alerts_path.parent.mkdir(parents=True, exist_ok=True)
    with settings.alerts_path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def read_alerts(settings: Settings, limit: int = 10) -> list[dict]:
    if not settings.alerts_path.exists():
        return []
    lines = settings.alerts_path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[-limit:] if line.strip()]


def definitions(settings: Settings, jobs: dict) -> dg.Definitions:
    """The schedule and sensors over ``jobs`` (job name -> the job the same Definitions holds)."""
    from seg_pipeline.platform.settings import check_schedule

    check_schedule(settings)  # a cron expression Dagster cannot schedule: the config key named
    full_refresh = jobs[FULL_REFRESH]
    return dg.Definitions(
        schedules=[nightly_schedule(settings, full_refresh)],
        sensors=[
            landing_sensor(settings, full_refresh),
            failure_alert_sensor(settings, [full_refresh, jobs[RESCORE]]),
        ],
    )
