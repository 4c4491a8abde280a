"""What the command line prints: progress, step lines, run summaries, errors and what to do next."""

from __future__ import annotations

import datetime as dt
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import sqlalchemy

from seg_pipeline.cli.app import main
from seg_pipeline.cli.launch import OutcomeBuilder, RunOutcome, StepOutcome, check_step_name
from seg_pipeline.cli.output import (
    EXIT_INTERRUPTED,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    Progress,
    StepPrinter,
    explain_error,
    failure_summary,
    render_bar,
    step_line,
    storage_failure,
    success_summary,
)
from seg_pipeline.config import load_settings
from seg_pipeline.defs.jobs import stoppable_in_process_executor
from seg_pipeline.platform.runs import INTERRUPTED, stop_on_signals, stop_requested
from seg_pipeline.publish.stores import PublishUnavailable, open_postgres
from seg_pipeline.synthetic.generator import GeneratorConfig, generate


@pytest.fixture
def restore_environ():
    """main() exports the resolved config as SEG_* variables; keep them out of later tests."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


# --- progress -----------------------------------------------------------------------------------------


def test_render_bar():
    assert render_bar(8_400, 20_000, "customers", 3.14) == (
        "[############..................]  42% 8,400/20,000 customers  3.1s"
    )
    assert render_bar(0, 5, "x", 0).startswith("[" + "." * 30 + "]   0% 0/5 x")
    assert render_bar(5, 5, "x", 0, width=4).startswith("[####] 100% 5/5")


def test_progress_off_a_terminal_prints_plain_lines_at_every_quarter(tmp_path):
    stream = io.StringIO()  # not a terminal
    progress = Progress("customers", stream)
    generate(GeneratorConfig(customers=800, seed=1, as_of=dt.date(2024, 6, 30)), tmp_path, progress=progress)
    progress.close()
    text = stream.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert [line.split()[0] for line in lines] == ["25%", "50%", "75%", "100%"]
    assert lines[-1].split()[1:3] == ["800/800", "customers"]


def test_progress_on_a_terminal_redraws_one_line_throttled():
    now = [0.0]
    stream = io.StringIO()
    progress = Progress("customers", stream, tty=True, interval=0.5, clock=lambda: now[0])
    for done in range(1, 11):
        now[0] += 0.2
        progress(done * 1_000, 10_000)
    drawn = stream.getvalue()
    assert "\n" not in drawn  # one line, redrawn in place
    frames = drawn.split("\r")[1:]
    # the first call draws, then at most one frame per 0.5 s, and always the last
    assert [frame.split()[-1] for frame in frames] == ["0.2s", "0.8s", "1.4s", "2.0s"]
    assert "100% 10,000/10,000 customers  2.0s" in frames[-1]
    assert "[###" in frames[0] and " 10% 1,000/10,000" in frames[0]
    progress.close()
    assert stream.getvalue().endswith("\n")


def test_quiet_progress_prints_nothing():
    stream = io.StringIO()
    progress = Progress("customers", stream, tty=True, quiet=True)
    progress(5, 10)
    progress(10, 10)
    progress.close()
    assert stream.getvalue() == ""


# --- step lines and the outcome, from a real (small) Dagster run ------------------------------------------


@dg.asset(check_specs=[dg.AssetCheckSpec("has_rows", asset="numbers"),
                       dg.AssetCheckSpec("all_small", asset="numbers")])  # fmt: skip
def numbers():
    yield dg.Output([1, 2, 30], metadata={"dagster/row_count": 3})
    yield dg.AssetCheckResult(check_name="has_rows", passed=True)
    yield dg.AssetCheckResult(
        check_name="all_small", passed=False, severity=dg.AssetCheckSeverity.WARN, description="30 > 10"
    )


@dg.asset(retry_policy=dg.RetryPolicy(max_retries=1))
def flaky(numbers):
    raise dg.Failure("the database is not reachable")


@dg.asset
def after_flaky(flaky):
    return flaky


def test_builder_reports_steps_checks_retries_and_steps_not_run():
    told: list[tuple[str, str, str]] = []
    builder = OutcomeBuilder(lambda what, step: told.append((what, step.step, step.status)))
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([numbers, flaky, after_flaky], instance=instance, raise_on_error=False)
        for record in instance.get_records_for_run(result.run_id).records:
            builder.add(record.event_log_entry)
    outcome = builder.outcome(result.run_id, "test", result.success)

    assert sorted(t[1] for t in told if t[0] == "planned") == ["after_flaky", "flaky", "numbers"]
    assert told[3][0] != "planned"  # every step is planned before the first starts
    assert [t for t in told if t[0] != "planned"] == [
        ("started", "numbers", "running"),
        ("finished", "numbers", "succeeded"),
        ("started", "flaky", "running"),
        ("retry", "flaky", "retrying"),
        ("started", "flaky", "running"),
        ("finished", "flaky", "failed"),
    ]
    ok, failed = outcome.steps
    assert (ok.rows, ok.checks_passed, ok.checks_failed) == (3, 1, 1)
    assert ok.notes == ["check all_small warned: 30 > 10"]
    # Dagster's retry wrapper ("Exceeded max_retries of 1") is peeled off: the user's sentence is left
    assert failed.attempts == 2 and failed.error == "the database is not reachable"
    assert outcome.not_run == ["after_flaky"] and not outcome.success
    assert outcome.failure_reason == "step flaky failed: the database is not reachable"

    printed = io.StringIO()
    printer = StepPrinter(printed)
    for step in ("numbers", "flaky", "after_flaky"):
        printer("planned", StepOutcome(step=step, status="planned"))
    printer("finished", ok)
    line = printed.getvalue()
    assert line.startswith("  ok    numbers    ") and line.endswith("\n")
    assert "3 rows" in line and "checks 1/2 passed" in line and "(check all_small warned: 30 > 10)" in line


def test_step_lines():
    step = StepOutcome(step="raw_orders", status="running")
    assert step_line("started", step, 12) == "  ...   raw_orders    started"
    step.status, step.seconds, step.rows = "succeeded", 3.21, 12_345
    step.checks_passed = 2
    assert step_line("finished", step, 12) == (
        "  ok    raw_orders       12,345 rows    3.2s  checks 2/2 passed"
    )
    gate = StepOutcome(step="raw_orders_raw_orders_quality", status="failed", seconds=0.5, checks_failed=1,
                       notes=["check raw_orders_quality failed: freshness"],
                       name=check_step_name("raw_orders", "raw_orders_quality"))  # fmt: skip
    line = step_line("finished", gate, 20)
    assert line.startswith("  FAIL  raw_orders · quality      ") and line.endswith("checks 0/1 passed")
    assert "freshness" not in line  # the run's failure lists the failed expectations once
    publish = StepOutcome(step="published_tables", status="retrying", error="PostgreSQL is down\nmore",
                          retry_in=5.0)  # fmt: skip
    assert step_line("retry", publish, 16) == (
        "  retry published_tables  attempt 1 failed: PostgreSQL is down; attempt 2 in 5s"
    )
    publish.attempts, publish.status, publish.seconds = 2, "failed", 9.0
    assert step_line("finished", publish, 16).endswith("9.0s  after 2 attempts")
    assert step_line("finished", StepOutcome(step="a", status="skipped"), 3) == "  skip  a"


def test_check_steps_are_named_after_their_asset_and_check():
    assert check_step_name("raw_orders", "raw_orders_quality") == "raw_orders · quality"
    assert check_step_name("churn_model", "churn_model_beats_baselines") == "churn_model · beats_baselines"
    assert check_step_name("published/customer_segments", "stores_agree") == (
        "published/customer_segments · stores_agree"
    )
    assert check_step_name("churn_scores", "churn_scores") == "churn_scores · churn_scores"
    assert check_step_name("published_churn_scores", "published_churn_scores_quality") == (
        "published_churn_scores · quality"
    )


# --- run summaries ------------------------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path):
    return load_settings(overrides={"home": str(tmp_path / "home")}, environ={})


def test_success_summary_lists_report_data_docs_mlflow_and_stores(settings, tmp_path):
    report = settings.reports_dir / "segment_report_2024-06-30_r1.html"
    steps = [
        StepOutcome(step="segmentation", status="succeeded", checks_passed=2,
                    links={"MLflow run": "http://mlflow/runs/1"}),
        StepOutcome(step="published_tables", status="succeeded",
                    links={"published to": "PostgreSQL schema s, warehouse schema published"}),
        StepOutcome(step="segment_report", status="succeeded", links={"report": str(report)}),
        StepOutcome(step="retention_segment", status="succeeded", rows=1234),
        StepOutcome(step="realized_outcomes", status="succeeded", rows=60,
                    notes=["judged the scores of 2024-03-02: realized ROC-AUC 0.812"]),
    ]  # fmt: skip
    text = "\n".join(success_summary(RunOutcome("r1", "full_refresh", True, steps), settings, tmp_path, 12.0))
    assert text.startswith("Run r1 succeeded in 12.0s: 5 steps, 2/2 checks passed.")
    assert "outcomes:     judged the scores of 2024-03-02: realized ROC-AUC 0.812; the report's outcome" in text
    assert "retention:    1,234 customers on the retention list; `seg-pipeline export actions --tier retention" in text
    # links on the docs server `make dev` starts, each with its file on the next line
    assert f"report:       http://127.0.0.1:3001/reports/{report.name}\n                {report}\n" in text
    assert (
        "Data Docs:    http://127.0.0.1:3001/datadocs/index.html (GX results of every gate, per run)\n"
        f"                {settings.datadocs_dir / 'index.html'}\n"
        "                (`make dev` serves both on http://127.0.0.1:3001)"
    ) in text
    assert "MLflow run:   http://mlflow/runs/1 (segmentation)" in text
    assert "published to: PostgreSQL schema s, warehouse schema published" in text
    assert "http://127.0.0.1:3000/runs/r1" in text and "seg-pipeline status" in text


def test_failure_summary_of_a_gate_points_at_data_docs(settings):
    gate = StepOutcome(step="raw_orders_raw_orders_quality", status="failed", checks_failed=1,
                       notes=["check raw_orders_quality failed: freshness"])  # fmt: skip
    outcome = RunOutcome(
        "r2", "full_refresh", False, [gate], not_run=["clean_orders_stage", "published_tables"]
    )
    text = "\n".join(failure_summary(outcome, settings))
    assert text.startswith("Run r2 FAILED: quality gate failed; nothing downstream ran.")
    assert "check raw_orders_quality failed: freshness" in text
    assert "http://127.0.0.1:3001/datadocs/index.html (`make dev` serves it)" in text
    assert str(settings.datadocs_dir / "index.html") in text
    assert "nothing was published" in text and "seg-pipeline status" in text and "/runs/r2" in text


def test_failure_summary_when_postgres_is_unreachable(settings):
    # the message the publish step fails with, from the real writer
    with pytest.raises(PublishUnavailable) as unreachable:
        open_postgres("postgresql://nobody@127.0.0.1:9/none")
    publish = StepOutcome(step="published_tables", status="failed", error=str(unreachable.value), attempts=4)
    text = "\n".join(failure_summary(RunOutcome("r3", "rescore", False, [publish]), settings))
    assert "step published_tables failed: PostgreSQL is not reachable" in text
    assert "nothing was published: PostgreSQL and the warehouse keep the tables of the last good run" in text
    assert "SEG_PUBLISH_DSN" in text and "rerun" in text


def test_failure_summary_lists_every_failed_step(settings):
    failed = [StepOutcome(step="raw_orders", status="failed", error="missing required column(s) amount"),
              StepOutcome(step="raw_web_events", status="failed", error="not a CSV file")]  # fmt: skip
    text = "\n".join(failure_summary(RunOutcome("r6", "full_refresh", False, failed), settings))
    assert text.startswith("Run r6 FAILED: 2 steps failed:\n")
    assert "  step raw_orders failed: missing required column(s) amount\n" in text
    assert "  step raw_web_events failed: not a CSV file\n" in text
    gate = StepOutcome(
        step="raw_orders_quality", status="failed", notes=["check raw_orders_quality failed: x"]
    )
    text = "\n".join(failure_summary(RunOutcome("r7", "full_refresh", False, [gate, failed[1]]), settings))
    assert "quality gate failed" in text and "step raw_web_events failed: not a CSV file" in text


def test_interrupted_run_is_recognised():
    step = StepOutcome(step="clean_customers", status="failed", error=INTERRUPTED)
    assert RunOutcome("r4", "full_refresh", False, [step]).interrupted
    assert not RunOutcome("r5", "full_refresh", False, [StepOutcome("x", "failed", error="boom")]).interrupted
    # a signal that turned into another error in the step (or reached no step) still makes it interrupted
    assert RunOutcome(
        "r5", "full_refresh", False, [StepOutcome("x", "failed", error="boom")], signalled=True
    ).interrupted
    assert not RunOutcome("r8", "full_refresh", True, [], signalled=True).interrupted  # it completed first


# --- stopping a run: signals are recorded whatever Python handler is installed -------------------------------


def blocked_signals(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")), 16)


def test_a_signal_is_recorded_even_when_the_handler_drops_it():
    before = signal.getsignal(signal.SIGINT)
    with stop_on_signals():
        signal.signal(signal.SIGINT, lambda signum, frame: None)  # as Dagster's handler between steps
        child = subprocess.Popen(["sleep", "30"])  # as Dagster's compute-log tail
        try:
            assert blocked_signals(child.pid) & (1 << (signal.SIGINT - 1))  # a Ctrl-C does not reach it
        finally:
            child.kill()
            child.wait()
        assert not stop_requested()
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 10
        while not stop_requested() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stop_requested()
    assert signal.getsignal(signal.SIGINT) is before
    assert not blocked_signals(os.getpid()) & (1 << (signal.SIGINT - 1))


computed: list[str] = []


class InterruptedFinalizer:
    """A Ctrl-C that arrives while Python runs a finalizer: the exception of Dagster's handler is lost."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # Dagster's handler raises in here, and Python drops it
            pass


@dg.asset
def finalized():
    InterruptedFinalizer()
    computed.append("finalized")
    return 1


@dg.asset
def after_finalized(finalized):
    computed.append("after_finalized")
    return finalized


def stoppable_job() -> dg.JobDefinition:
    definitions = dg.Definitions(
        assets=[finalized, after_finalized],
        jobs=[dg.define_asset_job("stoppable", executor_def=stoppable_in_process_executor)],
    )
    return definitions.resolve_job_def("stoppable")


def test_a_lost_interrupt_stops_the_run_before_its_next_step(capfd):
    computed.clear()
    builder = OutcomeBuilder()
    with dg.instance_for_test() as instance, stop_on_signals():
        result = dg.execute_job(dg.reconstructable(stoppable_job), instance=instance, raise_on_error=False)
        for record in instance.get_records_for_run(result.run_id).records:
            builder.add(record.event_log_entry)
        status = instance.get_run_by_id(result.run_id).status
    assert computed == ["finalized"]  # the interrupt was lost in the first step: it ran to its end
    assert status == dg.DagsterRunStatus.CANCELED and not result.success
    outcome = builder.outcome(result.run_id, "stoppable", result.success)
    # the next step failed as it started (or, had the interrupt been delivered again in time, never started)
    steps = {step.step: (step.status, step.error) for step in outcome.steps}
    assert steps.get("after_finalized", ("failed", INTERRUPTED)) == ("failed", INTERRUPTED)
    assert outcome.interrupted
    assert "Exception ignored" not in capfd.readouterr().err  # the lost exception's traceback is not shown


# --- errors: a short explanation and what to do; the traceback only under --verbose ---------------------


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_missing_config_file(tmp_path, capsys, restore_environ):
    code, out, err = run_main(capsys, "status", "--config", str(tmp_path / "nope.yaml"))
    assert code == EXIT_USAGE and out == ""
    assert err.startswith(f"error: config file not found: {tmp_path / 'nope.yaml'}\n")
    assert "  what to do: fix the setting where it comes from" in err and "Traceback" not in err
    code, _, err = run_main(capsys, "--verbose", "status", "--config", str(tmp_path / "nope.yaml"))
    assert code == EXIT_USAGE and err.startswith("Traceback (most recent call last):")
    assert "error: config file not found" in err and "what to do:" in err


def test_bad_set_value_names_the_key(tmp_path, capsys, restore_environ, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(
        capsys, "export", "churn_scores", "--out", "x.csv", "--set", "segmentation.k_max=lots"
    )
    assert code == EXIT_USAGE and "config key segmentation.k_max (from --set segmentation.k_max)" in err
    assert "what to do:" in err and "Traceback" not in err


def test_missing_extract_says_which_key(tmp_path, capsys, restore_environ, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "orders.csv"
    code, out, err = run_main(capsys, "run", "--set", f"sources.orders.path={missing}")
    assert code == EXIT_USAGE and out == ""
    assert f"config key sources.orders.path: file not found: {missing}" in err and "Traceback" not in err


def test_unknown_table(tmp_path, capsys, restore_environ, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capsys, "export", "customers", "--out", "x.csv")
    assert code == EXIT_USAGE and "unknown table 'customers'; published tables: customer_segments" in err


def test_unexpected_error_short_without_verbose_traceback_with(tmp_path, capsys, restore_environ):
    home = tmp_path / "home"
    home.mkdir()
    (home / "warehouse.duckdb").write_text("not a database " * 100)  # DuckDB raises its own IOException
    args = ("export", "customer_segments", "--out", str(tmp_path / "x.csv"), "--home", str(home))
    code, _, err = run_main(capsys, *args)
    assert code == EXIT_UNEXPECTED and "Traceback" not in err
    assert err.startswith("error: unexpected error IOException: IO Error:")
    assert "what to do: rerun with --verbose for the traceback" in err
    code, _, err = run_main(capsys, *args, "--verbose")
    assert code == EXIT_UNEXPECTED and err.startswith("Traceback (most recent call last):")
    assert "duckdb" in err and "report it with the traceback above" in err


@pytest.fixture
def published_warehouse(tmp_path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute("create schema published; create table published.customer_segments as select 1 as x")
    return home


def test_file_errors_name_the_path(tmp_path, capsys, restore_environ, published_warehouse):
    folder = tmp_path / "segments.csv"
    folder.mkdir()
    code, _, err = run_main(capsys, "export", "customer_segments", "--out", str(folder), "--home",
                            str(published_warehouse))  # fmt: skip
    assert code == EXIT_USAGE and err.startswith(f"error: Is a directory: {folder}\n")
    assert "what to do: check the path" in err and "Traceback" not in err
    with pytest.raises(FileNotFoundError) as missing:
        open(tmp_path / "absent.csv", encoding="utf-8")  # noqa: SIM115
    assert explain_error(missing.value)[:2] == (
        EXIT_USAGE,
        f"No such file or directory: {tmp_path / 'absent.csv'}",
    )


def test_locked_warehouse(tmp_path, capsys, restore_environ, published_warehouse):
    database = published_warehouse / "warehouse.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(database)!r}); print('ok', flush=True); "
         "time.sleep(60)"], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "ok"
        code, _, err = run_main(capsys, "export", "customer_segments", "--out", str(tmp_path / "x.csv"),
                                "--home", str(published_warehouse))  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert code == EXIT_USAGE and err.startswith("error: the warehouse is in use by another process")
    assert "what to do: wait for the run" in err


def test_postgres_unreachable_on_export(tmp_path, capsys, restore_environ, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capsys, "export", "churn_scores", "--from", "postgres", "--out", "x.csv",
                            "--set", "publish.postgres_dsn=postgresql://nobody@127.0.0.1:9/none")  # fmt: skip
    assert code == EXIT_USAGE and err.startswith("error: PostgreSQL is not reachable: ")
    assert "SEG_PUBLISH_DSN" in err and "Traceback" not in err


def test_an_unknown_seg_variable_is_named_once(tmp_path, capsys, restore_environ, monkeypatch):
    monkeypatch.setenv("SEG_ASOF", "2024-06-30")  # a typo: SEG_AS_OF
    code, out, err = run_main(capsys, "status", "--home", str(tmp_path / "home"))
    assert code == 0 and "No runs yet" in out
    assert err == (
        "warning: environment variable SEG_ASOF is not a seg-pipeline setting and is ignored; "
        "did you mean SEG_AS_OF (config key as_of)?\n"
    )


def test_interrupt_exit_code_is_documented():
    from seg_pipeline.cli.app import build_parser

    epilog = build_parser().epilog
    assert (
        f"{EXIT_INTERRUPTED}  interrupted" in epilog and f"{EXIT_UNEXPECTED}    an unexpected error" in epilog
    )


# --- the machine's side: a read-only database or a full disk exits 2 and says what to do --------------------


def test_a_read_only_sqlite_database_is_the_users_side(tmp_path):
    database = tmp_path / "runs.db"
    with sqlite3.connect(database) as con:
        con.execute("create table runs (id text)")
    # as Dagster's and MLflow's stores fail: SQLAlchemy's message appends the statement and its parameters
    engine = sqlalchemy.create_engine(f"sqlite:///file:{database}?mode=ro&uri=true")
    with pytest.raises(sqlalchemy.exc.OperationalError) as refused, engine.begin() as con:
        con.execute(sqlalchemy.text("insert into runs values (:id)"), {"id": "customer-42"})
    assert "[SQL: insert into runs" in str(refused.value)
    code, message, hint = explain_error(refused.value, tmp_path / "home")
    assert code == EXIT_USAGE and "Traceback" not in message
    assert message.startswith(f"cannot write to {tmp_path / 'home'}: its file system is read-only")
    assert "attempt to write a readonly database" in message
    assert "[SQL" not in message and "customer-42" not in message and "sqlalche.me" not in message
    assert hint.startswith(f"make {tmp_path / 'home'} writable") and "--home" in hint
    read_only = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as plain:  # sqlite3 itself, as MLflow's migrations meet it
        read_only.execute("insert into runs values ('x')")
    read_only.close()
    assert explain_error(plain.value, tmp_path)[0] == EXIT_USAGE


def test_a_full_disk_is_the_users_side(tmp_path):
    # /dev/full: every write fails with ENOSPC, as on a full disk
    with pytest.raises(OSError) as full, open("/dev/full", "w") as handle:
        handle.write("x")
    code, message, hint = explain_error(full.value, tmp_path / "home")
    assert code == EXIT_USAGE and message.startswith(
        f"no space left on the disk that holds {tmp_path / 'home'}"
    )
    assert hint.startswith("free disk space there") and f"df -h {tmp_path / 'home'}" in hint
    with pytest.raises(duckdb.IOException) as warehouse:
        duckdb.connect().execute("copy (select 1 as x) to '/dev/full' (format csv)")
    code, message, _ = explain_error(warehouse.value, tmp_path / "home")
    assert code == EXIT_USAGE and "no space left" in message and "/dev/full" in message


read_only_database: list[Path] = []  # set by the test below


@dg.asset
def empty_extract():
    raise dg.Failure("the CRM extract is empty")


@dg.asset
def refused_write():
    engine = sqlalchemy.create_engine(f"sqlite:///file:{read_only_database[0]}?mode=ro&uri=true")
    with engine.begin() as con:
        con.execute(sqlalchemy.text("insert into runs values (:id)"), {"id": "customer-42"})


def test_every_failed_step_and_a_refused_write_in_the_summary_and_status(tmp_path, capsys, restore_environ,
                                                                           monkeypatch):  # fmt: skip
    read_only_database[:] = [tmp_path / "runs.db"]
    with sqlite3.connect(read_only_database[0]) as con:
        con.execute("create table runs (id text)")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    builder = OutcomeBuilder()
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize([empty_extract, refused_write], instance=instance, raise_on_error=False)
        for record in instance.get_records_for_run(result.run_id).records:
            builder.add(record.event_log_entry)
    outcome = builder.outcome(result.run_id, "test", result.success)
    settings = load_settings(overrides={"home": str(tmp_path / "home")}, environ={})
    text = "\n".join(failure_summary(outcome, settings))
    assert "2 steps failed:" in text and "step empty_extract failed: the CRM extract is empty" in text
    assert "step refused_write failed: " in text and "attempt to write a readonly database" in text
    assert "[SQL" not in text and "customer-42" not in text
    assert storage_failure(outcome) == "read-only" and f"make {settings.home} writable" in text

    code, out, _ = run_main(capsys, "status", "--home", str(tmp_path / "home"))
    assert code == 0 and f"{result.run_id}  __ephemeral_asset_job__ FAILURE" in out
    assert "      failed at empty_extract: the CRM extract is empty\n" in out
    assert "      failed at refused_write: " in out and "attempt to write a readonly database" in out
    assert "[SQL" not in out and "customer-42" not in out


def test_failure_summary_when_the_published_stores_disagree(settings):
    error = (
        "the stores DISAGREE: PostgreSQL schema s holds this run's tables (r9), the warehouse those of run r8. "
        "The warehouse could not take the new tables (disk full) and putting PostgreSQL's previous tables "
        "back failed too (connection lost)."
    )
    publish = StepOutcome(step="published_tables", status="failed", error=error)
    text = "\n".join(failure_summary(RunOutcome("r9", "full_refresh", False, [publish]), settings))
    assert "step published_tables failed: the stores DISAGREE" in text
    assert "`seg-pipeline status` or the next run does it as soon as PostgreSQL is reachable" in text
    assert "keep the tables of the last good run" not in text


def test_the_model_and_drift_steps_say_what_they_hold_instead_of_a_row_count():
    model = StepOutcome(step="churn_model", status="running")
    OutcomeBuilder._materialization(model, {
        "dagster/row_count": dg.MetadataValue.int(1), "published_model": dg.MetadataValue.text("random_forest")})  # fmt: skip
    assert model.rows is None and model.notes == ["published model: random_forest"]
    drift = StepOutcome(step="population_drift", status="running")
    first = {"dagster/row_count": dg.MetadataValue.int(0), "psi_threshold": dg.MetadataValue.float(0.2),
             "reference": dg.MetadataValue.text("none yet (first publish)"), "flagged": dg.MetadataValue.text("none")}  # fmt: skip
    OutcomeBuilder._materialization(drift, first)
    assert drift.rows is None and drift.notes == ["no earlier publish to compare with"]
    table = StepOutcome(step="churn_scores", status="running")
    OutcomeBuilder._materialization(table, {"dagster/row_count": dg.MetadataValue.int(770)})
    assert table.rows == 770 and not table.notes
    judged = StepOutcome(step="realized_outcomes", status="running")
    OutcomeBuilder._materialization(judged, {
        "dagster/row_count": dg.MetadataValue.int(60), "runs_judged": dg.MetadataValue.int(1),
        "latest_scored_as_of": dg.MetadataValue.text("2024-03-02"), "latest/roc_auc": dg.MetadataValue.float(0.8123)})  # fmt: skip
    assert judged.rows is None and judged.notes == ["judged the scores of 2024-03-02: realized ROC-AUC 0.812"]
    waiting = StepOutcome(step="realized_outcomes", status="running")
    OutcomeBuilder._materialization(waiting, {"dagster/row_count": dg.MetadataValue.int(0),
                                              "runs_judged": dg.MetadataValue.int(0)})  # fmt: skip
    assert waiting.rows is None and waiting.notes == ["no earlier publish whose horizon has passed"]
