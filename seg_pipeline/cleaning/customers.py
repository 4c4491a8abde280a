"""clean_customers: normalization, identity resolution (dedup), survivorship, pseudonymization, erasure.

Exact match rules (records are the same customer when any holds):
  same_customer_id  the CRM repeats an id
  email             same normalized email (case, whitespace, Unicode form)
  phone+name        same valid E.164 phone and same normalized contact name
  phone+company     same valid E.164 phone and same company (legal form spelled any way)
Beside them a Fellegi-Sunter model (cleaning/identity.py) scores pairs that share a blocking key: at or
above identity.merge_threshold they are merged (rule "probabilistic", with the probability), from
identity.review_threshold up they are listed for review and not merged. Links are transitive.
Survivorship: the record with the earliest signup date survives (the original account), then the most
recently updated, then the smallest id. Empty fields are filled from the other records, newest first;
consent is the most restrictive of the records; signup is the earliest, updated_at the latest.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from seg_pipeline.cleaning.identity import PairScores, score_pairs
from seg_pipeline.cleaning.normalize import (
    normalize_company,
    normalize_email,
    normalize_name,
    parse_phones,
)
from seg_pipeline.cleaning.privacy import profiling_allowed, pseudonymize, suppression_hash
from seg_pipeline.cleaning.quarantine import quarantine_rows
from seg_pipeline.config import IdentityConfig
from seg_pipeline.sources.contracts import SOURCE_ROW
from seg_pipeline.sources.window import end_of_day

MATCH_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("same_customer_id", ("customer_id",)),
    ("email", ("email_norm",)),
    ("phone+name", ("phone_e164", "name_norm")),
    ("phone+company", ("phone_e164", "company_stem")),
)
PROBABILISTIC = "probabilistic"
# the columns any rule matches on: the survivor's values of these name each record's rule
MATCH_COLUMNS = list(dict.fromkeys(key for _, keys in MATCH_RULES for key in keys))
PII_COLUMNS = ("name", "email", "phone", "company", "address", "postal_code", "city", "birth_date")
CUSTOMER_COLUMNS = (
    "customer_key", "customer_id", "country", "industry", "company_size", "legal_form", "signup_date",
    "updated_at", "plan", "consent_marketing", "consent_profiling", "profiling_allowed", "churned",
    "churn_date",
)  # fmt: skip
REVIEW_COLUMNS = (
    "customer_id_a", "customer_key_a", "customer_id_b", "customer_key_b", "match_probability",
    "fields_agreed", "fields_similar", "fields_disagreed", "not_merged_because", "run_id",
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
    review: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(REVIEW_COLUMNS)))
    identity: dict = field(default_factory=dict)  # how matching went: model, counts, fitted weights
    outside_window: dict[str, int] = field(default_factory=dict)  # dates after as_of (sources/window.py)


def normalized(raw: pd.DataFrame, identity: IdentityConfig | None = None) -> pd.DataFrame:
    """Add the matching keys: email_norm, phone_e164, phone_status, phone_match, name_norm, company_stem,
    legal_form."""
    identity = identity or IdentityConfig()
    out = raw.copy()
    out["customer_id"] = out["customer_id"].astype("string").str.strip().replace("", pd.NA)
    out["email_norm"] = normalize_email(out["email"])
    phones = parse_phones(out["phone"], out.get("country"), identity.default_region)
    out["phone_e164"] = phones["phone_e164"].to_numpy()
    out["phone_status"] = phones["phone_status"].to_numpy()
    out["phone_match"] = phone_match_key(out["phone_e164"])
    out["name_norm"] = normalize_name(out["name"])
    company = normalize_company(out["company"], identity.extra_legal_forms)
    out["company_stem"] = company["company_stem"]
    out["legal_form"] = company["legal_form"]
    return out


def resolve_identities(
    frame: pd.DataFrame, identity: IdentityConfig | None = None
) -> tuple[pd.DataFrame, PairScores | None]:
    """Add ``cluster``, ``is_survivor``, ``match_rule`` and ``match_probability`` to a normalized frame;
    with the pairs the model scored (None when identity.probabilistic is off)."""
    from scipy.sparse import coo_matrix  # scipy loads with the step, not with the code location
    from scipy.sparse.csgraph import connected_components

    identity = identity or IdentityConfig()
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
    scores = score_pairs(frame, identity) if identity.probabilistic else None
    pairs = scores.pairs if scores is not None else None
    if pairs is not None and len(pairs):
        merged = pairs[(pairs["match_probability"] >= identity.merge_threshold) & pairs["veto"].eq("")]
        rows.append(merged["left"].to_numpy())
        cols.append(merged["right"].to_numpy())
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
    best = _best_probability(pairs, cluster, n, identity.merge_threshold)
    rule = rule.mask(~np.isnan(best[out["_pos"].to_numpy()]), PROBABILISTIC)
    for name, keys in reversed(MATCH_RULES):
        same = pd.Series(True, index=out.index)
        for key in keys:
            same &= (out[key] == survivor[key]).fillna(False).astype(bool)
        rule = rule.mask(same, name)
    out["match_rule"] = rule.mask(out["is_survivor"], "survivor")
    probability = pd.Series(best[out["_pos"].to_numpy()], index=out.index)
    out["match_probability"] = probability.where(out["match_rule"].eq(PROBABILISTIC).to_numpy())
    return out.sort_values("_pos").drop(columns="_pos"), scores


def _best_probability(
    pairs: pd.DataFrame | None, cluster: np.ndarray, n: int, merge_threshold: float
) -> np.ndarray:
    """Per record, the highest probability of a merged pair that links it inside its cluster (NaN: none)."""
    best = np.full(n, np.nan)
    if pairs is None or not len(pairs):
        return best
    pairs = pairs[pairs["veto"].eq("") & (pairs["match_probability"] >= merge_threshold)]
    inside = pairs[cluster[pairs["left"].to_numpy()] == cluster[pairs["right"].to_numpy()]]
    for side in ("left", "right"):
        top = inside.groupby(side)["match_probability"].max()
        current = best[top.index.to_numpy()]
        best[top.index.to_numpy()] = np.fmax(current, top.to_numpy())
    return best


def review_pairs(
    resolved: pd.DataFrame, scores: PairScores | None, identity: IdentityConfig, run_id: str
) -> pd.DataFrame:
    """Pairs between the review and the merge threshold that ended in different customers, by CRM id and
    pseudonymous key; which fields agreed and disagreed, never their values."""
    empty = pd.DataFrame({c: pd.Series(dtype="string") for c in REVIEW_COLUMNS}).astype(
        {"match_probability": float}
    )
    if scores is None or not len(scores.pairs):
        return empty
    pairs = scores.pairs[
        (scores.pairs["match_probability"] < identity.merge_threshold) | scores.pairs["veto"].ne("")
    ]
    cluster = resolved["cluster"].to_numpy()
    pairs = pairs[cluster[pairs["left"].to_numpy()] != cluster[pairs["right"].to_numpy()]]
    if not len(pairs):
        return empty
    ids = resolved["customer_id"].to_numpy()
    keys = resolved["customer_key"].to_numpy()
    out = pd.DataFrame(
        {
            "customer_id_a": ids[pairs["left"].to_numpy()],
            "customer_key_a": keys[pairs["left"].to_numpy()],
            "customer_id_b": ids[pairs["right"].to_numpy()],
            "customer_key_b": keys[pairs["right"].to_numpy()],
            "match_probability": pairs["match_probability"].round(4).to_numpy(),
            "fields_agreed": pairs["agreed"].to_numpy(),
            "fields_similar": pairs["similar"].to_numpy(),
            "fields_disagreed": pairs["disagreed"].to_numpy(),
            "not_merged_because": np.where(
                pairs["veto"].eq("").to_numpy(), "probability below merge_threshold", pairs["veto"].to_numpy()
            ),
            "run_id": run_id,
        }
    )
    out = out.dropna(subset=["customer_key_a", "customer_key_b"])  # an erased record is never shown
    out = out.sort_values(["match_probability", "customer_id_a"], ascending=[False, True], kind="stable")
    return out.astype({c: "string" for c in REVIEW_COLUMNS if c != "match_probability"}).reset_index(
        drop=True
    )


def _dates_after_as_of(
    frame: pd.DataFrame, as_of: dt.date, export_end: dt.datetime | None
) -> tuple[dict[str, int], dict[str, int]]:
    """Set impossible dates missing (in place) and count what lies outside the run's window.

    After the export date a date cannot be true: set missing (``fixes``). Between as_of and the export
    date (a backfill or backtest run) a signup is real and kept (the feature stage leaves those customers
    out of the population); an update there is set missing, as the record's state at as_of is unknown.
    """
    as_of_end = pd.Timestamp(end_of_day(as_of))
    export_end = pd.Timestamp(export_end) if export_end is not None else as_of_end
    fixes = {}
    for column in ("signup_date", "updated_at"):
        future = frame[column] > export_end
        fixes[f"{column}_after_as_of_set_missing"] = int(future.sum())
        frame.loc[future, column] = pd.NaT
    later_update = frame["updated_at"] > as_of_end
    frame.loc[later_update, "updated_at"] = pd.NaT
    outside_window = {
        "signup_date_after_as_of": int((frame["signup_date"] > as_of_end).sum()),
        "updated_at_after_as_of_set_missing": int(later_update.sum()),
    }
    return fixes, outside_window


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
    identity: IdentityConfig | None = None,
    export_end: dt.datetime | None = None,
) -> CleanCustomers:
    identity = identity or IdentityConfig()
    frame = normalized(raw, identity)
    missing_id = frame["customer_id"].isna()
    quarantine = quarantine_rows(
        frame[missing_id], "crm_customers", "missing_required", "customer_id", "customer_id is empty", run_id
    )
    frame = frame[~missing_id].copy()

    fixes, outside_window = _dates_after_as_of(frame, as_of, export_end)
    fixes["phones_invalid_left_out"] = int(frame["phone_status"].eq("invalid").sum())
    resolved, scores = resolve_identities(frame, identity)
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
            "match_probability": kept["match_probability"].round(4).to_numpy(),
            SOURCE_ROW: kept[SOURCE_ROW].to_numpy(),
        }
    ).drop_duplicates("customer_id")
    contacts, ambiguous = contact_index(kept.assign(customer_key=kept["cluster"].map(cluster_key)), key)
    merged = int((~kept["is_survivor"]).sum())
    review = review_pairs(
        resolved.assign(customer_key=resolved["cluster"].map(cluster_key)), scores, identity, run_id
    )
    accounting = {
        "rows_in": len(raw),
        "rows_clean": len(customers),
        "rows_quarantined": len(quarantine),
        "rows_merged_duplicates": merged,
        "rows_erased": int(is_erased.sum()),
        "customers_erased": len(erased_clusters),
        "contacts_ambiguous_dropped": ambiguous,
    }
    rules = kept.loc[~kept["is_survivor"], "match_rule"].value_counts()
    summary = {
        "model": scores.model if scores is not None else "off (identity.probabilistic: false)",
        "merged_by_rule": {str(k): int(v) for k, v in rules.items()},
        "pairs_for_review": len(review),
        "merge_threshold": identity.merge_threshold,
        "review_threshold": identity.review_threshold,
        "weights": scores.parameters if scores is not None else {},
    }
    return CleanCustomers(
        customers,
        id_map.reset_index(drop=True),
        contacts,
        quarantine,
        accounting,
        fixes,
        erased_index(resolved[is_erased], key),
        review,
        summary,
        outside_window,
    )


def erased_index(members: pd.DataFrame, key: bytes) -> pd.DataFrame:
    """Hashes of every id, email and phone of erased customers, so their events are dropped too."""
    parts = [
        pd.DataFrame({"kind": kind, "hash": suppression_hash(members[column].dropna(), kind, key)})
        for kind, column in (
            ("customer_id", "customer_id"),
            ("email", "email_norm"),
            ("phone", "phone_match"),
            ("customer_key", "member_key"),  # the score history's keys (outcomes/history.py) of each record
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
