"""MLflow as a Dagster resource: a sqlite tracking store and artifact folder under home by default.

dagster-mlflow targets older MLflow, so this is the small piece of glue instead. MLflow is imported
when a run starts, not when the code location loads (it takes seconds).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from seg_pipeline.config import Settings
from seg_pipeline.errors import SegPipelineError, first_line
from seg_pipeline.redact import redact

QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
# MLflow's own defaults retry a tracking server that is down for minutes (7 retries with exponential
# backoff, 120 s timeout each); a run should say within seconds that the store is unavailable.
HTTP_ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
_reachable: set[str] = set()  # tracking URIs this process has already reached


class TrackingUnavailable(SegPipelineError):
    """The MLflow tracking store cannot be reached: nothing was trained, registered or published."""


class MlflowTracking(dg.ConfigurableResource):
    """Where training runs and registered models live, and how to link to them from the Dagster UI."""

    tracking_uri: str
    artifacts_dir: str
    ui_url: str

    @classmethod
    def of(cls, settings: Settings) -> MlflowTracking:
        return cls(
            tracking_uri=settings.mlflow_tracking_uri,
            artifacts_dir=str(settings.mlflow_artifacts_dir.resolve()),
            ui_url=settings.mlflow.ui_url,
        )

    def client(self):
        os.environ.update(QUIET_ENV)
        for name in ("mlflow", "alembic", "alembic.runtime.migration"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # its advice to use skops: our models are written and read by this pipeline only, with cloudpickle
        logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
        if self.tracking_uri.startswith(("http://", "https://")):
            for name, value in HTTP_ENV_DEFAULTS.items():
                os.environ.setdefault(name, value)
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        if self.tracking_uri not in _reachable:
            self._check_reachable(mlflow)
        return mlflow

    def _check_reachable(self, mlflow) -> None:
        """One cheap request before any work, so an outage fails the step at once with a clear reason."""
        try:
            mlflow.search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001 - any transport or store error means the same to the user
            raise TrackingUnavailable(
                redact(
                    f"the MLflow tracking store {self.tracking_uri} is not available ({first_line(exc)[:300]}); "
                    "nothing was trained, registered or published. Start it (or fix mlflow.tracking_uri), then rerun."
                )
            ) from None
        _reachable.add(self.tracking_uri)

    def experiment_id(self, name: str) -> str:
        mlflow = self.client()
        found = mlflow.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = Path(self.artifacts_dir) / name
        location.mkdir(parents=True, exist_ok=True)
        return mlflow.create_experiment(name, artifact_location=location.as_uri())

    @contextmanager
    def start_run(self, experiment: str, run_name: str, tags: dict[str, str]) -> Iterator:
        """An active MLflow run; failed if the block raises, so a broken fit never looks finished."""
        mlflow = self.client()
        experiment_id = self.experiment_id(experiment)
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
            yield mlflow, run

    def end_runs_of(self, dagster_run_ids: list[str]) -> int:
        """Mark KILLED the MLflow runs still RUNNING for Dagster runs whose process died; returns how many."""
        if not dagster_run_ids:
            return 0
        mlflow = self.client()
        client = mlflow.MlflowClient()
        ended = 0
        for dagster_run_id in dagster_run_ids:
            found = mlflow.search_runs(
                search_all_experiments=True,
                filter_string=f"tags.dagster_run_id = '{dagster_run_id}' and attributes.status = 'RUNNING'",
                output_format="list",
            )
            for run in found:
                client.set_terminated(run.info.run_id, status="KILLED")
                ended += 1
        return ended

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def model_requirements() -> list[str]:
    """The installed versions a logged model needs; stated, because MLflow's inference of them imports the
    model in a subprocess and takes seconds. Loading also needs seg_pipeline itself (its clusterers)."""
    from importlib.metadata import version

    return [
        f"{name}=={version(name)}" for name in ("scikit-learn", "numpy", "pandas", "scipy", "cloudpickle")
    ]
