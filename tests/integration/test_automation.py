"""Schedule, landing sensor and run-failure alerts through Dagster's own test APIs, on real files and a
real instance."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil

import dagster as dg
import pytest

from seg_pipeline.cli.launch import DAGSTER_YAML
from seg_pipeline.config import load_settings
from seg_pipeline.definitions import build_definitions
from seg_pipeline.defs.automation import EXTRACT_SET_TAG, landing_sensor, nightly_schedule, read_alerts


def _settings(tmp_path, landing, **overrides):
    base = {
        "home": str(tmp_path / "home"),
        "landing": str(landing),
        "orchestration.landing_settle_seconds": 0,
    }
    return load_settings(overrides={**base, **overrides}, environ={})


def test_nightly_schedule_uses_the_configured_cron_and_timezone(tmp_path):
    settings = _settings(tmp_path, tmp_path, **{"orchestration.schedule_cron": "30 3 * * 1-5",
                                                "orchestration.schedule_timezone": "Europe/Madrid"})  # fmt: skip
    schedule = nightly_schedule(settings)
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 3 * * 1-5", "Europe/Madrid")
    assert schedule.job_name == "full_refresh" and schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    tick = dt.datetime(2024, 7, 1, 3, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with dg.build_schedule_context(scheduled_execution_time=tick) as context:
        data = schedule.evaluate_tick(context)
    assert len(data.run_requests) == 1 and data.run_requests[0].tags["seg_pipeline/trigger"] == "schedule"
    default = nightly_schedule(_settings(tmp_path, tmp_path))
    assert (default.cron_schedule, default.execution_timezone) == ("0 2 * * *", "UTC")


def _evaluate(sensor, cursor):
    with dg.build_sensor_context(cursor=cursor) as context:
        return sensor.evaluate_tick(context)


def test_landing_sensor_starts_one_run_per_new_or_changed_extract_set(tmp_path, small_company):
    landing = tmp_path / "landing"
    landing.mkdir()
    sensor = landing_sensor(_settings(tmp_path, landing))

    empty = _evaluate(sensor, None)
    assert not empty.run_requests and "no CRM extract" in empty.skip_message

    for name in ("crm_customers.csv", "orders.csv"):
        shutil.copy(small_company / name, landing / name)
    first = _evaluate(sensor, None)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.run_key == f"extracts-{request.tags[EXTRACT_SET_TAG]}"
    assert request.tags["seg_pipeline/changed_sources"] == "crm_customers,orders"

    # the next tick with the stored cursor: the same set never starts a second run
    again = _evaluate(sensor, first.cursor)
    assert not again.run_requests and "already ran" in again.skip_message
    # the same bytes copied in again (new modification time) are no change either
    os.utime(landing / "orders.csv", (1e9, 1e9))
    shutil.copy(small_company / "orders.csv", landing / "orders.csv")
    touched = _evaluate(sensor, again.cursor)
    assert not touched.run_requests
    # without a cursor (e.g. sensor reset) the same set gives the same run key, which Dagster runs once
    assert _evaluate(sensor, None).run_requests[0].run_key == request.run_key

    # a new source and a changed extract each start exactly one new run
    shutil.copy(small_company / "web_events.csv", landing / "web_events.csv")
    added = _evaluate(sensor, touched.cursor)
    assert len(added.run_requests) == 1 and added.run_requests[0].run_key != request.run_key
    assert added.run_requests[0].tags["seg_pipeline/changed_sources"] == "web_events"
    lines = (landing / "orders.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (landing / "orders.csv").write_text("".join(lines[:-1]), encoding="utf-8")
    changed = _evaluate(sensor, added.cursor)
    assert (
        len(changed.run_requests) == 1
        and changed.run_requests[0].tags["seg_pipeline/changed_sources"] == "orders"
    )
    assert not _evaluate(sensor, changed.cursor).run_requests


def test_landing_sensor_waits_while_extracts_are_still_being_written(tmp_path, small_company):
    landing = tmp_path / "landing"
    landing.mkdir()
    shutil.copy(small_company / "crm_customers.csv", landing / "crm_customers.csv")
    sensor = landing_sensor(_settings(tmp_path, landing, **{"orchestration.landing_settle_seconds": 3600}))
    waiting = _evaluate(sensor, None)
    assert not waiting.run_requests and "to stay unchanged" in waiting.skip_message
    assert waiting.cursor is None  # judged again on the next tick


def test_failed_run_is_recorded_as_an_alert(tmp_path):
    empty_landing = tmp_path / "landing"
    empty_landing.mkdir()
    settings = _settings(tmp_path, empty_landing)
    definitions = build_definitions(settings)
    with dg.instance_for_test() as instance:
        result = definitions.resolve_job_def("full_refresh").execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
        sensor = next(s for s in definitions.sensors if s.name == "run_failure_alerts")
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_event=failure, dagster_instance=instance, dagster_run=run
        ).for_run_failure()
        sensor(context)
    alerts = read_alerts(settings)
    assert len(alerts) == 1
    alert = alerts[0]
    assert (
        alert["run_id"] == result.run_id and alert["job"] == "full_refresh" and alert["trigger"] == "manual"
    )
    assert alert["failed_steps"][0]["step"] == "raw_crm_customers"
    assert "crm_customers" in alert["failed_steps"][0]["error"]
    assert json.loads(settings.alerts_path.read_text().splitlines()[0]) == alert


def test_publish_concurrency_is_limited_on_the_instance(tmp_path):
    definitions = build_definitions(_settings(tmp_path, tmp_path))
    graph = definitions.resolve_asset_graph()
    publish = graph.get(dg.AssetKey("published_customer_segments")).assets_def
    assert publish.op.pool == "seg_publish"
    assert publish.op.retry_policy.max_retries == 3 and publish.op.retry_policy.delay == 5
    (tmp_path / "dagster.yaml").write_text(DAGSTER_YAML, encoding="utf-8")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == 1
        limits = config.run_queue_config.tag_concurrency_limits
        assert {"key": "seg_pipeline/publishes", "limit": 1} in limits
    for job in ("full_refresh", "rescore"):
        assert definitions.resolve_job_def(job).tags["seg_pipeline/publishes"] == "true"


@pytest.mark.parametrize("key", ["published_customer_segments", "published_segment_history"])
def test_published_assets_have_freshness_policies(tmp_path, key):
    settings = _settings(tmp_path, tmp_path, **{"orchestration.freshness_warn_hours": 30,
                                                "orchestration.freshness_fail_hours": 60})  # fmt: skip
    graph = build_definitions(settings).resolve_asset_graph()
    policy = graph.get(dg.AssetKey(key.split("/"))).freshness_policy
    assert policy.fail_window.to_timedelta() == dt.timedelta(hours=60)
    assert policy.warn_window.to_timedelta() == dt.timedelta(hours=30)
