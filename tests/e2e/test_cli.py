"""The `seg-pipeline` command end to end, as a user runs it, on a small generated company."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from seg_pipeline.churn.actions import TIER_LABELS
from seg_pipeline.cleaning.privacy import pseudonymize
from seg_pipeline.publish.contract import column_names
from tests.integration.support import QUICK_ENV

CLI = str(Path(sys.executable).parent / "seg-pipeline")


def cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SEG_") and k != "DAGSTER_HOME"}
    full_env.update(env or {})
    return subprocess.run([CLI, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A working directory where `generate` then `run` were called with nothing but defaults and --as-of."""
    cwd = tmp_path_factory.mktemp("project")
    generated = cli("generate", "--customers", "800", "--seed", "3", "--as-of", "2024-06-30", cwd=cwd)
    assert generated.returncode == 0, generated.stderr
    assert "800 customers" in generated.stdout and "orders.csv" in generated.stdout
    # not a terminal: plain progress lines on stderr, no carriage returns
    assert "\r" not in generated.stdout + generated.stderr
    progress = [line.split()[:2] for line in generated.stderr.splitlines() if "customers" in line]
    assert progress == [["25%", "200/800"], ["50%", "400/800"], ["75%", "600/800"], ["100%", "800/800"]]
    return cwd


def step_lines(stdout: str) -> dict[str, list[tuple[int, list[str]]]]:
    """Step name -> [(line number, words)] of the lines `run` printed for it."""
    found: dict[str, list[tuple[int, list[str]]]] = {}
    for number, line in enumerate(stdout.splitlines()):
        words = line.split()
        if len(words) >= 4 and words[2] == "·":  # a check's step: `raw_orders · quality`
            words = [words[0], " ".join(words[1:4]), *words[4:]]
        if len(words) >= 2 and words[0] in ("...", "ok", "FAIL", "skip", "retry"):
            found.setdefault(words[1], []).append((number, words))
    return found


def test_generate_run_status_with_defaults(project):
    assert (project / ".seg" / "landing" / "truth" / "customers.csv").exists()
    ran = cli("run", "--as-of", "2024-06-30", cwd=project)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    for asset in (
        "raw_crm_customers",
        "raw_orders",
        "raw_web_events",
        "raw_support_tickets",
        "raw_email_events",
    ):
        assert asset in ran.stdout
    assert "succeeded" in ran.stdout and "warehouse.duckdb" in ran.stdout and "127.0.0.1:3000" in ran.stdout
    assert "Traceback" not in ran.stdout + ran.stderr and "\r" not in ran.stdout + ran.stderr

    # one line as each step starts, one as it finishes: name, rows, seconds, checks
    steps = step_lines(ran.stdout)
    assert len(steps) > 30
    for name, lines in steps.items():
        assert [words[0] for _, words in lines] == ["...", "ok"], name
        assert lines[0][1][2] == "started" and lines[0][0] < lines[1][0]
        assert any(re.fullmatch(r"\d+\.\ds", word) for word in lines[1][1]), name  # seconds
    raw_orders = " ".join(steps["raw_orders"][1][1])
    orders_rows = (
        len((project / ".seg" / "landing" / "orders.csv").read_text(encoding="utf-8").splitlines()) - 1
    )
    assert raw_orders.startswith(f"ok raw_orders {orders_rows:,} rows ") and raw_orders.endswith("s")
    assert "checks 1/1 passed" in " ".join(steps["raw_orders · quality"][1][1])
    summary = ran.stdout.split("\nRun ", 1)[1]
    assert summary.split()[1] == "succeeded" and "checks passed" in summary.splitlines()[0]
    for label in ("report:", "Data Docs:", "MLflow run:", "published to:", "runs:", "UI:"):
        assert f"  {label}" in summary, label
    assert (project / ".seg" / "datadocs" / "index.html").exists()
    lines = summary.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  report:"))
    assert lines[at].split()[1].startswith("http://127.0.0.1:3001/reports/segment_report_")  # served by `dev`
    assert Path(lines[at + 1].strip()).exists()  # and the file itself, on the next line

    home = project / ".seg"
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("select count(*) from raw.raw_orders").fetchone()[0]
    assert rows == len((home / "landing" / "orders.csv").read_text(encoding="utf-8").splitlines()) - 1

    # the run is on the instance the UI reads, under the full_refresh job, with its materializations
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        with dg.DagsterInstance.get() as instance:
            records = instance.get_run_records()
            assert [r.dagster_run.job_name for r in records] == ["full_refresh"]
            assert records[0].dagster_run.status == dg.DagsterRunStatus.SUCCESS
            assert instance.get_latest_materialization_event(dg.AssetKey("raw_orders")) is not None
    finally:
        del os.environ["DAGSTER_HOME"]

    status = cli("status", cwd=project)
    assert status.returncode == 0 and "full_refresh" in status.stdout and "SUCCESS" in status.stdout


def test_failed_run_exits_non_zero_with_a_short_reason(project, tmp_path):
    landing_orders = (project / ".seg" / "landing" / "orders.csv").read_text(encoding="utf-8")
    header, _, body = landing_orders.partition("\n")
    (tmp_path / "orders.csv").write_text(
        header.replace('"amount"', '"total"') + "\n" + body, encoding="utf-8"
    )
    config = tmp_path / "seg.yaml"
    config.write_text(
        f"as_of: 2024-06-30\nsources:\n  orders: {{path: {tmp_path / 'orders.csv'}}}\n", encoding="utf-8"
    )
    ran = cli("run", "--config", str(config), cwd=project, env=QUICK_ENV)
    assert ran.returncode == 1
    assert (
        "FAILED: step raw_orders failed" in ran.stderr and "missing required column(s) amount" in ran.stderr
    )
    assert "Traceback" not in ran.stderr and "Stack Trace" not in ran.stderr
    assert [words[0] for _, words in step_lines(ran.stdout)["raw_orders"]] == ["...", "FAIL"]
    assert "not run: " in ran.stdout
    run_id = re.search(r"Run (\S+) FAILED", ran.stderr).group(1)
    assert "What to do:" in ran.stderr and f"127.0.0.1:3000/runs/{run_id}" in ran.stderr
    status = cli("status", cwd=project)
    assert "FAILURE" in status.stdout and "failed at raw_orders: " in status.stdout
    assert "missing required column(s) amount" in status.stdout

    mapped = cli(
        "run",
        "--config",
        str(config),
        "--set",
        "sources.orders.columns.amount=total",
        cwd=project,
        env=QUICK_ENV,
    )
    assert mapped.returncode == 0, mapped.stderr


def test_quality_gate_failure_explains_the_expectation(project):
    stale = cli("run", "--as-of", "2025-03-31", cwd=project)
    assert stale.returncode == 1
    assert "quality gate failed; nothing downstream ran" in stale.stderr
    assert "raw_orders_quality failed" in stale.stderr and "freshness" in stale.stderr
    assert "Traceback" not in stale.stderr
    gate = " ".join(step_lines(stale.stdout)["raw_orders · quality"][-1][1])
    assert gate.startswith("FAIL ") and gate.endswith("checks 0/1 passed")
    # what to do next: the Data Docs, `status`, the run in the UI
    assert str(project / ".seg" / "datadocs" / "index.html") in stale.stderr
    assert "seg-pipeline status" in stale.stderr and "127.0.0.1:3000/runs/" in stale.stderr
    assert "nothing was published" in stale.stderr


def test_config_errors_exit_2_naming_the_key(project):
    ran = cli("run", "--set", "segmentation.k_max=lots", cwd=project)
    assert ran.returncode == 2 and "segmentation.k_max" in ran.stderr
    env_typo = cli("run", cwd=project, env={"SEG_CHURN__HORIZON": "30"})
    assert (
        env_typo.returncode == 2 and "churn.horizon" in env_typo.stderr and "horizon_days" in env_typo.stderr
    )
    missing = cli("run", "--home", "elsewhere", cwd=project)
    assert missing.returncode == 2 and "sources.crm_customers.path" in missing.stderr
    reingest = cli("run", "--reingest", cwd=project)
    assert reingest.returncode == 2 and "--reingest is for --job rescore" in reingest.stderr
    for failed in (ran, env_typo, missing, reingest):
        assert failed.stdout == "" and "Traceback" not in failed.stderr
    assert "what to do:" in ran.stderr and "what to do:" in env_typo.stderr
    verbose = cli("run", "--set", "segmentation.k_max=lots", "--verbose", cwd=project)
    assert verbose.returncode == 2 and verbose.stderr.startswith("Traceback (most recent call last):")
    assert "segmentation.k_max" in verbose.stderr


def test_generate_parquet_and_bad_rates(tmp_path):
    out = cli(
        "generate",
        "--customers",
        "50",
        "--format",
        "parquet",
        "--out",
        "x",
        "--as-of",
        "2024-06-30",
        cwd=tmp_path,
    )
    assert out.returncode == 0 and (tmp_path / "x" / "orders.parquet").exists()
    bad = cli("generate", "--customers", "50", "--rate", "typos=0.1", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown messiness rate 'typos'" in bad.stderr


def test_forget_then_run_removes_the_customer_everywhere(project):
    crm = (project / ".seg" / "landing" / "crm_customers.csv").read_text(encoding="utf-8").splitlines()
    customer_id = crm[5].split(",")[0].strip('"')
    forgot = cli("forget", customer_id, cwd=project)
    assert forgot.returncode == 0 and "Recorded erasure request" in forgot.stdout
    assert customer_id not in (project / ".seg" / "privacy" / "erasure_requests.csv").read_text()
    again = cli("forget", customer_id, cwd=project)
    assert "Already recorded" in again.stdout
    ran = cli("run", "--as-of", "2024-06-30", "--quiet", cwd=project, env=QUICK_ENV)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "" and "started" not in ran.stderr and "succeeded" not in ran.stderr  # errors only
    key = (project / ".seg" / "secrets" / "pseudonymization.key").read_text(encoding="utf-8").strip().encode()
    customer_key = pseudonymize(pd.Series([customer_id]), key).iloc[0]
    with duckdb.connect(str(project / ".seg" / "warehouse.duckdb"), read_only=True) as con:
        query = "select table_schema, table_name from information_schema.tables where table_schema <> 'raw'"
        found = con.execute(query).fetchall()
        assert ("features", "customer_features") in found
        for schema, table in found:
            frame = con.execute(f"select * from {schema}.{table}").df().astype(str)
            assert not frame.isin([customer_id, customer_key]).any().any(), table
    explained = cli("explain", customer_id, cwd=project)
    assert explained.returncode == 0 and "An erasure request is recorded" in explained.stdout


def test_explain_and_rescore(project):
    """After a full refresh: `explain` answers for a customer, `run --job rescore` scores without training."""
    with duckdb.connect(str(project / ".seg" / "warehouse.duckdb"), read_only=True) as con:
        customer_id, tier = con.execute(
            "select m.customer_id, s.risk_tier from clean.customer_id_map m join churn.action_tiers s "
            "using (customer_key) where m.customer_id = m.surviving_customer_id "
            "and s.risk_tier in ('personal_outreach', 'semi_automated', 'automated') order by s.action_rank limit 1"
        ).fetchone()
    explained = cli("explain", customer_id, cwd=project)
    assert explained.returncode == 0, explained.stderr
    for section in ("Consent:", "Segment:", "Lifecycle stage:", "Churn risk:"):
        assert section in explained.stdout
    assert f"action tier: {TIER_LABELS[tier].lower()}, rank 1 by expected loss" in explained.stdout
    unknown = cli("explain", "NOBODY", cwd=project)
    assert unknown.returncode == 1 and "No customer with id NOBODY" in unknown.stdout
    rescored = cli("run", "--job", "rescore", "--as-of", "2024-06-30", cwd=project)
    assert rescored.returncode == 0, rescored.stderr
    assert "churn_scores" in rescored.stdout and "churn_model" not in rescored.stdout
    assert "segmentation " not in rescored.stdout


def published_run_id(project: Path) -> str:
    with duckdb.connect(str(project / ".seg" / "warehouse.duckdb"), read_only=True) as con:
        (run_id,) = con.execute("select distinct run_id from published.churn_scores").fetchone()
    return run_id


def test_rescore_ingests_only_what_changed(project):
    """A rescore takes each source's validated clean tables as they are while nothing they depend on changed;
    a changed extract is ingested and validated again (with the CRM unchanged, alone); --reingest does all."""
    events = ("orders", "web_events", "support_tickets", "email_events")
    first = cli("run", "--job", "rescore", "--as-of", "2024-06-30", cwd=project)
    assert first.returncode == 0, first.stdout + first.stderr
    unchanged = cli("run", "--job", "rescore", "--as-of", "2024-06-30", cwd=project)
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    for source in ("crm_customers", *events):
        assert f"  reusing {source}: unchanged since its validated ingestion in run" in unchanged.stdout
    steps = step_lines(unchanged.stdout)
    assert not [s for s in steps if s.startswith(("raw_", "clean_", "quarantine"))], sorted(steps)
    assert {"customer_features", "churn_scores", "published_tables"} <= set(steps)
    run_id = re.search(r"Run ([0-9a-f-]{36}) succeeded", unchanged.stdout).group(1)
    assert published_run_id(project) == run_id

    orders = project / ".seg" / "landing" / "orders.csv"
    lines = orders.read_text(encoding="utf-8").splitlines(keepends=True)
    exported = orders.stat()
    orders.write_text("".join(lines[:-1]), encoding="utf-8")  # the newest export lost one order
    # ... and was made on the same day (a later export date would be a second change, and named too)
    os.utime(orders, ns=(exported.st_atime_ns, exported.st_mtime_ns))
    changed = cli("run", "--job", "rescore", "--as-of", "2024-06-30", cwd=project)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert re.search(r"  ingesting orders: changed since run [0-9a-f]{8}: extract\n", changed.stdout)
    steps = step_lines(changed.stdout)
    assert {"raw_orders", "raw_orders · quality", "clean_orders_stage", "quarantine"} <= set(steps)
    reused = {"raw_crm_customers", "clean_customers", "raw_web_events", "clean_web_events_stage"}
    assert not reused & set(steps)
    raw_orders = " ".join(steps["raw_orders"][1][1])
    assert f"{len(lines) - 2:,} rows" in raw_orders

    forced = cli("run", "--job", "rescore", "--reingest", "--as-of", "2024-06-30", cwd=project)
    assert forced.returncode == 0 and "reusing" not in forced.stdout
    assert {f"raw_{s}" for s in ("crm_customers", *events)} <= set(step_lines(forced.stdout))


def test_export_writes_a_published_table(project):
    out = project / "exports" / "segments.csv"
    exported = cli("export", "customer_segments", "--out", str(out), cwd=project)
    assert exported.returncode == 0, exported.stderr
    frame = pd.read_csv(out, dtype={"customer_id": str})
    assert list(frame.columns) == column_names("customer_segments") and len(frame) > 0
    assert f"Wrote {len(frame):,} rows of customer_segments" in exported.stdout
    assert frame["as_of"].eq("2024-06-30").all() and frame["run_id"].nunique() == 1
    crm = pd.read_csv(project / ".seg" / "landing" / "crm_customers.csv", dtype=str)
    assert set(frame["customer_id"]) <= set(crm["customer_id"])
    unknown = cli("export", "customers", "--out", "x.csv", cwd=project)
    assert unknown.returncode == 2 and "published tables: customer_segments" in unknown.stderr
    no_pg = cli("export", "churn_scores", "--from", "postgres", "--out", "x.csv", cwd=project)
    assert no_pg.returncode == 2 and "SEG_PUBLISH_DSN" in no_pg.stderr
    fresh = cli("export", "churn_scores", "--out", "x.csv", "--home", str(project / "empty"), cwd=project)
    assert fresh.returncode == 2 and "has not been published" in fresh.stderr


def test_unreachable_postgres_fails_the_publish_and_changes_nothing(project):
    """The publish step retries, fails with the server named, and both stores keep the last publish."""
    warehouse = project / ".seg" / "warehouse.duckdb"

    def published_run_ids() -> set:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            return {
                r[0] for r in con.execute("select distinct run_id from published.churn_scores").fetchall()
            }

    before = published_run_ids()
    env = {"SEG_PUBLISH_DSN": "postgresql://nobody@127.0.0.1:9/nowhere", "SEG_ORCHESTRATION__IO_RETRIES": "1",
           "SEG_ORCHESTRATION__IO_RETRY_DELAY_SECONDS": "0"}  # fmt: skip
    ran = cli("run", "--job", "rescore", "--as-of", "2024-06-30", cwd=project, env=env)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    publish = [words for _, words in step_lines(ran.stdout)["published_tables"]]
    assert [words[0] for words in publish] == ["...", "retry", "...", "FAIL"]
    assert " ".join(publish[1]).startswith(
        "retry published_tables attempt 1 failed: PostgreSQL is not reachable"
    )
    assert " ".join(publish[-1]).endswith("after 2 attempts")
    assert "FAILED: step published_tables failed: PostgreSQL is not reachable" in ran.stderr
    assert "nothing was published" in ran.stderr and "SEG_PUBLISH_DSN" in ran.stderr
    assert "rerun" in ran.stderr and "Traceback" not in ran.stderr
    assert published_run_ids() == before


def test_interrupted_generate_exits_130(tmp_path):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SEG_")}
    # as from a terminal: when this test process has SIGINT ignored (inherited from a background job, or so
    # in a pytest-xdist worker) the child would inherit that across exec and never see the Ctrl-C
    child = subprocess.Popen([CLI, "generate", "--customers", "3000000", "--out", "big"], cwd=tmp_path,
                             env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "big" / "orders.csv").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # generating: past start-up, inside main()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130 and err.rstrip().endswith("interrupted") and "Traceback" not in err


# --- the machine's side: a read-only home and a full disk exit 2 and say what to do -------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small file system in memory at ``path``, unmounted afterwards. As root only (CI runs as root): chmod
    does not stop root from writing, a read-only or full file system does."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a read-only or full file system needs mount(8) as root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def test_a_read_only_home_exits_2_saying_what_to_do(project, tmp_path):
    with tmpfs(tmp_path / "mnt", "256m") as mnt:
        home = mnt / "home"
        shutil.copytree(project / ".seg", home)  # runs, warehouse, key, landing: all there, none writable
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        for command in (("run", "--as-of", "2024-06-30"), ("forget", "C-1"), ("status",)):
            done = cli(*command, "--home", str(home), cwd=project)
            output = done.stdout + done.stderr
            assert done.returncode == 2, f"{command}: {output}"
            assert f"error: cannot write to {home}" in done.stderr and "read-only" in done.stderr, output
            assert f"what to do: make {home} writable" in done.stderr, output
            assert "Traceback" not in output and "[SQL" not in output, output


# The error line used to be lost now and then: when Dagster's compute-log capture failed to flush into the
# full disk as the run ended, it left stdout and stderr pointing at its log file (runner.standard_streams_kept).
def test_a_full_disk_exits_2_saying_what_to_do(project, tmp_path):
    landing = project / ".seg" / "landing"
    with tmpfs(tmp_path / "small", "4m") as small:
        home = small / "home"
        ran = cli("run", "--as-of", "2024-06-30", "--home", str(home), "--set", f"landing={landing}",
                  cwd=project, env=QUICK_ENV)  # fmt: skip
        output = ran.stdout + ran.stderr
        assert ran.returncode == 2, output
        assert f"no space left on the disk that holds {home}" in ran.stderr, output
        assert f"free disk space there (`df -h {home}` shows what is left)" in ran.stderr, output
        # Dagster prints the database error it met; never SQLAlchemy's statement and parameters
        assert "[SQL" not in output and "[parameters" not in output and "Traceback" not in output, output

        with contextlib.suppress(OSError), (small / "filler").open("wb") as filler:
            while True:
                filler.write(bytes(1 << 16))
        forgot = cli("forget", "C-1", "--home", str(home), cwd=project)
        assert forgot.returncode == 2 and f"no space left on the disk that holds {home}" in forgot.stderr
        assert "Traceback" not in forgot.stderr
