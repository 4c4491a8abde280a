"""Identity resolution, survivorship, pseudonymization and erasure on hand-made CRM rows."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from seg_pipeline.cleaning.customers import clean_customers
from seg_pipeline.cleaning.privacy import erasure_keys, pseudonymize, record_erasure, resolve_key
from seg_pipeline.sources.contracts import CONTRACTS, SOURCE_ROW
from seg_pipeline.sources.readers import coerce

KEY = b"k"
AS_OF = dt.date(2024, 6, 30)


def crm(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in CONTRACTS["crm_customers"].columns:
        values = frame[column.name] if column.name in frame else pd.Series([None] * len(frame))
        frame[column.name] = coerce(values.astype(object), column.type)[0]
    frame[SOURCE_ROW] = range(1, len(frame) + 1)
    return frame


ROWS = [
    {"customer_id": "A1", "email": "ana.lopez@x.es", "phone": "+34 612 345 678", "company": "Acme S.L.",
     "name": "Ana López", "country": "ES", "signup_date": "2022-01-10", "updated_at": "2023-01-01",
     "plan": "pro", "consent_profiling": "yes", "consent_marketing": "yes"},
    {"customer_id": "A2", "email": "  ANA.LOPEZ@X.ES ", "phone": "0034612345678", "company": "ACME SL",
     "name": "ANA LÓPEZ", "country": None, "signup_date": "2023-03-01", "updated_at": "2024-05-01",
     "plan": None, "consent_profiling": "no", "consent_marketing": "yes", "industry": "retail"},
    {"customer_id": "A3", "email": None, "phone": "612 345 678", "company": "Acme Sociedad Limitada",
     "name": "ana lópez", "country": "ES", "signup_date": "2023-06-01", "updated_at": "2023-07-01"},
    {"customer_id": "B1", "email": "bob@y.com", "phone": "+34 612 345 678", "company": "Other Inc.",
     "name": "Bob Smith", "country": "ES", "signup_date": "2021-01-01", "updated_at": "2021-02-01"},
    {"customer_id": "", "email": "ghost@z.com", "name": "Ghost"},
    {"customer_id": "C1", "email": "c@z.com", "signup_date": "2030-01-01", "updated_at": "2020-01-01"},
]  # fmt: skip


def run(rows=ROWS, erased=frozenset()):
    return clean_customers(
        crm(rows), key=KEY, as_of=AS_OF, erased=set(erased), default_consent=True,
        stale_record_days=730, attributes=[], run_id="r1",
    )  # fmt: skip


def test_duplicates_merge_by_email_and_phone_with_name_or_company():
    result = run()
    id_map = result.id_map.set_index("customer_id")
    assert id_map.loc[["A1", "A2", "A3"], "surviving_customer_id"].tolist() == ["A1", "A1", "A1"]
    assert id_map.loc["A2", "match_rule"] == "email"
    assert id_map.loc["A3", "match_rule"] in ("phone+name", "phone+company")
    assert id_map.loc["B1", "surviving_customer_id"] == "B1"  # same phone, different person and company
    assert result.accounting == {
        "rows_in": 6, "rows_clean": 3, "rows_quarantined": 1, "rows_merged_duplicates": 2,
        "rows_erased": 0, "customers_erased": 0, "contacts_ambiguous_dropped": 1,
    }  # fmt: skip
    assert result.quarantine["rule"].tolist() == ["missing_required"]


def test_survivorship_fills_gaps_and_keeps_the_strictest_consent():
    customers = run().customers.set_index("customer_id")
    ana = customers.loc["A1"]
    assert ana["merged_records"] == 3
    assert ana["signup_date"] == pd.Timestamp("2022-01-10") and ana["updated_at"] == pd.Timestamp(
        "2024-05-01"
    )
    assert ana["plan"] == "pro" and ana["industry"] == "retail" and ana["legal_form"] == "sl"
    assert ana["consent_profiling"] is False or not ana["consent_profiling"]
    assert not ana["profiling_allowed"]
    assert customers.loc["B1", "is_stale"] and not customers.loc["A1", "is_stale"]


def test_no_pii_leaves_and_keys_are_hmacs():
    result = run()
    for table in (result.customers, result.id_map, result.contacts, result.quarantine):
        text = table.astype(str).to_string()
        for value in ("ana.lopez", "ANA", "612", "Acme", "bob@", "López", "ghost"):
            assert value not in text, value
    expected = pseudonymize(pd.Series(["A1"]), KEY).iloc[0]
    assert result.customers.set_index("customer_id").loc["A1", "customer_key"] == expected
    assert len(expected) == 64


def test_future_signup_is_fixed_and_counted():
    result = run()
    c1 = result.customers.set_index("customer_id").loc["C1"]
    assert pd.isna(c1["signup_date"]) and result.fixes["signup_date_after_as_of_set_missing"] == 1


def test_erasure_removes_the_whole_identity(tmp_path):
    record_erasure(tmp_path, "A2", KEY)  # a duplicate's id: the merged person goes
    assert not record_erasure(tmp_path, "A2", KEY)
    assert "A2" not in (tmp_path / "privacy" / "erasure_requests.csv").read_text()
    result = run(erased=erasure_keys(tmp_path))
    assert set(result.customers["customer_id"]) == {"B1", "C1"}
    assert set(result.id_map["customer_id"]) == {"B1", "C1"}
    assert result.accounting["rows_erased"] == 3 and result.accounting["customers_erased"] == 1
    assert set(result.erased["kind"]) == {"customer_id", "email", "phone", "customer_key"}
    # the score history's keys of every merged record, hashed: the key itself is never in the index
    assert len(result.erased[result.erased["kind"] == "customer_key"]) == 3
    assert not set(result.erased["hash"]) & {
        pseudonymize(pd.Series([i]), KEY).iloc[0] for i in ("A1", "A2", "A3")
    }


def test_key_comes_from_env_or_the_demo_file(tmp_path):
    assert resolve_key("K", tmp_path, environ={"K": "abc"}) == b"abc"
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pseudonymization.key").write_text("filekey\n")
    assert resolve_key("K", tmp_path, environ={}) == b"filekey"
