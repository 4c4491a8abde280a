"""The hand-written identity corpus (tests/corpus/identity/pairs.yaml): realistic record pairs from 25
countries, written without the synthetic generator, loaded into one CRM table and deduplicated together."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import yaml

from seg_pipeline.cleaning.customers import clean_customers
from seg_pipeline.config import IdentityConfig
from seg_pipeline.sources.contracts import CRM_CUSTOMERS, PANDAS_DTYPES, SOURCE_ROW

CORPUS = Path(__file__).parents[2] / "corpus" / "identity" / "pairs.yaml"
# Share of `same` pairs that must end in one customer. Every `different` pair must stay apart: a false merge
# mixes two customers' orders, consent and scores, a missed one only splits a history.
MIN_SAME_MERGED = 0.85


def corpus_crm() -> tuple[pd.DataFrame, list[dict]]:
    pairs = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
    rows = []
    for pair in pairs:
        for side in ("a", "b"):
            rows.append({"customer_id": f"{pair['id']}-{side}", **pair[side]})
    raw = pd.DataFrame(rows)
    for column in CRM_CUSTOMERS.columns:
        dtype = PANDAS_DTYPES[column.type]
        if column.name not in raw:
            raw[column.name] = pd.Series(pd.NA if dtype != "datetime64[ns]" else pd.NaT, index=raw.index)
        raw[column.name] = (
            pd.to_datetime(raw[column.name]) if dtype == "datetime64[ns]" else raw[column.name].astype(dtype)
        )
    raw[SOURCE_ROW] = range(1, len(raw) + 1)
    return raw, pairs


@pytest.fixture(scope="module")
def resolved():
    raw, pairs = corpus_crm()
    result = clean_customers(
        raw, key=b"corpus-key", as_of=dt.date(2024, 6, 30), erased=set(), default_consent=True,
        stale_record_days=730, attributes=[], run_id="corpus", identity=IdentityConfig(),
    )  # fmt: skip
    return result, pairs


def test_corpus_is_large_and_varied():
    _, pairs = corpus_crm()
    countries = {record.get("country") for pair in pairs for record in (pair["a"], pair["b"])}
    assert len(pairs) >= 100
    assert len(countries - {None}) >= 10
    assert {p["expect"] for p in pairs} == {"same", "different"}


def test_no_different_pair_is_merged(resolved):
    result, pairs = resolved
    key = result.id_map.set_index("customer_id")["customer_key"]
    merged = [
        p["id"] for p in pairs if p["expect"] == "different" and key[f"{p['id']}-a"] == key[f"{p['id']}-b"]
    ]
    assert merged == []


def test_most_same_pairs_are_merged(resolved):
    result, pairs = resolved
    key = result.id_map.set_index("customer_id")["customer_key"]
    same = [p for p in pairs if p["expect"] == "same"]
    missed = [p["id"] for p in same if key[f"{p['id']}-a"] != key[f"{p['id']}-b"]]
    assert 1 - len(missed) / len(same) >= MIN_SAME_MERGED, missed


def test_only_pairs_of_the_corpus_are_linked(resolved):
    result, _ = resolved
    pair_of = result.id_map["customer_id"].str.rsplit("-", n=1).str[0]
    assert pair_of.groupby(result.id_map["customer_key"]).nunique().eq(1).all()
