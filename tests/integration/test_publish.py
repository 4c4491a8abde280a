"""Publishing end to end on one instance: the contract tables in the warehouse and in PostgreSQL, the
segment report, history and drift across runs, and a failed gate that leaves the last good publish."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from seg_pipeline.churn.actions import ACTION_TIERS
from seg_pipeline.definitions import build_definitions
from seg_pipeline.publish.contract import FILLED_BY_A_LATER_RUN, PUBLISHED_TABLES, column_names
from seg_pipeline.publish.report import SECTIONS
from seg_pipeline.publish.stores import read_postgres_table, read_warehouse_table
from seg_pipeline.publish.writers import live_run_ids
from tests.conftest import TEST_KEY
from tests.integration.support import copy_extracts, run_all, settings_for


def run_job(settings, instance, job: str):
    return (
        build_definitions(settings)
        .resolve_job_def(job)
        .execute_in_process(instance=instance, raise_on_error=False)
    )


def both_stores(settings) -> dict[str, dict[str, pd.DataFrame]]:
    dsn, schema = settings.publish.postgres_dsn.get_secret_value(), settings.publish.postgres_schema
    return {
        "warehouse": {t: read_warehouse_table(settings.warehouse_path, t) for t in PUBLISHED_TABLES},
        "postgres": {t: read_postgres_table(dsn, schema, t) for t in PUBLISHED_TABLES},
    }


def check_result(instance, run_id: str, name: str):
    records = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("population_drift"), name), limit=10
    )
    return next(r for r in records if r.run_id == run_id).event.dagster_event.event_specific_data


@pytest.fixture(scope="module")
def published(small_company, tmp_path_factory, pg_url):
    tmp_path = tmp_path_factory.mktemp("publish")
    landing = copy_extracts(small_company, tmp_path / "landing")
    settings = settings_for(tmp_path, landing, **{"publish.postgres_dsn": pg_url,
                                                  "publish.postgres_schema": f"pub_{uuid.uuid4().hex[:8]}"})  # fmt: skip
    with pytest.MonkeyPatch.context() as patch, dg.instance_for_test() as instance:
        patch.setenv("SEG_PSEUDO_KEY", TEST_KEY)
        result = run_job(settings, instance, "full_refresh")
        assert result.success
        yield {"settings": settings, "instance": instance, "run_id": result.run_id, "landing": landing}


def test_full_refresh_publishes_the_contract_to_both_stores(published):
    settings, run_id = published["settings"], published["run_id"]
    stores = both_stores(settings)
    for table in PUBLISHED_TABLES:
        warehouse, postgres = stores["warehouse"][table], stores["postgres"][table]
        assert list(warehouse.columns) == column_names(table) == list(postgres.columns)
        assert len(warehouse) == len(postgres) and (len(warehouse) > 0 or table in FILLED_BY_A_LATER_RUN)
        assert set(warehouse["run_id"]) == set(postgres["run_id"]) <= {run_id}
    segments = stores["warehouse"]["customer_segments"]
    scores = stores["postgres"]["churn_scores"]
    # the CRM's own ids, one row per scored customer, the same customers in both per-customer tables
    crm = pd.read_csv(published["landing"] / "crm_customers.csv", dtype=str)
    assert segments["customer_id"].is_unique and set(segments["customer_id"]) <= set(crm["customer_id"])
    assert set(segments["customer_id"]) == set(scores["customer_id"])
    pg_segments = stores["postgres"]["customer_segments"].sort_values("customer_id", ignore_index=True)
    assert pg_segments["segment_id"].tolist() == segments["segment_id"].tolist()
    assert segments["segment_id"].notna().all()
    # profiles agree with the per-customer table; history holds this run's segments
    profiles = stores["warehouse"]["segment_profiles"].set_index("segment_id")
    assert profiles["customers"].to_dict() == segments["segment_id"].value_counts().to_dict()
    assert profiles["customers_in_retention_segment"].sum() == segments["in_retention_segment"].sum()
    history = stores["warehouse"]["segment_history"]
    assert history["customers_joined"].sum() == len(segments) and history["customers_stayed"].sum() == 0
    # the action list: the three action tiers in rank order, never a customer without marketing consent
    actions = stores["postgres"]["retention_actions"]
    tiers = segments.set_index("customer_id")["risk_tier"]
    assert set(actions["customer_id"]) == set(tiers.index[tiers.isin(ACTION_TIERS)])
    assert actions["action_rank"].tolist() == list(range(1, len(actions) + 1))
    cleaned = read_warehouse_table(settings.warehouse_path, "clean_customers", "clean")
    consent = cleaned.set_index("customer_id")["consent_marketing"]
    assert consent.reindex(actions["customer_id"]).fillna(False).astype(bool).all()
    assert (tiers[consent.reindex(tiers.index).fillna(False).astype(bool).eq(False)] == "no_consent").all()
    kpis = stores["warehouse"]["kpi_history"].set_index(["measure", "breakdown"])["value"]
    assert kpis["customers", "all"] == len(segments)
    assert kpis["retention_list_customers", "all"] == segments["in_retention_segment"].sum()
    # no identifying values anywhere (the CRM has names, emails and phones)
    text = pd.concat([f.astype(str) for f in stores["warehouse"].values()], axis=1).to_string()
    for column in ("email", "phone"):
        sample = crm[column].dropna().head(50)
        assert not any(value in text for value in sample)
    # the asset metadata says where the tables went
    event = published["instance"].get_latest_materialization_event(dg.AssetKey("published_churn_scores"))
    metadata = event.asset_materialization.metadata
    assert metadata["dagster/row_count"].value == len(scores)
    assert "PostgreSQL schema" in metadata["stores"].value and "warehouse" in metadata["stores"].value


def test_the_segment_report_has_every_section_and_is_linked(published):
    instance = published["instance"]
    event = instance.get_latest_materialization_event(dg.AssetKey("segment_report"))
    metadata = event.asset_materialization.metadata
    path = metadata["report_path"].value
    html = open(path, encoding="utf-8").read()  # noqa: SIM115
    for section, _title in SECTIONS:
        assert f'<section id="{section}"' in html
    assert len(re.findall(r'src="data:image/png;base64,', html)) >= 4
    assert "<script src" not in html and "<link" not in html
    assert published["run_id"] in html and "No reference run yet" in html
    profiles = read_warehouse_table(published["settings"].warehouse_path, "segment_profiles")
    for name in profiles["segment_name"]:
        assert name.replace("&", "&amp;") in html
    assert "segment" in metadata["summary"].value.lower()
    assert metadata["report"].value.startswith("http://127.0.0.1:3001/reports/segment_report_")
    assert Path(metadata["report_path"].value).is_file()


def test_failed_gate_keeps_the_last_good_publish_then_rescore_publishes_history_and_drift(
    published, tmp_path
):
    settings, instance = published["settings"], published["instance"]
    before = both_stores(settings)
    report_before = (settings.reports_dir / "latest.html").read_bytes()

    # 1. a CRM extract that collapsed to a quarter of its rows fails the row-count gate
    crm = published["landing"] / "crm_customers.csv"
    original, exported = crm.read_text(encoding="utf-8"), crm.stat()
    lines = original.splitlines(keepends=True)
    crm.write_text("".join(lines[: len(lines) // 4]), encoding="utf-8")
    try:
        failed = run_job(settings, instance, "rescore")
    finally:  # the same extract again, exported on the same day (its modification time is its export date)
        crm.write_text(original, encoding="utf-8")
        os.utime(crm, ns=(exported.st_atime_ns, exported.st_mtime_ns))
    assert not failed.success
    gates = [
        e.event_specific_data
        for e in failed.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    assert any(g.check_name == "raw_crm_customers_quality" and not g.passed for g in gates)
    after = both_stores(settings)
    for store in ("warehouse", "postgres"):
        for table in PUBLISHED_TABLES:
            pd.testing.assert_frame_equal(after[store][table], before[store][table])
    assert (settings.reports_dir / "latest.html").read_bytes() == report_before

    # 2. the same data rescored: a second history entry, drift measured and small
    rescored = run_job(settings, instance, "rescore")
    assert rescored.success
    history = read_warehouse_table(settings.warehouse_path, "segment_history")
    assert set(history["run_id"]) == {published["run_id"], rescored.run_id}
    latest = history[history["run_id"] == rescored.run_id]
    assert latest["customers_stayed"].sum() == latest["customers"].sum()  # same data, same segments
    kpis = read_warehouse_table(settings.warehouse_path, "kpi_history")
    assert kpis["run_id"].drop_duplicates().tolist() == [published["run_id"], rescored.run_id]
    customers = kpis[kpis["measure"] == "customers"]["value"]
    assert customers.nunique() == 1  # the same data scored twice
    drift = read_warehouse_table(settings.warehouse_path, "population_drift", "monitoring")
    assert "churn_probability" in set(drift["feature"]) and "monetary_365d" in set(drift["feature"])
    assert (drift["psi"] < 0.05).all() and set(drift["reference_run_id"]) == {published["run_id"]}
    assert check_result(instance, rescored.run_id, "population_drift_within_threshold").passed

    # 3. order amounts tripled: the drift check warns, and (a warning) publishing still happens
    orders = published["landing"] / "orders.csv"
    frame = pd.read_csv(orders, dtype=str)
    amounts = pd.to_numeric(frame["amount"], errors="coerce")
    frame["amount"] = (amounts * 3).round(2).astype("string").where(amounts.notna(), frame["amount"])
    frame.to_csv(orders, index=False)
    shifted = run_job(settings, instance, "rescore")
    assert shifted.success
    evaluation = check_result(instance, shifted.run_id, "population_drift_within_threshold")
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert "monetary_365d" in evaluation.description
    dsn = settings.publish.postgres_dsn.get_secret_value()
    scores = read_postgres_table(dsn, settings.publish.postgres_schema, "churn_scores")
    assert set(scores["run_id"]) == {shifted.run_id}
    report = (settings.reports_dir / "latest.html").read_text(encoding="utf-8")
    assert 'class="flagged"' in report and shifted.run_id in report


def stores_agree(instance, run_id: str):
    records = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("published_customer_segments"), "stores_agree"), limit=10
    )
    return next(r for r in records if r.run_id == run_id).event.dagster_event.event_specific_data


def test_a_publish_killed_between_the_stores_fails_the_check_until_the_next_publish_rolls_it_back(published):
    from tests.integration.test_publish_writers import killed_between

    settings, instance = published["settings"], published["instance"]
    dsn, schema = settings.publish.postgres_dsn.get_secret_value(), settings.publish.postgres_schema
    good = live_run_ids(settings.warehouse_path, (dsn, schema))
    assert good["warehouse"] == good["postgres"]
    killed_between(settings.warehouse_path, dsn, schema, "postgres_committed")
    assert live_run_ids(settings.warehouse_path, (dsn, schema)) == {
        "warehouse": good["warehouse"],
        "postgres": "new",
    }

    # PostgreSQL unreachable: the split cannot be undone; the publish step says so and the check fails
    unreachable = settings_for(settings.home.parent, published["landing"], **{
        "publish.postgres_dsn": "postgresql://nobody@127.0.0.1:1/none", "publish.postgres_schema": schema})  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEG_PSEUDO_KEY", TEST_KEY)
        blocked = run_all(unreachable, instance, groups=("published",))
    assert not blocked.success
    failure = next(e for e in blocked.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert (
        failure.step_key == "published_tables"
        and "the published stores DISAGREE" in failure.message + str(failure.step_failure_data.error.message)
    )
    check = stores_agree(instance, blocked.run_id)
    assert (
        not check.passed
        and f"holds the tables of run new, the warehouse those of run {good['warehouse']}"
        in (check.description)
    )

    # reachable again: the next publish puts PostgreSQL back first, then publishes; the check passes
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEG_PSEUDO_KEY", TEST_KEY)
        healed = run_all(settings, instance, groups=("published",))
    assert healed.success
    check = stores_agree(instance, healed.run_id)
    assert (
        check.passed and "put back to the tables of run" in check.metadata["resolved_before_publishing"].value
    )
    assert live_run_ids(settings.warehouse_path, (dsn, schema)) == {
        "warehouse": healed.run_id, "postgres": healed.run_id}  # fmt: skip
