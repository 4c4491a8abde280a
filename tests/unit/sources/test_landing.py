"""Waiting for extracts still being written, with real files written by a real writer thread."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from seg_pipeline.errors import SegPipelineError
from seg_pipeline.sources.landing import Unsettled, wait_until_stable, waiting_line

CLI = str(Path(sys.executable).parent / "seg-pipeline")


@contextmanager
def writer(path: Path, seconds: float, every: float = 0.05):
    """A thread appending a line to ``path`` every ``every`` s for ``seconds`` (or until the block ends)."""
    stop = threading.Event()

    def write() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not stop.is_set():
            with path.open("a", encoding="utf-8") as fh:
                fh.write("O1,C1,2024-03-01,1.5\n")
            stop.wait(every)

    thread = threading.Thread(target=write)
    path.write_text("order_id,customer_id,order_date,amount\n", encoding="utf-8")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def aged(path: Path, text: str, seconds_ago: float) -> Path:
    path.write_text(text, encoding="utf-8")
    then = time.time() - seconds_ago
    os.utime(path, (then, then))
    return path


def test_waits_while_a_file_grows_and_returns_once_it_is_stable(tmp_path):
    orders = tmp_path / "orders.csv"
    crm = aged(tmp_path / "crm_customers.csv", "customer_id\nC1\n", seconds_ago=3600)
    heard: list[list[Unsettled]] = []
    started = time.monotonic()
    with writer(orders, seconds=1.5):
        wait_until_stable([crm, orders], stable_seconds=1, timeout_seconds=30, on_wait=heard.append)
        waited = time.monotonic() - started
        size_after_wait = orders.stat().st_size
    assert waited >= 1.5 + 1 - 0.1  # the writing, then the stable window
    assert orders.stat().st_size == size_after_wait  # nothing was written after the wait ended
    assert heard and all([u.path for u in waiting] == [orders] for waiting in heard)  # the old file: never
    line = waiting_line(heard[-1])
    assert line.startswith("Waiting for extracts still being written: orders.csv (")
    assert "changed" in line and " s ago)" in line


def test_a_file_unchanged_for_longer_than_the_window_costs_no_wait(tmp_path):
    crm = aged(tmp_path / "crm_customers.csv", "customer_id\nC1\n", seconds_ago=10)
    heard: list = []
    started = time.monotonic()
    wait_until_stable([crm], stable_seconds=2, timeout_seconds=30, on_wait=heard.append)
    assert time.monotonic() - started < 0.5 and heard == []


def test_a_file_that_never_settles_fails_naming_it(tmp_path):
    orders = tmp_path / "orders.csv"
    heard: list = []
    with writer(orders, seconds=30), pytest.raises(SegPipelineError) as info:
        wait_until_stable([orders], stable_seconds=0.5, timeout_seconds=1.5, on_wait=heard.append)
    message = str(info.value)
    assert str(orders) in message and "still being written after 1.5 s" in message
    assert "orchestration.sources_stable_timeout_seconds" in message
    assert [u.changed for u in heard[-1]] in (["size"], ["modification time"])


def test_run_waits_for_an_extract_being_written_and_stops_naming_it(tmp_path):
    """`seg-pipeline run` says what it waits for, and gives up (exit 2) with the file named; the wait comes
    before anything else of the run, so no Dagster run is started."""
    landing = tmp_path / "landing"
    landing.mkdir()
    config = tmp_path / "seg.yaml"
    config.write_text(
        f"home: {tmp_path / 'home'}\nlanding: {landing}\n"
        "orchestration: {sources_stable_seconds: 1, sources_stable_timeout_seconds: 3}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEG_") and k != "DAGSTER_HOME"}
    with writer(landing / "crm_customers.csv", seconds=60):
        ran = subprocess.run([CLI, "run", "--config", str(config)], env=env, capture_output=True, text=True,
                             timeout=120)  # fmt: skip
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "Waiting for extracts still being written: crm_customers.csv (" in ran.stderr
    assert f"error: extracts still being written after 3 s: {landing / 'crm_customers.csv'}" in ran.stderr
    assert not (tmp_path / "home" / "dagster").exists()
