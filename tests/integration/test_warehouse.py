"""The Warehouse resource and its IO manager: whole tables replaced (empty frames and changed schemas land as
they are), the in-memory handoff, background writes and their failures."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from seg_pipeline.platform.warehouse import Warehouse, WarehouseIOManager, warehouse_at
from tests.integration.support import column_types


def run_once(database: str, frame: pd.DataFrame) -> pd.DataFrame:
    seen: dict[str, pd.DataFrame] = {}

    @dg.asset(metadata={"schema": "demo"})
    def upstream() -> pd.DataFrame:
        return frame

    @dg.asset(metadata={"schema": "demo"})
    def downstream(upstream: pd.DataFrame) -> pd.DataFrame:
        seen["loaded"] = upstream
        return upstream.head(0)

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [upstream, downstream],
            resources=warehouse_at(database),
            instance=instance,
        )
        assert result.success
    return seen["loaded"]


def test_schema_changes_and_empty_frames(tmp_path):
    database = str(tmp_path / "w.duckdb")
    run_once(database, pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    loaded = run_once(database, pd.DataFrame({"b": ["z"], "c": [0.5], "a": [9]}))  # reordered and widened
    assert loaded.to_dict("records") == [{"b": "z", "c": 0.5, "a": 9}]
    empty = pd.DataFrame({"ts": pd.Series(dtype="datetime64[ns]"), "id": pd.Series(dtype="string")})
    loaded = run_once(database, empty)
    assert list(loaded.columns) == ["ts", "id"] and len(loaded) == 0
    assert column_types(database, "upstream", schema="demo") == {"ts": "TIMESTAMP_NS", "id": "VARCHAR"}


# --- the handoff: a run's later steps get the frames it wrote from memory, as the warehouse gives them ---


def every_kind_of_column() -> pd.DataFrame:
    """One column of each dtype the stages produce, with and without gaps, plus ones whose type only the
    warehouse can tell (no value at all, categories, time zones, dates in an object column)."""
    import datetime as dt

    return pd.DataFrame(
        {
            "text": pd.array(["a", None, "c", "d"], dtype="string"),
            "text_full": pd.array(["a", "b", "c", "d"], dtype="string"),
            "text_none": pd.array([None] * 4, dtype="string"),
            "object_text": ["x", None, "z", float("nan")],
            "object_na": pd.array(["x", pd.NA, "z", "w"], dtype=object),
            "flag": pd.array([True, False, True, False], dtype="boolean"),
            "flag_gaps": pd.array([True, None, False, True], dtype="boolean"),
            "count": pd.array([1, 2, 3, 4], dtype="Int64"),
            "count_gaps": pd.array([1, None, 3, 4], dtype="Int64"),
            "small": pd.array([1, 2, None, 4], dtype="Int32"),
            "share": pd.array([0.5, None, 1.5, 2.0], dtype="Float64"),
            "numpy_int": [1, 2, 3, 4],
            "numpy_float": [0.1, float("nan"), 0.3, 0.4],
            "numpy_bool": [True, False, False, True],
            "when": pd.to_datetime(["2024-01-01", None, "2024-03-01 12:30", "2024-04-01"], format="ISO8601"),
            "when_utc": pd.to_datetime(["2024-01-01", None, "2024-03-01", "2024-04-01"]).tz_localize("UTC"),
            "day": [dt.date(2024, 1, 1), None, dt.date(2024, 1, 3), dt.date(2024, 1, 4)],
            "plan": pd.Categorical(["basic", "pro", None, "basic"]),
        },
        index=[10, 11, 12, 13],  # the warehouse gives 0..n-1
    )


def missing_value_types(frame: pd.DataFrame) -> dict[str, set[str]]:
    return {name: {type(v).__name__ for v in frame[name][frame[name].isna()]} for name in frame.columns}


def run_readers(database: str, frame: pd.DataFrame, handoff_mb: int, drop_table_between: bool = False):
    """upstream writes ``frame``; two readers (the whole table, two columns) load it, after an asset
    that drops upstream's table from the warehouse when ``drop_table_between``, so they can only succeed
    through the handoff. Returns (result, what each reader got)."""
    import duckdb

    seen: dict[str, pd.DataFrame] = {}

    @dg.asset(metadata={"schema": "demo"})
    def upstream() -> pd.DataFrame:
        return frame

    @dg.asset(deps=[upstream])
    def table_dropped(warehouse: dg.ResourceParam[Warehouse]) -> None:
        if drop_table_between:
            warehouse.wait_for_writes()  # as every user of the warehouse file does
            with duckdb.connect(database) as connection:
                connection.execute("drop table demo.upstream")

    @dg.asset(metadata={"schema": "demo"}, deps=[table_dropped])
    def whole(upstream: pd.DataFrame) -> pd.DataFrame:
        seen["whole"] = upstream.copy()
        if len(upstream):  # a reader changing its own frame
            upstream.iloc[0, upstream.columns.get_loc("numpy_int")] = -1
        upstream["added"] = 1
        return upstream.head(0)

    @dg.asset(
        metadata={"schema": "demo"},
        deps=[whole],
        ins={"upstream": dg.AssetIn(metadata={"columns": ["numpy_int", "text"]})},
    )
    def two_columns(upstream: pd.DataFrame) -> pd.DataFrame:
        seen["two_columns"] = upstream
        return upstream.head(0)

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [upstream, table_dropped, whole, two_columns],
            resources=warehouse_at(database, handoff_memory_mb=handoff_mb),
            instance=instance,
            raise_on_error=False,
        )
    return result, seen


def assert_same_frames(handed: dict[str, pd.DataFrame], read: dict[str, pd.DataFrame]) -> None:
    assert handed.keys() == read.keys() == {"whole", "two_columns"}
    for name in read:
        pd.testing.assert_frame_equal(handed[name], read[name], check_dtype=True, check_exact=True)
        assert missing_value_types(handed[name]) == missing_value_types(read[name]), name


def stored_as_duckdb_stores(database: str, frame: pd.DataFrame) -> None:
    """demo.upstream has the column types and values DuckDB gives ``frame`` written as it is."""
    import duckdb

    from seg_pipeline.platform.warehouse import fetch_frame

    with duckdb.connect(str(database)) as con:
        con.register("original", frame)
        con.execute("create table plain as select * from original")
        stored, plain = (fetch_frame(con.execute(f"select * from {t}")) for t in ("demo.upstream", "plain"))
    assert column_types(database, "upstream", "demo") == column_types(database, "plain")
    pd.testing.assert_frame_equal(stored, plain, check_dtype=True, check_exact=True)
    assert missing_value_types(stored) == missing_value_types(plain)


def test_handed_over_frames_equal_warehouse_reads(tmp_path):
    frame = every_kind_of_column()
    read_result, read = run_readers(str(tmp_path / "read.duckdb"), frame, handoff_mb=0)
    assert read_result.success
    stored_as_duckdb_stores(str(tmp_path / "read.duckdb"), frame)
    handed_result, handed = run_readers(str(tmp_path / "handed.duckdb"), frame, 64, drop_table_between=True)
    assert handed_result.success  # the readers never touched the (dropped) table
    assert_same_frames(handed, read)
    # the first reader changed its frame in place; the second still got the values upstream wrote
    assert read["two_columns"]["numpy_int"].tolist() == [1, 2, 3, 4]
    assert list(frame.columns) == list(every_kind_of_column().columns)  # upstream's own frame untouched


def test_empty_frames_hand_over_as_stored(tmp_path):
    frame = every_kind_of_column().head(0)
    _, read = run_readers(str(tmp_path / "read.duckdb"), frame, handoff_mb=0)
    stored_as_duckdb_stores(str(tmp_path / "read.duckdb"), frame)
    result, handed = run_readers(str(tmp_path / "handed.duckdb"), frame, 64, drop_table_between=True)
    assert result.success
    assert_same_frames(handed, read)


def test_a_frame_over_the_budget_is_read_back(tmp_path):
    big = pd.concat([every_kind_of_column()] * 60_000, ignore_index=True)  # ~20 MB, budget 1 MB
    result, _ = run_readers(str(tmp_path / "w.duckdb"), big, handoff_mb=1, drop_table_between=True)
    assert not result.success  # not kept, so the reader went to the warehouse and found no table
    failed = [e.step_key for e in result.all_events if e.is_step_failure]
    assert failed == ["whole"]
    result, seen = run_readers(str(tmp_path / "w2.duckdb"), big, handoff_mb=1)
    assert result.success and len(seen["whole"]) == len(big)


def test_every_input_of_a_full_refresh_is_handed_over_as_the_warehouse_gives_it(landing, tmp_path):
    """The whole graph on the small company: each input a step loads is served by the handoff and equals
    the warehouse read of the same table (dtypes, values, missing values), so no step computes on
    anything a read from the warehouse would not give it."""
    from seg_pipeline.definitions import build_definitions
    from seg_pipeline.platform.warehouse import COLUMNS_KEY
    from tests.integration.support import settings_for

    served, compared = [], []

    class ComparingIOManager(WarehouseIOManager):
        def load_input(self, context):
            columns = (context.definition_metadata or {}).get(COLUMNS_KEY)
            handed = self.warehouse.handed_over(context, columns)
            served.append(handed is not None)
            frame = handed if handed is not None else super().load_input(context)
            schema, table = self._table(context, context.upstream_output.definition_metadata)
            stored = self.warehouse.load_table(schema, table, columns)  # the warehouse read
            pd.testing.assert_frame_equal(frame, stored, check_dtype=True, check_exact=True)
            assert missing_value_types(frame) == missing_value_types(stored), context.asset_key
            compared.append(context.asset_key)
            return frame

    @dg.io_manager(required_resource_keys={"warehouse"})
    def comparing_io_manager(context):
        return ComparingIOManager(context.resources.warehouse)

    settings = settings_for(tmp_path, landing)
    base = build_definitions(settings)
    definitions = dg.Definitions(
        assets=base.assets, asset_checks=base.asset_checks, executor=base.executor,
        resources={**base.resources, "io_manager": comparing_io_manager},
    )  # fmt: skip
    with dg.instance_for_test() as instance:
        result = definitions.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, raise_on_error=False
        )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert len(compared) == len(served) > 60 and all(served)
    assert {k.path[-1] for k in compared} >= {"raw_web_events", "clean_orders", "customer_features"}


def database_refusing_upstream(path) -> str:
    """A warehouse where demo.upstream is a view: replacing it with a table fails, as a write can."""
    import duckdb

    with duckdb.connect(str(path)) as con:
        con.execute("create schema demo")
        con.execute("create view demo.upstream as select 7 as a, 'kept' as b")
    return str(path)


def test_a_write_that_fails_in_the_background_fails_the_run_naming_the_table(tmp_path):
    import duckdb

    database = database_refusing_upstream(tmp_path / "w.duckdb")
    result, _ = run_readers(database, every_kind_of_column(), handoff_mb=64)
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failures] == ["whole"]  # the next step that waited for the write
    message = failures[0].step_failure_data.error.to_string()
    assert "storing table demo.upstream in the warehouse failed" in message and "View" in message
    assert not result.asset_materializations_for_node("two_columns")  # nothing after it ran
    with duckdb.connect(database, read_only=True) as con:  # what was there is intact
        assert con.execute("select * from demo.upstream").fetchall() == [(7, "kept")]


def test_an_output_no_later_step_reads_is_stored_before_its_step_ends(tmp_path):
    @dg.asset(metadata={"schema": "demo"})
    def upstream() -> pd.DataFrame:  # read by no later step
        return every_kind_of_column()

    database = database_refusing_upstream(tmp_path / "w.duckdb")
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [upstream], resources=warehouse_at(database),
            instance=instance, raise_on_error=False,
        )  # fmt: skip
    failed = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failed] == ["upstream"]
    assert (
        "storing table demo.upstream in the warehouse failed" in failed[0].step_failure_data.error.to_string()
    )
    assert not result.asset_materializations_for_node("upstream")
