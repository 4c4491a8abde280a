"""Does the outcome stage recover a planted campaign effect? One company per seed, measured as the pipeline
measures it (tests/integration/test_uplift_recovery.py, benchmarks/uplift_recovery.py).

Per seed: a company without messiness is generated; a retention list is drawn as the pipeline makes one in
shape (a share of the customers who signed up by the list's date, split 1:4:15 into the three action tiers)
and its arms are assigned by the pipeline's own keyed hash (churn/actions.py ``assign_arms``); the same
company is generated again with that list worked (synthetic/campaign.py). Then realized churn is computed
with the pipeline's label code (outcomes/realized.py ``realized_churn``) from the extracts and the uplift
with the pipeline's estimator (outcomes/uplift.py), and compared with the planted uplift in truth/.

The list here is random, not the model's: the estimator's job is the same on any randomized list, and a
model-made list would tie each seed to a full pipeline run (minutes); the end-to-end Dagster test of the
campaign does that once.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seg_pipeline.churn.actions import ACTION_TIERS, assign_arms
from seg_pipeline.config import ControlGroupConfig
from seg_pipeline.outcomes.realized import realized_churn
from seg_pipeline.outcomes.uplift import uplift_table
from seg_pipeline.synthetic.campaign import DEFAULT_EFFECTS, CampaignPlan
from seg_pipeline.synthetic.generator import GeneratorConfig, MessinessRates, generate

STUDY_KEY = b"uplift-study-key"  # the arms' hash key; any key gives random arms
TIER_SHARES = {"personal_outreach": 1 / 20, "semi_automated": 4 / 20, "automated": 15 / 20}


@dataclass(frozen=True)
class StudyCase:
    customers: int = 6000
    as_of: dt.date = dt.date(2024, 6, 30)
    days_back: int = 120  # the list's date: as_of - days_back
    horizon_days: int = 90
    history_days: int = 400
    list_share: float = 0.25  # of the customers signed up by the list's date
    control_share: float = 0.1
    effects: tuple[tuple[str, float], ...] = tuple(DEFAULT_EFFECTS.items())


def _events(folder: Path) -> dict[str, pd.DataFrame]:
    """The extracts as the label code reads them, keyed by CRM id (no messiness: the clean tables are these)."""

    def read(name: str, time: str) -> pd.DataFrame:
        frame = pd.read_csv(folder / f"{name}.csv", dtype=str)
        frame[time] = pd.to_datetime(frame[time], utc=True, format="mixed").dt.tz_localize(None)
        return frame.rename(columns={"customer_id": "customer_key"})

    return {"orders": read("orders", "order_date"), "web": read("web_events", "ts"),
            "email": read("email_events", "ts"), "tickets": read("support_tickets", "created_at")}  # fmt: skip


def run_seed(seed: int, case: StudyCase = StudyCase(), work: Path | None = None) -> pd.DataFrame:
    """The pipeline's uplift rows for one seed, with the planted uplift of each group beside them."""
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        folder = Path(tmp)
        config = GeneratorConfig(customers=case.customers, seed=seed, as_of=case.as_of,
                                 history_days=case.history_days, rates=MessinessRates().scaled(0))  # fmt: skip
        generate(config, folder)
        day = case.as_of - dt.timedelta(days=case.days_back)
        truth = pd.read_csv(folder / "truth" / "customers.csv", dtype={"customer_id": str})
        eligible = truth.loc[
            pd.to_datetime(truth["signup_date"]) <= pd.Timestamp(day), "customer_id"
        ].to_numpy()
        rng = np.random.default_rng([seed, 7])
        chosen = rng.permutation(eligible)[: int(round(case.list_share * len(eligible)))]
        cuts = np.cumsum([round(share * len(chosen)) for share in TIER_SHARES.values()])[:-1]
        tiers = np.concatenate([np.full(len(part), tier, dtype=object)
                                for tier, part in zip(TIER_SHARES, np.split(chosen, cuts), strict=True)])  # fmt: skip
        listed = pd.DataFrame({"customer_key": chosen, "risk_tier": tiers})
        control = ControlGroupConfig(share=case.control_share, campaign=f"study-{seed}")
        listed = assign_arms(listed, STUDY_KEY, control, day)
        plan = CampaignPlan(date=day, horizon_days=case.horizon_days, effects=dict(case.effects),
                            assignments=listed.rename(columns={"customer_key": "customer_id", "risk_tier": "tier"}))  # fmt: skip
        generate(config, folder, campaign=plan)
        events = _events(folder)
        churned = realized_churn(listed["customer_key"], day, case.horizon_days, **events)
        measured = listed.assign(churned=churned.to_numpy(), value_365d=np.nan)
        contacts = pd.read_csv(folder / "interventions.csv", dtype=str).rename(
            columns={"customer_id": "customer_key"}
        )
        table = uplift_table(measured, contacts)
        manifest = json.loads((folder / "truth" / "manifest.json").read_text())["campaign"]
        outcome = pd.read_csv(folder / "truth" / "campaign.csv", dtype={"customer_id": str})
    planted = _planted(outcome)
    return table.assign(seed=seed, planted_uplift=table["group"].map(planted),
                        planted_in_manifest=table["group"].map(
                            {t: manifest["tiers"][t]["planted_uplift"] for t in ACTION_TIERS}))  # fmt: skip


def _planted(outcome: pd.DataFrame) -> dict[str, float]:
    """The true intention-to-treat effect per group: mean(churned without - with) over its treatment arm."""
    treated = outcome[outcome["arm"] == "treatment"]
    gain = treated["churned_without_campaign"] - treated["churned_with_campaign"]
    groups = {**{t: (t,) for t in ACTION_TIERS}, "retention_list": ("personal_outreach", "semi_automated"),
              "all_action_tiers": ACTION_TIERS}  # fmt: skip
    return {g: float(gain[treated["tier"].isin(tiers)].mean()) for g, tiers in groups.items()}


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per group: seeds, how often the intention-to-treat interval covered the planted uplift and excluded
    zero, and the mean planted and measured uplift."""
    itt = rows[rows["estimand"] == "intention_to_treat"].assign(
        covered=lambda f: (f["ci_low"] <= f["planted_uplift"]) & (f["planted_uplift"] <= f["ci_high"]),
        excludes_zero=lambda f: f["ci_low"] > 0,
    )
    return itt.groupby("group", sort=False).agg(
        seeds=("seed", "nunique"), covered=("covered", "sum"), excludes_zero=("excludes_zero", "sum"),
        planted_uplift=("planted_uplift", "mean"), measured_uplift=("uplift", "mean"),
        control_customers=("control_customers", "mean")).reset_index()  # fmt: skip
