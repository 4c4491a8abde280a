"""Materializing the raw group with real Dagster, a real DuckDB warehouse and generated extracts."""

from __future__ import annotations

import dagster as dg
import duckdb
import pandas as pd

from seg_pipeline.sources.readers import file_sha256
from tests.conftest import AS_OF
from tests.integration.support import column_types, run_all, settings_for

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
        assert "orders.csv" in message and "'amount'" in message and "row 7 'twelve'" in message
        assert materializations(instance, "raw_orders") == []
        assert len(materializations(instance, "raw_crm_customers")) == 1


def test_configured_path_that_vanished_fails_naming_the_key(tmp_path, landing):
    settings = settings_for(tmp_path, landing, **{"sources.orders.path": str(landing / "gone.csv")})
    with dg.instance_for_test() as instance:
        result = materialize_raw(settings, instance)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "sources.orders.path" in failure.step_failure_data.error.message


def test_parquet_extracts(tmp_path):
    from seg_pipeline.synthetic.generator import GeneratorConfig, generate

    generate(GeneratorConfig(customers=300, seed=2, as_of=AS_OF, format="parquet"), tmp_path / "pq")
    settings = settings_for(tmp_path, tmp_path / "pq")
    with dg.instance_for_test() as instance:
        assert materialize_raw(settings, instance).success
        metadata = materializations(instance, "raw_orders")[0].asset_materialization.metadata
        assert metadata["format"].value == "parquet"
        assert metadata["dagster/row_count"].value == len(pd.read_parquet(tmp_path / "pq" / "orders.parquet"))
