"""The published table contract: what consumers (a CRM, a marketing tool, analysts) may rely on.

Columns, their order and their types are fixed here and nowhere else; the writers create tables from
these definitions and refuse a frame that does not match. Rows carry the CRM's own ``customer_id``
(the business needs it to act), never a name, email or phone.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from seg_pipeline.churn.actions import TIERS
from seg_pipeline.errors import SegPipelineError


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # text | bigint | double | boolean | date
    nullable: bool = False
    description: str = ""


# kind -> (pandas dtype, PostgreSQL type, DuckDB type)
KINDS = {
    "text": ("object", "text", "VARCHAR"),
    "bigint": ("Int64", "bigint", "BIGINT"),
    "double": ("float64", "double precision", "DOUBLE"),
    "boolean": ("boolean", "boolean", "BOOLEAN"),
    "date": ("datetime64[ns]", "date", "DATE"),
}

_RUN = [
    Column("as_of", "date", description="the date the run's features are computed as of"),
    Column("run_id", "text", description="the Dagster run that published the row"),
]

TIER_DESCRIPTION = (
    "action tier by expected loss and capacity: personal_outreach / semi_automated / automated, no_action "
    "(below the cut-off), no_consent (no marketing consent)"
)

ARM_DESCRIPTION = (
    "treatment (to contact) or control (held out by actions.control: never contacted, so the difference in "
    "realized churn measures what contacting achieved); missing outside the action tiers"
)

TABLES: dict[str, list[Column]] = {
    "customer_segments": [
        Column(
            "customer_id", "text", description="the CRM's customer id (the surviving id of merged records)"
        ),
        Column(
            "segment_id",
            "bigint",
            nullable=True,
            description="stable segment id; missing for customers new since the last segmentation (rescore)",
        ),
        Column("segment_name", "text", nullable=True, description="readable name derived from the profile"),
        Column("lifecycle_stage", "text", description="new / growing / champion / at risk / dormant ..."),
        Column("micro_segment_id", "bigint", nullable=True, description="finer group within the segment"),
        Column("churn_risk_score", "bigint", description="0-100 from the calibrated churn probability"),
        Column("risk_tier", "text", description=TIER_DESCRIPTION),
        Column(
            "in_retention_segment",
            "boolean",
            description="on the retention list: the personal_outreach and semi_automated tiers",
        ),
        Column("arm", "text", nullable=True, description=ARM_DESCRIPTION),
        *_RUN,
    ],
    "churn_scores": [
        Column("customer_id", "text", description="the CRM's customer id"),
        Column(
            "churn_probability", "double", description="calibrated probability of churning in the horizon"
        ),
        Column("churn_risk_score", "bigint", description="0-100"),
        Column("risk_tier", "text", description=TIER_DESCRIPTION),
        Column(
            "top_drivers",
            "text",
            description="the three features that move this customer's risk most, with their effect in "
            "percentage points",
        ),
        Column("model_version", "bigint", description="version of seg_pipeline_churn in the MLflow registry"),
        Column(
            "scored_by",
            "text",
            description="the model behind the version: a candidate (e.g. hist_gradient_boosting), or "
            "baseline_recency / baseline_rfm / baseline_btyd when no candidate beat that naive baseline",
        ),
        *_RUN,
    ],
    "segment_profiles": [
        Column("segment_id", "bigint"),
        Column("segment_name", "text"),
        Column("customers", "bigint"),
        Column("share", "double", description="share of profiled customers"),
        Column("revenue_365d", "double", nullable=True, description="spend in the last 365 days"),
        Column("revenue_share", "double", nullable=True),
        Column("mean_revenue_365d", "double", nullable=True),
        Column("observed_churn_rate", "double", nullable=True, description="churned share where it is known"),
        Column("mean_churn_probability", "double", nullable=True),
        Column("mean_churn_risk_score", "double", nullable=True),
        Column(
            "expected_loss",
            "double",
            nullable=True,
            description="sum of churn probability x 365-day spend of the segment's customers",
        ),
        *(Column(f"customers_{tier}", "bigint") for tier in TIERS),
        Column("customers_in_retention_segment", "bigint"),
        Column(
            "top_traits", "text", description="what sets the segment apart, in words and the features' units"
        ),
        Column(
            "trait_deviations",
            "text",
            description="the same traits in standard deviations from all customers (log scale for skewed "
            "features), for analysts",
        ),
        *_RUN,
    ],
    "segment_history": [
        *_RUN,
        Column("segment_id", "bigint"),
        Column("segment_name", "text"),
        Column("customers", "bigint"),
        Column("share", "double"),
        Column("customers_stayed", "bigint", description="in this segment in the previous published run too"),
        Column("customers_joined", "bigint", description="came from another segment or are new"),
        Column("customers_left", "bigint", description="moved to another segment or left the population"),
        Column("mean_churn_probability", "double", nullable=True),
        Column("revenue_365d", "double", nullable=True),
    ],
    "retention_actions": [
        Column("customer_id", "text", description="the CRM's customer id"),
        Column(
            "action_rank", "bigint", description="1 = the largest expected loss among contactable customers"
        ),
        Column("risk_tier", "text", description="personal_outreach / semi_automated / automated"),
        Column("suggested_action", "text", description="what to do, from actions.<tier>.suggested_action"),
        Column(
            "segment_id", "bigint", nullable=True, description="missing for customers new since segmentation"
        ),
        Column("segment_name", "text", nullable=True),
        Column("lifecycle_stage", "text"),
        Column(
            "churn_probability", "double", description="calibrated probability of churning in the horizon"
        ),
        Column("churn_risk_score", "bigint", description="0-100"),
        Column("value_365d", "double", nullable=True, description="spend in the last 365 days"),
        Column("expected_loss", "double", nullable=True, description="churn_probability x value_365d"),
        Column("top_drivers", "text", description="what moves this customer's risk most, in words"),
        Column(
            "arm",
            "text",
            description="treatment: contact; control: held out, never contacted (exports leave them out)",
        ),
        *_RUN,
    ],
    "retention_uplift": [
        Column(
            "as_of", "date", description="as_of of the run that judged the scores (their horizon had passed)"
        ),
        Column("run_id", "text", description="the Dagster run that judged them"),
        Column("scored_as_of", "date", description="as_of of the publish whose retention list is judged"),
        Column("scored_run_id", "text", description="the run that published that list"),
        Column("group", "text", description="an action tier, retention_list or all_action_tiers"),
        Column("campaign", "text", description="(all), or the campaign of a contacted_vs_control row"),
        Column(
            "estimand", "text", description="intention_to_treat, effect_on_contacted or contacted_vs_control"
        ),
        Column("treatment_customers", "bigint"),
        Column("treatment_churned", "bigint"),
        Column("treatment_churn_rate", "double", nullable=True),
        Column("control_customers", "bigint"),
        Column("control_churned", "bigint"),
        Column("control_churn_rate", "double", nullable=True),
        Column("contact_share", "double", nullable=True, description="share of the treatment arm contacted"),
        Column("control_contacted", "bigint", nullable=True, description="controls contacted all the same"),
        Column("uplift", "double", nullable=True, description="control churn rate - treatment churn rate"),
        Column("ci_low", "double", nullable=True, description="95 % interval of uplift, lower end"),
        Column("ci_high", "double", nullable=True, description="95 % interval of uplift, upper end"),
        Column("ci_method", "text", nullable=True),
        Column("customers_saved", "double", nullable=True),
        Column("revenue_retained", "double", nullable=True),
        Column(
            "note", "text", nullable=True, description="what the estimand assumes, why an estimate is missing"
        ),
    ],
    "kpi_history": [
        *_RUN,
        Column(
            "publish_sequence",
            "bigint",
            description="1 for the first publish, then one more per publish: orders runs that share an as_of",
        ),
        Column(
            "measure",
            "text",
            description="customers, segment_customers, tier_customers, mean_churn_probability, revenue_365d, "
            "expected_loss, retention_list_customers, retention_list_expected_loss",
        ),
        Column("breakdown", "text", description="all, a tier, or segment:<segment_id>"),
        Column("breakdown_label", "text", description="the breakdown in words (segment name, tier label)"),
        Column("value", "double", nullable=True),
    ],
}

PUBLISHED_TABLES = tuple(TABLES)
# tables that stay empty until a later run judges an earlier publish (Does it work?): a first publish has none
FILLED_BY_A_LATER_RUN = ("retention_uplift",)


def column_names(table: str) -> list[str]:
    return [c.name for c in TABLES[table]]


def conform(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with exactly the contract's columns, order and dtypes, or an error naming the breach."""
    if table not in TABLES:
        raise SegPipelineError(f"unknown published table {table!r}; published tables: {', '.join(TABLES)}")
    expected = column_names(table)
    missing = [c for c in expected if c not in frame.columns]
    extra = [c for c in frame.columns if c not in expected]
    if missing or extra:
        raise SegPipelineError(
            f"published table {table}: columns do not match the contract "
            f"(missing {missing or 'none'}, unexpected {extra or 'none'})"
        )
    out = frame[expected].reset_index(drop=True).copy()
    for column in TABLES[table]:
        values = out[column.name]
        if column.kind == "date":
            out[column.name] = pd.to_datetime(values).dt.normalize()
        elif column.kind == "text":
            out[column.name] = values.astype("object").where(values.notna(), None)
        else:
            out[column.name] = values.astype(KINDS[column.kind][0])
        if not column.nullable and out[column.name].isna().any():
            row = int(out[column.name].isna().to_numpy().argmax())
            raise SegPipelineError(
                f"published table {table}: column {column.name} is missing in row {row} "
                f"({int(out[column.name].isna().sum())} rows); the contract does not allow missing values"
            )
    return out
