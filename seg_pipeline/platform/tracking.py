"""MLflow for both models (a sqlite tracking store and artifact folder under home by default): the
``mlflow_tracking`` resource, the champion that scores, and what the segmentation and churn runs log into it: parameters, metrics, tables, figures, the registered
model version and the descriptions the MLflow UI shows for runs and versions.

dagster-mlflow targets older MLflow, so this is the small piece of glue instead. MLflow is imported
when a run starts, not when the code location loads (it takes seconds).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np
import pandas as pd

from seg_pipeline.config import ChurnConfig, SegmentationConfig, Settings
from seg_pipeline.errors import SegPipelineError, first_line
from seg_pipeline.redact import redact

if TYPE_CHECKING:  # scikit-learn loads when a run logs, not with the code location
    from seg_pipeline.churn.registry import GateDecision
    from seg_pipeline.churn.train import TrainedModel
    from seg_pipeline.segmentation.fit import SegmentationResult

QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
# MLflow's own defaults retry a tracking server that is down for minutes (7 retries with exponential
# backoff, 120 s timeout each); a run should say within seconds that the store is unavailable.
HTTP_ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
_reachable: set[str] = set()  # tracking URIs this process has already reached
SEGMENTATION_MODEL = "seg_pipeline_segmentation"  # the registered model of the segmentation fits


class TrackingUnavailable(SegPipelineError):
    """The MLflow tracking store cannot be reached: nothing was trained, registered or published."""


@dataclass(frozen=True)
class Champion:
    """The registered churn model in effect (alias champion) as scoring loads it."""

    version: int
    model: object  # the calibrated scikit-learn pipeline
    tags: dict[str, str]


@dataclass(frozen=True)
class MlflowTracking:
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
        """An active MLflow run; failed if the block raises, so a broken fit never looks finished. Open it
        before the work (the fit, not only its logging): MLflow shows its start, end and duration."""
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

    def champion(self, model_uri: str) -> Champion | None:
        """The champion churn model loaded from ``model_uri`` with its version's tags; None without one."""
        from seg_pipeline.churn.registry import CHAMPION, MODEL_NAME
        from seg_pipeline.platform.registry import alias_version

        mlflow = self.client()
        client = mlflow.MlflowClient()
        version = alias_version(client, CHAMPION)
        if version is None:
            return None
        model = mlflow.sklearn.load_model(model_uri)
        return Champion(version, model, dict(client.get_model_version(MODEL_NAME, str(version)).tags))

    def log_realized_outcomes(self, results) -> int:
        """Each judged publish's headline metrics on the MLflow run of the model version that scored it
        (``log_realized_outcome``); returns how many were logged."""
        from seg_pipeline.churn.registry import MODEL_NAME
        from seg_pipeline.outcomes.realized import headline

        mlflow = self.client()
        logged = 0
        for result in results:
            first = result.metrics.iloc[0]
            if pd.isna(first["model_version"]):
                continue
            logged += log_realized_outcome(
                mlflow, model_name=MODEL_NAME, version=int(first["model_version"]),
                scored_as_of=pd.Timestamp(first["scored_as_of"]).date(),
                evaluated_as_of=pd.Timestamp(first["evaluated_as_of"]).date(), values=headline(result.metrics),
            )  # fmt: skip
        return logged


@dg.resource(
    required_resource_keys={"settings"},
    description="MLflow tracking store and model registry of the run's settings (mlflow.*).",
)
def mlflow_tracking_resource(context: dg.InitResourceContext) -> MlflowTracking:
    return MlflowTracking.of(context.resources.settings.resolved)


def model_requirements() -> list[str]:
    """The installed versions a logged model needs; stated, because MLflow's inference of them imports the
    model in a subprocess and takes seconds. Loading also needs seg_pipeline itself (its clusterers)."""
    from importlib.metadata import version

    return [
        f"{name}=={version(name)}" for name in ("scikit-learn", "numpy", "pandas", "scipy", "cloudpickle")
    ]


# --- what each training run logs ---------------------------------------------------------------------
# The asset opens the run before it trains (MlflowTracking.start_run), so the run's start, end and duration
# in the MLflow UI are the work's; the functions below log into that open run once the fit is done.

DESCRIPTION_TAG = "mlflow.note.content"  # the run's description in the MLflow UI (markdown)
SOURCE_TYPE = "JOB"


def run_tags(*, stage: str, asset: str, job_name: str, dagster_run_id: str, as_of: dt.date) -> dict[str, str]:
    """The tags a run starts with: the Dagster run, as_of, and the source the MLflow UI shows (otherwise
    MLflow names the Python entry point, ``__main__.py``)."""
    return {
        "dagster_run_id": dagster_run_id,
        "as_of": as_of.isoformat(),
        "stage": stage,
        "mlflow.source.name": f"seg-pipeline {job_name} / {asset}",
        "mlflow.source.type": SOURCE_TYPE,
    }


@contextmanager
def _registry_output() -> Iterator[io.StringIO]:
    """The registry prints progress to stderr; the console keeps to our own lines, the step's log gets it."""
    chatter = io.StringIO()
    with contextlib.redirect_stderr(chatter):
        yield chatter


def _seconds_metrics(seconds: dict[str, float]) -> dict[str, float]:
    """Each timed part of the fit, and their sum as fit_seconds (the run lasts at least that long)."""
    return {
        "fit_seconds": round(float(sum(seconds.values())), 2),
        **{f"seconds/{k}": float(v) for k, v in seconds.items()},
    }


def _dates(values) -> str:
    return ", ".join(str(pd.Timestamp(v).date()) for v in sorted(pd.Series(values).dropna().unique()))


# --- churn --------------------------------------------------------------------------------------------


@dataclass
class ChurnRegistration:
    """What a churn run registered: the model version and the champion gate's decision."""

    version: int
    gate: GateDecision
    registry_output: str  # what the registry printed, for the step's log


def training_dataset(mlflow, inputs: pd.DataFrame):
    """The training data as an MLflow dataset: name, schema, row count and a digest of every row.

    MLflow would infer the schema by looking at every value of every column and digest the first 10,000
    rows after typing every cell in Python (28 s at 1M customers); here the digest hashes all rows in
    pandas and the schema is inferred from the few rows that show each column's type and whether it has
    missing values (the first present and the first missing value of each column): the same schema."""
    import hashlib

    from mlflow.models import infer_signature

    missing = inputs.isna().to_numpy()
    telling = (
        sorted({*missing.argmin(axis=0).tolist(), *missing.argmax(axis=0).tolist()}) if len(inputs) else []
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        schema = infer_signature(inputs.iloc[telling]).inputs
    rows = pd.util.hash_pandas_object(inputs, index=False).to_numpy()
    digest = hashlib.md5(rows.tobytes() + "\x1f".join(inputs.columns).encode()).hexdigest()[:16]
    dataset = mlflow.data.from_pandas(inputs, targets="label", name="churn_training_set", digest=digest)
    dataset.__dict__["schema"] = schema  # a functools.cached_property: MLflow reads it from here
    return dataset


def model_comparison(trained: TrainedModel) -> pd.DataFrame:
    """The holdout comparison users read: every candidate and baseline, which was chosen and published.
    The chosen candidate's row shows its fit on every training row (the one compared with the baselines)."""
    from seg_pipeline.churn.baselines import BASELINE_PREFIX, DESCRIPTIONS

    table = trained.candidates.copy()
    chosen = table["candidate"] == trained.selected_candidate
    for key in ("roc_auc", "pr_auc", "brier", "lift_top_decile"):
        table.loc[chosen, f"holdout_{key}"] = trained.candidate_metrics[key]
    table["model"] = [
        f"{DESCRIPTIONS[c.removeprefix(BASELINE_PREFIX)]} (baseline)" if k == "baseline" else c
        for c, k in zip(table["candidate"], table["kind"], strict=True)
    ]
    columns = {"model": "model", "holdout_roc_auc": "ROC-AUC", "holdout_pr_auc": "PR-AUC",
               "holdout_brier": "Brier", "holdout_lift_top_decile": "lift top decile",
               "selected": "chosen", "published": "published"}  # fmt: skip
    return table[list(columns)].rename(columns=columns)


def _churn_params(trained: TrainedModel, table: pd.DataFrame, config: ChurnConfig, as_of: dt.date) -> dict:
    return {
        "as_of": as_of.isoformat(), "label_mode": config.label, "horizon_days": config.horizon_days,
        "candidates": ", ".join(config.candidates), "selected": trained.selected_candidate,
        "train_rows": trained.training_rows, "train_rows_available": trained.training_rows_available,
        "holdout_rows": int((table["split"] == "holdout").sum()), "features": ", ".join(trained.columns),
        "threshold": round(trained.threshold, 4), "promotion_metric": config.promotion_metric,
        "published_model": trained.candidate, "baseline_metric": config.baseline_metric,
        "baseline_margin": config.baseline_margin, "final_rows": trained.final_rows,
        "snapshots": int(table["snapshot"].nunique()),
    }  # fmt: skip


def log_churn_model(mlflow, run_url: str, *, trained: TrainedModel, table: pd.DataFrame,
                    importances: pd.DataFrame, driver_features: list[str], config: ChurnConfig, as_of: dt.date,
                    dagster_run_id: str) -> ChurnRegistration:  # fmt: skip
    """Into the active run: what was trained and how it compares, the model registered as a version with its
    tags, the champion gate, then the descriptions of the version and the run."""
    from seg_pipeline.churn.registry import HOLDOUT_MODEL_TAG, MODEL_NAME
    from seg_pipeline.platform.registry import apply_gate

    _log_churn_evidence(mlflow, trained, table, importances, config, as_of)
    with _registry_output() as chatter:
        version, holdout_uri = _log_churn_models(mlflow, trained, table)
    client = mlflow.MlflowClient()
    ranges = {  # what the published model was trained on: churn_scores reports scored customers beyond it
        f"train_max_{c}": float(table[c].max()) for c in ("recency_days", "tenure_days") if c in table
    }
    for key, value in {"threshold": trained.threshold, "dagster_run_id": dagster_run_id,
                       "driver_features": json.dumps(driver_features), "scored_by": trained.candidate,
                       "model_kind": trained.kind, HOLDOUT_MODEL_TAG: holdout_uri, **ranges,
                       **{f"holdout_{k}": v for k, v in trained.holdout_metrics.items()}}.items():  # fmt: skip
        client.set_model_version_tag(MODEL_NAME, str(version), key, str(value))
    holdout = table[table["split"] == "holdout"]
    gate = apply_gate(mlflow, client, version, trained.holdout_metrics, holdout, config.promotion_metric,
                      config.promotion_tolerance)  # fmt: skip
    described = churn_version_description(trained, table, config, as_of, gate, run_url)
    client.update_model_version(MODEL_NAME, str(version), description=described)
    mlflow.set_tags({"gate": gate.reason, "promoted": str(gate.promoted), "model_version": str(version),
                     "published_model": trained.candidate, "beats_baselines": str(trained.beats_baselines),
                     "baselines": trained.baseline_verdict,
                     DESCRIPTION_TAG: churn_run_description(trained, table, config, as_of, version, gate)})  # fmt: skip
    return ChurnRegistration(version=version, gate=gate, registry_output=chatter.getvalue().strip())


def _log_churn_evidence(mlflow, trained: TrainedModel, table: pd.DataFrame, importances: pd.DataFrame,
                        config: ChurnConfig, as_of: dt.date) -> None:  # fmt: skip
    """Params, metrics (every candidate's and baseline's, and the fit's seconds), the training data as an
    input (schema and digest, no rows), the comparison and importance tables, and the figures."""
    from seg_pipeline.churn import figures
    from seg_pipeline.churn.train import feature_frame

    mlflow.log_params(_churn_params(trained, table, config, as_of))
    metrics = _seconds_metrics(trained.seconds)
    metrics |= {f"holdout_{k}": v for k, v in trained.holdout_metrics.items()}
    for _, row in trained.candidates.iterrows():
        for key, value in row.items():
            if key.startswith(("validation_", "holdout_")) and pd.notna(value):
                metrics[f"{row['candidate']}/{key}"] = float(value)
    mlflow.log_metrics(metrics)
    labels = table["label"].to_numpy(dtype="float64")  # float: MLflow warns that ints cannot be missing
    inputs = feature_frame(table, trained.numeric, trained.categorical).assign(label=labels)
    mlflow.log_input(training_dataset(mlflow, inputs), context="training")
    comparison = model_comparison(trained).to_markdown(index=False, floatfmt=".4f")
    mlflow.log_text(trained.candidates.to_csv(index=False), "candidates.csv")
    mlflow.log_text(f"{comparison}\n\n{trained.baseline_verdict}\n", "model_vs_baselines.md")
    mlflow.log_text(importances.to_csv(index=False), "permutation_importance.csv")
    y, probabilities = trained.holdout_labels, trained.holdout_probabilities
    mlflow.log_figure(figures.roc_figure(y, probabilities), "figures/roc.png")
    mlflow.log_figure(figures.calibration_figure(y, probabilities), "figures/calibration.png")
    mlflow.log_figure(figures.lift_figure(y, probabilities["selected (refit)"]), "figures/lift.png")
    importance = figures.importance_figure(importances, trained.candidate)
    mlflow.log_figure(importance, "figures/permutation_importance.png")


def _log_churn_models(mlflow, trained: TrainedModel, table: pd.DataFrame) -> tuple[int, str]:
    """The published model, registered (its version), and its holdout model, logged beside it (its URI)."""
    from mlflow.models import infer_signature

    from seg_pipeline.churn.registry import MODEL_NAME
    from seg_pipeline.churn.train import feature_frame

    sample = feature_frame(table.head(0), trained.numeric, trained.categorical)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(sample, np.zeros((0, 2)))
    info = mlflow.sklearn.log_model(
        trained.model, name="churn_model", serialization_format="cloudpickle", signature=signature,
        registered_model_name=MODEL_NAME, pip_requirements=model_requirements(), pyfunc_predict_fn="predict_proba",
    )  # fmt: skip
    # the same model fitted without the holdout: what later runs' gates re-score (registry.py)
    holdout_info = mlflow.sklearn.log_model(
        trained.holdout_model, name="holdout_model", serialization_format="cloudpickle", signature=signature,
        pip_requirements=model_requirements(), pyfunc_predict_fn="predict_proba",
    )  # fmt: skip
    return int(info.registered_model_version), holdout_info.model_uri


def _churn_rows(table: pd.DataFrame) -> str:
    """Rows, churners and snapshots per split, as a markdown table."""
    lines = ["| split | rows | churners | churn rate | snapshots |", "|---|---:|---:|---:|---|"]
    for split, name in (("train", "training"), ("holdout", "holdout")):
        rows = table[table["split"] == split]
        churners = int(rows["label"].sum())
        rate = f"{churners / len(rows):.1%}" if len(rows) else ""
        lines.append(
            f"| {name} | {len(rows):,} | {churners:,} | {rate} | {_dates(rows['snapshot']) or 'as_of'} |"
        )
    return "\n".join(lines)


def _churn_label(config: ChurnConfig) -> str:
    if config.label == "activity":
        return (f"churned = no activity in the {config.horizon_days} days after a snapshot (activity labels). "
                "The latest snapshot is the out-of-time holdout.")  # fmt: skip
    return (f"churned = the CRM column {config.explicit_column!r} (explicit labels), features as of "
            f"{config.horizon_days} days (churn.horizon_days) before as_of when the CRM has churn dates. The "
            f"holdout is a stratified {config.holdout_share:.0%} of the labelled customers.")  # fmt: skip


def _gate_sentence(version: int, gate: GateDecision) -> str:
    if gate.promoted:
        return f"v{version} **promoted to champion** ({gate.reason})"
    return f"v{version} **not promoted**, kept as challenger; the champion stays v{gate.champion_version} ({gate.reason})"


def _baselines_sentence(trained: TrainedModel) -> str:
    if trained.best_baseline is None:
        return f"Baselines: {trained.baseline_verdict}."
    if trained.beats_baselines:
        return f"**Beats the baselines**: {trained.baseline_verdict}."
    return (f"**Does not beat the baselines**: {trained.baseline_verdict}; the best baseline, {trained.candidate}, "
            "is published in its place.")  # fmt: skip


def churn_run_description(trained: TrainedModel, table: pd.DataFrame, config: ChurnConfig, as_of: dt.date,
                          version: int, gate: GateDecision) -> str:  # fmt: skip
    """The run's description (markdown): the data window, rows, every candidate and baseline on the holdout,
    the published model and the gate's decision. Counts and names of models and features only."""
    from seg_pipeline.churn.registry import MODEL_NAME

    comparison = model_comparison(trained).to_markdown(index=False, floatfmt=".3f")
    notes = "".join(f"\n- {note}" for note in trained.baseline_notes)
    return f"""**Champion decision**: {MODEL_NAME} {_gate_sentence(version, gate)}. Published model: \
**{trained.candidate}**; chosen on validation: {trained.selected_candidate} (best validation \
{config.promotion_metric}).

{_baselines_sentence(trained)}

**Data window**: as_of {as_of.isoformat()}, horizon {config.horizon_days} days; {_churn_label(config)}

{_churn_rows(table)}

Candidates fitted on {trained.training_rows:,} of {trained.training_rows_available:,} training rows \
(churn.max_training_rows); the published model was refitted on {trained.final_rows:,} labelled rows for \
scoring. Training took {sum(trained.seconds.values()):,.1f} s (metric fit_seconds).

**Holdout** (candidates: {", ".join(config.candidates)}; baselines: {", ".join(config.baselines)}):

{comparison}
{notes}

Threshold {trained.threshold:.3f} (best F1 on validation). Figures: ROC, calibration, lift and the \
permutation importance of {trained.candidate}.
"""


def churn_version_description(trained: TrainedModel, table: pd.DataFrame, config: ChurnConfig, as_of: dt.date,
                              gate: GateDecision, run_url: str) -> str:  # fmt: skip
    """A registered version's description: what it was trained on, its holdout metrics beside the
    baselines', the gate at registration and a link to its run."""
    what = (f"{trained.candidate} (the chosen candidate {trained.selected_candidate} did not beat it)"
            if trained.kind == "baseline" else trained.candidate)  # fmt: skip
    train = table[table["split"] == "train"]
    holdout = table[table["split"] == "holdout"]
    shown = model_comparison(trained)
    shown = shown[shown["published"] | shown["model"].str.endswith("(baseline)")].drop(
        columns=["chosen", "published"]
    )
    metrics = ", ".join(f"{k} {trained.holdout_metrics[k]:.3f}" for k in ("roc_auc", "pr_auc", "brier"))
    return f"""**{what}**, churn within {config.horizon_days} days ({config.label} labels), as_of \
{as_of.isoformat()}.

Trained on {len(train):,} labelled rows (snapshots {_dates(train["snapshot"]) or "as_of"}); holdout \
{metrics} on {len(holdout):,} rows (snapshot {_dates(holdout["snapshot"]) or "as_of"}), fitted without the \
holdout; refitted on {trained.final_rows:,} labelled rows for scoring.

{shown.to_markdown(index=False, floatfmt=".3f")}

Baselines: {trained.baseline_verdict}. Gate at registration: {gate.reason} \
({"promoted to champion" if gate.promoted else "kept as challenger"}).

MLflow run: {run_url}
"""


# --- segmentation ---------------------------------------------------------------------------------------


@dataclass
class SegmentationRegistration:
    version: int
    registry_output: str


def log_segmentation(mlflow, run_url: str, *, result: SegmentationResult, config: SegmentationConfig,
                     as_of: dt.date) -> SegmentationRegistration:  # fmt: skip
    """Into the active run: params, every candidate's scores, the selection and profile tables, the label
    map, figures and the fitted pipeline registered as a version with its description; then the run's
    description."""
    from mlflow.models import infer_signature

    from seg_pipeline.segmentation import figures
    from seg_pipeline.segmentation.selection import selection_markdown

    table = result.selection.table
    chosen = result.selection.chosen
    mlflow.log_params({
        "as_of": as_of.isoformat(), "customers": len(result.assignments), "features": ", ".join(result.columns.all),
        "k_range": f"{config.k_min}-{config.k_max}", "algorithms": ", ".join(config.algorithms),
        "fit_sample": config.fit_sample, "stability_resamples": config.stability_resamples, "seed": config.seed,
        "selected": chosen["candidate"], "micro_segments": len(result.micro),
    })  # fmt: skip
    scores = ("silhouette", "davies_bouldin", "calinski_harabasz", "stability")
    metrics = {
        f"{row['algorithm']}_k{row['k']}/{m}": float(row[m])
        for _, row in table.iterrows() for m in scores if pd.notna(row[m])
    }  # fmt: skip
    metrics |= {f"selected_{m}": float(chosen[m]) for m in scores if pd.notna(chosen[m])}
    mlflow.log_metrics(metrics | _seconds_metrics(result.seconds))
    mlflow.log_text(table.to_csv(index=False), "selection/candidates.csv")
    mlflow.log_text(selection_markdown(table), "selection/candidates.md")
    mlflow.log_text(result.profiles.to_csv(index=False), "profiles/segment_profiles.csv")
    # the model predicts cluster labels; this turns them into the segment ids of this run's tables
    mlflow.log_dict({str(k): v for k, v in result.label_to_segment.items()}, "segment_ids.json")
    names = dict(zip(result.profiles["segment_id"], result.profiles["segment_name"], strict=True))
    labelled = result.deviations.rename(index=lambda s: f"{s} {names[s]}")
    mlflow.log_figure(figures.selection_figure(table), "figures/selection_by_k.png")
    mlflow.log_figure(
        figures.projection_figure(result.design_sample, result.sample_segments, names),
        "figures/projection.png",
    )
    mlflow.log_figure(figures.profile_heatmap(labelled), "figures/profile_heatmap.png")
    # the input schema only (names and types), never customer values
    columns = {c: pd.Series(dtype="float64") for c in result.columns.numeric}
    columns |= {c: pd.Series(dtype="object") for c in result.columns.categorical}
    with warnings.catch_warnings():  # its hint about missing integers: segment labels are never missing
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(pd.DataFrame(columns)[result.columns.all], pd.Series([0], dtype="int64"))
    with _registry_output() as chatter:
        info = mlflow.sklearn.log_model(
            result.pipeline, name="segmentation_model", serialization_format="cloudpickle", signature=signature,
            registered_model_name=SEGMENTATION_MODEL, pip_requirements=model_requirements(),
        )  # fmt: skip
    version = int(info.registered_model_version)
    mlflow.MlflowClient().update_model_version(
        SEGMENTATION_MODEL, str(version), description=segmentation_version_description(result, as_of, run_url)
    )
    mlflow.set_tag(DESCRIPTION_TAG, segmentation_run_description(result, config, as_of, version))
    return SegmentationRegistration(version=version, registry_output=chatter.getvalue().strip())


def _scores_sentence(chosen: pd.Series) -> str:
    parts = [("silhouette", "silhouette", ".3f"), ("davies_bouldin", "Davies-Bouldin", ".3f"),
             ("calinski_harabasz", "Calinski-Harabasz", ",.0f"), ("stability", "bootstrap stability (ARI)", ".3f")]  # fmt: skip
    return ", ".join(f"{label} {chosen[c]:{f}}" for c, label, f in parts if pd.notna(chosen[c]))


def _segments_table(profiles: pd.DataFrame) -> str:
    lines = ["| segment | name | customers | share |", "|---:|---|---:|---:|"]
    for _, row in profiles.iterrows():
        lines.append(
            f"| {row['segment_id']} | {row['segment_name']} | {row['customers']:,} | {row['share']:.1%} |"
        )
    return "\n".join(lines)


def segmentation_run_description(result: SegmentationResult, config: SegmentationConfig, as_of: dt.date,
                                 version: int) -> str:  # fmt: skip
    """The run's description (markdown): customers fitted, candidates tried, the chosen one and why,
    segments and their sizes. Counts, scores and segment names only."""
    from seg_pipeline.segmentation.selection import selection_markdown

    table = result.selection.table
    chosen = result.selection.chosen
    customers, fitted = len(result.assignments), len(result.design_sample)
    sample = "all of them" if fitted == customers else f"a sample of {fitted:,} (segmentation.fit_sample)"
    if result.single_segment:
        why = f"{chosen['note']}."
    else:
        eligible = int(table["eligible"].sum())
        why = (f"Best mean rank ({chosen['mean_rank']:.2f}) over silhouette, Davies-Bouldin, Calinski-Harabasz and "
               f"bootstrap stability among the {eligible} eligible candidates (k in {config.k_min}-{config.k_max}, "
               f"stability at least {config.min_stability:.2f}); ties go to fewer segments. Its scores: "
               f"{_scores_sentence(chosen)}.")  # fmt: skip
        if chosen["note"]:
            why += f" Note: {chosen['note']}."
    ranked = table.sort_values(["mean_rank", "k"], na_position="last").head(8)
    more = (
        f"\n\nThe best {len(ranked)} of {len(table)} by mean rank; all in selection/candidates.md."
        if len(table) > len(ranked)
        else ""
    )
    notes = "".join(f"\n- {note}" for note in result.notes)
    return f"""**Chosen: {chosen["candidate"]}**, {len(result.profiles)} segment(s), registered as \
{SEGMENTATION_MODEL} v{version}. {why}

**Fitted on** {customers:,} profiled customers as of {as_of.isoformat()} (the clusterers on {sample}), \
{len(result.columns.all)} features: {", ".join(result.columns.all)}.

**Candidates tried**: {len(table)} ({", ".join(config.algorithms)}; k {config.k_min}-{config.k_max}).

{selection_markdown(ranked)}{more}

**Segments**:

{_segments_table(result.profiles)}
{notes}
"""


def segmentation_version_description(result: SegmentationResult, as_of: dt.date, run_url: str) -> str:
    chosen = result.selection.chosen
    sizes = ", ".join(
        f"{r['segment_id']} {r['segment_name']} ({r['customers']:,})" for _, r in result.profiles.iterrows()
    )
    scores = _scores_sentence(chosen)
    return f"""**{chosen["candidate"]}** fitted on {len(result.assignments):,} profiled customers as of \
{as_of.isoformat()} ({len(result.columns.all)} features){f"; {scores}" if scores else ""}.

Segments: {sizes}. The model predicts cluster labels; segment_ids.json of its run maps them to segment ids.

MLflow run: {run_url}
"""


def log_realized_outcome(
    mlflow, *, model_name: str, version: int, scored_as_of: dt.date, evaluated_as_of: dt.date, values: dict
) -> int:
    """How the scores a model version published on ``scored_as_of`` turned out, as metrics ``realized_*`` on
    the version's training run (step = the scored date as YYYYMMDD, so the MLflow UI plots them over time)
    and a tag on the version. Logged once per scored date: a rerun finds the step and logs nothing again.
    Returns 1 when logged, 0 when the version is not in the registry (or was logged before)."""
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        run_id = client.get_model_version(model_name, str(version)).run_id
    except MlflowException:
        return 0
    step = int(scored_as_of.strftime("%Y%m%d"))
    if run_id is None or any(
        m.step == step for m in client.get_metric_history(run_id, "realized_customers_evaluated")
    ):
        return 0
    stamp = int(dt.datetime.combine(evaluated_as_of, dt.time(), tzinfo=dt.UTC).timestamp() * 1000)
    metrics = [Metric(f"realized_{name}", float(value), stamp, step) for name, value in values.items()
               if value is not None and np.isfinite(value)]  # fmt: skip
    client.log_batch(run_id, metrics=metrics)
    if np.isfinite(values.get("roc_auc", np.nan)):
        client.set_model_version_tag(
            model_name, str(version), f"realized_roc_auc_{scored_as_of}", f"{values['roc_auc']:.4f}"
        )
    return 1
