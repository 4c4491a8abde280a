"""Reliability as an operator meets it, through `seg-pipeline run` processes on a real instance, warehouse,
MLflow store and PostgreSQL: a run killed with SIGKILL (while training, while publishing), PostgreSQL and
the MLflow tracking server going away and coming back, two refreshes started at once."""

from __future__ import annotations

import datetime as dt
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import psycopg
import pytest

from seg_pipeline.publish.contract import PUBLISHED_TABLES
from seg_pipeline.publish.stores import PUBLISH_LOCK_KEY, WAREHOUSE_SCHEMA
from seg_pipeline.synthetic.generator import GeneratorConfig, generate
from tests.e2e import ui
from tests.e2e.outage import TcpProxy
from tests.integration.support import QUICK_ENV

CLI = str(Path(sys.executable).parent / "seg-pipeline")
AS_OF = "2024-06-30"
CURRENT = ("customer_segments", "churn_scores", "segment_profiles")  # replaced by every publish
ALL_CANDIDATES = "[logistic_regression, hist_gradient_boosting, random_forest]"


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("landing")
    generate(GeneratorConfig(customers=600, seed=21, as_of=dt.date.fromisoformat(AS_OF)), out)
    return out


class Child:
    """A `seg-pipeline` process whose output lines are read as they come (stderr with them, or apart in
    ``errors`` when ``merge_stderr`` is false)."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], merge_stderr: bool = True):
        self.process = subprocess.Popen(
            [CLI, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, text=True,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            start_new_session=True,  # its own process group: SIGKILL reaches its worker processes too
        )  # fmt: skip
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._stderr = None if merge_stderr else threading.Thread(target=self._read_errors, daemon=True)
        if self._stderr is not None:
            self._stderr.start()

    def _read_errors(self) -> None:
        self.errors.extend(line.rstrip("\n") for line in self.process.stderr)

    def _read(self) -> None:
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"never printed /{pattern}/; output:\n" + "\n".join(self.lines))

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)

    def signal_group(self, signum: int) -> None:
        """As a terminal's Ctrl-C does (SIGINT): to every process of the group."""
        os.killpg(self.process.pid, signum)

    def finish(self, timeout: float = 600) -> int:
        code = self.process.wait(timeout=timeout)
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        if self._stderr is not None:
            self._stderr.join(timeout=10)
        return code


@dataclass
class Project:
    cwd: Path
    env: dict[str, str]
    dsn: str
    schema: str

    @classmethod
    def create(cls, tmp_path: Path, landing: Path, dsn: str, schema: str, **env: str) -> Project:
        config = tmp_path / "seg.yaml"
        config.write_text(
            f"home: {tmp_path / '.seg'}\nlanding: {landing}\nas_of: {AS_OF}\n"
            f"publish: {{postgres_schema: {schema}, lock_wait_seconds: 120}}\n"
            "orchestration: {io_retries: 0}\n",
            encoding="utf-8",
        )
        base = {k: v for k, v in os.environ.items() if not k.startswith("SEG_") and k != "DAGSTER_HOME"}
        full = {**base, **QUICK_ENV, "SEG_CONFIG": str(config), "SEG_PUBLISH_DSN": dsn, **env}
        return cls(tmp_path, full, dsn, schema)

    @property
    def home(self) -> Path:
        return self.cwd / ".seg"

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([CLI, *args], cwd=self.cwd, env={**self.env, **env}, capture_output=True,
                              text=True, timeout=600)  # fmt: skip

    def start(self, *args: str, merge_stderr: bool = True, **env: str) -> Child:
        return Child(list(args), self.cwd, {**self.env, **env}, merge_stderr)

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home / "dagster"))

    def warehouse_published(self) -> dict[str, set[str]]:
        path = self.home / "warehouse.duckdb"
        if not path.exists():
            return {}
        with duckdb.connect(str(path), read_only=True) as con:
            return _run_ids(con.execute, WAREHOUSE_SCHEMA, "?")

    def postgres_published(self, dsn: str | None = None) -> dict[str, set[str]]:
        with psycopg.connect(dsn or self.dsn) as con:
            return _run_ids(con.execute, self.schema, "%s")


def _run_ids(execute, schema: str, placeholder: str) -> dict[str, set[str]]:
    """Run ids in each published table that exists (segment_history holds every publish's)."""
    query = f"select table_name from information_schema.tables where table_schema = {placeholder}"
    found = {row[0] for row in execute(query, [schema]).fetchall()}
    return {
        table: {row[0] for row in execute(f'select distinct run_id from "{schema}"."{table}"').fetchall()}
        for table in PUBLISHED_TABLES
        if table in found
    }


def published_run(tables: dict[str, set[str]]) -> str | None:
    """The one run every current table comes from (None before the first publish); fails when mixed."""
    if not tables:
        return None
    assert set(tables) == set(PUBLISHED_TABLES), tables
    runs = set().union(*(tables[t] for t in CURRENT))
    assert len(runs) == 1, f"published tables mix runs: {tables}"
    (run,) = runs
    assert run in tables["segment_history"]
    return run


def both_stores(project: Project) -> str | None:
    """The run published in PostgreSQL and the warehouse, which must be the same one."""
    postgres, warehouse = (
        published_run(project.postgres_published()),
        published_run(project.warehouse_published()),
    )
    assert postgres == warehouse, f"PostgreSQL has {postgres}, the warehouse {warehouse}"
    return warehouse


def step_events(instance, run_id: str, step: str) -> list[str]:
    kinds = {
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.STEP_FAILURE,
    }
    return [
        record.dagster_event.event_type_value
        for record in instance.all_logs(run_id, of_type=kinds)
        if record.dagster_event.step_key == step
    ]


def newest_run(project: Project) -> dg.DagsterRun:
    with project.instance() as instance:
        return instance.get_runs(limit=1)[0]


def test_killed_runs_leave_the_last_publish_and_a_usable_instance(tmp_path, landing, pg_url):
    project = Project.create(tmp_path, landing, pg_url, "rel_killed")
    first = project.run("run")
    assert first.returncode == 0, first.stdout + first.stderr
    good = both_stores(project)
    assert good is not None

    # 1. SIGKILL while the churn model trains (all candidates, so training lasts long enough to be caught)
    child = project.start("run", SEG_CHURN__CANDIDATES=ALL_CANDIDATES)
    child.wait_for(r"^\s+\.\.\.\s+churn_model\s+started")
    time.sleep(0.5)
    assert child.process.poll() is None, "training finished before the kill"
    assert published_run(project.postgres_published()) == good  # readers see the last publish meanwhile
    child.kill()
    in_training = newest_run(project)
    with project.instance() as instance:
        assert step_events(instance, in_training.run_id, "churn_model") == ["STEP_START"]
    assert both_stores(project) == good

    # 2. SIGKILL inside the publish step, while it waits for the publish lock another publisher holds
    with psycopg.connect(pg_url, autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(%s)", [PUBLISH_LOCK_KEY])
        child = project.start("run", "--job", "rescore")
        child.wait_for(r"^\s+\.\.\.\s+published_tables\s+started")
        time.sleep(1.0)
        child.kill()
        holder.execute("select pg_advisory_unlock(%s)", [PUBLISH_LOCK_KEY])
    in_publish = newest_run(project)
    assert in_publish.run_id != in_training.run_id and in_publish.job_name == "rescore"
    assert both_stores(project) == good
    # the next run found the run killed in training and recorded how it ended
    marked = "run(s) failed whose process ended without finishing them"
    assert any(f"Marked 1 {marked}: {in_training.run_id}" in line for line in child.lines), child.lines

    # until seg-pipeline looks again the instance says "started" for the last one: status records it too
    status = project.run("status")
    assert status.returncode == 0, status.stderr
    assert f"Marked 1 {marked}: {in_publish.run_id}" in status.stderr
    for run in (in_training, in_publish):
        line = next(line for line in status.stdout.splitlines() if line.strip().startswith(run.run_id))
        assert "FAILURE" in line, status.stdout
    assert status.stdout.count("the process executing this run ended without finishing it") == 2

    # 3. the rerun trains, registers and publishes; the MLflow store kept working throughout
    rerun = project.run("run")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    latest = both_stores(project)
    assert latest not in (None, good)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project.home / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("seg_pipeline_churn", "champion")
    assert client.get_run(champion.run_id).info.status == "FINISHED"
    killed = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                filter_string=f"tags.dagster_run_id = '{in_training.run_id}'")  # fmt: skip
    assert killed and all(run.info.status != "RUNNING" for run in killed)
    with project.instance() as instance:
        assert instance.get_run_by_id(in_training.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(newest_run(project).run_id).status == dg.DagsterRunStatus.SUCCESS


def _via(dsn: str, port: int) -> str:
    parts = urllib.parse.urlsplit(dsn)
    return parts._replace(netloc=parts.netloc.replace(f":{parts.port}", f":{port}")).geturl()


def test_postgres_outage_publishes_nothing_and_the_next_run_succeeds(tmp_path, landing, pg_url):
    proxy = TcpProxy(urllib.parse.urlsplit(pg_url).port).start()  # the network path to the server
    port = proxy.port
    proxy.stop()  # the outage: connections to that address are refused
    project = Project.create(tmp_path, landing, _via(pg_url, port), "rel_outage")

    down = project.run("run")
    assert down.returncode == 1, down.stdout + down.stderr
    assert "step published_tables failed: PostgreSQL is not reachable for publishing" in down.stderr
    assert "Traceback" not in down.stdout + down.stderr
    assert project.warehouse_published() == {} and project.postgres_published(pg_url) == {}

    proxy = TcpProxy(proxy.target_port, port).start()  # the server is back, at the same address
    try:
        up = project.run("run")
    finally:
        proxy.stop()
    assert up.returncode == 0, up.stdout + up.stderr
    assert published_run(project.postgres_published(pg_url)) == published_run(project.warehouse_published())
    assert published_run(project.warehouse_published()) is not None


def test_a_connection_dropped_mid_publish_is_retried_without_driver_noise(tmp_path, landing, pg_url):
    proxy = TcpProxy(urllib.parse.urlsplit(pg_url).port).start()
    # once, as the rows of the largest table go out: psycopg sends them in several writes, and when a later one
    # fails inside its COPY it warns that it could not end it ("... the connection is lost")
    proxy.cut_after(b'copy "rel_dropped"."churn_scores__incoming"')
    try:
        project = Project.create(tmp_path, landing, _via(pg_url, proxy.port), "rel_dropped")
        ran = project.run(
            "run", SEG_ORCHESTRATION__IO_RETRIES="1", SEG_ORCHESTRATION__IO_RETRY_DELAY_SECONDS="0"
        )
    finally:
        proxy.stop()
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert re.search(r"retry published_tables\s+attempt 1 failed", ran.stdout), ran.stdout  # it was cut
    # psycopg's own warning about the connection it could not roll back stays out of the terminal
    assert "connection is lost" not in ran.stderr and "error ignored" not in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr
    assert published_run(project.postgres_published(pg_url)) == published_run(project.warehouse_published())


def test_mlflow_outage_fails_before_fitting_and_the_next_run_succeeds(tmp_path, landing, pg_url):
    port = ui.free_port()
    project = Project.create(
        tmp_path, landing, pg_url, "rel_mlflow", SEG_MLFLOW__TRACKING_URI=f"http://127.0.0.1:{port}"
    )

    down = project.run("run")
    assert down.returncode == 1, down.stdout + down.stderr
    assert f"the MLflow tracking store http://127.0.0.1:{port} is not available" in down.stderr
    assert "step segmentation failed" in down.stderr and "Traceback" not in down.stderr
    assert project.warehouse_published() == {} and project.postgres_published() == {}

    server_store = f"sqlite:///{tmp_path / 'mlflow-server.db'}"
    with ui.mlflow_ui(server_store, tmp_path, project.env, tmp_path / "mlflow.log", port=port) as url:
        up = project.run("run")
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"{url}/#/experiments/" in up.stdout or "MLflow run" in up.stdout
        import mlflow

        mlflow.set_tracking_uri(url)
        champion = mlflow.MlflowClient().get_model_version_by_alias("seg_pipeline_churn", "champion")
        assert champion.version == "1"
    assert both_stores(project) is not None


def test_two_refreshes_at_once_never_interleave_their_publishes(tmp_path, landing, pg_url):
    project = Project.create(tmp_path, landing, pg_url, "rel_concurrent")
    children = [project.start("run") for _ in range(2)]
    codes = [child.finish() for child in children]
    output = ["\n".join(child.lines) for child in children]
    assert codes == [0, 0], "\n\n".join(output)
    # the later one waited for the first (one run per home); neither failed nor mixed anything
    assert sum("Waiting for the run in progress on" in text for text in output) == 1, output

    with project.instance() as instance:
        runs = instance.get_runs(limit=2)
        spans = []
        for run in runs:
            records = [r for r in instance.all_logs(run.run_id) if r.dagster_event is not None
                       and r.dagster_event.step_key == "published_tables"
                       and r.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS")]  # fmt: skip
            assert [r.dagster_event.event_type_value for r in records] == ["STEP_START", "STEP_SUCCESS"]
            spans.append((records[0].timestamp, records[1].timestamp, run.run_id))
    (start_a, end_a, _), (start_b, end_b, last) = sorted(spans)
    assert end_a <= start_b, f"publishes overlapped: {spans}"
    assert both_stores(project) == last
