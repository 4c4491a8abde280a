"""What `seg-pipeline` prints: progress bars, one line per step as a run goes, the summary of a run that
succeeded or failed, and errors with what to do about them."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from seg_pipeline.config import Settings
from seg_pipeline.errors import (
    DISK_ERROR,
    FULL,
    READ_ONLY,
    SegPipelineError,
    first_line,
    storage_advice,
    storage_problem,
    storage_problem_of,
    without_statement_dump,
)
from seg_pipeline.links import datadocs_url, report_url
from seg_pipeline.redact import redact

if TYPE_CHECKING:
    from seg_pipeline.cli.launch import RunOutcome, StepOutcome

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNEXPECTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
UI_HOST = "127.0.0.1"
UI_PORT = 3000


# --- progress ---------------------------------------------------------------------------------------


def render_bar(done: int, total: int, label: str, seconds: float, width: int = 30) -> str:
    """``[#########.....................]  30% 6,000/20,000 customers  0.9s``"""
    share = min(max(done / total, 0.0), 1.0) if total else 1.0
    filled = int(share * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {share:4.0%} {done:,}/{total:,} {label}  {seconds:.1f}s"


class Progress:
    """Progress of long work on stderr: on a terminal a bar redrawn in place (at most every ``interval``
    seconds); elsewhere (CI logs, files) one plain line each ``step_percent``, so logs stay readable."""

    def __init__(self, label: str, stream: TextIO | None = None, *, tty: bool | None = None,
                 quiet: bool = False, interval: float = 0.1, step_percent: int = 25,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.label, self.quiet, self.interval, self.step = label, quiet, interval, step_percent
        self.clock = clock
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.started = clock()
        self._last_draw: float | None = None
        self._width = 0  # of the bar last drawn, to blank what a shorter one leaves
        self._next_percent = step_percent

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        now = self.clock()
        if self.tty:
            if done < total and self._last_draw is not None and now - self._last_draw < self.interval:
                return
            self._last_draw = now
            text = "  " + render_bar(done, total, self.label, now - self.started)
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
            self.stream.flush()
            return
        percent = 100 * done // total if total else 100
        if percent >= self._next_percent:
            self.stream.write(f"  {percent:3d}% {done:,}/{total:,} {self.label}  {now - self.started:.1f}s\n")
            self.stream.flush()
            self._next_percent = (percent // self.step + 1) * self.step

    def close(self) -> None:
        """End the bar's line (a terminal only)."""
        if self.tty and self._last_draw is not None and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()


# --- run output -------------------------------------------------------------------------------------

MARKS = {"succeeded": "ok", "failed": "FAIL", "skipped": "skip"}
MAX_STEP_WIDTH = 52


def step_line(what: str, step: StepOutcome, width: int) -> str:
    """The line `run` prints when a step starts, waits for a retry or finishes."""
    name = f"{step.label:<{width}}"
    if what == "started":
        again = f" (attempt {step.attempts})" if step.attempts > 1 else ""
        return f"  ...   {name}  started{again}"
    if what == "retry":
        error = step.error.splitlines()[0] if step.error else "unknown error"
        wait = f"; attempt {step.attempts + 1} in {step.retry_in:.0f}s" if step.retry_in is not None else ""
        return f"  retry {name}  attempt {step.attempts} failed: {error}{wait}"
    rows = f"{step.rows:>10,} {'row' if step.rows == 1 else 'rows'}" if step.rows is not None else ""
    secs = f"{step.seconds:6.1f}s" if step.seconds is not None else ""
    line = f"  {MARKS.get(step.status, step.status):<5} {name} {rows:>15} {secs:>7}"
    if step.status == "failed" and step.attempts > 1:
        line += f"  after {step.attempts} attempts"
    total = step.checks_passed + step.checks_failed
    if total:
        line += f"  checks {step.checks_passed}/{total} passed"
    # failed checks are listed under the run's failure; warnings and other notes here
    notes = [n for n in step.notes if not (n.startswith("check ") and step.status == "failed")]
    if notes:
        line += f"  ({'; '.join(notes)})"
    return line.rstrip()


class StepPrinter:
    """The run's listener: one line per step as it starts and as it finishes."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream
        self.width = 20

    def __call__(self, what: str, step: StepOutcome) -> None:
        if what == "planned":  # every step is planned before the first starts: align on the longest
            self.width = min(max(self.width, len(step.label)), MAX_STEP_WIDTH)
            return
        print(redact(step_line(what, step, self.width)), file=self.stream or sys.stdout, flush=True)


def run_url(run_id: str) -> str:
    return f"http://{UI_HOST}:{UI_PORT}/runs/{run_id}"


def success_summary(outcome: RunOutcome, settings: Settings, dagster_home: Path, seconds: float) -> list[str]:
    """Where the run's results are: report, Data Docs, MLflow runs, published stores, the run in the UI."""
    steps = outcome.steps
    passed = sum(s.checks_passed for s in steps)
    checks = passed + sum(s.checks_failed for s in steps)
    links: dict[str, list[tuple[str, str]]] = {}  # label -> [(url or path, step)]
    for step in steps:
        for label, url in step.links.items():
            links.setdefault(label, []).append((url, step.step))
    lines = [
        f"Run {outcome.run_id} succeeded in {seconds:.1f}s: {len(steps)} steps, {passed}/{checks} checks passed."
    ]
    for path, _ in links.get("report", []):
        lines += [f"  report:       {_served_report(settings, path)}", f"                {path}"]
    lines.append(f"  Data Docs:    {datadocs_url(settings)} (GX results of every gate, per run)")
    lines.append(f"                {settings.datadocs_dir / 'index.html'}")
    lines.append(f"                (`make dev` serves both on {settings.orchestration.docs_url})")
    lines += [f"  MLflow run:   {url} ({step})" for url, step in links.get("MLflow run", [])]
    if "MLflow run" in links:
        lines.append("                (`make mlflow` serves the MLflow UI on that address)")
    lines += [f"  published to: {stores}" for stores, _ in links.get("published to", [])]
    lines.append(f"  tables:       {settings.warehouse_path} (DuckDB; published tables in schema published)")
    quarantined = next((s.rows for s in steps if s.step == "quarantine"), None)
    if quarantined is not None:
        lines.append(f"  quarantine:   {quarantined:,} rows with their reasons in clean.quarantine")
    listed = next((s.rows for s in steps if s.step == "retention_segment"), None)
    if listed is not None:
        lines.append(f"  retention:    {listed:,} customers on the retention list; "
                     "`seg-pipeline export actions --tier retention --out retention.csv` writes it")  # fmt: skip
    judged = [
        note for s in steps if s.step == "realized_outcomes" for note in s.notes if note.startswith("judged ")
    ]
    if judged:
        lines.append(f"  outcomes:     {judged[0]}; the report's outcome section and published.retention_uplift "
                     "say how it turned out and what the retention list achieved")  # fmt: skip
    lines += [
        f"  warning:      {note}"
        for s in steps
        for note in s.notes
        if note.startswith("check ") and " warned: " in note
    ]
    lines.append(f"  runs:         {dagster_home} (Dagster instance; `seg-pipeline status` lists them)")
    lines.append(f"  UI:           `make dev` (or `seg-pipeline dev`), then {run_url(outcome.run_id)}")
    return lines


def _served_report(settings: Settings, path: str) -> str:
    """The report's URL on the docs server, or its path when it is not under the reports folder."""
    try:
        return report_url(settings, path)
    except ValueError:
        return path


PUBLISH_STEP = "published_tables"


def storage_failure(outcome: RunOutcome) -> str | None:
    """The kind of refused write (read-only, full disk, disk error) that failed a step of the run, if one did;
    a step's "permission denied" may be about reading an extract, whose message says what to do."""
    kinds = (storage_problem_of(step.error or "") for step in outcome.failed_steps)
    return next((kind for kind in kinds if kind in (READ_ONLY, FULL, DISK_ERROR)), None)


def failure_summary(outcome: RunOutcome, settings: Settings) -> list[str]:
    """Why the run failed and what to do next (stderr; printed also under --quiet)."""
    lines = [f"Run {outcome.run_id} FAILED: {outcome.failure_reason}", "What to do:"]
    failed = outcome.failed_steps
    gate = any(note.startswith("check ") for step in failed for note in step.notes)
    publish = next((s for s in failed if s.step == PUBLISH_STEP), None)
    disk = storage_failure(outcome)
    if disk:
        happened, to_do = storage_advice(disk, str(settings.home))
        lines.append(f"  - {happened}: {to_do}")
    elif gate:
        lines.append(
            f"  - the Data Docs show each failed expectation and the values it found: "
            f"{datadocs_url(settings)} (`make dev` serves it), or the file {settings.datadocs_dir / 'index.html'}"
        )
        lines.append(
            "  - fix the extract (or, if the expectation is wrong for your data, its suite or the quality.* "
            "keys), then rerun"
        )
    elif publish is not None and "DISAGREE" in (publish.error or ""):
        lines.append(
            "  - the published stores hold different runs (see above) until PostgreSQL's previous tables are "
            "put back: `seg-pipeline status` or the next run does it as soon as PostgreSQL is reachable"
        )
    elif publish is not None and "not reachable" in (publish.error or ""):
        lines.append(
            "  - nothing was published: PostgreSQL and the warehouse keep the tables of the last good run"
        )
        lines.append(
            "  - check that the PostgreSQL server is up and that SEG_PUBLISH_DSN (or publish.postgres_dsn) "
            "points at it, then rerun the same command"
        )
    elif publish is not None:
        lines.append(
            "  - both stores keep the tables of the last good run (a publish commits in both or in neither); "
            "fix the cause above and rerun"
        )
    else:
        lines.append("  - fix the cause above, then rerun the same command")
    if PUBLISH_STEP in outcome.not_run:
        lines.append("  - nothing was published: the published tables are unchanged")
    lines.append(
        f"  - `seg-pipeline status` lists runs and alerts; the run in the UI: `make dev`, then "
        f"{run_url(outcome.run_id)}"
    )
    lines.append("  - `seg-pipeline run --verbose` also prints Dagster's event log with tracebacks")
    return lines


# --- errors -----------------------------------------------------------------------------------------


def explain_error(exc: BaseException, home: Path | None = None) -> tuple[int, str, str | None]:
    """(exit code, message, what to do) for an exception that ended a command; ``home`` (the config's) is
    named when a refused write does not name its file."""
    if isinstance(exc, SegPipelineError):
        return EXIT_USAGE, str(exc), exc.hint
    refused = storage_problem(exc)
    if refused is not None:
        kind, filename = refused
        folder = str(home or os.environ.get("DAGSTER_HOME") or "the seg-pipeline home folder")
        happened, to_do = storage_advice(kind, filename or folder, folder)
        # a database's error says which store refused; an OS error's would repeat the file
        return EXIT_USAGE, happened if filename else f"{happened} ({first_line(exc)})", to_do
    if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError | PermissionError):
        where = f": {exc.filename}" if exc.filename else ""
        return (
            EXIT_USAGE,
            f"{exc.strerror or type(exc).__name__}{where}",
            f"check the path (relative paths start from the current folder, {Path.cwd()}) and rerun",
        )
    cls = type(exc)
    first = first_line(exc)
    if cls.__module__.startswith("psycopg") and cls.__name__ == "OperationalError":
        return (
            EXIT_USAGE,
            f"PostgreSQL is not reachable: {first}",
            "check that the server is up and that SEG_PUBLISH_DSN (or publish.postgres_dsn) points at it",
        )
    if cls.__module__.startswith(("duckdb", "_duckdb")) and "Could not set lock" in first:
        return (
            EXIT_USAGE,
            f"the warehouse is in use by another process: {first}",
            "wait for the run (or stop the Dagster UI's code server) that has it open for writing, then retry",
        )
    return (
        EXIT_UNEXPECTED,
        f"unexpected error {cls.__name__}: {first}",
        "rerun with --verbose for the traceback; if it persists, report it with that output",
    )


def report_error(
    exc: BaseException, verbose: bool, stream: TextIO | None = None, home: Path | None = None
) -> int:
    """Print the error (with its traceback under --verbose) and what to do; return the exit code."""
    stream = stream or sys.stderr
    code, message, hint = explain_error(exc, home)
    if verbose:  # driver errors may quote a DSN: passwords and known secrets are masked everywhere here
        stream.write(redact("".join(traceback.format_exception(exc))))
    print(redact(f"error: {message}"), file=stream)
    if hint:
        if verbose and code == EXIT_UNEXPECTED:
            hint = "this looks like a bug: report it with the traceback above"
        print(redact(f"  what to do: {hint}"), file=stream)
    return code


# --- commands ---------------------------------------------------------------------------------------


class _WithoutStatementDumps:
    """``sys.stderr`` while a run executes. Libraries print database errors with the SQL statement and its
    parameters that SQLAlchemy appends (Dagster: "Exception while writing logger call to event log: ..."
    when the disk is full), which may quote customer data: the error's own lines are kept."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        if "\n[SQL: " in text or "\n(Background on this error at:" in text:
            self._stream.write(without_statement_dump(text) + "\n")
        else:
            self._stream.write(text)
        return len(text)

    def __getattr__(self, name: str):  # fileno, flush, isatty, encoding, ...: the real stream's
        return getattr(self._stream, name)


@contextlib.contextmanager
def statement_dumps_left_out(verbose: bool):
    """Statement dumps stay out of stderr during a run, except under --verbose."""
    if verbose:
        yield
        return
    stream, sys.stderr = sys.stderr, _WithoutStatementDumps(sys.stderr)
    try:
        yield
    finally:
        sys.stderr = stream
