"""What the command line prints: progress, step lines, run summaries, errors and what to do next."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from seg_pipeline.cli import (
    EXIT_INTERRUPTED,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    Progress,
    StepPrinter,
    explain_error,
    failure_summary,
    main,
    render_bar,
    step_line,
    success_summary,
)
from seg_pipeline.config import load_settings
from seg_pipeline.publish.writers import PublishUnavailable, open_postgres
from seg_pipeline.runner import INTERRUPTED, OutcomeBuilder, RunOutcome, StepOutcome
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
    gate = StepOutcome(step="raw_orders_quality", status="failed", seconds=0.5, checks_failed=1,
                       notes=["check raw_orders_quality failed: freshness"])  # fmt: skip
    line = step_line("finished", gate, 18)
    assert line.startswith("  FAIL  raw_orders_quality") and line.endswith("checks 0/1 passed")
    assert "freshness" not in line  # the run's failure lists the failed expectations once
    publish = StepOutcome(step="published_tables", status="retrying", error="PostgreSQL is down\nmore",
                          retry_in=5.0)  # fmt: skip
    assert step_line("retry", publish, 16) == (
        "  retry published_tables  attempt 1 failed: PostgreSQL is down; attempt 2 in 5s"
    )
    publish.attempts, publish.status, publish.seconds = 2, "failed", 9.0
    assert step_line("finished", publish, 16).endswith("9.0s  after 2 attempts")
    assert step_line("finished", StepOutcome(step="a", status="skipped"), 3) == "  skip  a"


# --- run summaries ------------------------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path):
    return load_settings(overrides={"home": str(tmp_path / "home")}, environ={})


def test_success_summary_lists_report_data_docs_mlflow_and_stores(settings, tmp_path):
    steps = [
        StepOutcome(step="segmentation", status="succeeded", checks_passed=2,
                    links={"MLflow run": "http://mlflow/runs/1"}),
        StepOutcome(step="published_tables", status="succeeded",
                    links={"published to": "PostgreSQL schema s, warehouse schema published"}),
        StepOutcome(step="segment_report", status="succeeded", links={"report": "/r/report.html"}),
    ]  # fmt: skip
    text = "\n".join(success_summary(RunOutcome("r1", "full_refresh", True, steps), settings, tmp_path, 12.0))
    assert text.startswith("Run r1 succeeded in 12.0s: 3 steps, 2/2 checks passed.")
    assert "report:       /r/report.html" in text
    assert f"Data Docs:    {settings.datadocs_dir / 'index.html'}" in text
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


def test_interrupted_run_is_recognised():
    step = StepOutcome(step="clean_customers", status="failed", error=INTERRUPTED)
    assert RunOutcome("r4", "full_refresh", False, [step]).interrupted
    assert not RunOutcome("r5", "full_refresh", False, [StepOutcome("x", "failed", error="boom")]).interrupted


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
    code, _, err = run_main(capsys, "export", "customer_segments", "--out", str(tmp_path), "--home",
                            str(published_warehouse))  # fmt: skip
    assert code == EXIT_USAGE and err.startswith(f"error: Is a directory: {tmp_path}\n")
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


def test_interrupt_exit_code_is_documented():
    from seg_pipeline.cli import build_parser

    epilog = build_parser().epilog
    assert (
        f"{EXIT_INTERRUPTED}  interrupted" in epilog and f"{EXIT_UNEXPECTED}    an unexpected error" in epilog
    )
