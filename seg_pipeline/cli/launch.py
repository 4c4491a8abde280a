"""Runs jobs on the Dagster instance in $DAGSTER_HOME and reads back their outcome, for the CLI."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from seg_pipeline.platform.runs import INTERRUPTED, error_text, stop_on_signals, stop_requested

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
    step: str  # Dagster's step key
    status: str  # running, retrying, succeeded, failed, skipped
    seconds: float | None = None
    rows: int | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    checks_passed: int = 0
    checks_failed: int = 0
    attempts: int = 1
    retry_in: float | None = None  # seconds until the next attempt, while retrying
    started_at: float | None = None
    name: str = ""  # for people: a check's step reads `raw_orders · quality`, not its key

    @property
    def label(self) -> str:
        return self.name or self.step


def check_step_name(asset: str, check: str) -> str:
    """`raw_orders · quality` for the check raw_orders_quality on raw_orders (whose step key repeats the asset
    name: raw_orders_raw_orders_quality); the asset's own name is not repeated."""
    for prefix in (asset.replace("/", "_") + "_", asset.rsplit("/", 1)[-1] + "_"):
        if check.startswith(prefix) and check != prefix:
            return f"{asset} · {check.removeprefix(prefix)}"
    return f"{asset} · {check}"


@dataclass
class RunOutcome:
    run_id: str
    job: str
    success: bool
    steps: list[StepOutcome] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)  # planned steps that never started (upstream failed)
    signalled: bool = False  # SIGINT or SIGTERM arrived while it executed

    @property
    def failed_steps(self) -> list[StepOutcome]:
        return [s for s in self.steps if s.status == "failed"]

    @property
    def interrupted(self) -> bool:
        """Stopped by a signal (a run that completed before the signal took effect is not)."""
        return not self.success and (self.signalled or any(s.error == INTERRUPTED for s in self.failed_steps))

    @property
    def failure_reason(self) -> str | None:
        """Every failed step with its error: the expectations of failed gates, then the other steps."""
        failed = self.failed_steps
        if not failed:
            return None if self.success else "the run did not complete (see the run's logs in the UI)"
        checks = [note for step in failed for note in step.notes if note.startswith("check ")]
        others = [s for s in failed if not any(note.startswith("check ") for note in s.notes)]
        lines = [f"step {step.label} failed: {step.error}" for step in others]
        if checks:  # a failed gate: say which expectations failed, not Dagster's wrapper error
            return "quality gate failed; nothing downstream ran.\n  " + "\n  ".join(checks + lines)
        if len(lines) == 1:
            return lines[0]
        return f"{len(lines)} steps failed:\n  " + "\n  ".join(lines)


# What a StepListener is told: "planned" (once per step, before the run starts), "started",
# "retry" (the step failed and will run again after step.retry_in seconds) and "finished".
StepListener = Callable[[str, StepOutcome], None]
# Tags the run `execute` starts, so the watcher can find it while it runs.
INVOCATION_TAG = "seg_pipeline/cli_invocation"
# Which process executes the run in-process: when that process dies (SIGKILL, OOM, power), nothing else
# records the run's end; the next `run` or `status` on this host finds it and marks it failed.
HOST_TAG, PROCESS_TAG = "seg_pipeline/host", "seg_pipeline/process"
POLL_SECONDS = 0.4


class OutcomeBuilder:
    """Folds a run's event log into one StepOutcome per step.

    The only reader of step events: ``execute`` feeds it while the run goes (so a listener sees each
    step start and finish) and drains the rest at the end, then asks it for the RunOutcome.
    """

    def __init__(self, listener: StepListener | None = None):
        self.listener = listener
        self.planned: dict[str, None] = {}  # step keys in plan order
        self.names: dict[str, str] = {}  # step key -> name for people (check steps)
        self.steps: dict[str, StepOutcome] = {}

    def _tell(self, what: str, step: StepOutcome) -> None:
        if self.listener is not None:
            self.listener(what, step)

    def add(self, entry) -> None:
        """One EventLogEntry, in log order."""
        from dagster import DagsterEventType as T

        event = entry.dagster_event
        if event is None or event.step_key is None:
            return
        key, kind, ts = event.step_key, event.event_type, entry.timestamp
        if kind in (T.ASSET_MATERIALIZATION_PLANNED, T.ASSET_CHECK_EVALUATION_PLANNED):
            if key not in self.planned:
                if kind == T.ASSET_CHECK_EVALUATION_PLANNED:  # a step that only checks: named by its check
                    planned = event.event_specific_data
                    self.names[key] = check_step_name(planned.asset_key.to_user_string(), planned.check_name)
                self.planned[key] = None
                self._tell("planned", self._new(key, "planned"))
            return
        if kind == T.STEP_START:
            step = self.steps[key] = self._new(key, "running", started_at=ts)
            self._tell("started", step)
            return
        if kind == T.STEP_SKIPPED:
            step = self.steps.setdefault(key, self._new(key, "skipped", started_at=ts))
            step.status = "skipped"
            self._tell("finished", step)
            return
        step = self.steps.get(key)
        if step is None and kind == T.STEP_FAILURE:  # its start was never recorded (e.g. the disk was full)
            step = self.steps[key] = self._new(key, "running", started_at=ts)
        if step is None:  # engine events about steps that never started
            return
        if kind == T.STEP_RESTARTED:
            step.status, step.attempts, step.retry_in = "running", step.attempts + 1, None
            self._tell("started", step)
        elif kind == T.STEP_UP_FOR_RETRY:
            data = event.event_specific_data
            step.status, step.retry_in = "retrying", data.seconds_to_wait
            step.error = error_text(data.error)
            self._tell("retry", step)
        elif kind in (T.STEP_SUCCESS, T.STEP_FAILURE):
            step.seconds = ts - (step.started_at if step.started_at is not None else ts)
            step.retry_in = None
            if kind == T.STEP_SUCCESS:
                step.status, step.error = "succeeded", None
            else:
                step.status = "failed"
                step.error = error_text(event.step_failure_data.error)
            self._tell("finished", step)
        elif kind == T.ASSET_MATERIALIZATION:
            self._materialization(step, event.step_materialization_data.materialization.metadata)
        elif kind == T.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if evaluation.passed:
                step.checks_passed += 1
            else:
                step.checks_failed += 1
                verb = "warned" if evaluation.severity.value == "WARN" else "failed"
                step.notes.append(
                    f"check {evaluation.check_name} {verb}: {evaluation.description or ''}".strip()
                )

    def _new(self, key: str, status: str, started_at: float | None = None) -> StepOutcome:
        return StepOutcome(step=key, status=status, started_at=started_at, name=self.names.get(key, ""))

    @staticmethod
    def _materialization(step: StepOutcome, metadata) -> None:
        # a row count where it counts customers, events or segments; the model's one-row summary, the
        # drift table (one row per feature compared) and the outcomes (metric rows) say what they hold instead
        if "published_model" in metadata:
            step.notes.append(f"published model: {metadata['published_model'].value}")
        elif "psi_threshold" in metadata:
            first = str(metadata["reference"].value).startswith("none")
            step.notes.append(
                "no earlier publish to compare with" if first
                else f"drifted since the last publish: {metadata['flagged'].value}"
            )  # fmt: skip
        elif "runs_judged" in metadata:  # realized_outcomes: what an earlier publish's scores met
            if metadata["runs_judged"].value:
                auc = metadata.get("latest/roc_auc")
                step.notes.append(f"judged the scores of {metadata['latest_scored_as_of'].value}"
                                  + (f": realized ROC-AUC {auc.value:.3f}" if auc is not None else ""))  # fmt: skip
            else:
                step.notes.append("no earlier publish whose horizon has passed")
        elif "dagster/row_count" in metadata and step.rows is None:  # a multi-asset's first output: its table
            step.rows = int(metadata["dagster/row_count"].value)
        if "selected" in metadata:
            step.notes.append(f"selected {metadata['selected'].value}")
        if "mlflow_run" in metadata:
            step.links["MLflow run"] = str(metadata["mlflow_run"].value)
        if "report_path" in metadata:
            step.links["report"] = str(metadata["report_path"].value)
        if "stores" in metadata:
            step.links["published to"] = str(metadata["stores"].value)
        nulled = metadata.get("values_coerced_to_null")
        if nulled is not None and nulled.value:
            step.notes.append(f"{nulled.value} unparseable optional values set to missing")

    def outcome(self, run_id: str, job_name: str, success: bool) -> RunOutcome:
        not_run = [key for key in self.planned if key not in self.steps]
        steps = list(self.steps.values())  # in the order they started
        return RunOutcome(run_id=run_id, job=job_name, success=success, steps=steps, not_run=not_run)


class _RunWatcher:
    """Feeds the builder from the event log of the run tagged ``token`` while it executes (a thread)."""

    def __init__(self, instance, token: str, builder: OutcomeBuilder):
        self.instance, self.token, self.builder = instance, token, builder
        self.run_id: str | None = None
        self.last_id = 0  # storage id of the last record fed
        self.cursor: str | None = None  # the event log's cursor after the last page read to its end
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="seg-pipeline-run-watcher", daemon=True)

    def __enter__(self) -> _RunWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            # a busy store or a listener that cannot print: the next poll or the final drain catches up
            with contextlib.suppress(Exception):
                self.poll()

    def poll(self) -> None:
        """Feed every record after the last one read (none before the run exists)."""
        import dagster as dg

        if self.run_id is None:
            runs = self.instance.get_runs(filters=dg.RunsFilter(tags={INVOCATION_TAG: self.token}), limit=1)
            if not runs:
                return
            self.run_id = runs[0].run_id
        while True:
            page = self.instance.get_records_for_run(self.run_id, cursor=self.cursor, limit=1000)
            for record in page.records:
                if record.storage_id <= self.last_id:  # fed before a poll that stopped mid-page
                    continue
                self.last_id = record.storage_id  # before add: a record is never fed twice
                self.builder.add(record.event_log_entry)
            self.cursor = page.cursor
            if not page.has_more:
                return


@contextlib.contextmanager
def standard_streams_kept():
    """File descriptors 1 and 2 as they were before the run, whatever happened to them during it.

    Dagster's compute-log capture points them at a log file in the home for the whole run and points them
    back as the run ends, but only after flushing, outside its ``finally``: when the flush fails (a full
    disk), they stay on that file and every later line of the command, its error included, was lost. Glue
    until Dagster restores them unconditionally."""
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)  # a no-op when Dagster put them back (same open file)
            os.close(copy)


@dataclass(frozen=True)
class SettingsSource:
    """Where a run's settings come from: the config file (None: $SEG_CONFIG or defaults) and the overrides
    (dotted key -> YAML value) of `--set`, `--home` and `--as-of`."""

    config_file: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)


def execute(
    job_name: str,
    source: SettingsSource,
    working_directory: str | None = None,
    tags: dict[str, str] | None = None,
    log_level: str = "CRITICAL",
    listener: StepListener | None = None,
    left_out: set[str] | None = None,
) -> RunOutcome:
    """Execute ``job_name`` of the seg_pipeline definitions on the instance in $DAGSTER_HOME.

    The job is built from ``source`` (seg_pipeline.definitions.job_for_cli) and the run's config repeats it
    for the settings resource, so the run records what it was told and re-executing it in the UI repeats it.
    ``listener`` (if given) is told about each step as it starts and finishes, from a watcher thread that polls
    the run's event log, and from this thread for the events left after the run ended. ``left_out``: names of
    the job's assets not to materialize (a rescore's reused ingestion).
    """
    import dagster as dg

    from seg_pipeline.platform.settings import run_config

    job = dg.build_reconstructable_job(
        "seg_pipeline.definitions", "job_for_cli", reconstructable_args=(job_name,),
        reconstructable_kwargs={"config_file": source.config_file, "overrides": dict(source.overrides),
                                "left_out": sorted(left_out or ())},
        reconstructor_working_directory=working_directory or os.getcwd(),
    )  # fmt: skip
    token = uuid.uuid4().hex
    builder = OutcomeBuilder(listener)
    process = {HOST_TAG: socket.gethostname(), PROCESS_TAG: _process_identity(os.getpid())}
    with standard_streams_kept(), stop_on_signals(), dg.DagsterInstance.get() as instance:
        watcher = _RunWatcher(instance, token, builder)
        with watcher if listener is not None else contextlib.nullcontext():
            result = dg.execute_job(
                job,
                instance=instance,
                raise_on_error=False,
                tags={**(tags or {}), INVOCATION_TAG: token, **process},
                # the CLI prints its own lines; Dagster's console log (with tracebacks) only on --verbose
                run_config={**run_config(source.overrides, source.config_file),
                            "loggers": {"console": {"config": {"log_level": log_level}}}},
            )  # fmt: skip
        watcher.run_id = result.run_id
        watcher.poll()  # the events the watcher had not read yet (all of them without a listener)
        outcome = builder.outcome(result.run_id, job_name, result.success)
        outcome.signalled = stop_requested()
        return outcome


def plan_rescore(settings):
    """Which sources a rescore reuses (platform/rescore.py), judged on this instance and warehouse."""
    import dagster as dg

    from seg_pipeline.platform.rescore import plan_rescore as plan
    from seg_pipeline.publish.stores import existing_tables

    with dg.DagsterInstance.get() as instance:
        return plan(settings, instance, existing_tables(str(settings.warehouse_path)))


@contextlib.contextmanager
def home_lock(home: Path, on_wait: Callable[[str], None] | None = None):
    """One `seg-pipeline run` at a time per home: the embedded warehouse, the GX project and the publish
    of two refreshes must not interleave. Waits (telling ``on_wait`` who holds it) for the run before to
    end; the kernel releases the lock when its process ends, however it ends (SIGKILL included)."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "run.lock"
    with path.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                handle.seek(0)
                on_wait(handle.read().strip() or "another process")
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        handle.write(f"seg-pipeline run (pid {os.getpid()}, started {started})")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _process_identity(pid: int) -> str:
    """``pid:start-time`` (Linux /proc), so a recycled pid is never taken for the process that died."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return f"{pid}:{fields[19]}"  # field 22 of stat: start time in clock ticks after boot
    except (OSError, IndexError):
        return f"{pid}:"


def _process_alive(identity: str) -> bool:
    pid, _, started = identity.partition(":")
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True  # another user's process, or a tag we do not understand: leave the run alone
    return not started or _process_identity(int(pid)) == identity


ABANDONED = "the process executing this run ended without finishing it (killed, out of memory or a crash)"


def fail_abandoned_runs(instance=None) -> list[str]:
    """Mark failed the runs this host executed in-process whose process is gone; returns their run ids.

    Runs launched by the daemon or the UI are watched by Dagster's run monitoring instead; these carry no
    process tag and are left alone. Without ``instance``, the one in $DAGSTER_HOME.
    """
    import dagster as dg

    if instance is None:
        with dg.DagsterInstance.get() as instance:
            return fail_abandoned_runs(instance)

    statuses = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
    host = socket.gethostname()
    abandoned = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=statuses, tags={HOST_TAG: host})):
        identity = run.tags.get(PROCESS_TAG)
        if identity and not _process_alive(identity):
            instance.report_run_failed(run, message=ABANDONED)
            storage = instance.event_log_storage
            if storage.supports_global_concurrency_limits:
                # a pool slot the dead run had claimed (seg_publish) would otherwise block every later publish
                storage.free_concurrency_slots_for_run(run.run_id)
            abandoned.append(run.run_id)
    return abandoned




@dataclass
class RunSummary:
    run_id: str
    job: str
    status: str
    started: dt.datetime | None
    seconds: float | None
    failures: list[str] = field(default_factory=list)  # "step: error" of every failed step


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
                    failures=_failures(instance, run.run_id) if run.status.value in STOPPED else [],
                )
            )
        return out


STOPPED = ("FAILURE", "CANCELED")  # statuses whose failed steps `status` lists


def _failures(instance, run_id: str) -> list[str]:
    """Every failed step of the run with its error, in order; else the run's own failure message."""
    from dagster import DagsterEventType

    failed: dict[str, str] = {}
    for record in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        failed[record.dagster_event.step_key] = error_text(record.dagster_event.step_failure_data.error)
    if failed:
        return [f"{step}: {error}" for step, error in failed.items()]
    for record in instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE):
        return [record.dagster_event.message or record.user_message]
    return []
