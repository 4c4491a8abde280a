"""clean_customers: normalization, identity resolution (dedup), survivorship, pseudonymization, erasure.

Match rules (records are the same person when any holds; links are transitive):
  same_customer_id  the CRM repeats an id
  email             same normalized email (case, whitespace, Unicode form)
  phone+name        same E.164 phone and same normalized contact name
  phone+company     same E.164 phone and same company (legal form spelled any way)
Survivorship: the record with the earliest signup date survives (the original account), then the most
recently updated, then the smallest id. Empty fields are filled from the other records, newest first;
consent is the most restrictive of the records; signup is the earliest, updated_at the latest.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from seg_pipeline.cleaning.normalize import (
    normalize_company,
    normalize_email,
    normalize_name,
    normalize_phone,
)
from seg_pipeline.cleaning.privacy import profiling_allowed, pseudonymize, suppression_hash
from seg_pipeline.cleaning.quarantine import quarantine_rows
from seg_pipeline.sources.contracts import SOURCE_ROW

MATCH_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("same_customer_id", ("customer_id",)),
    ("email", ("email_norm",)),
    ("phone+name", ("phone_e164", "name_norm")),
    ("phone+company", ("phone_e164", "company_stem")),
)
# the columns any rule matches on: the survivor's values of these name each record's rule
MATCH_COLUMNS = list(dict.fromkeys(key for _, keys in MATCH_RULES for key in keys))
PII_COLUMNS = ("name", "email", "phone", "company")
CUSTOMER_COLUMNS = (
    "customer_key", "customer_id", "country", "industry", "company_size", "legal_form", "signup_date",
    "updated_at", "plan", "consent_marketing", "consent_profiling", "profiling_allowed", "churned",
    "churn_date",
)  # fmt: skip


@dataclass
class CleanCustomers:
    customers: pd.DataFrame
    id_map: pd.DataFrame
    contacts: pd.DataFrame
    quarantine: pd.DataFrame
    accounting: dict[str, int]
    fixes: dict[str, int] = field(default_factory=dict)
    erased: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame({"kind": [], "hash": []}, dtype="string")
    )


def normalized(raw: pd.DataFrame) -> pd.DataFrame:
    """Add the matching keys: email_norm, phone_e164, phone_match, name_norm, company_stem, legal_form."""
    out = raw.copy()
    out["customer_id"] = out["customer_id"].astype("string").str.strip().replace("", pd.NA)
    out["email_norm"] = normalize_email(out["email"])
    out["phone_e164"] = normalize_phone(out["phone"], out["country"])
    out["phone_match"] = phone_match_key(out["phone_e164"])
    out["name_norm"] = normalize_name(out["name"])
    company = normalize_company(out["company"])
    out["company_stem"] = company["company_stem"]
    out["legal_form"] = company["legal_form"]
    return out


def resolve_identities(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``cluster`` (connected records), ``is_survivor`` and ``match_rule`` to a normalized frame."""
    from scipy.sparse import coo_matrix  # scipy loads with the step, not with the code location
    from scipy.sparse.csgraph import connected_components

    n = len(frame)
    rows, cols = [np.arange(n)], [np.arange(n)]
    for _, keys in MATCH_RULES:
        usable = frame[list(keys)].notna().all(axis=1).to_numpy()
        if not usable.any():
            continue
        positions = pd.Series(np.flatnonzero(usable))
        group = frame.loc[usable, list(keys)].groupby(list(keys), sort=False).ngroup().to_numpy()
        first = positions.groupby(group).transform("first").to_numpy()
        rows.append(positions.to_numpy())
        cols.append(first)
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n, n))
    _, cluster = connected_components(graph, directed=False)

    out = frame.assign(cluster=cluster, _pos=np.arange(n))
    out = out.sort_values(
        ["cluster", "signup_date", "updated_at", "customer_id"],
        ascending=[True, True, False, True],
        na_position="last",
        kind="stable",
    )
    out["is_survivor"] = ~out["cluster"].duplicated()
    survivor = out.groupby("cluster")[MATCH_COLUMNS].transform("first")
    rule = pd.Series("transitive", index=out.index, dtype="string")
    for name, keys in reversed(MATCH_RULES):
        same = pd.Series(True, index=out.index)
        for key in keys:
            same &= (out[key] == survivor[key]).fillna(False).astype(bool)
        rule = rule.mask(same, name)
    out["match_rule"] = rule.mask(out["is_survivor"], "survivor")
    return out.sort_values("_pos").drop(columns="_pos")


def _merge(resolved: pd.DataFrame, keep: list[str]) -> pd.DataFrame:
    """One row per cluster: survivor's values, gaps filled from the newest other record."""
    ordered = resolved.sort_values(["cluster", "is_survivor", "updated_at"], ascending=[True, False, False])
    merged = ordered.groupby("cluster", sort=True)[keep].first()
    grouped = resolved.groupby("cluster", sort=True)
    merged["signup_date"] = grouped["signup_date"].min()
    merged["updated_at"] = grouped["updated_at"].max()
    for consent in ("consent_marketing", "consent_profiling"):
        as_number = resolved[consent].astype("Float64")
        merged[consent] = (
            as_number.groupby(resolved["cluster"]).min().map({0.0: False, 1.0: True}).astype("boolean")
        )
    merged["merged_records"] = grouped.size()
    return merged.reset_index()


def clean_customers(
    raw: pd.DataFrame,
    *,
    key: bytes,
    as_of: dt.date,
    erased: set[str],
    default_consent: bool,
    stale_record_days: int,
    attributes: list[str],
    run_id: str,
) -> CleanCustomers:
    as_of_end = pd.Timestamp(as_of) + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    frame = normalized(raw)
    missing_id = frame["customer_id"].isna()
    quarantine = quarantine_rows(
        frame[missing_id], "crm_customers", "missing_required", "customer_id", "customer_id is empty", run_id
    )
    frame = frame[~missing_id].copy()

    fixes = {}
    for column in ("signup_date", "updated_at"):
        future = frame[column] > as_of_end
        fixes[f"{column}_after_as_of_set_missing"] = int(future.sum())
        frame.loc[future, column] = pd.NaT

    resolved = resolve_identities(frame)
    resolved["member_key"] = pseudonymize(resolved["customer_id"], key)
    erased_clusters = set(resolved.loc[resolved["member_key"].isin(erased), "cluster"])
    is_erased = resolved["cluster"].isin(erased_clusters)
    kept = resolved[~is_erased]

    keep_columns = [
        c for c in CUSTOMER_COLUMNS if c in kept.columns and c not in ("customer_key", "profiling_allowed")
    ]
    keep_columns = [*dict.fromkeys([*keep_columns, *attributes])]
    customers = _merge(kept, keep_columns)
    survivors = kept[kept["is_survivor"]].set_index("cluster")["customer_id"]
    customers["customer_id"] = customers["cluster"].map(survivors)
    customers["customer_key"] = pseudonymize(customers["customer_id"], key)
    cluster_key = customers.set_index("cluster")["customer_key"]
    customers["profiling_allowed"] = profiling_allowed(customers["consent_profiling"], default_consent)
    stale_before = pd.Timestamp(as_of) - pd.Timedelta(days=stale_record_days)
    customers["is_stale"] = (customers["updated_at"] < stale_before).fillna(False).astype(bool)
    ordered = [c for c in CUSTOMER_COLUMNS if c in customers.columns]
    extras = [a for a in attributes if a not in ordered]
    customers = customers[[*ordered, *extras, "is_stale", "merged_records"]].reset_index(drop=True)

    id_map = pd.DataFrame(
        {
            "customer_id": kept["customer_id"].to_numpy(),
            "surviving_customer_id": kept["cluster"].map(survivors).to_numpy(),
            "customer_key": kept["cluster"].map(cluster_key).to_numpy(),
            "match_rule": kept["match_rule"].to_numpy(),
            SOURCE_ROW: kept[SOURCE_ROW].to_numpy(),
        }
    ).drop_duplicates("customer_id")
    contacts, ambiguous = contact_index(kept.assign(customer_key=kept["cluster"].map(cluster_key)), key)
    merged = int((~kept["is_survivor"]).sum())
    accounting = {
        "rows_in": len(raw),
        "rows_clean": len(customers),
        "rows_quarantined": len(quarantine),
        "rows_merged_duplicates": merged,
        "rows_erased": int(is_erased.sum()),
        "customers_erased": len(erased_clusters),
        "contacts_ambiguous_dropped": ambiguous,
    }
    return CleanCustomers(
        customers,
        id_map.reset_index(drop=True),
        contacts,
        quarantine,
        accounting,
        fixes,
        erased_index(resolved[is_erased], key),
    )


def erased_index(members: pd.DataFrame, key: bytes) -> pd.DataFrame:
    """Hashes of every id, email and phone of erased customers, so their events are dropped too."""
    parts = [
        pd.DataFrame({"kind": kind, "hash": suppression_hash(members[column].dropna(), kind, key)})
        for kind, column in (
            ("customer_id", "customer_id"),
            ("email", "email_norm"),
            ("phone", "phone_match"),
        )
    ]
    return pd.concat(parts, ignore_index=True).drop_duplicates().astype("string").reset_index(drop=True)


def phone_match_key(phones: pd.Series) -> pd.Series:
    """The last 9 digits: the same line whether written in E.164, with 00, or nationally without a country."""
    digits = phones.astype("string").str.replace(r"\D", "", regex=True)
    return digits.where(digits.str.len() >= 9).str[-9:]


def contact_index(members: pd.DataFrame, key: bytes) -> tuple[pd.DataFrame, int]:
    """Pseudonymous contact -> customer_key, to link events that carry only an email or a phone.

    A phone shared by different customers (a switchboard) identifies nobody and is left out.
    """
    parts = []
    for kind, column in (("email", "email_norm"), ("phone", "phone_match")):
        rows = members.loc[members[column].notna(), [column, "customer_key"]].drop_duplicates()
        parts.append(
            pd.DataFrame(
                {"contact_kind": kind, "contact": rows[column], "customer_key": rows["customer_key"]}
            )
        )
    index = pd.concat(parts, ignore_index=True)
    owners = index.groupby(["contact_kind", "contact"])["customer_key"].transform("nunique")
    ambiguous = int(index.loc[owners > 1, ["contact_kind", "contact"]].drop_duplicates().shape[0])
    index = index[owners == 1]
    index["contact_hash"] = pseudonymize(index["contact"], key)
    return index[["contact_kind", "contact_hash", "customer_key"]].reset_index(drop=True), ambiguous
