"""pyarrow's CSV reader (regular files) and pandas' parser (any file) give the same text columns."""

from __future__ import annotations

import pandas as pd
import pytest

from seg_pipeline.sources.readers import CsvShape, _read_any_csv, _read_csv, _read_regular_csv

ROWS = [
    "order_id,customer_id,amount,note",
    "O1,C1,10.50,plain",
    'O2,"C2",,"with, comma"',
    'O3,C3,"7","quote "" inside"',
    'O4,C4,NA,"two\nlines"',
    "O5,  C5 ,null,Ünïcödé ✓",
    'O6,,"",',
]


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_both_readers_give_the_same_columns(tmp_path, bom):
    path = tmp_path / "orders.csv"
    path.write_bytes(bom + "\r\n".join(ROWS).encode() + b"\r\n")
    names = ["order_id", "customer_id", "amount", "note"]
    arrow = _read_regular_csv(path, names, ",", CsvShape(width=4, blank_records=0, multiline=True))
    pandas = _read_any_csv(path, names, ",", "utf-8-sig", "utf-8", None)
    assert arrow is not None and len(arrow) == 6
    pd.testing.assert_frame_equal(arrow.fillna(pd.NA).astype("string"), pandas.fillna(pd.NA).astype("string"))
    assert arrow.loc[3, "note"] == "two\nlines" and arrow.loc[4, "customer_id"] == "  C5 "
    assert arrow.loc[4, "amount"] == "null" and arrow.loc[3, "amount"] == "NA"  # only empty is missing
    assert arrow.loc[5].isna().tolist() == [False, True, True, True]


def test_blank_lines_keep_row_numbers(tmp_path):
    """A file with blank lines goes to pandas' parser, which keeps them as rows: row numbers stay right."""
    path = tmp_path / "orders.csv"
    path.write_text("order_id,amount\nO1,1\n\nO3,3\n", encoding="utf-8")
    frame, delimiter, blank = _read_csv(path, None, "utf-8")
    assert blank == 1 and list(frame.index) == [1, 3] and list(frame["order_id"]) == ["O1", "O3"]


def test_a_ragged_file_falls_back_to_pandas(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("order_id,amount\nO1,1,\nO2,2\n", encoding="utf-8")
    frame, _, blank = _read_csv(path, None, "utf-8")
    assert (
        blank == 0 and list(frame.columns) == ["order_id", "amount"] and list(frame["amount"]) == ["1", "2"]
    )
