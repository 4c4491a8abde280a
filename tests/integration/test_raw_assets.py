"""Materializing the raw group with real Dagster, a real DuckDB warehouse and generated extracts."""

from __future__ import annotations

import json
import subprocess
import sys

import dagster as dg
import duckdb
import pandas as pd

from seg_pipeline.sources.readers import file_sha256
from tests.conftest import AS_OF
from tests.integration.support import column_types, run_all, settings_for
from tests.unit.sources.unprivileged import child_env, shared_dir, unprivileged_prefix

RAW = ["raw_crm_customers", "raw_orders", "raw_web_events", "raw_support_tickets", "raw_email_events"]


def materialize_raw(settings, instance):
    return run_all(settings, instance, RAW)


def materializations(instance, key: str):
    return instance.fetch_materializations(dg.AssetKey(key), limit=10).records


def test_raw_group_lands_every_row_in_duckdb_with_metadata(tmp_path, landing):
    settings = settings_for(tmp_path, landing)
    with dg.instance_for_test() as instance:
        result = materialize_raw(settings, instance)
        assert result.success
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
            for key in RAW:
                source = key.removeprefix("raw_")
                file_rows = len(pd.read_csv(landing / f"{source}.csv", dtype=str))
                table_rows = con.execute(f"select count(*) from raw.{key}").fetchone()[0]
                assert table_rows == file_rows > 0, key
                metadata = materializations(instance, key)[0].asset_materialization.metadata
                assert metadata["dagster/row_count"].value == file_rows
                assert metadata["file_sha256"].value == file_sha256(landing / f"{source}.csv")
                assert metadata["source_path"].value == str(landing / f"{source}.csv")
                schema = metadata["dagster/column_schema"].value
                assert "source_row" in [c.name for c in schema.columns]
        types = column_types(settings.warehouse_path, "raw_orders")
        assert types["order_date"].startswith("TIMESTAMP") and types["amount"] == "DOUBLE"
        crm = materializations(instance, "raw_crm_customers")[0].asset_materialization.metadata
        assert crm["values_coerced_to_null"].value > 0  # the generator's unparseable signup dates
        assert "payment_method" in crm["ignored_source_columns"].value  # not listed as an attribute


def test_listed_attributes_are_kept(tmp_path, landing):
    settings = settings_for(
        tmp_path,
        landing,
        **{
            "customer_attributes.numeric": ["monthly_charges"],
            "customer_attributes.categorical": ["contract", "payment_method"],
        },
    )
    with dg.instance_for_test() as instance:
        assert materialize_raw(settings, instance).success
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        frame = con.execute(
            "select monthly_charges, contract, payment_method from raw.raw_crm_customers"
        ).df()
    assert frame["monthly_charges"].dtype == "float64" and frame["contract"].notna().all()


def test_absent_optional_source_gives_an_empty_typed_table(tmp_path, landing):
    (landing / "web_events.csv").unlink()
    settings = settings_for(tmp_path, landing)
    with dg.instance_for_test() as instance:
        assert materialize_raw(settings, instance).success
        metadata = materializations(instance, "raw_web_events")[0].asset_materialization.metadata
        assert metadata["dagster/row_count"].value == 0
        assert "absent" in metadata["source_path"].value
    columns = column_types(settings.warehouse_path, "raw_web_events")
    assert columns["ts"].startswith("TIMESTAMP") and columns["customer_id"] == "VARCHAR"


def test_contract_breach_fails_only_that_asset_with_file_column_and_row(tmp_path, landing):
    orders = pd.read_csv(landing / "orders.csv", dtype=str, keep_default_na=False)
    orders.loc[6::20, "amount"] = "twelve"  # 5 % of the rows: a broken extract, not a few bad rows
    orders.to_csv(landing / "orders.csv", index=False)
    settings = settings_for(tmp_path, landing)
    with dg.instance_for_test() as instance:
        result = materialize_raw(settings, instance)
        assert not result.success
        failures = [e for e in result.all_events if e.is_step_failure]
        assert [e.step_key for e in failures] == ["raw_orders"]
        message = failures[0].step_failure_data.error.message
        assert "orders.csv" in message and "'amount'" in message and "row 7 [aaaaaa] (6 chars)" in message
        assert "twelve" not in message  # the event log and alerts get a value's shape, never the value
        assert materializations(instance, "raw_orders") == []
        assert len(materializations(instance, "raw_crm_customers")) == 1


def test_configured_path_that_vanished_fails_naming_the_key(tmp_path, landing):
    settings = settings_for(tmp_path, landing, **{"sources.orders.path": str(landing / "gone.csv")})
    with dg.instance_for_test() as instance:
        result = materialize_raw(settings, instance)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "sources.orders.path" in failure.step_failure_data.error.message


MATERIALIZE_AS_CHILD = """
import json, sys
import dagster as dg
from seg_pipeline.config import load_settings
from seg_pipeline.definitions import build_definitions

overrides, selection = json.loads(sys.argv[1]), json.loads(sys.argv[2])
job = build_definitions(load_settings(overrides=overrides, environ={})).resolve_implicit_global_asset_job_def()
result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                                asset_selection=[dg.AssetKey(k) for k in selection])
failed = [e for e in result.all_events if e.is_step_failure]
print(json.dumps({"events": [e.event_type_value for e in result.all_events],
                  "errors": {e.step_key: e.step_failure_data.error.message for e in failed}}))
"""


def test_unreadable_extracts_fail_at_once_without_retries():
    """Permission errors are not transient: the raw step fails once, naming the file and what to do, where
    the I/O retry policy (3 retries, 5 s then 10 and 20) would otherwise try again for half a minute.
    Run as a user file permissions apply to: a mode-000 file, and a file in a folder it may not enter."""
    prefix = unprivileged_prefix()
    with shared_dir() as shared:
        landing, locked_dir = shared / "landing", shared / "locked"
        landing.mkdir(mode=0o755)
        locked_dir.mkdir(mode=0o700)  # root's: nobody may not look inside
        (landing / "crm_customers.csv").write_text("customer_id\nC1\n", encoding="utf-8")
        unreadable = landing / "orders.csv"
        unreadable.write_text("customer_id,order_date,amount\nC1,2024-06-01,10\n", encoding="utf-8")
        unreadable.chmod(0o000)
        hidden = locked_dir / "web_events.csv"
        hidden.write_text("ts,customer_id\n2024-06-01,C1\n", encoding="utf-8")
        overrides = {"home": str(shared / "home"), "landing": str(landing), "as_of": AS_OF.isoformat(),
                     "sources.web_events.path": str(hidden), "orchestration.io_retries": 3,
                     "orchestration.io_retry_delay_seconds": 5}  # fmt: skip
        selection = ["raw_orders", "raw_web_events"]
        ran = subprocess.run([*prefix, sys.executable, "-c", MATERIALIZE_AS_CHILD, json.dumps(overrides),
                              json.dumps(selection)], env=child_env(shared), capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    outcome = json.loads(ran.stdout.strip().splitlines()[-1])
    assert "STEP_UP_FOR_RETRY" not in outcome["events"] and "STEP_RESTARTED" not in outcome["events"]
    errors = outcome["errors"]
    assert sorted(errors) == selection
    assert f"{unreadable} is not readable: permission denied for" in errors["raw_orders"]
    assert "permissions ----------" in errors["raw_orders"] and "retrying cannot help" in errors["raw_orders"]
    assert str(locked_dir) in errors["raw_web_events"] and "permission denied" in errors["raw_web_events"]
    assert "Errno" not in errors["raw_web_events"]  # our message, not the raw PermissionError


def test_parquet_extracts(tmp_path):
    from seg_pipeline.synthetic.generator import GeneratorConfig, generate

    generate(GeneratorConfig(customers=300, seed=2, as_of=AS_OF, format="parquet"), tmp_path / "pq")
    settings = settings_for(tmp_path, tmp_path / "pq")
    with dg.instance_for_test() as instance:
        assert materialize_raw(settings, instance).success
        metadata = materializations(instance, "raw_orders")[0].asset_materialization.metadata
        assert metadata["format"].value == "parquet"
        assert metadata["dagster/row_count"].value == len(pd.read_parquet(tmp_path / "pq" / "orders.parquet"))
