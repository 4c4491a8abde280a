"""The code location loads, and holds exactly the expected assets in their stage groups."""

from __future__ import annotations

import json
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
        for s in ("crm_customers", "orders", "web_events", "support_tickets", "email_events", "interventions")
    },
    **{
        f"clean_{s}": "clean"
        for s in ("customers", "orders", "web_events", "support_tickets", "email_events", "interventions")
    },
    **{
        f"quarantine_{s}": "clean"
        for s in ("crm_customers", "orders", "web_events", "support_tickets", "email_events", "interventions")
    },
    "customer_id_map": "clean",
    "contact_index": "clean",
    "erasure_index": "clean",
    "identity_review": "clean",
    "quarantine": "clean",
    "customer_features": "features",
    "churn_training_set": "features",
    "realized_outcomes": "outcomes",
    "realized_calibration": "outcomes",
    "realized_uplift": "outcomes",
    **{
        name: "churn"
        for name in ("churn_model", "churn_scores", "action_tiers", "retention_segment", "segment_churn_risk")
    },
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
        f"published_{t}": "published"
        for t in (
            "customer_segments", "churn_scores", "segment_profiles", "segment_history", "retention_actions",
            "kpi_history", "retention_uplift",
        )
    },
}
GATED = [k for k in EXPECTED_GROUPS if k.startswith(("raw_", "clean_"))] + [
    "customer_features", "customer_clusters", "segment_profiles", "lifecycle_stage", "churn_scores",
    "action_tiers", "retention_segment",
]  # fmt: skip
SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def definitions_snapshot(defs: dg.Definitions) -> dict:
    """What a user of the Dagster UI sees of the code location: each asset's group, owners, kinds, checks,
    declared column schema and description; each job's assets; schedules and sensors."""
    graph = defs.resolve_asset_graph()
    checks: dict[str, list[str]] = {}
    for key in graph.asset_check_keys:
        checks.setdefault(key.asset_key.to_user_string(), []).append(key.name)
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node, name = graph.get(key), key.to_user_string()
        assets[name] = {
            "group": node.group_name,
            "owners": list(node.owners),
            "kinds": sorted(node.kinds),
            "checks": sorted(checks.get(name, [])),
            "declared_column_schema": "dagster/column_schema" in node.metadata,
            "described": bool(node.description),
        }
    jobs = {
        name: sorted(k.to_user_string() for k in defs.resolve_job_def(name).asset_layer.selected_asset_keys)
        for name in ("full_refresh", "rescore")
    }
    repository = defs.get_repository_def()
    return {
        "assets": assets,
        "jobs": jobs,
        "schedules": sorted(s.name for s in repository.schedule_defs),
        "sensors": sorted(s.name for s in repository.sensor_defs),
    }


def test_definitions_match_the_snapshot(tmp_path):
    """Keys, groups, owners, kinds, checks and schemas change only on purpose: regenerate the snapshot with
    `UPDATE_SNAPSHOTS=1 pytest tests/test_definitions.py` and review its diff."""
    defs = build_definitions(load_settings(overrides={"home": str(tmp_path)}, environ={}))
    current = definitions_snapshot(defs)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
    assert current == json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assets = current["assets"].values()
    assert all(a["owners"] == ["team:customer-analytics"] for a in assets) and all(
        a["described"] for a in assets
    )


def test_owners_come_from_the_config(tmp_path):
    owners = ["team:crm-analytics", "anna@example.com"]
    settings = load_settings(overrides={"home": str(tmp_path), "orchestration.owners": owners}, environ={})
    graph = build_definitions(settings).resolve_asset_graph()
    assert {tuple(graph.get(k).owners) for k in graph.get_all_asset_keys()} == {tuple(owners)}


def test_asset_keys_and_groups(tmp_path):
    defs = build_definitions(load_settings(overrides={"home": str(tmp_path)}, environ={}))
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == EXPECTED_GROUPS
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    published = [k for k in EXPECTED_GROUPS if k.startswith("published_")]
    assert checks == {(asset, f"{asset}_quality") for asset in [*GATED, "churn_model"]} | {
        ("population_drift", "population_drift_within_threshold"),
        ("churn_model", "churn_model_beats_baselines"),
        ("churn_scores", "churn_scores_cover_profiled_customers"),
        ("realized_outcomes", "realized_outcomes_within_bounds"),
        ("published_customer_segments", "stores_agree"),
        *((asset, f"{asset}_quality") for asset in published),
    }
    assert defs.resolve_job_def("full_refresh") is not None
    rescore = {
        key.to_user_string() for key in defs.resolve_job_def("rescore").asset_layer.selected_asset_keys
    }
    assert {"churn_scores", "customer_features", "retention_segment", "segment_report", "realized_outcomes"} <= rescore
    assert {f"published_{t}" for t in ("customer_segments", "churn_scores")} <= rescore
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
