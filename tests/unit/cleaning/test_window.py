"""Backfills and backtests: rows dated after as_of but not after the extract's export date are outside
the run's window (left out, or kept aside, and counted); after the export date they are future dates."""

from __future__ import annotations

import datetime as dt
import os

import pandas as pd

from seg_pipeline.cleaning.customers import clean_customers
from seg_pipeline.cleaning.events import Identity, clean_orders
from seg_pipeline.config import load_settings
from seg_pipeline.sources.contracts import CONTRACTS, SOURCE_ROW
from seg_pipeline.sources.readers import coerce
from seg_pipeline.sources.window import export_end, exported_on

KEY = b"k"
AS_OF = dt.date(2024, 6, 30)
EXPORTED = dt.date(2024, 9, 30)
EXPORT_END = export_end(AS_OF, EXPORTED)


def table(source: str, rows: list[dict]) -> pd.DataFrame:
    """Rows as the raw asset types them."""
    frame = pd.DataFrame(rows)
    for column in CONTRACTS[source].columns:
        values = frame[column.name] if column.name in frame else pd.Series([None] * len(frame))
        frame[column.name] = coerce(values.astype(object), column.type)[0]
    frame[SOURCE_ROW] = range(1, len(frame) + 1)
    return frame


def identity(customer_ids: list[str]) -> Identity:
    id_map = pd.DataFrame({"customer_id": customer_ids, "customer_key": [f"key-{c}" for c in customer_ids]})
    contacts = pd.DataFrame({"contact_kind": [], "contact_hash": [], "customer_key": []}, dtype="string")
    erased = pd.DataFrame({"kind": [], "hash": []}, dtype="string")
    return Identity(id_map, contacts, erased, KEY)


ORDERS = [
    {"customer_id": "C1", "order_id": "o1", "order_date": "2024-06-30 23:59:59", "amount": "10"},  # on as_of
    {"customer_id": "C1", "order_id": "o2", "order_date": "2024-07-01 00:00:00", "amount": "10"},  # window
    {"customer_id": "C1", "order_id": "o3", "order_date": "2024-09-30 12:00:00", "amount": "10"},  # window
    {"customer_id": "C1", "order_id": "o4", "order_date": "2024-10-01 00:00:00", "amount": "10"},  # future
    {"customer_id": "C1", "order_id": "o5", "order_date": "2024-01-15 08:00:00", "amount": "10"},
]


def clean(orders=ORDERS, end=EXPORT_END):
    raw = table("orders", orders)
    return clean_orders(raw, identity(["C1"]), as_of=AS_OF, retention_days=1095, run_id="r1", export_end=end)


def test_export_end_is_the_later_of_as_of_and_the_export_date():
    assert export_end(AS_OF, EXPORTED) == dt.datetime(2024, 9, 30, 23, 59, 59, 999999)
    assert export_end(AS_OF, dt.date(2024, 6, 1)) == dt.datetime(2024, 6, 30, 23, 59, 59, 999999)
    assert export_end(AS_OF, None) == dt.datetime(2024, 6, 30, 23, 59, 59, 999999)


def test_export_date_is_configured_or_the_files_modification_date(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("customer_id,order_date,amount\n", encoding="utf-8")
    stamp = dt.datetime(2024, 9, 30, 23, 30, tzinfo=dt.UTC).timestamp()
    os.utime(path, (stamp, stamp))
    settings = load_settings(overrides={"home": str(tmp_path), "sources.orders.path": str(path)}, environ={})
    assert exported_on(settings, "orders") == EXPORTED
    configured = load_settings(
        overrides={
            "home": str(tmp_path),
            "sources.orders.path": str(path),
            "sources.orders.exported_on": "2024-07-15",
        },
        environ={},
    )
    assert exported_on(configured, "orders") == dt.date(2024, 7, 15)
    assert exported_on(settings, "web_events") is None  # no extract


def test_event_rows_after_as_of_are_left_out_and_counted_not_quarantined():
    result = clean()
    assert sorted(result.table["order_id"]) == ["o1", "o5"]  # as_of's last second is in
    assert result.quarantine["rule"].tolist() == ["future_date"]
    assert result.quarantine["source_row"].tolist() == [4]
    assert "after the extract's export date 2024-09-30" in result.quarantine["reason"].iloc[0]
    assert result.outside_window == {"rows_after_as_of": 2}
    assert result.accounting["rows_after_as_of"] == 2


def test_the_accounting_balances_with_the_rows_outside_the_window():
    accounting = clean().accounting
    out = sum(v for k, v in accounting.items() if k.startswith("rows_") and k != "rows_in")
    assert accounting["rows_in"] == 5 and out == 5
    parts = ("rows_clean", "rows_quarantined", "rows_after_as_of")
    assert [accounting[k] for k in parts] == [2, 1, 2]


def test_without_an_export_date_later_than_as_of_every_row_after_as_of_is_a_future_date():
    result = clean(end=None)
    assert sorted(result.table["order_id"]) == ["o1", "o5"]
    assert result.quarantine["rule"].tolist() == ["future_date"] * 3
    assert result.quarantine["reason"].str.contains("order_date after as_of 2024-06-30").all()
    assert result.outside_window == {"rows_after_as_of": 0}


CRM = [
    {"customer_id": "A", "email": "a@x.com", "signup_date": "2024-06-30", "updated_at": "2024-06-30"},
    {"customer_id": "B", "email": "b@x.com", "signup_date": "2024-08-01", "updated_at": "2024-09-01"},
    {"customer_id": "C", "email": "c@x.com", "signup_date": "2024-10-01", "updated_at": "2024-10-02"},
]


def clean_crm(end=EXPORT_END):
    return clean_customers(
        table("crm_customers", CRM), key=KEY, as_of=AS_OF, erased=set(), default_consent=True,
        stale_record_days=730, attributes=[], run_id="r1", export_end=end,
    )  # fmt: skip


def test_crm_signup_in_the_window_is_kept_and_an_update_there_set_missing():
    result = clean_crm()
    customers = result.customers.set_index("customer_id")
    assert customers.loc["A", "signup_date"] == pd.Timestamp("2024-06-30")
    assert customers.loc["A", "updated_at"] == pd.Timestamp("2024-06-30")
    assert customers.loc["B", "signup_date"] == pd.Timestamp("2024-08-01")  # the feature stage leaves B out
    assert pd.isna(customers.loc["B", "updated_at"])  # the record's state at as_of is unknown
    assert pd.isna(customers.loc["C", "signup_date"]) and pd.isna(customers.loc["C", "updated_at"])
    assert result.outside_window == {"signup_date_after_as_of": 1, "updated_at_after_as_of_set_missing": 1}
    assert result.fixes["signup_date_after_as_of_set_missing"] == 1
    assert result.fixes["updated_at_after_as_of_set_missing"] == 1
    assert result.accounting["rows_in"] == result.accounting["rows_clean"] == 3  # no row is dropped


def test_crm_without_a_later_export_date_sets_every_date_after_as_of_missing():
    result = clean_crm(end=None)
    assert result.customers["signup_date"].notna().sum() == 1
    assert result.fixes["signup_date_after_as_of_set_missing"] == 2
    assert result.outside_window == {"signup_date_after_as_of": 0, "updated_at_after_as_of_set_missing": 0}
