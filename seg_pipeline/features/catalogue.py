"""The feature catalogue: every feature of customer_features, defined once (the README table mirrors it)."""

from __future__ import annotations

from dataclasses import dataclass

YEAR_DAYS = 365
QUARTER_DAYS = 90


@dataclass(frozen=True)
class Feature:
    name: str
    source: str
    definition: str
    # "profile": what kind of customer (value, rhythm, mix, engagement rates) -> clustered into segments.
    # "state": where the customer is now (volume in a window, recency, tenure, trends) -> lifecycle and churn.
    role: str = "state"


CATALOGUE: tuple[Feature, ...] = (
    Feature("tenure_days", "crm_customers", "days from signup (else first activity) to as_of"),
    Feature("recency_days", "all events", "days since the last order, page view, email open/click or ticket"),
    Feature("days_since_last_purchase", "orders", "days since the last order"),
    Feature("frequency_365d", "orders", "orders in the 365 days up to as_of"),
    Feature("monetary_365d", "orders", "sum of order amounts in the 365 days up to as_of"),
    Feature("avg_order_value", "orders", "mean order amount over all orders up to as_of", "profile"),
    Feature("orders_total", "orders", "orders up to as_of"),
    Feature("interpurchase_mean_days", "orders", "mean days between consecutive orders", "profile"),
    Feature("interpurchase_trend", "orders", "mean of the last 3 gaps between orders / mean of all gaps (>1 = slowing)"),
    Feature("spend_trend", "orders", "log(1 + spend in the last 90 days) - log(1 + spend in the 90 days before)"),
    Feature("channel_share_<channel>", "orders", "share of orders through each sales channel (top 8 channels); missing without orders", "profile"),
    Feature("category_share_<category>", "orders", "share of orders in each product category (top 8); missing without orders", "profile"),
    Feature("btyd_p_alive", "orders", "BG/NBD probability that the customer is still a buyer (model fitted on the orders up to as_of)"),
    Feature("btyd_expected_orders_horizon", "orders", "BG/NBD expected orders in the churn horizon after as_of"),
    Feature("btyd_p_no_order_horizon", "orders", "BG/NBD probability of no order in the churn horizon after as_of"),
    Feature("web_sessions_90d", "web_events", "distinct sessions in the 90 days up to as_of"),
    Feature("web_page_views_90d", "web_events", "page views in the 90 days up to as_of"),
    Feature("web_recency_days", "web_events", "days since the last web event"),
    Feature("email_open_rate", "email_events", "opens / emails sent, 365 days", "profile"),
    Feature("email_click_rate", "email_events", "clicks / emails sent, 365 days", "profile"),
    Feature("email_unsubscribed", "email_events", "1 if the customer unsubscribed up to as_of, else 0"),
    Feature("tickets_365d", "support_tickets", "tickets opened in the 365 days up to as_of"),
    Feature("tickets_<topic>_365d", "support_tickets", "tickets per topic in the 365 days up to as_of (top 8)"),
    Feature("resolution_hours_mean", "support_tickets", "mean hours from ticket creation to resolution (resolved by as_of)"),
    Feature("satisfaction_mean", "support_tickets", "mean satisfaction score (1-5) of tickets up to as_of", "profile"),
    Feature("low_satisfaction_tickets", "support_tickets", "tickets scored 1 or 2 up to as_of"),
    Feature("<attribute>", "crm_customers", "each customer_attributes.numeric / .categorical column as it is", "profile"),
)  # fmt: skip


def catalogue_markdown() -> str:
    rows = [f"| `{f.name}` | {f.source} | {f.definition} | {f.role} |" for f in CATALOGUE]
    return "| feature | source | definition | role |\n|---|---|---|---|\n" + "\n".join(rows)


def catalogue_entry(column: str) -> Feature | None:
    """The catalogue's feature a column is (``channel_share_app`` is ``channel_share_<channel>``), if any."""
    for feature in CATALOGUE:
        if "<" not in feature.name:
            if feature.name == column:
                return feature
            continue
        prefix, suffix = feature.name.split("<")[0], feature.name.split(">")[-1]
        if (
            prefix
            and column.startswith(prefix)
            and column.endswith(suffix)
            and len(column) > len(prefix + suffix)
        ):
            return feature
    return None


def feature_role(column: str, attributes: list[str]) -> str:
    """The catalogue role of a customer_features column; "unknown" shares are data quality, not behaviour."""
    if column in attributes:
        return "profile"
    if column.endswith("_unknown"):
        return "state"
    feature = catalogue_entry(column)
    return feature.role if feature is not None else "state"
