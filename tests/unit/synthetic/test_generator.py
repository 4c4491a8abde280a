"""The synthetic company: deterministic, planted segments and churn, and the promised messiness."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest

from seg_pipeline.synthetic.generator import CHUNK_SIZE, GeneratorConfig, MessinessRates, generate
from seg_pipeline.synthetic.lexicon import LEGAL_FORMS
from tests.conftest import AS_OF

AS_OF_END = pd.Timestamp(AS_OF) + pd.Timedelta(days=1)


def read(folder, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False, na_values=[""])


def digest(folder) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.*"))
    }


@pytest.fixture(scope="module")
def company(small_company):
    truth = read(small_company / "truth", "customers")
    orders = read(small_company, "orders")
    orders["amount"] = orders["amount"].astype(float)
    return {
        "dir": small_company,
        "truth": truth,
        "crm": read(small_company, "crm_customers"),
        "orders": orders,
        "web": read(small_company, "web_events"),
        "tickets": read(small_company, "support_tickets"),
        "email": read(small_company, "email_events"),
        "anomalies": read(small_company / "truth", "anomalies"),
        "duplicates": read(small_company / "truth", "duplicates"),
        "identities": read(small_company / "truth", "web_identities"),
    }


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    cfg = GeneratorConfig(customers=400, seed=5, as_of=AS_OF)
    generate(cfg, tmp_path / "a")
    generate(cfg, tmp_path / "b")
    generate(GeneratorConfig(customers=400, seed=6, as_of=AS_OF), tmp_path / "c")
    first = digest(tmp_path / "a")
    assert len(first) == 11  # five extracts, five truth tables, the manifest
    assert first == digest(tmp_path / "b")
    assert first["crm_customers.csv"] != digest(tmp_path / "c")["crm_customers.csv"]


def test_parquet_holds_the_same_company_as_csv(tmp_path):
    generate(GeneratorConfig(customers=300, seed=3, as_of=AS_OF, format="parquet"), tmp_path / "pq")
    generate(GeneratorConfig(customers=300, seed=3, as_of=AS_OF, format="csv"), tmp_path / "csv")
    from_parquet = pd.read_parquet(tmp_path / "pq" / "orders.parquet")
    from_csv = pd.read_csv(tmp_path / "csv" / "orders.csv", parse_dates=["order_date"])
    assert len(from_parquet) == len(from_csv) > 0
    assert from_parquet["order_id"].tolist() == from_csv["order_id"].tolist()
    assert np.allclose(from_parquet["amount"], from_csv["amount"])


def test_chunks_join_seamlessly(tmp_path):
    n = CHUNK_SIZE + 250
    summary = generate(
        GeneratorConfig(customers=n, seed=9, as_of=AS_OF, rates=MessinessRates().scaled(0)), tmp_path
    )
    truth = read(tmp_path / "truth", "customers")
    crm = read(tmp_path, "crm_customers")
    orders = pd.read_csv(tmp_path / "orders.csv", usecols=["order_id", "customer_id"], dtype=str)
    assert len(truth) == n and truth["customer_id"].is_unique
    assert len(crm) == n and set(crm["customer_id"]) == set(truth["customer_id"])  # no duplicates at rate 0
    assert orders["order_id"].is_unique and set(orders["customer_id"]) <= set(truth["customer_id"])
    assert summary.rows["orders"] == len(orders)
    manifest = json.loads((tmp_path / "truth" / "manifest.json").read_text())
    assert manifest["customers"] == n and manifest["anomalies"] == {}


def per_segment(company) -> pd.DataFrame:
    truth = company["truth"].set_index("customer_id")
    clean = company["orders"][~company["orders"]["order_id"].isin(company["anomalies"]["key"])]
    clean = clean[clean["customer_id"].isin(truth.index)]
    clean = clean.assign(segment=truth.loc[clean["customer_id"], "segment"].to_numpy())
    sizes = truth["segment"].value_counts()
    email = company["email"].dropna(subset=["customer_id"])
    email = email[email["customer_id"].isin(truth.index)]
    email = email.assign(segment=truth.loc[email["customer_id"], "segment"].to_numpy())
    kinds = email.groupby("segment")["event_type"].value_counts().unstack(fill_value=0)
    tickets = company["tickets"].dropna(subset=["customer_id"])
    tickets = tickets[tickets["customer_id"].isin(truth.index)]
    web = company["web"].dropna(subset=["customer_id"])
    web = web[web["customer_id"].isin(truth.index)]
    channel = pd.crosstab(clean["segment"], clean["channel"], normalize="index")
    return pd.DataFrame(
        {
            "orders_per_customer": clean.groupby("segment").size() / sizes,
            "median_order_value": clean.groupby("segment")["amount"].median(),
            "store_share": channel["store"],
            "app_share": channel["app"],
            "sales_rep_share": channel["sales_rep"],
            "open_rate": kinds["open"] / kinds["sent"],
            "tickets_per_customer": truth.loc[tickets["customer_id"], "segment"].value_counts() / sizes,
            "web_events_per_customer": truth.loc[web["customer_id"], "segment"].value_counts() / sizes,
            "churn_rate": truth.assign(c=truth["churned_by_as_of"] == "true").groupby("segment")["c"].mean(),
        }
    )


def test_planted_segments_differ_in_every_behaviour(company):
    stats = per_segment(company)
    assert len(stats) >= 5
    value = stats["median_order_value"]
    assert (
        value["big_ticket_b2b"]
        > 4 * value["premium_loyal"]
        > 8 * value["steady_store"]
        > 8 * value["bargain_frequent"]
    )
    assert stats["orders_per_customer"].idxmax() == "bargain_frequent"
    assert stats["orders_per_customer"].idxmin() == "big_ticket_b2b"
    assert stats["store_share"].idxmax() == "steady_store" and stats.loc["steady_store", "store_share"] > 0.5
    assert stats["app_share"].idxmax() == "bargain_frequent"
    assert stats["sales_rep_share"].idxmax() == "big_ticket_b2b"
    assert (
        stats["open_rate"].idxmax() == "premium_loyal"
        and stats["open_rate"].idxmin() == "disengaged_low_value"
    )
    assert stats["tickets_per_customer"].idxmax() == "big_ticket_b2b"
    assert set(stats["web_events_per_customer"].nlargest(2).index) == {"bargain_frequent", "premium_loyal"}
    assert stats["churn_rate"].idxmax() == "disengaged_low_value"


def test_churn_follows_behaviour_but_is_not_deterministic(company):
    truth = company["truth"]
    churned = truth["churned_by_as_of"] == "true"
    by_life = churned.groupby(truth["lifecycle"]).mean()
    assert by_life["declining"] > 1.5 * by_life["mature"]
    assert 0.05 < churned.mean() < 0.6
    tickets = company["tickets"].dropna(subset=["satisfaction"])
    unhappy = set(tickets.loc[tickets["satisfaction"].astype(float) <= 2, "customer_id"])
    had_unhappy = truth["customer_id"].isin(unhappy)
    assert churned[had_unhappy].mean() > churned[~had_unhappy].mean()
    assert by_life["declining"] < 0.95 and by_life["mature"] > 0.02  # predictable, not trivial
    future = pd.to_datetime(truth["churn_date"]) > pd.Timestamp(AS_OF)
    assert future.any()  # churn still to come is in the truth, never in the extracts


def test_lifecycles(company):
    truth = company["truth"]
    signup = pd.to_datetime(truth["signup_date"])
    age = (pd.Timestamp(AS_OF) - signup).dt.days
    assert set(truth["lifecycle"]) == {"new", "growing", "mature", "declining"}
    assert age[truth["lifecycle"] == "new"].max() <= 121
    assert age[truth["lifecycle"].isin(["mature", "declining"])].min() >= 364
    orders = company["orders"][company["orders"]["customer_id"].isin(truth["customer_id"])]
    date = pd.to_datetime(orders["order_date"])
    recent = orders[(date > pd.Timestamp(AS_OF) - pd.Timedelta(days=180)) & (date <= pd.Timestamp(AS_OF))]
    earlier = orders[
        (date > pd.Timestamp(AS_OF) - pd.Timedelta(days=540))
        & (date <= pd.Timestamp(AS_OF) - pd.Timedelta(days=360))
    ]
    life = truth.set_index("customer_id")["lifecycle"]
    declining = life[life == "declining"].index
    assert recent["customer_id"].isin(declining).sum() < 0.6 * earlier["customer_id"].isin(declining).sum()


def test_no_event_after_as_of_except_injected_future_dates(company):
    anomalies = company["anomalies"]
    for name, frame, column in (
        ("orders", company["orders"], "order_date"),
        ("web_events", company["web"], "ts"),
        ("email_events", company["email"], "ts"),
        ("support_tickets", company["tickets"], "created_at"),
    ):
        after = np.flatnonzero(pd.to_datetime(frame[column]) >= AS_OF_END) + 1
        injected = anomalies.loc[
            (anomalies["source"] == name) & (anomalies["kind"] == "future_date"), "source_row"
        ]
        assert len(after) > 0 or name == "support_tickets"
        assert set(after) == set(injected.astype(int)), name


def test_duplicates_are_the_same_person_written_differently(company):
    crm = company["crm"].set_index("customer_id")
    dups = company["duplicates"]
    assert 0.015 < len(dups) / len(company["truth"]) < 0.05
    original = crm.loc[dups["original_id"]]
    duplicate = crm.loc[dups["duplicate_id"]]
    same_email = (
        original["email"].str.strip().str.lower().to_numpy()
        == duplicate["email"].str.strip().str.lower().to_numpy()
    )
    # most keep the address in another case or spacing; identity_typos (35 %) also plants typos and gaps
    assert 0.6 < same_email.mean() < 0.98
    assert (original["email"].to_numpy() != duplicate["email"].to_numpy()).all()
    digits = lambda s: s.str.replace(r"\D", "", regex=True).str[-8:]  # noqa: E731
    both = original["phone"].notna().to_numpy() & duplicate["phone"].notna().to_numpy()
    assert (digits(original["phone"])[both].to_numpy() == digits(duplicate["phone"])[both].to_numpy()).all()
    assert (original["phone"][both].to_numpy() != duplicate["phone"][both].to_numpy()).all()
    assert not set(dups["duplicate_id"]) & set(company["truth"]["customer_id"])


def test_company_legal_form_variants(company):
    companies = company["crm"]["company"].dropna()
    variants = {v for forms in LEGAL_FORMS.values() for spelled in forms for v in spelled[1:]}
    canonical = {spelled[0] for forms in LEGAL_FORMS.values() for spelled in forms}
    ends = companies.map(
        lambda c: next(
            (v for v in sorted(variants | canonical, key=len, reverse=True) if c.endswith(" " + v)), None
        )
    )
    assert ends.isin(canonical).mean() > 0.7
    assert ends.isin(variants).sum() >= 0.05 * len(companies)


def test_injected_row_problems_are_where_the_truth_says(company):
    anomalies = company["anomalies"]
    orders = company["orders"]
    crm_ids = set(company["crm"]["customer_id"])

    def rows(source: str, kind: str) -> np.ndarray:
        picked = anomalies[(anomalies["source"] == source) & (anomalies["kind"] == kind)]
        assert len(picked) > 0, (source, kind)
        return picked["source_row"].astype(int).to_numpy() - 1

    assert (orders["amount"].iloc[rows("orders", "negative_amount")] < 0).all()
    outliers = orders["amount"].iloc[rows("orders", "amount_outlier")].abs()
    assert outliers.median() > 20 * orders["amount"].abs().median()
    assert (orders["order_date"].iloc[rows("orders", "invalid_date")].str.startswith("1900-01-01")).all()
    assert not orders["customer_id"].iloc[rows("orders", "orphan_id")].isin(crm_ids).any()
    assert orders["customer_id"].iloc[rows("orders", "missing_required")].isna().all()
    assert not company["email"]["customer_id"].iloc[rows("email_events", "orphan_id")].isin(crm_ids).any()
    signup = company["crm"]["signup_date"].iloc[rows("crm_customers", "invalid_date")]
    assert pd.to_datetime(signup, errors="coerce", format="%Y-%m-%d").isna().all()
    stale = pd.to_datetime(company["crm"]["updated_at"].iloc[rows("crm_customers", "stale_record")])
    assert (stale < pd.Timestamp(AS_OF) - pd.Timedelta(days=2 * 365)).all()
    assert company["email"]["event_type"].iloc[rows("email_events", "label_variant")].str.istitle().all()


def test_anonymous_visitors_identify_by_email_later(company):
    web = company["web"]
    identify = web[web["event_type"] == "identify"]
    assert len(identify) > 0 and identify["customer_id"].isna().all()
    ids = company["identities"].set_index("anonymous_id")["customer_id"]
    emails = company["crm"].set_index("customer_id")["email"]
    expected = emails.loc[ids.loc[identify["anonymous_id"]].to_numpy()].str.strip().str.lower().to_numpy()
    assert (identify["email"].str.strip().str.lower().to_numpy() == expected).all()
    for _, event in identify.head(20).iterrows():
        before = web[(web["anonymous_id"] == event["anonymous_id"]) & (web["ts"] < event["ts"])]
        assert before["customer_id"].isna().all()


def test_unlinked_contacts_carry_email_or_phone(company):
    tickets = company["tickets"]
    unlinked = tickets[tickets["customer_id"].isna()]
    assert unlinked["email"].notna().sum() > 0 and unlinked["phone"].notna().sum() > 0
    assert unlinked[["email", "phone"]].notna().any(axis=1).all()
    assert company["email"]["customer_id"].isna().sum() > 0


def test_rates_are_configurable(tmp_path):
    generate(
        GeneratorConfig(customers=500, seed=1, as_of=AS_OF, rates=MessinessRates().scaled(0)),
        tmp_path / "clean",
    )
    assert len(read(tmp_path / "clean" / "truth", "anomalies")) == 0
    assert len(read(tmp_path / "clean" / "truth", "duplicates")) == 0
    assert len(read(tmp_path / "clean" / "truth", "households")) == 0
    many = MessinessRates().with_overrides({"duplicate_customers": 0.2})
    generate(GeneratorConfig(customers=500, seed=1, as_of=AS_OF, rates=many), tmp_path / "dups")
    assert 60 < len(read(tmp_path / "dups" / "truth", "duplicates")) < 140
    with pytest.raises(ValueError, match="unknown messiness rate"):
        MessinessRates().with_overrides({"typos": 0.1})


def test_without_identity_noise_duplicates_keep_their_email(tmp_path):
    rates = MessinessRates().with_overrides({"identity_typos": 0.0, "duplicate_customers": 0.2})
    generate(GeneratorConfig(customers=500, seed=3, as_of=AS_OF, rates=rates), tmp_path)
    crm = read(tmp_path, "crm_customers").set_index("customer_id")
    dups = read(tmp_path / "truth", "duplicates")
    original, duplicate = crm.loc[dups["original_id"], "email"], crm.loc[dups["duplicate_id"], "email"]
    assert (original.str.strip().str.lower().to_numpy() == duplicate.str.strip().str.lower().to_numpy()).all()


def test_households_share_a_phone_and_surname_but_not_a_first_name(company):
    crm = company["crm"].set_index("customer_id")
    households = read(company["dir"] / "truth", "households")
    assert len(households) > 0
    a, b = crm.loc[households["customer_id"]], crm.loc[households["household_member_id"]]
    digits = lambda s: s.str.replace(r"\D", "", regex=True).str[-8:]  # noqa: E731
    both = a["phone"].notna().to_numpy() & b["phone"].notna().to_numpy()
    assert (digits(a["phone"])[both].to_numpy() == digits(b["phone"])[both].to_numpy()).all()
    assert (a["name"].str.split().str[0].to_numpy() != b["name"].str.split().str[0].to_numpy()).all()
    assert (a["email"].to_numpy() != b["email"].to_numpy()).all()


def test_pii_is_plausible(company):
    crm = company["crm"]
    assert crm["email"].str.strip().str.contains(r"^[^@\s]+@[^@\s]+\.[a-z]+$", flags=re.I).all()
    assert crm["name"].str.contains(r"[^\x00-\x7f]").any()  # unicode names
    assert (
        dt.date.fromisoformat(json.loads((company["dir"] / "truth" / "manifest.json").read_text())["as_of"])
        == AS_OF
    )


def test_extracts_of_a_past_as_of_are_dated_as_exported_that_day(tmp_path):
    # the pipeline takes an extract's modification date as its export date: planted future dates stay future
    summary = generate(GeneratorConfig(customers=50, seed=1, as_of=AS_OF), tmp_path / "past")
    for path in summary.files.values():
        modified = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        assert modified == dt.datetime.combine(AS_OF, dt.time(23, 59, 59), tzinfo=dt.UTC), path
    today = dt.datetime.now(dt.UTC).date()
    summary = generate(GeneratorConfig(customers=50, seed=1, as_of=today), tmp_path / "today")
    written = dt.datetime.now(dt.UTC).timestamp()
    assert all(written - p.stat().st_mtime < 600 for p in summary.files.values())  # kept as written
