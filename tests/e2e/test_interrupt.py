"""Ctrl-C and SIGTERM while `seg-pipeline run` works, sent to its whole process group as a terminal does: the run
stops before it publishes, the command exits 130 with one line and no traceback (not even of Dagster's
compute-log helper processes), the run is recorded as stopped, and the next run takes the lock and publishes."""

from __future__ import annotations

import datetime as dt
import fcntl
import signal
import time
from pathlib import Path

import dagster as dg
import pytest

from seg_pipeline.synthetic.generator import GeneratorConfig, generate
from tests.e2e.test_reliability import AS_OF, Project, both_stores, newest_run

# (step, seconds after its start line, signal). Right after `segmentation` starts, its import of MLflow is
# where the interrupt used to be lost (raised inside a finalizer) so that the run published: repeated.
MOMENTS = [
    ("clean_customers", 0.0, signal.SIGINT),
    *[("segmentation", delay, signal.SIGINT) for delay in (0.0, 0.2, 0.4, 0.7, 1.0, 1.5)],
    ("churn_model", 0.5, signal.SIGTERM),
]
STOPPED = (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE)


@pytest.fixture(scope="module")
def company(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("company")
    generate(GeneratorConfig(customers=600, seed=21, as_of=dt.date.fromisoformat(AS_OF)), out)
    return out


def started_steps(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    return {r.step_key for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)}


def lock_is_free(home: Path) -> bool:
    with (home / "run.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def test_interrupts_stop_the_run_before_publishing(tmp_path, company, pg_url):
    project = Project.create(tmp_path, company, pg_url, "rel_interrupt")
    stopped = []
    for step, delay, signum in MOMENTS:
        child = project.start("run", merge_stderr=False)
        child.wait_for(rf"^\s+\.\.\.\s+{step}\s+started")
        time.sleep(delay)
        child.signal_group(signum)
        code = child.finish(timeout=300)
        moment = f"{signum.name} {delay}s after {step} started"
        output = "\n".join(child.lines + ["--- stderr:"] + child.errors)
        assert code == 130, f"{moment}:\n{output}"
        assert sum("interrupted" in line for line in child.errors) == 1, f"{moment}:\n{output}"
        assert "Traceback" not in output and "KeyboardInterrupt" not in output, f"{moment}:\n{output}"
        assert project.warehouse_published() == {} and project.postgres_published() == {}, moment
        run = newest_run(project)
        with project.instance() as instance:
            assert "published_tables" not in started_steps(instance, run.run_id), moment
        assert run.status in STOPPED, f"{moment}: {run.status}"
        assert lock_is_free(project.home), moment
        stopped.append(run.run_id)

    status = project.run("status", "--limit", str(len(MOMENTS)))
    assert status.returncode == 0, status.stderr
    for run_id in stopped:
        line = next(line for line in status.stdout.splitlines() if line.strip().startswith(run_id))
        assert "CANCELED" in line or "FAILURE" in line, status.stdout
    assert "SUCCESS" not in status.stdout and "stopped at " in status.stdout

    rerun = project.run("run")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "Waiting for the run in progress" not in rerun.stderr and "Traceback" not in rerun.stderr
    assert both_stores(project) == newest_run(project).run_id
