"""`seg-pipeline explain CUSTOMER_ID`: everything the pipeline concluded about one customer and why, in words
(segment and its traits, lifecycle stage, churn risk with drivers, action tier and suggested action,
consent), from the last run's tables. Written so it can be handed to the customer as part of an answer to
a data-subject access request, and read by a marketing manager without a data scientist.

An erasure request (`seg-pipeline forget`) is applied by the next run. Until then the tables still hold
the customer, and `explain` says so ("pending") and shows what is held rather than claiming nothing is;
once a run has removed them it says "applied".
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from seg_pipeline import wording
from seg_pipeline.churn.actions import NO_ACTION, NO_CONSENT, RETENTION_TIERS, TIER_LABELS
from seg_pipeline.cleaning.privacy import erasure_file, pseudonymize
from seg_pipeline.errors import SegPipelineError


@dataclass(frozen=True)
class Erasure:
    """A recorded erasure request for the customer (or anyone merged with them) and whether the tables
    still hold them: "pending" until a run applies it, then "applied"."""

    requested_at: str  # as recorded by `seg-pipeline forget` (ISO 8601, UTC)
    status: str

    @property
    def requested_on(self) -> str:
        return self.requested_at[:10] or "an unrecorded date"

    def lines(self) -> list[str]:
        if self.status == "pending":
            return [
                f"erasure requested on {self.requested_on}; pending until the next run publishes; the "
                "published tables still hold:",
                "the data below, computed before the request. It is shown, not withheld, because it is still "
                "held and an answer to an access request must say what is held. Every run applies all "
                "recorded requests before the features: the next successful run removes the customer, their "
                "duplicate records and their events from every table after the raw extracts, and nothing is "
                "profiled or scored for them again.",
            ]
        return [
            f"An erasure request is recorded for this customer (requested on {self.requested_on}) and "
            "applied: the last run removed them, their duplicate records and their events from every table "
            "after the raw extracts. No segment, score or profile is held about them."
        ]

    def as_json(self) -> dict:
        held = "shown below" if self.status == "pending" else "none"
        return {"status": self.status, "requested_at": self.requested_at, "held_data": held}


@dataclass
class Explanation:
    customer_id: str
    found: bool
    sections: dict[str, list[str]] = field(default_factory=dict)
    erasure: Erasure | None = None

    def text(self) -> str:
        lines = [f"Customer {self.customer_id}"]
        for title, body in self.sections.items():
            lines += ["", f"{title}:"] + [f"  {line}" for line in body]
        return "\n".join(lines)

    def as_json(self) -> dict:
        erasure = self.erasure.as_json() if self.erasure else None
        return {"customer_id": self.customer_id, "found": self.found, "erasure": erasure, **self.sections}


@dataclass(frozen=True)
class ErasureRegister:
    """The erasure requests `seg-pipeline forget` recorded, by customer key, and the pseudonymization key
    those customer keys were made with."""

    requested_at: Mapping[str, str]  # customer_key -> when (ISO 8601)
    key: bytes

    @classmethod
    def read(cls, home: Path, key: bytes) -> ErasureRegister:
        path = erasure_file(home)
        if not path.exists():
            return cls({}, key)
        with path.open(encoding="utf-8", newline="") as fh:
            rows = [row for row in csv.DictReader(fh) if row.get("customer_key")]
        return cls({row["customer_key"]: row.get("requested_at") or "" for row in rows}, key)

    def first_request(self, customer_ids: list[str]) -> str | None:
        """When erasure was first requested for any of ``customer_ids``, or None."""
        if not self.requested_at:
            return None
        keys = pseudonymize(pd.Series(customer_ids), self.key)
        found = sorted(self.requested_at[k] for k in keys if k in self.requested_at)
        return found[0] if found else None


def _one(con, sql: str, params: list) -> dict | None:
    try:
        frame = con.execute(sql, params).df()
    except duckdb.CatalogException:  # the stage has not run yet
        return None
    return frame.iloc[0].to_dict() if len(frame) else None


def _table_exists(con, name: str) -> bool:
    schema, table = name.split(".")
    found = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(found and found[0])


def _yes_no(value) -> str:
    return "unknown" if value is None or pd.isna(value) else ("yes" if bool(value) else "no")


def _absent(value) -> bool:
    return value is None or (not isinstance(value, str) and pd.isna(value))


def explain(warehouse: Path, customer_id: str, erasures: ErasureRegister | None = None, *, currency: str = "EUR",
            locale: str = "en") -> Explanation:  # fmt: skip
    """What the last run's tables hold about ``customer_id``, led by the status of an erasure request for
    them (or anyone merged with them) in ``erasures``; money in ``currency``, numbers as ``locale`` writes
    them (report.currency, report.locale)."""
    if not warehouse.exists():
        raise SegPipelineError(f"no warehouse at {warehouse}: run `seg-pipeline run` first")
    out = Explanation(customer_id=customer_id, found=False)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        ids = _one(con, "select * from clean.customer_id_map where customer_id = ?", [customer_id])
        identity = _identity(con, customer_id, ids)
        if ids is None:
            out.sections["Records"] = [f"No customer with id {customer_id} in the last run's cleaned data."]
        else:
            out.found = True
            out.sections.update(_held(con, customer_id, ids, currency, locale))
        requested_at = erasures.first_request(identity) if erasures else None
        if requested_at is not None:
            published = [] if out.found else _published_rows(con, identity)
            if published:
                out.sections["Published tables"] = published
            out.erasure = Erasure(requested_at, "pending" if out.found or published else "applied")
            out.sections = {"Erasure": out.erasure.lines(), **out.sections}
    return out


def _identity(con, customer_id: str, ids: dict | None) -> list[str]:
    """The customer's id and every id merged with it (an erasure request for any of them erases all)."""
    if ids is None:
        return [customer_id]
    frame = con.execute(
        "select customer_id from clean.customer_id_map where customer_key = ? order by customer_id",
        [ids["customer_key"]],
    ).df()
    return list(dict.fromkeys([customer_id, *frame["customer_id"]]))


def _published_rows(con, identity: list[str]) -> list[str]:
    """The published rows of ``identity``, as column=value: what the warehouse still holds when a run
    removed the customer from its clean tables but failed before publishing."""
    lines = []
    marks = ", ".join("?" for _ in identity)
    for table in ("customer_segments", "churn_scores"):
        try:
            frame = con.execute(
                f"select * from published.{table} where customer_id in ({marks})", identity
            ).df()
        except duckdb.CatalogException:  # never published
            continue
        for row in frame.to_dict("records"):
            lines.append(f"{table}: " + ", ".join(f"{name}={_plain(value)}" for name, value in row.items()))
    return lines


def _plain(value) -> str:
    if isinstance(value, pd.Timestamp):
        return str(value.date())
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _held(con, customer_id: str, ids: dict, currency: str, locale: str) -> dict[str, list[str]]:
    """Records, consent, segment, lifecycle stage and churn risk of a customer of the cleaned data."""
    sections: dict[str, list[str]] = {}
    key = ids["customer_key"]
    survivor = ids["surviving_customer_id"]
    records = ["Identified by the pseudonymous key " + key[:12] + "... (a keyed hash of the customer id)."]
    if survivor != customer_id:
        records.append(f"This record was recognised as the same person as {survivor} ({ids['match_rule']}) "
                       "and merged into it.")  # fmt: skip
    customer = _one(con, "select * from clean.clean_customers where customer_key = ?", [key]) or {}
    sections["Records"] = records
    sections["Consent"] = [
        f"marketing: {_yes_no(customer.get('consent_marketing'))}; profiling: "
        f"{_yes_no(customer.get('consent_profiling'))} (as recorded in the CRM)",
        "profiled (segments, churn score): " + ("yes" if customer.get("profiling_allowed") else
                                                "no: without profiling consent no segment or score is made"),
    ]  # fmt: skip

    cluster = _one(con, "select * from segmentation.customer_clusters where customer_key = ?", [key])
    if cluster is not None:
        profile = _one(con, "select * from segmentation.segment_profiles where segment_id = ?",
                       [int(cluster["segment_id"])]) or {}  # fmt: skip
        sections["Segment"] = [
            f'segment {cluster["segment_id"]} "{cluster["segment_name"]}", micro-segment '
            f"{cluster['micro_segment_id']}",
            _segment_traits(profile, locale),
        ]
    stage = _one(con, "select * from segmentation.lifecycle_stage where customer_key = ?", [key])
    if stage is not None:
        sections["Lifecycle stage"] = [f"{stage['lifecycle_stage']}: {stage['lifecycle_reason']}"]
    score = _one(con, "select * from churn.churn_scores where customer_key = ?", [key])
    if score is not None:
        sections["Churn risk"] = _churn_risk(con, key, score, currency, locale)
    if customer and not customer.get("profiling_allowed"):
        sections.setdefault("Segment", ["none: not profiled"])
    return sections


def _segment_traits(profile: dict, locale: str) -> str:
    """The segment's size and what sets it apart: its traits in words, or, from a warehouse written
    before traits were worded, its deviations in standard deviations."""
    customers = profile.get("customers")
    size = "?" if _absent(customers) else wording.count(customers, locale)
    shared = f"{size} customers share it ({wording.percent(profile.get('share', 0), locale)} of all)"
    if not _absent(profile.get("top_traits")):
        return f"{shared}; what sets the segment apart from the average customer: {profile['top_traits']}"
    return (f"{shared}; what sets the segment apart, in standard deviations from all customers: "
            f"{profile.get('top_deviations', '')}")  # fmt: skip


def _churn_risk(con, key: str, score: dict, currency: str, locale: str) -> list[str]:
    """Probability, drivers and model, then what is done about it: the action tier, expected loss and
    suggested action from churn.action_tiers, or the risk tier and retention segment of a warehouse
    written before action tiers."""
    tiers = _table_exists(con, "churn.action_tiers")
    tier = f", tier {score['risk_tier'].replace('_', ' ')}" if not tiers and score.get("risk_tier") else ""
    lines = [
        f"probability of leaving within the horizon: {wording.percent(score['churn_probability'], locale, 1)} "
        f"(risk score {score['churn_risk_score']} of 100{tier})",
        "what moves it most (each feature's effect on the probability): " + score["top_drivers"],
        f"model: seg_pipeline_churn version {score['model_version']}"
        + (f" ({score['scored_by']})" if score.get("scored_by") else "")
        + f", scored as of {pd.Timestamp(score['as_of']).date()}",
    ]
    if tiers:
        action = _one(con, "select * from churn.action_tiers where customer_key = ?", [key])
        return lines + _action(action, score["churn_probability"], currency, locale)
    retained = _one(con, "select customer_key from churn.retention_segment where customer_key = ?", [key])
    return [*lines, "in the retention segment (high risk, high value): " + ("yes" if retained else "no")]


def _action(action: dict | None, probability: float, currency: str, locale: str) -> list[str]:
    """The customer's action tier in words, why, the expected loss in money and the suggested action."""
    if action is None:
        return ["action tier: none recorded for this customer"]
    tier, rank = action["risk_tier"], action.get("action_rank")
    ranked = (
        "" if _absent(rank) else f", rank {wording.count(rank, locale)} by expected loss (1 = the largest)"
    )
    if tier == NO_CONSENT:
        lines = ["action tier: none; without marketing consent the customer is not contacted"]
    elif tier == NO_ACTION and _absent(rank):
        lines = [
            "action tier: none; nothing to lose (no spend in the last 365 days or below actions.min_expected_loss)"
        ]
    elif tier == NO_ACTION:
        lines = [f"action tier: none; the tiers are filled by customers with a larger expected loss{ranked}"]
    else:
        lines = [f"action tier: {TIER_LABELS.get(tier, tier).lower()}{ranked}"]
    if not _absent(action.get("expected_loss")) and not _absent(action.get("value_365d")):
        lines.append(
            f"expected loss: {wording.money(action['expected_loss'], currency, locale)} (churn probability "
            f"{wording.percent(probability, locale, 1)} × {wording.money(action['value_365d'], currency, locale)} "
            "spent in the last 365 days)"
        )
    if action.get("suggested_action"):
        lines.append(f"suggested action: {action['suggested_action']}")
    in_list = "yes" if tier in RETENTION_TIERS else "no"
    lines.append(f"in the retention list (the personal-outreach and semi-automated tiers): {in_list}")
    return lines
