"""The CSV-injection rule of every export: formula-like text cells get a leading ', nothing else changes."""

from __future__ import annotations

import csv
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from seg_pipeline.cleaning.privacy import pseudonymize
from seg_pipeline.publish.export import (
    FORMULA_PREFIX,
    erased_customer_ids,
    neutralize_cell,
    neutralize_formulas,
    starts_a_formula,
    write_csv,
    write_export,
)

HOSTILE = [
    '=HYPERLINK("http://x/?a","Click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "\t=1+1",
    "\r=1+1",
    "\n=1+1",
    "\0=1+1",
    "＝1+1",  # full-width equals sign
    "＋1",
    "－1",
    "＠SUM(1)",
    "﹦1+1",  # small equals sign
    "  =1+1",  # spaces an importer may trim
    "\u3000=1+1",  # ideographic space
    "-",
    "=",
]
HARMLESS = ["C000123", "a=b", "x+1", "top-3 drivers", "mail@example.com", "'=already text", "", " ", "über"]


@pytest.mark.parametrize("text", HOSTILE)
def test_text_that_could_start_a_formula_gets_a_leading_quote(text):
    assert starts_a_formula(text)
    assert neutralize_cell(text) == FORMULA_PREFIX + text


@pytest.mark.parametrize("text", HARMLESS)
def test_other_text_is_unchanged(text):
    assert not starts_a_formula(text)
    assert neutralize_cell(text) == text


def test_numbers_dates_booleans_and_missing_values_are_untouched():
    frame = pd.DataFrame({
        "customer_id": ["=1+1", "C2", None],
        "churn_probability": [-0.5, 0.25, np.nan],
        "churn_risk_score": pd.array([-3, 40, None], dtype="Int64"),
        "in_retention_segment": pd.array([True, False, None], dtype="boolean"),
        "as_of": pd.to_datetime(["2024-06-30"] * 3),
        # as read from PostgreSQL: Python objects, numbers among them
        "mixed": pd.Series([-1, dt.date(2024, 6, 30), "-1"], dtype=object),
    })  # fmt: skip
    out = neutralize_formulas(frame)
    assert out["customer_id"].tolist()[:2] == ["'=1+1", "C2"] and out["customer_id"].isna().tolist()[2]
    assert out["mixed"].tolist() == [-1, dt.date(2024, 6, 30), "'-1"]
    for name in ("churn_probability", "churn_risk_score", "in_retention_segment", "as_of"):
        pd.testing.assert_series_equal(out[name], frame[name])
    assert frame["customer_id"].iloc[0] == "=1+1"  # the input frame keeps the raw value


def test_pandas_string_dtype_columns_are_neutralized():
    frame = pd.DataFrame({"customer_id": pd.array(["@x", pd.NA, "C3"], dtype="string")})
    assert neutralize_formulas(frame)["customer_id"].tolist() == ["'@x", pd.NA, "C3"]


def test_csv_round_trip_keeps_quotes_commas_and_line_breaks(tmp_path):
    texts = [
        '=HYPERLINK("http://x/?a","Click")',
        'said "hi", left',
        "line one\nline two",
        '-2+3,"x"\r\n=1',
        "plain",
    ]
    frame = pd.DataFrame({
        "customer_id": texts,
        "churn_probability": [-0.5, 0.0, 1.0, 0.125, -2.0],
        "as_of": pd.to_datetime(["2024-06-30"] * 5),
    })  # fmt: skip
    path = tmp_path / "out" / "scores.csv"
    assert write_csv(frame, path) == 5
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["customer_id", "churn_probability", "as_of"]
    body = rows[1:]
    assert [r[0] for r in body] == [neutralize_cell(t) for t in texts]
    assert [r[0] for r in body][:2] == ["'" + texts[0], texts[1]]
    assert [r[1] for r in body] == ["-0.5", "0.0", "1.0", "0.125", "-2.0"]  # numbers: no quote
    assert {r[2] for r in body} == {"2024-06-30"}
    assert not [r[0] for r in body if starts_a_formula(r[0])]  # no text cell, as read back, starts a formula


def test_parquet_exports_keep_raw_values_and_types(tmp_path):
    frame = pd.DataFrame({"customer_id": ["=1+1", "C2"], "action_rank": pd.array([1, 2], dtype="Int64"),
                          "expected_loss": [12.5, None]})  # fmt: skip
    assert write_export(frame, tmp_path / "a.parquet") == 2
    back = pd.read_parquet(tmp_path / "a.parquet")
    pd.testing.assert_frame_equal(back, frame)  # no quote added: Parquet is read by tools, not spreadsheets
    assert write_export(frame, tmp_path / "a.csv") == 2
    assert "'=1+1" in (tmp_path / "a.csv").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match=r"a\.xlsx: unknown export format '\.xlsx'"):
        write_export(frame, tmp_path / "a.xlsx")


def test_erased_customers_are_found_by_their_own_id_or_a_merged_record():
    key = b"k" * 32
    ids = pd.Series(["C1", "C2", "C3"])
    # C5 was merged into C3; a request for C5 erases the customer published as C3
    id_map = pd.DataFrame({"customer_id": ["C1", "C2", "C3", "C5"],
                           "surviving_customer_id": ["C1", "C2", "C3", "C3"]})  # fmt: skip
    requested = set(pseudonymize(pd.Series(["C2", "C5"]), key))
    assert erased_customer_ids(ids, requested, key, id_map).tolist() == [False, True, True]
    assert erased_customer_ids(ids, requested, key, None).tolist() == [False, True, False]
    assert erased_customer_ids(ids, set(), key, id_map).tolist() == [False, False, False]
