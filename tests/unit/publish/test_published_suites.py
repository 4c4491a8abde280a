"""The GX suites of the published tables say what the published contract says: the same columns in the same
order, and every non-nullable column checked for missing values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seg_pipeline.publish.contract import PUBLISHED_TABLES, TABLES

EXPECTATIONS = Path(__file__).resolve().parents[3] / "expectations"


@pytest.mark.parametrize("table", PUBLISHED_TABLES)
def test_the_published_suite_follows_the_contract(table):
    suite = json.loads((EXPECTATIONS / f"published_{table}.json").read_text(encoding="utf-8"))
    by_type: dict[str, list[dict]] = {}
    for expectation in suite["expectations"]:
        by_type.setdefault(expectation["type"], []).append(expectation["kwargs"])
    columns = [c.name for c in TABLES[table]]
    assert by_type["expect_table_columns_to_match_ordered_list"] == [{"column_list": columns}]
    not_null = {kwargs["column"] for kwargs in by_type["expect_column_values_to_not_be_null"]}
    assert not_null == {c.name for c in TABLES[table] if not c.nullable}
    unique = by_type.get("expect_column_values_to_be_unique", []) + by_type.get(
        "expect_compound_columns_to_be_unique", []
    )
    assert len(unique) == 1, "each published table names its key"
