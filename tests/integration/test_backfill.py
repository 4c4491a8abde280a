"""Backfills and backtests: a run whose as_of lies 120 days before the extracts' export date succeeds.

Rows dated after that as_of are outside the run's window, not bad data: the raw gates pass, the clean stage
leaves them out (counted in its metadata), no clean event and no profiled customer is later than as_of,
and rows dated after the export date itself are still quarantined as future dates.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import pandas as pd
import pytest

from seg_pipeline.sources.window import end_of_day
from seg_pipeline.synthetic.generator import GeneratorConfig, generate
from tests.conftest import AS_OF, TEST_KEY
from tests.integration.support import run_all, settings_for

EXPORTED = AS_OF  # the generator dates its extracts' modification time to its as_of
BACKFILL_AS_OF = AS_OF - dt.timedelta(days=120)
EVENT_TIME = {
    "orders": "order_date",
    "web_events": "ts",
    "support_tickets": "created_at",
    "email_events": "ts",
}


@pytest.fixture(scope="module")
def backfill(tmp_path_factory):
    """A 4,000-customer company exported on AS_OF, run as of 120 days earlier (the whole graph)."""
    tmp_path = tmp_path_factory.mktemp("backfill")
    landing = tmp_path / "landing"
    generate(GeneratorConfig(customers=4000, seed=31, as_of=AS_OF), landing)
    settings = settings_for(tmp_path, landing, as_of=BACKFILL_AS_OF.isoformat())
    with pytest.MonkeyPatch.context() as env, dg.instance_for_test() as instance:
        env.setenv("SEG_PSEUDO_KEY", TEST_KEY)  # module scope: the per-test env fixture is not active yet
        result = run_all(settings, instance)
        failures = [(e.step_key, e.step_failure_data.error.message[:500]) for e in result.all_events
                    if e.is_step_failure]  # fmt: skip
        metadata = {
            key: {k: v.value for k, v in event.asset_materialization.metadata.items()}
            for key in ("raw_orders", "clean_customers", *(f"clean_{s}" for s in EVENT_TIME))
            if (event := instance.get_latest_materialization_event(dg.AssetKey(key)))
        }
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert result.success, failures
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        read = {
            name: con.execute(f"select * from {schema}.{name}").df()
            for schema, name in [("clean", "clean_customers"), ("clean", "quarantine"), ("features", "customer_features")]
            + [("clean", f"clean_{s}") for s in EVENT_TIME]
        }  # fmt: skip
    return {"result": result, "failures": failures, "metadata": metadata, "checks": checks, "tables": read}


def test_the_backfill_run_succeeds_and_every_gate_passes(backfill):
    assert backfill["result"].success, backfill["failures"]
    checks = backfill["checks"]
    raw_gates = [f"raw_{s}_quality" for s in ("crm_customers", *EVENT_TIME)]
    assert all(checks[g].passed for g in raw_gates), {g: checks[g].description for g in raw_gates}
    failed = {
        name: c.description for name, c in checks.items() if not c.passed and c.severity.name == "ERROR"
    }
    assert not failed, failed


def test_the_raw_asset_records_the_export_date(backfill):
    raw = backfill["metadata"]["raw_orders"]
    assert raw["exported_on"] == EXPORTED.isoformat()
    assert raw["export_end"] == end_of_day(EXPORTED).isoformat()


def test_rows_after_as_of_are_counted_and_left_out_of_the_clean_tables(backfill):
    as_of_end = pd.Timestamp(end_of_day(BACKFILL_AS_OF))
    for source, column in EVENT_TIME.items():
        metadata = backfill["metadata"][f"clean_{source}"]
        after = metadata["outside_window/rows_after_as_of"]
        assert after == metadata["accounting/rows_after_as_of"]
        if source != "support_tickets":  # a few hundred tickets: some may be after as_of, not necessarily
            assert after > 0, source
        accounted = sum(v for k, v in metadata.items() if k.startswith("accounting/rows_")
                        and k != "accounting/rows_in" and not k.startswith("accounting/rows_clean_"))  # fmt: skip
        assert accounted == metadata["accounting/rows_in"], (source, metadata)
        clean = backfill["tables"][f"clean_{source}"]
        assert len(clean) and clean[column].max() <= as_of_end, source
    assert backfill["metadata"]["clean_customers"]["outside_window/signup_date_after_as_of"] > 0


def test_customers_who_signed_up_after_as_of_are_not_profiled(backfill):
    customers = backfill["tables"]["clean_customers"]
    later = customers.loc[customers["signup_date"] > pd.Timestamp(end_of_day(BACKFILL_AS_OF)), "customer_key"]
    assert len(later) > 0
    profiled = backfill["tables"]["customer_features"]["customer_key"]
    assert not profiled.isin(later).any()


def test_rows_after_the_export_date_are_still_future_dates(backfill):
    quarantine = backfill["tables"]["quarantine"]
    future = quarantine[quarantine["rule"] == "future_date"]
    assert set(future["source"]) >= {"orders", "web_events", "email_events"}
    assert future["reason"].str.contains(f"after the extract's export date {EXPORTED}").all()
    assert backfill["metadata"]["clean_customers"]["fixed/signup_date_after_as_of_set_missing"] > 0
