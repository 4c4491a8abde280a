"""The ingestion fingerprint a rescore compares: every input of a source's clean tables moves it."""

from __future__ import annotations

import datetime as dt

import pytest

from seg_pipeline.cleaning.privacy import record_erasure
from seg_pipeline.config import load_settings
from seg_pipeline.platform.rescore import CRM, RescorePlan, ingestion_fingerprint, stage_assets

AS_OF = dt.date(2024, 6, 30)
KEY = b"unit-test-key"


@pytest.fixture
def settings(tmp_path):
    return load_settings(overrides={"home": str(tmp_path / "home"), "landing": str(tmp_path)}, environ={})


def fingerprint(cfg, source="orders", as_of=AS_OF, sha="a" * 64, crm="crm1", key=KEY):
    return ingestion_fingerprint(cfg, source, as_of, sha, crm, key)


def test_same_inputs_same_fingerprint(settings):
    assert fingerprint(settings) == fingerprint(settings)
    digest, parts = fingerprint(settings)
    assert set(parts) == {"extract", "reading", "settings", "as_of", "exported_on", "key", "erasure_requests",
                          "code", "crm_ingestion"}  # fmt: skip
    assert KEY.decode() not in str(parts)  # the key enters only through an HMAC


@pytest.mark.parametrize(
    ("change", "part"),
    [
        ({"sha": "b" * 64}, "extract"),
        ({"as_of": dt.date(2024, 7, 1)}, "as_of"),
        ({"key": b"another-key"}, "key"),
        ({"crm": "crm2"}, "crm_ingestion"),
    ],
)
def test_each_input_moves_the_fingerprint(settings, change, part):
    before_digest, before = fingerprint(settings)
    after_digest, after = fingerprint(settings, **change)
    assert after_digest != before_digest
    assert [k for k in after if after[k] != before[k]] == [part]


@pytest.mark.parametrize(
    ("override", "part"),
    [
        ({"sources.orders.delimiter": ";"}, "reading"),
        ({"privacy.retention_days": 30}, "settings"),
        ({"quality.stale_record_days": 400}, "settings"),
    ],
)
def test_settings_move_the_fingerprint(tmp_path, settings, override, part):
    changed = load_settings(
        overrides={"home": str(tmp_path / "home"), "landing": str(tmp_path), **override}, environ={}
    )
    _, before = fingerprint(settings)
    _, after = fingerprint(changed)
    assert [k for k in after if after[k] != before[k]] == [part]


def test_an_erasure_request_moves_every_source(settings):
    def both():
        return {s: fingerprint(settings, source=s, crm=None if s == CRM else "crm1") for s in (CRM, "orders")}

    before = both()
    record_erasure(settings.home, "C000123", KEY)
    for source, (after_digest, after) in both().items():
        digest, parts = before[source]
        assert after_digest != digest and after["erasure_requests"] != parts["erasure_requests"]


def test_plan_leaves_out_reused_stages_and_keeps_quarantine_while_any_source_is_ingested():
    plan = RescorePlan(AS_OF, reused={"orders": "r1", CRM: "r1"}, ingest={"web_events": "changed"})
    assert plan.left_out() == {*stage_assets("orders"), *stage_assets(CRM)}
    assert "quarantine" not in plan.left_out()
    everything = RescorePlan(AS_OF, reused={"orders": "r1"})
    assert "quarantine" in everything.left_out()
    assert stage_assets(CRM)[:2] == ("raw_crm_customers", "clean_customers")


def test_the_crm_is_planned_first():
    """plan_rescore walks SOURCE_NAMES in order; event fingerprints need the CRM's."""
    from seg_pipeline.sources.contracts import SOURCE_NAMES

    assert SOURCE_NAMES[0] == CRM
