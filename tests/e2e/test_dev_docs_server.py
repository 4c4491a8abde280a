"""`seg-pipeline dev` (what `make dev` runs) serves the Data Docs and reports beside the Dagster UI, for as
long as the UI runs; a docs port already taken is an error that says what to do."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.e2e import ui
from tests.e2e.test_cli import CLI, cli


@pytest.fixture
def home(tmp_path) -> Path:
    home = tmp_path / "home"
    (home / "datadocs").mkdir(parents=True)
    (home / "datadocs" / "index.html").write_text("<h1>validations</h1>", encoding="utf-8")
    (home / "reports").mkdir()
    (home / "reports" / "latest.html").write_text("<h1>segment report</h1>", encoding="utf-8")
    return home


def test_dev_serves_data_docs_and_reports_while_the_ui_runs(home, tmp_path):
    ui_port, docs_port = ui.free_port(), ui.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEG_") and k != "DAGSTER_HOME"}
    command = [CLI, "dev", "--home", str(home), "--port", str(ui_port), "--workspace",
               str(ui.REPO / "workspace.yaml"), "--set", f"orchestration.docs_port={docs_port}"]  # fmt: skip
    log = tmp_path / "dev.log"
    docs = f"http://127.0.0.1:{docs_port}"
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(
            command, cwd=ui.REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            ui.wait_until(lambda: ui.http_get(f"http://127.0.0.1:{ui_port}/server_info"), 180, "the UI", log)
            assert ui.http_get(f"{docs}/datadocs/index.html") == b"<h1>validations</h1>"
            assert ui.http_get(f"{docs}/reports/latest.html") == b"<h1>segment report</h1>"
            printed = log.read_text(encoding="utf-8")
            assert (
                f"Data Docs on {docs}/datadocs/index.html, reports on {docs}/reports/latest.html" in printed
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal of `make dev`
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise
    # the UI stopped, and so did the docs server
    with pytest.raises(ConnectionRefusedError):
        http.client.HTTPConnection("127.0.0.1", docs_port, timeout=5).connect()


def test_dev_with_its_docs_port_taken_says_what_to_do(home):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("dev", "--home", str(home), "--set", f"orchestration.docs_port={port}", cwd=ui.REPO)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: cannot serve Data Docs and reports on http://127.0.0.1:{port}" in result.stderr
    assert "what to do:" in result.stderr and "--set orchestration.docs_port=PORT" in result.stderr
    assert "Dagster UI on" not in result.stdout  # nothing started
