"""Helpers shared by the integration tests: settings for a temp home, running the whole asset graph."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import duckdb

from seg_pipeline.config import Settings, load_settings
from seg_pipeline.definitions import build_definitions
from tests.conftest import AS_OF

# Tests about other stages do not need every clusterer and model candidate, nor four labelled snapshots;
# the segmentation and churn tests run the defaults (quick=False).
QUICK_MODELS = {
    "segmentation.algorithms": ["kmeans"],
    "segmentation.k_max": 6,
    "segmentation.stability_resamples": 2,
    "churn.candidates": ["logistic_regression"],
    "churn.driver_features": 5,
    "churn.snapshots": 2,
}
# the churn tests train the default candidates on the default snapshots, with a quick segmentation beside them
QUICK_SEGMENTATION = {k: v for k, v in QUICK_MODELS.items() if k.startswith("segmentation.")}
QUICK_ENV = {
    "SEG_SEGMENTATION__ALGORITHMS": "[kmeans]",
    "SEG_SEGMENTATION__K_MAX": "6",
    "SEG_SEGMENTATION__STABILITY_RESAMPLES": "2",
    "SEG_CHURN__CANDIDATES": "[logistic_regression]",
    "SEG_CHURN__DRIVER_FEATURES": "5",
    "SEG_CHURN__SNAPSHOTS": "2",
}


def settings_for(tmp_path, landing, quick: bool = True, **overrides) -> Settings:
    base = {"home": str(tmp_path / "home"), "landing": str(landing), "as_of": AS_OF.isoformat()}
    return load_settings(overrides={**base, **(QUICK_MODELS if quick else {}), **overrides}, environ={})


def run_all(settings: Settings, instance: dg.DagsterInstance, selection: list[str] | None = None,
            groups: tuple[str, ...] | None = None, upstream_of: tuple[str, ...] | None = None):  # fmt: skip
    """Materialize every asset (or ``selection``, or the assets of ``groups``, or ``upstream_of`` and all they
    depend on) with their checks, in process, without raising."""
    definitions = build_definitions(settings)
    job = definitions.resolve_implicit_global_asset_job_def()
    keys = [dg.AssetKey(k) for k in selection] if selection else None
    if groups:
        keys = sorted(dg.AssetSelection.groups(*groups).resolve(definitions.resolve_asset_graph()))
    if upstream_of:
        upstream = dg.AssetSelection.assets(*upstream_of).upstream().required_multi_asset_neighbors()
        keys = sorted(upstream.resolve(definitions.resolve_asset_graph()))
    return job.execute_in_process(instance=instance, asset_selection=keys, raise_on_error=False)


UP_TO_CLEAN = ("raw", "clean")


def copy_extracts(company: Path, to: Path) -> Path:
    """The five extracts without truth/ (the pipeline never sees the truth)."""
    shutil.copytree(company, to, ignore=shutil.ignore_patterns("truth"))
    return to


def column_types(database: Path | str, table: str, schema: str | None = None) -> dict[str, str]:
    """Column name -> DuckDB type of one warehouse table."""
    where = "table_name = ?" + (" and table_schema = ?" if schema else "")
    params = [table, schema] if schema else [table]
    with duckdb.connect(str(database), read_only=True) as con:
        query = f"select column_name, data_type from information_schema.columns where {where}"
        return dict(con.execute(query, params).fetchall())
