"""`seg-pipeline generate --scenario cohort` as a user runs it: the files, the summary, the errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

CLI = str(Path(sys.executable).parent / "seg-pipeline")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEG_") and k != "DAGSTER_HOME"}
    return subprocess.run([CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_generate_cohort_writes_crm_orders_and_truth(tmp_path):
    out = tmp_path / "landing"
    done = cli("generate", "--scenario", "cohort", "--customers", "2000", "--seed", "1",
               "--as-of", "2024-06-30", "--out", str(out), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == {"crm_customers.csv", "orders.csv", "truth/customers.csv", "truth/orders_after_as_of.csv",
                     "truth/manifest.json"}  # fmt: skip

    lines = done.stdout.splitlines()
    assert lines[0] == f"Generated a cohort of 2,000 customers (seed 1, as of 2024-06-30) in {out}"
    # the default history: the quarter starts 540 days before as_of
    assert lines[1].startswith("  acquired 2023-01-08 .. 2023-04-08; by 2024-06-30: ")
    once, twice = (float(w.rstrip("%")) for w in lines[1].split() if w.endswith("%"))
    assert 55 <= once <= twice and twice >= 75
    orders = pd.read_csv(out / "orders.csv")
    future = pd.read_csv(out / "truth" / "orders_after_as_of.csv")
    assert lines[2].split() == ["crm_customers.csv", "2,000", "rows"]
    assert lines[3].split() == ["orders.csv", f"{len(orders):,}", "rows"]
    assert lines[4].startswith("  truth/ (never read by the pipeline)") and "dropout probability" in lines[4]
    assert f"({len(future):,} orders in the 365 days after 2024-06-30)" in lines[5]
    assert len(lines) == 6
    manifest = json.loads((out / "truth" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["scenario"] == "cohort" and manifest["customers"] == 2000 and manifest["seed"] == 1
    assert pd.to_datetime(orders["order_date"]).max() < pd.Timestamp("2024-07-01")

    # not a terminal: plain progress lines on stderr
    progress = [line.split()[:2] for line in done.stderr.splitlines() if "customers" in line]
    assert progress == [["25%", "500/2,000"], ["50%", "1,000/2,000"], ["75%", "1,500/2,000"],
                        ["100%", "2,000/2,000"]]  # fmt: skip
    assert "\r" not in done.stdout + done.stderr


def test_cohort_options_that_cannot_apply_are_refused(tmp_path):
    short = cli("generate", "--scenario", "cohort", "--customers", "10", "--history-days", "90",
                "--out", str(tmp_path / "a"), cwd=tmp_path)  # fmt: skip
    assert short.returncode == 2
    assert "error: --history-days 90: the cohort scenario needs at least 120 days" in short.stderr
    assert "what to do:" in short.stderr and "Traceback" not in short.stderr
    rate = cli("generate", "--scenario", "cohort", "--customers", "10", "--rate", "duplicate_customers=0.1",
               "--out", str(tmp_path / "b"), cwd=tmp_path)  # fmt: skip
    assert rate.returncode == 2 and "duplicate_customers" in rate.stderr and "what to do:" in rate.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
