"""The features catalogue names each column of customer_features, patterned ones included."""

from __future__ import annotations

from seg_pipeline.features.catalogue import catalogue_entry, feature_role


def test_columns_find_their_catalogue_entry_including_patterned_ones():
    assert catalogue_entry("recency_days").source == "all events"
    assert catalogue_entry("channel_share_app").name == "channel_share_<channel>"
    assert catalogue_entry("tickets_billing_365d").name == "tickets_<topic>_365d"
    assert catalogue_entry("channel_share_") is None and catalogue_entry("customer_key") is None


def test_roles_follow_the_catalogue():
    assert feature_role("avg_order_value", []) == "profile" and feature_role("recency_days", []) == "state"
    assert feature_role("channel_share_app", []) == "profile" and feature_role("channel_share_unknown", []) == "state"
    assert feature_role("plan", ["plan"]) == "profile" and feature_role("unheard_of", []) == "state"
