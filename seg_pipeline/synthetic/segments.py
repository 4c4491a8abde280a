"""The planted customer segments: each differs in purchase frequency, order value, channel and category
mix, web, email and support behaviour, plan and baseline churn hazard."""

from __future__ import annotations

from dataclasses import dataclass

from seg_pipeline.synthetic import lexicon as lx


@dataclass(frozen=True)
class SegmentProfile:
    name: str
    weight: float
    orders_per_month: float
    order_value: float  # median order value
    channel_mix: tuple[float, ...]  # over lexicon.CHANNELS
    category_mix: tuple[float, ...]  # over lexicon.CATEGORIES
    web_sessions_per_month: float
    email_open_rate: float
    email_click_rate: float  # given an open
    tickets_per_month: float
    topic_mix: tuple[float, ...]  # over lexicon.TICKET_TOPICS
    satisfaction: float  # mean 1-5 score
    churn_hazard: float  # baseline monthly hazard at full engagement
    plan_mix: tuple[float, ...]  # over lexicon.PLANS
    contract_mix: tuple[float, ...]  # over lexicon.CONTRACTS
    monthly_charges: float


SEGMENTS: tuple[SegmentProfile, ...] = (
    SegmentProfile(
        name="premium_loyal",
        weight=0.16,
        orders_per_month=0.8,
        order_value=320.0,
        channel_mix=(0.5, 0.2, 0.0, 0.05, 0.25),
        category_mix=(0.45, 0.1, 0.0, 0.05, 0.4, 0.0),
        web_sessions_per_month=0.7,
        email_open_rate=0.6,
        email_click_rate=0.35,
        tickets_per_month=0.05,
        topic_mix=(0.2, 0.5, 0.1, 0.2, 0.0),
        satisfaction=4.4,
        churn_hazard=0.004,
        plan_mix=(0.05, 0.35, 0.6),
        contract_mix=(0.1, 0.4, 0.5),
        monthly_charges=260.0,
    ),
    SegmentProfile(
        name="bargain_frequent",
        weight=0.24,
        orders_per_month=1.3,
        order_value=28.0,
        channel_mix=(0.25, 0.7, 0.05, 0.0, 0.0),
        category_mix=(0.05, 0.0, 0.75, 0.2, 0.0, 0.0),
        web_sessions_per_month=0.8,
        email_open_rate=0.42,
        email_click_rate=0.5,
        tickets_per_month=0.04,
        topic_mix=(0.15, 0.05, 0.7, 0.1, 0.0),
        satisfaction=3.9,
        churn_hazard=0.011,
        plan_mix=(0.8, 0.2, 0.0),
        contract_mix=(0.85, 0.15, 0.0),
        monthly_charges=15.0,
    ),
    SegmentProfile(
        name="steady_store",
        weight=0.24,
        orders_per_month=0.5,
        order_value=95.0,
        channel_mix=(0.08, 0.02, 0.7, 0.2, 0.0),
        category_mix=(0.05, 0.6, 0.1, 0.25, 0.0, 0.0),
        web_sessions_per_month=0.12,
        email_open_rate=0.22,
        email_click_rate=0.12,
        tickets_per_month=0.03,
        topic_mix=(0.6, 0.1, 0.2, 0.1, 0.0),
        satisfaction=4.0,
        churn_hazard=0.006,
        plan_mix=(0.3, 0.65, 0.05),
        contract_mix=(0.3, 0.6, 0.1),
        monthly_charges=90.0,
    ),
    SegmentProfile(
        name="big_ticket_b2b",
        weight=0.1,
        orders_per_month=0.15,
        order_value=2400.0,
        channel_mix=(0.05, 0.0, 0.0, 0.15, 0.8),
        category_mix=(0.0, 0.0, 0.0, 0.0, 0.35, 0.65),
        web_sessions_per_month=0.25,
        email_open_rate=0.15,
        email_click_rate=0.2,
        tickets_per_month=0.22,
        topic_mix=(0.15, 0.65, 0.0, 0.2, 0.0),
        satisfaction=3.6,
        churn_hazard=0.005,
        plan_mix=(0.0, 0.1, 0.9),
        contract_mix=(0.0, 0.3, 0.7),
        monthly_charges=900.0,
    ),
    SegmentProfile(
        name="disengaged_low_value",
        weight=0.26,
        orders_per_month=0.25,
        order_value=42.0,
        channel_mix=(0.85, 0.05, 0.0, 0.1, 0.0),
        category_mix=(0.1, 0.0, 0.1, 0.8, 0.0, 0.0),
        web_sessions_per_month=0.1,
        email_open_rate=0.07,
        email_click_rate=0.1,
        tickets_per_month=0.12,
        topic_mix=(0.45, 0.1, 0.1, 0.1, 0.25),
        satisfaction=2.7,
        churn_hazard=0.025,
        plan_mix=(0.85, 0.15, 0.0),
        contract_mix=(0.9, 0.1, 0.0),
        monthly_charges=35.0,
    ),
)

LIFECYCLES = ("new", "growing", "mature", "declining")
LIFECYCLE_WEIGHTS = (0.1, 0.2, 0.5, 0.2)
# Days before as_of in which each lifecycle's customers signed up.
LIFECYCLE_SIGNUP_DAYS = {
    "new": (0, 120),
    "growing": (120, 365),
    "mature": (365, 1460),
    "declining": (365, 1460),
}


def _check() -> None:
    for s in SEGMENTS:
        for mix, options in (
            (s.channel_mix, lx.CHANNELS),
            (s.category_mix, lx.CATEGORIES),
            (s.topic_mix, lx.TICKET_TOPICS),
            (s.plan_mix, lx.PLANS),
            (s.contract_mix, lx.CONTRACTS),
        ):
            assert len(mix) == len(options) and abs(sum(mix) - 1) < 1e-9, (s.name, mix)
    assert abs(sum(s.weight for s in SEGMENTS) - 1) < 1e-9


_check()
