"""The warehouse IO manager replaces whole tables: empty frames and changed schemas land as they are."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from seg_pipeline.warehouse import WarehouseIOManager
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
            resources={"io_manager": WarehouseIOManager(database=database)},
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
