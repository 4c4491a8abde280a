"""The clean stage on a generated company, scored against the generator's truth."""

from __future__ import annotations

import dagster as dg
import duckdb
import pandas as pd
import pytest

from seg_pipeline.cleaning.privacy import pseudonymize, record_erasure
from tests.conftest import AS_OF, TEST_KEY
from tests.integration.support import UP_TO_CLEAN, copy_extracts, run_all, settings_for

CLEAN_TABLES = (
    "clean_customers",
    "clean_orders",
    "clean_web_events",
    "clean_support_tickets",
    "clean_email_events",
)


def tables(settings) -> dict[str, pd.DataFrame]:
    """Every table after the raw stage (clean, features, ...), by name."""
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        query = "select table_schema, table_name from information_schema.tables where table_schema <> 'raw'"
        names = con.execute(query).fetchall()
        return {name: con.execute(f"select * from {schema}.{name}").df() for schema, name in names}


@pytest.fixture(scope="module")
def cleaned(small_company, tmp_path_factory):
    """One successful full run on a copy of the small company (the truth stays outside the landing folder)."""
    tmp_path = tmp_path_factory.mktemp("clean")
    landing = copy_extracts(small_company, tmp_path / "landing")
    settings = settings_for(tmp_path, landing)
    with pytest.MonkeyPatch.context() as env, dg.instance_for_test() as instance:
        env.setenv("SEG_PSEUDO_KEY", TEST_KEY)  # module scope: the per-test env fixture is not active yet
        result = run_all(settings, instance)
        assert result.success, [e.step_key for e in result.all_events if e.is_step_failure]
        metadata = {
            key: instance.get_latest_materialization_event(dg.AssetKey(key)).asset_materialization.metadata
            for key in CLEAN_TABLES
        }
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    truth = small_company / "truth"
    return {
        "settings": settings,
        "tables": tables(settings),
        "metadata": metadata,
        "checks": checks,
        "anomalies": pd.read_csv(truth / "anomalies.csv"),
        "duplicates": pd.read_csv(truth / "duplicates.csv"),
        "truth": pd.read_csv(truth / "customers.csv"),
        "identities": pd.read_csv(truth / "web_identities.csv"),
        "landing": landing,
    }


def key_of(ids) -> pd.Series:
    return pseudonymize(pd.Series(list(ids), dtype="string"), TEST_KEY.encode())


def test_every_gate_passes_on_clean_tables(cleaned):
    assert {f"{t}_quality" for t in CLEAN_TABLES} <= set(cleaned["checks"])
    assert all(c.passed for c in cleaned["checks"].values())


def test_duplicate_detection_precision_and_recall(cleaned):
    id_map = cleaned["tables"]["customer_id_map"].set_index("customer_id")["customer_key"]
    truth = cleaned["duplicates"]
    predicted = id_map[id_map.index.duplicated(keep=False) | id_map.duplicated(keep=False)]
    clusters = predicted.groupby(predicted).groups
    predicted_pairs = {frozenset(p) for ids in clusters.values() for p in _pairs(list(ids))}
    true_pairs = {frozenset(p) for p in zip(truth["duplicate_id"], truth["original_id"], strict=True)}
    tp = len(predicted_pairs & true_pairs)
    precision, recall = tp / len(predicted_pairs), tp / len(true_pairs)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    customers = cleaned["tables"]["clean_customers"]
    # one row per real customer, and one more per duplicate the matcher missed (none merged wrongly)
    missed = len(true_pairs - predicted_pairs)
    assert len(cleaned["truth"]) <= len(customers) <= len(cleaned["truth"]) + missed
    assert customers["customer_key"].is_unique


def test_household_members_stay_different_customers(cleaned, small_company):
    """The generator's households share a phone and a surname: the matcher must not merge them."""
    id_map = cleaned["tables"]["customer_id_map"].set_index("customer_id")["customer_key"]
    households = pd.read_csv(small_company / "truth" / "households.csv", dtype=str)
    assert len(households) > 0
    same = (
        id_map[households["customer_id"]].to_numpy() == id_map[households["household_member_id"]].to_numpy()
    )
    assert not same.any()


def _pairs(ids):
    return [(a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]]


def test_injected_row_problems_are_quarantined_with_reasons(cleaned):
    quarantine = cleaned["tables"]["quarantine"]
    anomalies = cleaned["anomalies"]
    held = set(zip(quarantine["source"], quarantine["source_row"], strict=True))
    expected_rule = {
        ("orders", "orphan_id"): "orphan_id",
        ("orders", "negative_amount"): "negative_amount",
        ("orders", "invalid_date"): "invalid_date",
        ("orders", "future_date"): "future_date",
        ("orders", "missing_required"): "missing_required",
        ("web_events", "orphan_id"): "orphan_id",
        ("web_events", "future_date"): "future_date",
        ("support_tickets", "orphan_id"): "orphan_id",
        ("email_events", "orphan_id"): "orphan_id",
        ("email_events", "future_date"): "future_date",
    }
    for (source, kind), rule in expected_rule.items():
        rows = anomalies[(anomalies["source"] == source) & (anomalies["kind"] == kind)]
        missed = [r for r in rows["source_row"] if (source, r) not in held]
        assert not missed, (source, kind, missed[:5])
        by_rule = quarantine[(quarantine["source"] == source) & (quarantine["rule"] == rule)]
        assert len(by_rule) >= 1 and by_rule["reason"].notna().all()
    assert quarantine["run_id"].nunique() == 1


def test_outliers_are_capped_and_labels_respelled(cleaned):
    orders = cleaned["tables"]["clean_orders"].set_index("source_row")
    anomalies = cleaned["anomalies"]
    outliers = anomalies[(anomalies["source"] == "orders") & (anomalies["kind"] == "amount_outlier")][
        "source_row"
    ]
    present = outliers[outliers.isin(orders.index)]
    recall = orders.loc[present, "amount_capped"].mean()
    assert recall >= 0.8, recall
    assert orders["amount_capped"].mean() < 0.01  # not capping ordinary orders
    capped = orders[orders["amount_capped"]]
    assert (capped["amount"] < capped["amount_original"]).all()
    assert cleaned["metadata"]["clean_orders"]["fixed/amount_capped"].value == int(
        orders["amount_capped"].sum()
    )
    assert set(cleaned["tables"]["clean_email_events"]["event_type"]) == {
        "sent",
        "open",
        "click",
        "unsubscribe",
    }


def test_unlinked_events_are_re_keyed_to_the_right_customer(cleaned):
    truth_keys = cleaned["tables"]["customer_id_map"].set_index("customer_id")["customer_key"]
    web = cleaned["tables"]["clean_web_events"]
    by_identify = web[web["linked_by"] == "identify"]
    assert len(by_identify) > 0
    raw_web = pd.read_csv(cleaned["landing"] / "web_events.csv", dtype=str)
    cookies = raw_web["anonymous_id"].reindex(by_identify["source_row"] - 1).to_numpy()
    owner = cleaned["identities"].set_index("anonymous_id")["customer_id"]
    assert (by_identify["customer_key"].to_numpy() == truth_keys.loc[owner.loc[cookies]].to_numpy()).all()
    tickets = cleaned["tables"]["clean_support_tickets"]
    assert {"email", "phone"} <= set(tickets["linked_by"])
    assert (cleaned["tables"]["clean_email_events"]["linked_by"] == "email").any()


def test_row_accounting_balances_for_every_source(cleaned):
    for table, metadata in cleaned["metadata"].items():
        counts = {
            k.removeprefix("accounting/"): v.value
            for k, v in metadata.items()
            if k.startswith("accounting/rows_")
        }
        parts = sum(v for k, v in counts.items() if k not in ("rows_in",) and not k.startswith("rows_clean_"))
        assert counts["rows_in"] == parts, (table, counts)
        assert "row_accounting" in metadata
    raw_orders = len(pd.read_csv(cleaned["landing"] / "orders.csv", usecols=[0]))
    assert cleaned["metadata"]["clean_orders"]["accounting/rows_in"].value == raw_orders


def test_no_email_phone_or_name_after_the_clean_stage(cleaned):
    crm = pd.read_csv(cleaned["landing"] / "crm_customers.csv", dtype=str)
    emails = set(crm["email"].dropna().str.strip().str.lower())
    phones = set(crm["phone"].dropna().str.replace(r"\D", "", regex=True).str[-9:])
    names = set(crm["name"].dropna().str.lower())
    for name, table in cleaned["tables"].items():
        assert not {"email", "phone", "name", "company"} & set(table.columns), name
        for column in table.select_dtypes(include=["object", "string"]).columns:
            values = table[column].dropna().astype(str)
            lowered = set(values.str.lower())
            assert not lowered & emails, (name, column)
            assert not lowered & names, (name, column)
            assert not set(values.str.replace(r"\D", "", regex=True).str[-9:]) & phones - {""}, (name, column)


def test_consent_is_counted(cleaned):
    customers = cleaned["tables"]["clean_customers"]
    excluded = cleaned["metadata"]["clean_customers"]["customers_without_profiling_consent"].value
    assert excluded == int((~customers["profiling_allowed"]).sum()) > 0


def test_corrupted_extract_blocks_everything_downstream(small_company, tmp_path):
    landing = copy_extracts(small_company, tmp_path / "landing")
    crm = pd.read_csv(landing / "crm_customers.csv", dtype=str, keep_default_na=False)
    crm.loc[crm.sample(frac=0.4, random_state=3).index, "email"] = ""
    crm.to_csv(landing / "crm_customers.csv", index=False)
    with dg.instance_for_test() as instance:
        result = run_all(settings_for(tmp_path, landing), instance)
        assert not result.success
        for key in ("clean_customers", "clean_orders", "quarantine"):
            assert instance.get_latest_materialization_event(dg.AssetKey(key)) is None, key
        assert instance.get_latest_materialization_event(dg.AssetKey("raw_orders")) is not None


def test_erasure_removes_a_customer_end_to_end(small_company, tmp_path):
    landing = copy_extracts(small_company, tmp_path / "landing")
    duplicates = pd.read_csv(small_company / "truth" / "duplicates.csv")
    original, duplicate = duplicates.iloc[0]["original_id"], duplicates.iloc[0]["duplicate_id"]
    settings = settings_for(tmp_path, landing)
    record_erasure(settings.home, duplicate, TEST_KEY.encode())  # asking by either record erases the person
    with dg.instance_for_test() as instance:
        assert run_all(settings, instance).success
    gone = set(key_of([original, duplicate]))
    for name, table in tables(settings).items():
        text = table.astype(str)
        for column in text.columns:
            assert not set(text[column]) & (gone | {original, duplicate}), (name, column)


def test_a_non_numeric_amount_goes_to_quarantine_with_its_value(small_company, tmp_path):
    landing = copy_extracts(small_company, tmp_path / "landing")
    orders = pd.read_csv(landing / "orders.csv", dtype=str, keep_default_na=False)
    row = len(orders) - 3
    orders.loc[row, "amount"] = "12,50 EUR"
    orders.to_csv(landing / "orders.csv", index=False)
    settings = settings_for(tmp_path, landing)
    with dg.instance_for_test() as instance:
        assert run_all(settings, instance, groups=UP_TO_CLEAN).success
    quarantine = tables(settings)["quarantine"]
    held = quarantine[(quarantine["source"] == "orders") & (quarantine["source_row"] == row + 1)]
    assert held["rule"].tolist() == ["unparseable"]
    assert held["reason"].iloc[0] == "amount '12,50 EUR' is not a valid float"


def test_crm_fixes_are_scored_against_the_truth(cleaned):
    anomalies = cleaned["anomalies"]
    customers = cleaned["tables"]["clean_customers"].set_index("customer_id")
    stale = anomalies[(anomalies["source"] == "crm_customers") & (anomalies["kind"] == "stale_record")]["key"]
    single = customers.loc[stale[stale.isin(customers.index)]]
    single = single[single["merged_records"] == 1]
    assert len(single) > 0 and single["is_stale"].all()
    future = anomalies[(anomalies["source"] == "crm_customers") & (anomalies["kind"] == "future_date")]["key"]
    kept = customers.loc[future[future.isin(customers.index)]]
    assert (kept["signup_date"].isna() | (kept["signup_date"] <= pd.Timestamp(AS_OF))).all()
    fixed = cleaned["metadata"]["clean_customers"]["fixed/signup_date_after_as_of_set_missing"].value
    assert fixed >= 1
