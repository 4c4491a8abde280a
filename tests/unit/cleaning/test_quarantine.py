"""The quarantine is a review table: it shows the offending value, except contact data typed into the wrong
column, which it shows only by shape."""

from __future__ import annotations

import pandas as pd

from seg_pipeline.cleaning.quarantine import quarantine_rows


def test_contact_data_in_a_wrong_column_is_quarantined_by_shape_only():
    rows = pd.DataFrame({
        "source_row": [1, 2, 3, 4],
        "customer_id": ["C1", "C2", "C3", "C4"],
        "signup_date": ["2024-13-45", "anna.weber@example.com", "+49 171 2345678", "1234567.50"],
    })  # fmt: skip
    held = quarantine_rows(rows, "crm_customers", "unparseable_date", "signup_date", "not a date", "r1")
    values = held["value"].tolist()
    assert values[0] == "2024-13-45" and values[3] == "1234567.50"  # what a reviewer needs, kept
    assert values[1] == "[aaaa.aaaaa@aaaaaaa.aaa] (email-like, 22 chars)"
    assert values[2].endswith("(phone-like, 15 chars)") and "171" not in values[2]
    assert "anna" not in held.to_csv() and "2345678" not in held.to_csv()
    assert held["source_row"].tolist() == [1, 2, 3, 4] and held["record_key"].tolist() == [
        "C1",
        "C2",
        "C3",
        "C4",
    ]


def test_values_of_contact_columns_are_never_kept():
    rows = pd.DataFrame({"source_row": [7], "customer_id": ["C7"], "email": ["not-an-email"]})
    held = quarantine_rows(rows, "crm_customers", "invalid_email", "email", "not an email", "r1")
    assert held["value"].isna().all()
