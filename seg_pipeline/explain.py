"""`seg-pipeline explain CUSTOMER_ID`: everything the pipeline concluded about one customer and why, in words
(segment and its traits, lifecycle stage, churn risk with drivers, consent), from the last run's tables.
Written so it can be handed to the customer as part of an answer to a data-subject access request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from seg_pipeline.errors import SegPipelineError


@dataclass
class Explanation:
    customer_id: str
    found: bool
    sections: dict[str, list[str]] = field(default_factory=dict)

    def text(self) -> str:
        lines = [f"Customer {self.customer_id}"]
        for title, body in self.sections.items():
            lines += ["", f"{title}:"] + [f"  {line}" for line in body]
        return "\n".join(lines)


def _one(con, sql: str, params: list) -> dict | None:
    try:
        frame = con.execute(sql, params).df()
    except duckdb.CatalogException:  # the stage has not run yet
        return None
    return frame.iloc[0].to_dict() if len(frame) else None


def _yes_no(value) -> str:
    return "unknown" if value is None or pd.isna(value) else ("yes" if bool(value) else "no")


def explain(warehouse: Path, customer_id: str, erased: bool) -> Explanation:
    if not warehouse.exists():
        raise SegPipelineError(f"no warehouse at {warehouse}: run `seg-pipeline run` first")
    out = Explanation(customer_id=customer_id, found=False)
    if erased:
        out.sections["Erasure"] = [
            "An erasure request is recorded for this customer: every run removes them, their duplicate "
            "records and their events from every table after the raw extracts. Nothing is held about them."
        ]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        ids = _one(con, "select * from clean.customer_id_map where customer_id = ?", [customer_id])
        if ids is None:
            out.sections["Records"] = [f"No customer with id {customer_id} in the last run's cleaned data."]
            return out
        out.found = True
        key = ids["customer_key"]
        survivor = ids["surviving_customer_id"]
        records = [
            "Identified by the pseudonymous key " + key[:12] + "... (a keyed hash of the customer id)."
        ]
        if survivor != customer_id:
            records.append(f"This record was recognised as the same person as {survivor} ({ids['match_rule']}) "
                           "and merged into it.")  # fmt: skip
        customer = _one(con, "select * from clean.clean_customers where customer_key = ?", [key]) or {}
        out.sections["Records"] = records
        out.sections["Consent"] = [
            f"marketing: {_yes_no(customer.get('consent_marketing'))}; profiling: "
            f"{_yes_no(customer.get('consent_profiling'))} (as recorded in the CRM)",
            "profiled (segments, churn score): " + ("yes" if customer.get("profiling_allowed") else
                                                    "no: without profiling consent no segment or score is made"),
        ]  # fmt: skip

        cluster = _one(con, "select * from segmentation.customer_clusters where customer_key = ?", [key])
        if cluster is not None:
            profile = _one(con, "select * from segmentation.segment_profiles where segment_id = ?",
                           [int(cluster["segment_id"])]) or {}  # fmt: skip
            out.sections["Segment"] = [
                f"segment {cluster['segment_id']} \"{cluster['segment_name']}\", micro-segment "
                f"{cluster['micro_segment_id']}",
                f"{profile.get('customers', '?')} customers share it ({profile.get('share', 0):.1%} of all); what sets "
                f"the segment apart, in standard deviations from all customers: {profile.get('top_deviations', '')}",
            ]  # fmt: skip
        stage = _one(con, "select * from segmentation.lifecycle_stage where customer_key = ?", [key])
        if stage is not None:
            out.sections["Lifecycle stage"] = [f"{stage['lifecycle_stage']}: {stage['lifecycle_reason']}"]
        score = _one(con, "select * from churn.churn_scores where customer_key = ?", [key])
        if score is not None:
            retained = _one(
                con, "select customer_key from churn.retention_segment where customer_key = ?", [key]
            )
            out.sections["Churn risk"] = [
                f"probability of leaving within the horizon: {score['churn_probability']:.1%} "
                f"(risk score {score['churn_risk_score']} of 100, tier {score['risk_tier'].replace('_', ' ')})",
                "what moves it most (feature value, effect on the probability): " + score["top_drivers"],
                f"model: seg_pipeline_churn version {score['model_version']}"
                + (f" ({score['scored_by']})" if score.get("scored_by") else "")
                + f", scored as of {pd.Timestamp(score['as_of']).date()}",
                "in the retention segment (high risk, high value): " + ("yes" if retained else "no"),
            ]  # fmt: skip
        if customer and not customer.get("profiling_allowed"):
            out.sections.setdefault("Segment", ["none: not profiled"])
    return out
