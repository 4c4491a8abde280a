"""The probabilistic matcher inside clean_customers: what merges, what goes to review, and what never shows."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from seg_pipeline.cleaning.customers import clean_customers
from seg_pipeline.cleaning.privacy import pseudonymize
from seg_pipeline.config import IdentityConfig
from tests.unit.cleaning.test_identity_and_privacy import crm

KEY = b"k"
ROWS = [
    # one person: typos in both names, a new email, the same phone, address and birth date
    {"customer_id": "P1", "name": "Jonathan Smith", "email": "jon.smith@example.co.uk", "phone": "020 7946 0958",
     "country": "GB", "address": "12 Baker Street", "postal_code": "NW1 6XE", "city": "London",
     "birth_date": "1980-01-02", "signup_date": "2020-01-01"},
    {"customer_id": "P2", "name": "Jonathon Smiht", "email": "jsmith1980@mail.example", "phone": "+44 20 7946 0958",
     "country": "GB", "address": "12 Baker St", "postal_code": "nw16xe", "city": "London",
     "birth_date": "1980-01-02", "signup_date": "2022-01-01"},
    # a household: same phone, address and surname, another person
    {"customer_id": "H1", "name": "Maria Rossi", "email": "maria.rossi@example.it", "phone": "06 6982 1234",
     "country": "IT", "address": "Via Roma 5", "postal_code": "00184", "city": "Roma", "birth_date": "1975-05-05"},
    {"customer_id": "H2", "name": "Giulia Rossi", "email": "giulia.r@example.it", "phone": "+39 06 6982 1234",
     "country": "IT", "address": "Via Roma 5", "postal_code": "00184", "city": "Roma", "birth_date": "2001-09-09"},
    # nobody else's
    {"customer_id": "X1", "name": "Ola Nordmann", "email": "ola@example.no", "phone": "+47 412 34 567", "country": "NO"},
]  # fmt: skip


def run(identity: IdentityConfig | None = None, erased: set[str] = frozenset()):
    return clean_customers(
        crm(ROWS), key=KEY, as_of=dt.date(2024, 6, 30), erased=set(erased), default_consent=True,
        stale_record_days=730, attributes=[], run_id="r", identity=identity or IdentityConfig(),
    )  # fmt: skip


def test_typos_merge_by_probability_and_the_map_says_so():
    result = run()
    id_map = result.id_map.set_index("customer_id")
    assert id_map.loc["P1", "customer_key"] == id_map.loc["P2", "customer_key"]
    assert id_map.loc["P2", "match_rule"] == "probabilistic"
    assert id_map.loc["P2", "match_probability"] >= 0.95
    assert id_map["match_probability"].drop("P2").isna().all()
    assert result.identity["merged_by_rule"] == {"probabilistic": 1}
    assert result.identity["model"].startswith("priors")  # five records: nothing to estimate from


def test_a_household_is_not_merged_but_listed_for_review_without_contact_data():
    result = run()
    id_map = result.id_map.set_index("customer_id")
    assert id_map.loc["H1", "customer_key"] != id_map.loc["H2", "customer_key"]
    review = result.review
    assert len(review) == 1
    row = review.iloc[0]
    assert {row["customer_id_a"], row["customer_id_b"]} == {"H1", "H2"}
    assert {row["customer_key_a"], row["customer_key_b"]} == {
        id_map.loc["H1", "customer_key"],
        id_map.loc["H2", "customer_key"],
    }
    assert "different forenames" in row["not_merged_because"]
    assert "phone" in row["fields_agreed"] and "location" in row["fields_agreed"]
    assert "birth date" in row["fields_disagreed"]
    text = " ".join(str(v) for v in review.to_numpy().ravel())
    for secret in ("Rossi", "rossi", "6982", "Via Roma", "giulia", "1975"):
        assert secret not in text


def test_without_vetoes_the_household_would_merge():
    result = run(IdentityConfig(household_vetoes=False))
    id_map = result.id_map.set_index("customer_id")
    assert id_map.loc["H1", "customer_key"] == id_map.loc["H2", "customer_key"]


def test_an_erased_record_never_appears_in_review():
    erased = set(pseudonymize(pd.Series(["H1"], dtype="string"), KEY))
    result = run(erased=erased)
    assert result.review.empty
    assert "H1" not in set(result.id_map["customer_id"])


def test_exact_rules_only_when_the_matcher_is_off():
    result = run(IdentityConfig(probabilistic=False))
    id_map = result.id_map.set_index("customer_id")
    assert id_map.loc["P1", "customer_key"] != id_map.loc["P2", "customer_key"]
    assert result.review.empty and result.identity["model"].startswith("off")


def test_thresholds_must_be_ordered():
    with pytest.raises(ValueError, match="review_threshold must be below merge_threshold"):
        IdentityConfig(review_threshold=0.9, merge_threshold=0.8)
