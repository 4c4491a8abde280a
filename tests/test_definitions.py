"""The code location loads, and holds exactly the expected assets in their stage groups."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from seg_pipeline.config import load_settings
from seg_pipeline.definitions import build_definitions

ROOT = Path(__file__).resolve().parents[1]

EXPECTED_GROUPS = {
    **{
        f"raw_{s}": "raw"
        for s in ("crm_customers", "orders", "web_events", "support_tickets", "email_events")
    },
    **{
        f"clean_{s}": "clean"
        for s in ("customers", "orders", "web_events", "support_tickets", "email_events")
    },
    **{
        f"quarantine_{s}": "clean"
        for s in ("crm_customers", "orders", "web_events", "support_tickets", "email_events")
    },
    "customer_id_map": "clean",
    "contact_index": "clean",
    "erasure_index": "clean",
    "quarantine": "clean",
    "customer_features": "features",
    "churn_training_set": "features",
    **{name: "churn" for name in ("churn_model", "churn_scores", "retention_segment", "segment_churn_risk")},
    **{
        name: "segmentation"
        for name in (
            "segmentation_candidates",
            "customer_clusters",
            "segment_profiles",
            "segment_deviations",
            "micro_segments",
            "segment_migration",
            "lifecycle_stage",
        )
    },  # fmt: skip
    "population_drift": "published",
    "segment_report": "published",
    **{
        f"published/{t}": "published"
        for t in ("customer_segments", "churn_scores", "segment_profiles", "segment_history")
    },
}
GATED = [k for k in EXPECTED_GROUPS if k.startswith(("raw_", "clean_"))] + [
    "customer_features", "customer_clusters", "segment_profiles", "lifecycle_stage",
]  # fmt: skip


def test_asset_keys_and_groups(tmp_path):
    defs = build_definitions(load_settings(overrides={"home": str(tmp_path)}, environ={}))
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == EXPECTED_GROUPS
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == {(asset, f"{asset}_quality") for asset in [*GATED, "churn_model"]} | {
        ("population_drift", "population_drift_within_threshold"),
        ("churn_model", "churn_model_beats_baselines"),
        ("published/customer_segments", "stores_agree"),
    }
    assert defs.resolve_job_def("full_refresh") is not None
    rescore = {
        key.to_user_string() for key in defs.resolve_job_def("rescore").asset_layer.selected_asset_keys
    }
    assert {"churn_scores", "customer_features", "retention_segment", "segment_report"} <= rescore
    assert {f"published/{t}" for t in ("customer_segments", "churn_scores")} <= rescore
    assert not rescore & {"churn_model", "churn_training_set", "segmentation_candidates", "customer_clusters"}


def test_workspace_validates_with_dagster_cli(tmp_path):
    """What `dagster dev -w workspace.yaml` loads, checked by Dagster's own validator with settings from env."""
    env = {**os.environ, "SEG_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path)}
    dagster = Path(sys.executable).parent / "dagster"
    out = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Validation successful for code location seg_pipeline" in out.stderr + out.stdout


def test_bad_config_makes_the_code_location_fail_with_the_key_named(tmp_path):
    env = {**os.environ, "SEG_HOME": str(tmp_path / "home"), "SEG_SEGMENTATION__K_MAX": "many"}
    out = subprocess.run(
        [sys.executable, "-c", "import seg_pipeline.definitions as m; m.defs()"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "segmentation.k_max" in out.stderr
