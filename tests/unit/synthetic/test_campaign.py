"""The synthetic company with a retention campaign (issue 28, point 4): the same world, the contacts of the
treatment arm, kept and won-back customers' added activity after D, and the planted uplift in truth/."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from seg_pipeline.synthetic.campaign import (
    CAMPAIGN_TRUTH_COLUMNS,
    DEFAULT_CAMPAIGNS,
    DEFAULT_CHANNELS,
    DEFAULT_CONTACT_RATES,
    CampaignPlan,
    customer_index,
)
from seg_pipeline.synthetic.generator import DUPLICATE_BASE, SOURCES, GeneratorConfig, customer_id, generate
from tests.conftest import AS_OF

TIERS = ("personal_outreach", "semi_automated", "automated")
D = AS_OF - dt.timedelta(days=120)
D_END = pd.Timestamp(D) + pd.Timedelta(days=1)  # events after D are dated from here on
CFG = GeneratorConfig(customers=3000, seed=21, as_of=AS_OF, history_days=400)
EFFECTS = {"personal_outreach": 0.9, "semi_automated": 0.5, "automated": 0.0}  # automated: no effect at all
DATE_COLUMNS = {
    "orders": "order_date",
    "web_events": "ts",
    "support_tickets": "created_at",
    "email_events": "ts",
}


def read(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])


def listed_customers(folder) -> pd.DataFrame:
    """A list like the pipeline's as of D: customers signed up by D, not yet churned (most of them at risk)
    or lapsed in the half year before D, a few under a duplicate record's id, some outside the action tiers
    (ignored)."""
    truth = read(folder / "truth" / "customers.csv")
    churn = pd.to_datetime(truth["churn_date"])
    signed_up = pd.to_datetime(truth["signup_date"]) <= pd.Timestamp(D)
    alive = signed_up & (churn.isna() | (churn >= D_END))
    soon = alive & (churn < D_END + pd.Timedelta(days=60))
    lapsed = signed_up & (churn < D_END) & (churn >= D_END - pd.Timedelta(days=180))
    ids = pd.concat(
        [
            truth.loc[soon, "customer_id"],
            truth.loc[alive & ~soon, "customer_id"].sample(700, random_state=3),
            truth.loc[lapsed, "customer_id"].sample(min(250, int(lapsed.sum())), random_state=6),
        ]
    )
    duplicates = read(folder / "truth" / "duplicates.csv")
    by_dup = duplicates[~duplicates["original_id"].isin(ids)].head(40)
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"customer_id": pd.concat([ids, by_dup["duplicate_id"]], ignore_index=True)})
    frame["tier"] = rng.choice([*TIERS, "no_action"], len(frame), p=[0.3, 0.3, 0.3, 0.1])
    frame["arm"] = rng.choice(["treatment", "control"], len(frame))
    frame.loc[frame["tier"] == "no_action", "arm"] = None
    frame.loc[len(frame) - len(by_dup) :, ["tier", "arm"]] = ["personal_outreach", "treatment"]
    return frame.sample(frac=1, random_state=5).reset_index(drop=True)


def read_truth(folder) -> pd.DataFrame:
    truth = read(folder / "truth" / "campaign.csv")
    assert list(truth.columns) == CAMPAIGN_TRUTH_COLUMNS
    for column in ("churned_without_campaign", "churned_with_campaign"):
        truth[column] = truth[column].astype(int)
    for column in ("contacted", "kept", "won_back"):
        truth[column] = truth[column].map({"True": True, "False": False})
    return truth


def both_worlds(root, cfg: GeneratorConfig, make_plan) -> dict:
    generate(cfg, root / "without")
    plan = make_plan(root / "without")
    generate(cfg, root / "with", campaign=plan)
    return {
        "without": root / "without",
        "with": root / "with",
        "assignments": plan.assignments,
        "truth": read_truth(root / "with"),
        "duplicates": read(root / "without" / "truth" / "duplicates.csv"),
        "manifest": json.loads((root / "with" / "truth" / "manifest.json").read_text())["campaign"],
    }


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    return both_worlds(
        tmp_path_factory.mktemp("campaign"),
        CFG,
        lambda folder: CampaignPlan(D, listed_customers(folder), effects=EFFECTS),
    )


def everyone_signed_up_by_d(folder) -> pd.DataFrame:
    """Every customer signed up by D, alive or lapsed, in a random tier; a fifth of them in control."""
    truth = read(folder / "truth" / "customers.csv")
    ids = truth.loc[pd.to_datetime(truth["signup_date"]) <= pd.Timestamp(D), "customer_id"]
    rng = np.random.default_rng(8)
    return pd.DataFrame(
        {"customer_id": ids, "tier": rng.choice(TIERS, len(ids)),
         "arm": np.where(rng.random(len(ids)) < 0.2, "control", "treatment")}
    )  # fmt: skip


@pytest.fixture(scope="module")
def certain_worlds(tmp_path_factory):
    """A campaign that reaches every treatment customer and always works."""
    certain = dict.fromkeys(TIERS, 1.0)
    return both_worlds(
        tmp_path_factory.mktemp("certain"),
        dataclasses.replace(CFG, customers=1500, seed=22),
        lambda folder: CampaignPlan(
            D, everyone_signed_up_by_d(folder), effects=certain, contact_rates=certain
        ),
    )


def originals(ids: pd.Series, duplicates: pd.DataFrame) -> pd.Series:
    return ids.map(duplicates.set_index("duplicate_id")["original_id"]).fillna(ids)


@pytest.mark.parametrize("name", ["worlds", "certain_worlds"])
def test_the_world_without_the_campaign_is_kept_row_for_row(name, request):
    worlds = request.getfixturevalue(name)
    truth, dups = worlds["truth"], worlds["duplicates"]
    kept = set(truth.loc[truth["kept"], "original_id"])
    treated = set(truth.loc[truth["arm"] == "treatment", "original_id"])
    assert kept and kept <= treated
    added_any = 0
    for name in SOURCES:
        without, with_ = read(worlds["without"] / f"{name}.csv"), read(worlds["with"] / f"{name}.csv")
        if name == "crm_customers":  # only the snapshot's churned/churn_date of kept customers may change
            assert len(with_) == len(without)
            assert with_.drop(columns=["churned", "churn_date"]).equals(
                without.drop(columns=["churned", "churn_date"])
            )
            changed = with_[["churned", "churn_date"]].fillna("") != without[
                ["churned", "churn_date"]
            ].fillna("")
            changed_ids = set(originals(with_.loc[changed.any(axis=1), "customer_id"], dups))
            assert changed_ids and changed_ids <= kept
            assert (with_.loc[changed.any(axis=1), "churn_date"].isna()).all()
            continue
        # every row of the world without the campaign, in place; rows only added, after them
        assert with_.iloc[: len(without)].equals(without)
        merged = without.merge(with_.drop_duplicates(), how="left", indicator=True)
        assert (merged["_merge"] == "both").all()
        added = with_.iloc[len(without) :]
        added_any += len(added)
        if name == "support_tickets":
            assert added.empty
            continue
        assert (pd.to_datetime(added[DATE_COLUMNS[name]]) >= D_END).all()
        assert (pd.to_datetime(added[DATE_COLUMNS[name]]) < pd.Timestamp(AS_OF) + pd.Timedelta(days=1)).all()
        assert set(originals(added["customer_id"], dups)) <= kept
        if name == "orders":
            assert added["order_id"].str.startswith("OK").all() and with_["order_id"].is_unique
        if name == "web_events":
            assert added["session_id"].str.startswith("SK").all()
            assert not set(added["session_id"]) & set(without["session_id"].dropna())
    assert added_any > 0
    for name in ("anomalies", "duplicates", "households", "web_identities"):
        assert (worlds["with"] / "truth" / f"{name}.csv").read_bytes() == (
            worlds["without"] / "truth" / f"{name}.csv"
        ).read_bytes()
    customers_without = read(worlds["without"] / "truth" / "customers.csv")
    customers_with = read(worlds["with"] / "truth" / "customers.csv")
    differs = (customers_with.fillna("") != customers_without.fillna("")).any(axis=1)
    assert set(customers_with.loc[differs, "customer_id"]) <= kept
    # kept and won-back customers have not churned in the world with the campaign
    assert customers_with.loc[customers_with["customer_id"].isin(kept), "churn_date"].isna().all()


def test_only_the_treatment_arm_is_contacted_at_the_tier_rates(worlds):
    interventions = read(worlds["with"] / "interventions.csv")
    truth = worlds["truth"]
    assert list(interventions.columns) == ["customer_id", "date", "campaign", "channel"]
    control = set(truth.loc[truth["arm"] == "control", "customer_id"])
    assert not set(interventions["customer_id"]) & control
    assert interventions["customer_id"].is_unique
    assert set(interventions["customer_id"]) == set(truth.loc[truth["contacted"], "customer_id"])
    days = (pd.to_datetime(interventions["date"]) - pd.Timestamp(D)).dt.days
    assert days.between(1, 14).all() and days.nunique() > 10
    tier = interventions["customer_id"].map(truth.set_index("customer_id")["tier"])
    assert (interventions["channel"] == tier.map(DEFAULT_CHANNELS)).all()
    assert (interventions["campaign"] == tier.map(DEFAULT_CAMPAIGNS)).all()
    treated = truth[truth["arm"] == "treatment"]
    share = treated.groupby("tier")["contacted"].mean()
    for name in TIERS:
        assert share[name] == pytest.approx(DEFAULT_CONTACT_RATES[name], abs=0.07)
    assert share["automated"] == 1.0


def test_truth_holds_the_planted_uplift(worlds):
    truth, manifest = worlds["truth"], worlds["manifest"]
    acting = worlds["assignments"][worlds["assignments"]["tier"].isin(TIERS)]
    assert truth["customer_id"].tolist() == acting["customer_id"].tolist()  # one row per assignment, in order
    without, with_ = truth["churned_without_campaign"], truth["churned_with_campaign"]
    assert (with_ <= without).all()
    untouched = (truth["arm"] == "control") | ~truth["contacted"] | ~truth["kept"]
    assert (with_[untouched] == without[untouched]).all()
    assert not truth.loc[truth["arm"] == "control", ["contacted", "kept", "won_back"]].any().any()
    # only a label that can improve is touched, and a kept or won-back customer's always does
    assert (with_ == without - truth["kept"].astype(int)).all()
    assert (truth.loc[truth["kept"], "churned_without_campaign"] == 1).all()
    assert (truth["kept"] >= truth["won_back"]).all()
    treated = truth[truth["arm"] == "treatment"]
    for tier in TIERS:
        rows = treated[treated["tier"] == tier]
        uplift = (rows["churned_without_campaign"] - rows["churned_with_campaign"]).mean()
        summary = manifest["tiers"][tier]
        assert summary["planted_uplift"] == pytest.approx(uplift, abs=1e-12)
        assert summary["customers"]["treatment"] == len(rows)
        assert summary["customers"]["control"] == int((truth["tier"] == tier).sum()) - len(rows)
        assert summary["contacted"] == int(rows["contacted"].sum())
        assert summary["kept"] == int(truth.loc[truth["tier"] == tier, "kept"].sum())
        assert summary["won_back"] == int(truth.loc[truth["tier"] == tier, "won_back"].sum())
    assert manifest["tiers"]["automated"]["planted_uplift"] == 0.0
    assert manifest["tiers"]["automated"]["kept"] == 0
    assert manifest["tiers"]["personal_outreach"]["planted_uplift"] > 0.15
    assert manifest["tiers"]["personal_outreach"]["won_back"] > 0
    assert manifest["date"] == D.isoformat() and manifest["horizon_days"] == 90
    assert manifest["effects"] == EFFECTS and manifest["contact_rates"] == DEFAULT_CONTACT_RATES


def test_the_planted_uplift_is_effect_times_contact_rate_times_churn_share(worlds):
    """A tier's uplift is about effect x contact rate x the share of its treatment arm churned without the
    campaign: lapsed customers are won back, those churning after the contact kept."""
    treated = worlds["truth"][worlds["truth"]["arm"] == "treatment"]
    for tier in TIERS:
        rows = treated[treated["tier"] == tier]
        share = rows["churned_without_campaign"].mean()
        assert share > 0.2  # a list at risk
        expected = EFFECTS[tier] * DEFAULT_CONTACT_RATES[tier] * share
        assert worlds["manifest"]["tiers"][tier]["planted_uplift"] == pytest.approx(expected, abs=0.05)


def test_won_back_customers_had_lapsed_before_their_contact(worlds):
    truth = worlds["truth"]
    churn = read(worlds["without"] / "truth" / "customers.csv").set_index("customer_id")["churn_date"]
    contact = read(worlds["with"] / "interventions.csv").set_index("customer_id")["date"]
    kept = truth[truth["kept"]]
    churned_on = pd.to_datetime(kept["original_id"].map(churn))
    contacted_on = pd.to_datetime(kept["customer_id"].map(contact))
    won_back = kept["won_back"]
    assert won_back.any() and (~won_back).any()
    assert (churned_on[won_back] <= contacted_on[won_back]).all()
    assert (churned_on[~won_back].isna() | (churned_on[~won_back] >= contacted_on[~won_back])).all()


def test_a_certain_campaign_makes_every_churned_treatment_customer_active(certain_worlds):
    truth, manifest = certain_worlds["truth"], certain_worlds["manifest"]
    treated = truth[truth["arm"] == "treatment"]
    assert treated["contacted"].all()
    churned = treated["churned_without_campaign"] == 1
    assert churned.mean() > 0.2 and treated["won_back"].sum() > 20
    assert (treated["churned_with_campaign"] == 0).all()
    assert (treated["kept"] == churned).all()
    control = truth[truth["arm"] == "control"]
    assert (control["churned_with_campaign"] == control["churned_without_campaign"]).all()
    for tier in TIERS:
        rows = treated[treated["tier"] == tier]
        assert manifest["tiers"][tier]["planted_uplift"] == pytest.approx(
            rows["churned_without_campaign"].mean(), abs=1e-12
        )


def test_the_label_is_the_pipelines_activity_label(worlds):
    """churned_without_campaign is the activity label read off the extracts of the world without the
    campaign (up to the few events the messiness moved, unlinked or dated wrongly)."""
    window_end = D_END + pd.Timedelta(days=90)
    active: set[str] = set()
    for name, column in DATE_COLUMNS.items():
        frame = read(worlds["without"] / f"{name}.csv")
        if name == "email_events":
            frame = frame[frame["event_type"].isin(["open", "click"])]
        ts = pd.to_datetime(frame[column], errors="coerce", format="mixed")
        active |= set(frame.loc[(ts >= D_END) & (ts < window_end), "customer_id"].dropna())
    active = set(originals(pd.Series(sorted(active)), worlds["duplicates"]))
    truth = worlds["truth"]
    observed = (~truth["original_id"].isin(active)).astype(int)
    assert (observed == truth["churned_without_campaign"]).mean() > 0.97
    assert (truth.loc[observed == 0, "churned_without_campaign"] == 0).all()  # messiness only hides activity


def test_a_duplicate_record_id_stands_for_its_original(worlds):
    truth, dups = worlds["truth"], worlds["duplicates"]
    by_dup = truth[truth["customer_id"].isin(dups["duplicate_id"])]
    assert len(by_dup) == 40
    expected = by_dup["customer_id"].map(dups.set_index("duplicate_id")["original_id"])
    assert (by_dup["original_id"] == expected).all()
    assert (by_dup["original_id"] != by_dup["customer_id"]).all()
    interventions = read(worlds["with"] / "interventions.csv")
    contacted = set(by_dup.loc[by_dup["contacted"], "customer_id"])
    assert contacted and contacted <= set(interventions["customer_id"])  # the id as assigned
    index = customer_index(by_dup["customer_id"].iloc[0])
    assert index is not None and index >= DUPLICATE_BASE


def test_an_unknown_duplicate_record_id_is_refused(tmp_path):
    cfg = dataclasses.replace(CFG, customers=300)
    plan = plan_with(assignments=pd.DataFrame({"customer_id": [customer_id(DUPLICATE_BASE + 299)],
                                               "tier": "automated", "arm": "control"}))  # fmt: skip
    with pytest.raises(ValueError, match="a duplicate record id this company does not have"):
        generate(cfg, tmp_path, campaign=plan)


def test_defaults_are_the_documented_ones():
    plan = plan_with()
    assert plan.effects == {"personal_outreach": 0.5, "semi_automated": 0.3, "automated": 0.15}
    assert plan.contact_rates == {"personal_outreach": 0.9, "semi_automated": 0.95, "automated": 1.0}
    assert (
        plan.channels["personal_outreach"] == "phone"
        and plan.campaigns["personal_outreach"] == "winback-personal"
    )
    assert plan.horizon_days == 90


def test_customer_index_inverts_customer_id():
    for index in (0, 1, 2999, 123_456, DUPLICATE_BASE + 7):
        assert customer_index(customer_id(index)) == index
    assert customer_index("C123") is None and customer_index("X0000000001") is None


def test_parquet_company_gets_an_interventions_extract(tmp_path):
    cfg = dataclasses.replace(CFG, customers=300, format="parquet")
    generate(cfg, tmp_path / "without")
    crm = pd.read_parquet(tmp_path / "without" / "crm_customers.parquet")
    plan = CampaignPlan(
        D, pd.DataFrame({"customer_id": crm["customer_id"], "tier": "automated", "arm": "treatment"})
    )
    summary = generate(cfg, tmp_path / "with", campaign=plan)
    interventions = pd.read_parquet(tmp_path / "with" / "interventions.parquet")
    assert summary.files["interventions"].name == "interventions.parquet"
    assert summary.rows["interventions"] == len(interventions) == len(crm)
    for name in ("orders", "web_events", "email_events"):
        without = pd.read_parquet(tmp_path / "without" / f"{name}.parquet")
        with_ = pd.read_parquet(tmp_path / "with" / f"{name}.parquet")
        assert with_.iloc[: len(without)].equals(without)


def plan_with(**changes) -> CampaignPlan:
    assignments = pd.DataFrame({"customer_id": [customer_id(1), customer_id(2)], "tier": "automated",
                                "arm": ["treatment", "control"]})  # fmt: skip
    return CampaignPlan(**{"date": D, "assignments": assignments, **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"assignments": pd.DataFrame({"customer_id": ["C1"], "tier": ["automated"]})}, "lack column.*arm"),
        (
            {
                "assignments": pd.DataFrame(
                    {"customer_id": [customer_id(1)], "tier": "automated", "arm": "holdout"}
                )
            },
            "unknown arm 'holdout'",
        ),
        (
            {"effects": {"personal_outreach": 1.5, "semi_automated": 0.3, "automated": 0.1}},
            r"effects.*\[0, 1\]",
        ),
        (
            {"contact_rates": {"personal_outreach": 0.9, "semi_automated": -0.1, "automated": 1}},
            "contact_rates",
        ),
        ({"effects": {"personal_outreach": 0.5}}, "effects lacks tier"),
        ({"horizon_days": 0}, "horizon_days"),
        (
            {
                "assignments": pd.DataFrame(
                    {"customer_id": [customer_id(1)] * 2, "tier": "automated", "arm": "control"}
                )
            },
            "more than once",
        ),
    ],
)
def test_bad_plans_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        plan_with(**changes)


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (lambda: plan_with(date=AS_OF - dt.timedelta(days=400)), "outside the generated history"),
        (lambda: plan_with(date=AS_OF + dt.timedelta(days=1)), "outside the generated history"),
        (lambda: plan_with(date=AS_OF, horizon_days=200), "end of the simulation"),
        (
            lambda: plan_with(
                assignments=pd.DataFrame(
                    {"customer_id": ["C0000000001"], "tier": "automated", "arm": "control"}
                )
            ),  # fmt: skip
            "not a customer id of this company",
        ),
        (
            lambda: plan_with(
                assignments=pd.DataFrame(
                    {"customer_id": [customer_id(5000)], "tier": "automated", "arm": "control"}
                )
            ),  # fmt: skip
            "not a customer id of this company",
        ),
    ],
)
def test_plans_that_do_not_fit_the_company_are_refused_before_writing(tmp_path, plan, message):
    with pytest.raises(ValueError, match=message):
        generate(CFG, tmp_path / "out", campaign=plan())
    assert not (tmp_path / "out").exists()
