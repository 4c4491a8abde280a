"""GX suites as blocking asset checks: real validations, Data Docs on disk, table-level breaches fail."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pandas as pd

from seg_pipeline.publish.contract import PUBLISHED_TABLES
from tests.integration.support import UP_TO_CLEAN, run_all, settings_for


def evaluations(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_clean_extracts_pass_every_gate_with_data_docs(tmp_path, landing):
    settings = settings_for(tmp_path, landing)
    with dg.instance_for_test() as instance:
        result = run_all(settings, instance)
    checks = evaluations(result)
    tables = [
        f"{stage}_{s}"
        for stage in ("raw", "clean")
        for s in ("orders", "web_events", "support_tickets", "email_events", "interventions")
    ]
    later = ["customer_features", "customer_clusters", "segment_profiles", "lifecycle_stage", "churn_model",
             "churn_scores", "action_tiers", "retention_segment"]  # fmt: skip
    published = [f"published_{t}" for t in PUBLISHED_TABLES]
    gates = {f"{t}_quality" for t in [*tables, "raw_crm_customers", "clean_customers", *later, *published]}
    gates.add("churn_scores_cover_profiled_customers")
    warnings = {"population_drift_within_threshold", "churn_model_beats_baselines",
                "realized_outcomes_within_bounds"}  # WARN, not gates  # fmt: skip
    assert set(checks) == gates | warnings | {"stores_agree"}  # the publish's own check (not a GX gate)
    assert checks["stores_agree"].passed
    coverage = checks["churn_scores_cover_profiled_customers"].metadata
    assert coverage["profiled_customers"].value > 0 and coverage["without_score"].value == 0
    # every table the IO manager wrote says what its columns are (Dagster's column schema)
    graph = result.job_def.asset_layer.asset_graph
    for materialization in result.get_asset_materialization_events():
        data = materialization.step_materialization_data.materialization
        if "dagster/row_count" in data.metadata:
            declared = graph.get(data.asset_key).metadata.get("dagster/column_schema")  # published tables
            schema = data.metadata.get("dagster/column_schema", declared)
            assert schema is not None and getattr(schema, "value", schema).columns, data.asset_key
    features = result.asset_materializations_for_node("customer_features")[0].metadata
    described = {c.name: c.description for c in features["dagster/column_schema"].value.columns}
    assert "days since the last order" in described["days_since_last_purchase"]
    assert all(checks[g].passed for g in gates), {k: c.description for k, c in checks.items()}
    assert {checks[w].severity for w in warnings} == {dg.AssetCheckSeverity.WARN}
    metadata = checks["raw_orders_quality"].metadata
    assert metadata["success_percent"].value == 100.0
    docs = Path(metadata["data_docs_path"].value)
    assert docs.is_file() and docs.is_relative_to(settings.datadocs_dir) and result.run_id in str(docs)
    assert "raw_orders" in docs.read_text(encoding="utf-8")
    assert Path(metadata["data_docs_index_path"].value).is_file()
    assert metadata["data_docs"].value.startswith("http://127.0.0.1:3001/datadocs/validations/raw_orders/")


def test_mostly_null_emails_fail_the_gate(tmp_path, landing):
    crm = pd.read_csv(landing / "crm_customers.csv", dtype=str, keep_default_na=False)
    crm.loc[crm.sample(frac=0.4, random_state=1).index, "email"] = ""
    crm.to_csv(landing / "crm_customers.csv", index=False)
    empty = (crm["email"].str.strip() == "").mean()  # 40 % plus the duplicates the generator left without one
    settings = settings_for(tmp_path, landing)
    with dg.instance_for_test() as instance:
        result = run_all(settings, instance, groups=UP_TO_CLEAN)  # the gates this is about
    check = evaluations(result)["raw_crm_customers_quality"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert (
        "email: column_values_to_not_be_null" in check.description
        and f"{empty:.1%} of rows unexpected" in check.description
    )
    assert "email" in check.metadata["failed_expectations"].value
    assert not result.success
    # the Data Docs index is built as the run ends, a failed run too, and lists this run's failed validation
    index = Path(check.metadata["data_docs_index_path"].value)
    assert index.is_file() and result.run_id in index.read_text(encoding="utf-8")


def test_row_count_collapse_against_the_last_good_run(tmp_path, landing):
    settings = settings_for(tmp_path, landing)
    with dg.instance_for_test() as instance:
        assert run_all(settings, instance, groups=UP_TO_CLEAN).success
        orders = pd.read_csv(landing / "orders.csv", dtype=str, keep_default_na=False)
        full = len(orders)
        orders.tail(len(orders) // 10).to_csv(landing / "orders.csv", index=False)  # the newest tenth only
        result = run_all(settings, instance, groups=UP_TO_CLEAN)
        check = evaluations(result)["raw_orders_quality"]
        assert not check.passed and "table_row_count_to_be_between" in check.description
        assert check.metadata["previous_good_row_count"].value == full
        assert check.metadata["min_row_count"].value == full // 2
        # the collapsed run failed, so the next comparison is still against the last good run
        result = run_all(settings, instance, groups=UP_TO_CLEAN)
        assert evaluations(result)["raw_orders_quality"].metadata["previous_good_row_count"].value == full


def test_absent_optional_source_and_columns_are_skipped(tmp_path, landing):
    (landing / "web_events.csv").unlink()
    crm = pd.read_csv(landing / "crm_customers.csv", dtype=str, keep_default_na=False)
    crm.drop(columns=["email", "updated_at"]).to_csv(landing / "crm_customers.csv", index=False)
    settings = settings_for(tmp_path, landing)
    with dg.instance_for_test() as instance:
        result = run_all(settings, instance, groups=UP_TO_CLEAN)
    checks = evaluations(result)
    assert (
        checks["raw_web_events_quality"].passed
        and "absent" in checks["raw_web_events_quality"].metadata["skipped"].value
    )
    crm_check = checks["raw_crm_customers_quality"]
    assert crm_check.passed and crm_check.metadata["skipped_absent_columns"].value == "email, updated_at"


def test_a_broken_suite_file_is_reported_with_its_path(tmp_path, landing):
    suites = tmp_path / "suites"
    shutil.copytree(Path(__file__).resolve().parents[2] / "expectations", suites)
    (suites / "raw_orders.json").write_text('{"name": "raw_orders", "expectations": [', encoding="utf-8")
    settings = settings_for(tmp_path, landing, **{"quality.expectations_dir": str(suites)})
    with dg.instance_for_test() as instance:
        result = run_all(settings, instance, groups=UP_TO_CLEAN)
    failure = next(e for e in result.all_events if e.is_step_failure and "raw_orders" in e.step_key)
    message = failure.step_failure_data.error.cause.message if failure.step_failure_data.error.cause else ""
    assert "raw_orders.json is not valid JSON" in message + failure.step_failure_data.error.message


def test_a_validated_frame_is_not_kept_by_gx(tmp_path):
    """GX's pandas datasource caches the last batch of every asset for the life of the process; a run would
    hold every table it validated. After validate() the frame belongs to its caller alone."""
    import gc
    import json
    import weakref

    from seg_pipeline.quality.gx import validate

    suites = {}
    for name in ("first_table", "second_table"):
        suites[name] = tmp_path / f"{name}.json"
        suites[name].write_text(json.dumps({"name": name, "expectations": [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "amount"}}]}))  # fmt: skip
    frames = {name: pd.DataFrame({"amount": [1.0, 2.0, None]}) for name in suites}
    alive = {name: weakref.ref(frame) for name, frame in frames.items()}
    for name, frame in frames.items():
        outcome = validate(
            frame, suites[name], gx_root=tmp_path / "gx", docs_dir=tmp_path / "docs", run_name="r"
        )
        assert not outcome.success and outcome.failed[0].column == "amount"  # a real validation ran
    del frames, frame
    gc.collect()
    assert [name for name, ref in alive.items() if ref() is not None] == []
