"""Reading extracts against their contracts: every kind of bad file gets an error naming file, column, row."""

from __future__ import annotations

import os
import socket
import threading

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seg_pipeline.errors import SegPipelineError
from seg_pipeline.sources.contracts import CONTRACTS, RESERVED_COLUMNS, SOURCE_ROW
from seg_pipeline.sources.readers import empty_table, read_source

ORDERS = CONTRACTS["orders"]
CRM = CONTRACTS["crm_customers"]
GOOD_ORDERS = "order_id,customer_id,order_date,amount\nO1,C1,2024-01-05 10:00:00,10.5\nO2,C2,2024-02-01,20\n"


def csv_file(tmp_path, text: str, name: str = "orders.csv", encoding: str = "utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def read_error(contract, path, **kwargs) -> str:
    with pytest.raises(SegPipelineError) as info:
        read_source(contract, path, **kwargs)
    return str(info.value)


def test_good_csv_is_coerced_to_the_contract(tmp_path):
    frame, report = read_source(ORDERS, csv_file(tmp_path, GOOD_ORDERS))
    assert list(frame.columns) == [*ORDERS.column_names, "parse_errors", SOURCE_ROW]
    assert frame["parse_errors"].isna().all()
    assert str(frame["order_date"].dtype) == "datetime64[ns]"
    assert frame["amount"].tolist() == [10.5, 20.0]
    assert frame["order_date"].tolist() == [pd.Timestamp("2024-01-05 10:00"), pd.Timestamp("2024-02-01")]
    assert frame[SOURCE_ROW].tolist() == [1, 2]
    assert report.columns_absent == ["channel", "product_category"]
    assert frame["channel"].isna().all()
    assert len(report.sha256) == 64 and report.rows == 2


def test_semicolon_delimiter_bom_and_timezones(tmp_path):
    text = (
        "\ufeffcustomer_id;order_date;amount\nC1;2024-01-05T10:00:00+02:00;1.5\nC2;2024-01-06T00:00:00Z;2\n"
    )
    frame, report = read_source(ORDERS, csv_file(tmp_path, text))
    assert report.delimiter == ";"
    assert frame["order_date"].tolist() == [pd.Timestamp("2024-01-05 08:00"), pd.Timestamp("2024-01-06")]


def test_decimal_comma_amount_in_required_column_fails_with_row(tmp_path):
    text = "customer_id;order_date;amount\nC1;2024-01-05;1,5\n"
    message = read_error(ORDERS, csv_file(tmp_path, text))
    assert "orders.csv" in message and "'amount'" in message and "row 1 [9,9] (3 chars)" in message


def test_unparseable_required_date_names_file_column_and_rows(tmp_path):
    text = GOOD_ORDERS + "O3,C3,2023-02-30,5\nO4,C4,yesterday,5\n"
    message = read_error(ORDERS, csv_file(tmp_path, text))
    assert "orders.csv" in message and "'order_date'" in message
    assert "row 3 [9999-99-99] (10 chars)" in message and "row 4 [aaaaaaaaa] (9 chars)" in message
    assert "yesterday" not in message and "2023" not in message  # shapes only: any cell may be personal data
    assert "2 value(s)" in message


def test_unparseable_optional_value_becomes_missing_and_is_reported(tmp_path):
    text = "customer_id,signup_date,consent_profiling\nC1,2024-01-01,yes\nC2,31/31/2023,N\nC3,,maybe\n"
    frame, report = read_source(CRM, csv_file(tmp_path, text, "crm.csv"))
    assert frame["signup_date"].isna().tolist() == [False, True, True]
    assert frame["consent_profiling"].tolist() == [True, False, pd.NA]
    assert report.coerced_to_null["signup_date"]["count"] == 1
    assert report.coerced_to_null["signup_date"]["examples"] == [
        {"row": 2, "value_shape": "[99/99/9999] (10 chars)"}
    ]
    assert report.coerced_to_null["consent_profiling"]["examples"] == [
        {"row": 3, "value_shape": "[aaaaa] (5 chars)"}
    ]


def test_missing_required_column(tmp_path):
    message = read_error(ORDERS, csv_file(tmp_path, "customer_id,order_date\nC1,2024-01-01\n"))
    assert "missing required column(s) amount" in message and "orders.csv" in message
    assert "Columns found: customer_id, order_date" in message


def test_required_any_group(tmp_path):
    path = csv_file(tmp_path, "ts,event_type\n2024-01-01,sent\n", "email_events.csv")
    message = read_error(CONTRACTS["email_events"], path)
    assert "at least one of the columns customer_id, email" in message


def test_column_mapping_and_case_insensitive_names(tmp_path):
    text = "CustID,Order_Date,Total,Channel\nC1,2024-01-01,3,web\n"
    frame, report = read_source(
        ORDERS, csv_file(tmp_path, text), columns={"customer_id": "CustID", "amount": "Total"}
    )
    assert (
        frame.loc[0, "customer_id"] == "C1"
        and frame.loc[0, "amount"] == 3.0
        and frame.loc[0, "channel"] == "web"
    )
    assert report.renamed == {
        "CustID": "customer_id",
        "Order_Date": "order_date",
        "Total": "amount",
        "Channel": "channel",
    }


def test_mapped_column_absent_from_file(tmp_path):
    message = read_error(ORDERS, csv_file(tmp_path, GOOD_ORDERS), columns={"amount": "Total"})
    assert "'Total'" in message and "sources.orders.columns" in message


def test_extra_columns_are_kept_only_when_listed(tmp_path):
    text = "customer_id,monthly_charges,contract,secret_notes\nC1,12.5,annual,x\n"
    frame, report = read_source(
        CRM, csv_file(tmp_path, text, "crm.csv"), extra={"monthly_charges": "float", "contract": "string"}
    )
    assert frame.loc[0, "monthly_charges"] == 12.5 and frame.loc[0, "contract"] == "annual"
    assert "secret_notes" not in frame.columns and report.ignored_columns == ["secret_notes"]
    message = read_error(CRM, csv_file(tmp_path, "customer_id\nC1\n", "crm2.csv"), extra={"tenure": "float"})
    assert "tenure" in message and "customer_attributes" in message


def test_empty_file_and_header_only(tmp_path):
    assert "empty" in read_error(ORDERS, csv_file(tmp_path, ""))
    frame, _ = read_source(ORDERS, csv_file(tmp_path, "customer_id,order_date,amount\n", "h.csv"))
    assert len(frame) == 0 and str(frame["amount"].dtype) == "float64"


def test_duplicated_header(tmp_path):
    message = read_error(
        ORDERS, csv_file(tmp_path, "customer_id,order_date,amount,Amount\nC1,2024-01-01,1,2\n")
    )
    assert "duplicated header column 'Amount'" in message and "columns 3 and 4" in message


def test_wrong_encoding_names_the_row(tmp_path):
    text = "customer_id,name\nC1,Ana\nC2,José\n"
    message = read_error(CRM, csv_file(tmp_path, text, "crm.csv", encoding="latin-1"))
    assert "crm.csv" in message and "not valid utf-8" in message and "encoding" in message
    assert "line 3 (line 1 is the header), column 'name', byte 0xe9" in message
    frame, _ = read_source(CRM, tmp_path / "crm.csv", encoding="latin-1")
    assert frame["name"].tolist() == ["Ana", "José"]


def test_malformed_csv_line(tmp_path):
    message = read_error(ORDERS, csv_file(tmp_path, GOOD_ORDERS + "O3,C3,2024-01-01,1,unexpected,extra\n"))
    assert "malformed CSV" in message and "orders.csv" in message and "line 4" in message


def test_absent_optional_source_is_an_empty_typed_table():
    frame, report = read_source(CONTRACTS["web_events"], None)
    assert len(frame) == 0 and report.path is None
    assert (
        frame.dtypes.astype(str).to_dict()
        == empty_table(CONTRACTS["web_events"]).dtypes.astype(str).to_dict()
    )
    assert str(frame["ts"].dtype) == "datetime64[ns]"
    with pytest.raises(SegPipelineError, match="required"):
        read_source(CRM, None)


def test_parquet_with_native_types(tmp_path):
    table = pa.table(
        {
            "customer_id": pa.array([101, 102], pa.int64()),
            "order_date": pa.array([pd.Timestamp("2024-03-01 12:00", tz="Europe/Madrid")] * 2),
            "amount": pa.array([1.25, None]),
        }
    )
    pq.write_table(table, tmp_path / "orders.parquet")
    frame, report = read_source(ORDERS, tmp_path / "orders.parquet")
    assert report.format == "parquet"
    assert frame["customer_id"].tolist() == ["101", "102"]
    assert frame.loc[0, "order_date"] == pd.Timestamp("2024-03-01 11:00")
    assert frame["amount"].isna().tolist() == [False, True]


def test_truncated_parquet_and_csv_named_parquet(tmp_path):
    pq.write_table(pa.table({"customer_id": ["a"] * 100}), tmp_path / "full.parquet")
    data = (tmp_path / "full.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    assert "not a readable Parquet file" in read_error(CRM, tmp_path / "cut.parquet")
    renamed = csv_file(tmp_path, GOOD_ORDERS, "orders.parquet")
    message = read_error(ORDERS, renamed)
    assert "orders.parquet" in message and "CSV with a .parquet name" in message
    frame, _ = read_source(ORDERS, renamed, fmt="csv")
    assert len(frame) == 2


def test_infinite_and_non_numeric_amounts_are_invalid(tmp_path):
    message = read_error(
        ORDERS, csv_file(tmp_path, GOOD_ORDERS + "O3,C3,2024-01-01,inf\nO4,C4,2024-01-01,12 EUR\n")
    )
    assert "row 3 [aaa] (3 chars)" in message and "row 4 [99 AAA] (6 chars)" in message


def test_a_few_unparseable_required_values_are_passed_on_for_quarantine(tmp_path):
    text = (
        GOOD_ORDERS
        + "".join(f"O{i},C{i},2024-03-01,{i}\n" for i in range(3, 200))
        + "O999,C9,2024-03-01,twelve\n"
    )
    frame, report = read_source(ORDERS, csv_file(tmp_path, text), max_unparseable_share=0.01)
    bad = frame[frame["parse_errors"].notna()]
    assert bad[SOURCE_ROW].tolist() == [200] and bad["amount"].isna().all()
    assert bad["parse_errors"].iloc[0] == "amount 'twelve' is not a valid float"
    assert report.unparseable_required == {"amount": 1}
    message = read_error(
        ORDERS, csv_file(tmp_path, GOOD_ORDERS + "O3,C3,x,y\n", "o2.csv"), max_unparseable_share=0.01
    )
    assert "'order_date'" in message and "row 3 [a] (1 char)" in message
    assert "quality.max_unparseable_share" in message


def test_pii_in_wrong_columns_is_never_quoted_in_errors_or_the_report(tmp_path):
    """An email in a date column, a phone in an amount, a name in a flag: shapes only, with row and column."""
    crm = (
        "customer_id,signup_date,consent_profiling\nC1,anna.weber@example.de,Anna Weber\nC2,2024-01-01,yes\n"
    )
    _, report = read_source(CRM, csv_file(tmp_path, crm, "crm.csv"))
    detail = str(report.coerced_to_null)
    assert "[aaaa.aaaaa@aaaaaaa.aa] (email-like, 21 chars)" in detail and "[Aaaa Aaaaa] (10 chars)" in detail
    orders = GOOD_ORDERS + "O3,C3,2024-01-01,+49 170 1234567\n"
    message = read_error(ORDERS, csv_file(tmp_path, orders))
    assert (
        "required column 'amount'" in message and "row 3 [+99 999 9999999] (phone-like, 15 chars)" in message
    )
    shifted = read_error(
        ORDERS, csv_file(tmp_path, GOOD_ORDERS.replace(",20\n", ",20,Anna Weber\n"), "o2.csv")
    )
    assert "line 3" in shifted and "field 5" in shifted and "[Aaaa Aaaaa] (10 chars)" in shifted
    for planted in ("anna", "weber", "170 1234567", "1701234567"):
        assert planted not in (detail + message + shifted).casefold(), planted


def test_a_file_without_header_row_quotes_none_of_its_first_record(tmp_path):
    text = "C1,Anna Weber,anna.weber@example.de\nC2,Bo Li,bo@example.org\n"
    message = read_error(CRM, csv_file(tmp_path, text, "crm.csv"))
    assert "line 1 (the header), column 3" in message and "no header row" in message
    assert "anna" not in message.casefold() and "C1" not in message


@pytest.mark.parametrize("name", sorted(RESERVED_COLUMNS)[:3] + ["source_row", "parse_errors"])
def test_listed_columns_named_like_the_pipelines_own_are_refused(tmp_path, name):
    text = f"customer_id,{name}\nC1,7\n"
    message = read_error(CRM, csv_file(tmp_path, text, "crm.csv"), extra={name: "float"})
    assert "crm.csv" in message and f"column {name!r}" in message and "customer_attributes" in message
    assert RESERVED_COLUMNS[name] in message and f"crm_{name}: {name}" in message


def make_fifo(path):
    os.mkfifo(path)


def make_socket(path):
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))


@pytest.mark.parametrize(
    ("make", "kind"),
    [(make_fifo, "a FIFO (named pipe)"), (make_socket, "a socket"), (lambda p: p.mkdir(), "a directory"),
     (lambda p: p.symlink_to("/dev/null"), "a character device")],
)  # fmt: skip
def test_a_path_that_is_not_a_regular_file_says_what_it_is(tmp_path, make, kind):
    path = tmp_path / "orders.csv"
    make(path)
    message = read_error(ORDERS, path)  # never opened: a FIFO would block this test
    assert str(path) in message and f"is {kind}, not a file" in message and "regular file" in message
    assert "not found" not in message


def write_orders(path, rows: int) -> None:
    lines = [f"O{i},C{i % 997},2024-03-01 10:00:00,{i % 50}.5\n" for i in range(rows)]
    path.write_text("order_id,customer_id,order_date,amount\n" + "".join(lines), encoding="utf-8")


def test_a_file_still_being_written_while_it_is_read_fails_naming_it(tmp_path):
    """A real writer appends to the extract during the read: the rows read so far are not taken."""
    path = tmp_path / "orders.csv"
    write_orders(path, 200_000)
    stop, appended = threading.Event(), threading.Event()

    def append() -> None:
        i = 0
        while not stop.is_set():
            with path.open("a", encoding="utf-8") as fh:
                fh.write(f"N{i},C1,2024-03-02 10:00:00,1.5\n")
            i += 1
            appended.set()
            stop.wait(0.002)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        assert appended.wait(5)
        message = read_error(ORDERS, path)
    finally:
        stop.set()
        writer.join()
    assert str(path) in message and "changed while it was read" in message
    assert "probably still being written" in message and "Rerun when the copy has finished" in message
    frame, _ = read_source(ORDERS, path)  # the finished file reads whole
    assert len(frame) == 200_000 + appended_rows(path)


def appended_rows(path) -> int:
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.startswith("N"))
