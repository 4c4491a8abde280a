"""The measured uplift recovers the planted one: 20 seeds of a company whose retention list was worked with a
known effect (seg_pipeline/synthetic/study.py: the pipeline's arms, label code and estimator).

Recorded at 6,000 customers, a list of a quarter of them, 10 % controls: with the default effects the 95 %
intervals covered the planted uplift in 17-20 of 20 seeds per group (personal outreach, 6 controls a seed, is
the 17), and with a large effect (0.9 in every tier) they excluded zero in 20 of 20 seeds for every group with
more than 25 controls. For a 95 % interval 19 of 20 is the expectation and 17 is within what chance gives
(a binomial(20, 0.95) count is 17 or more with probability 98 %); the seeds are fixed, so the counts are
exact and the tests fail only if the generator, the arms, the label or the estimator change.
"""

from __future__ import annotations

import pandas as pd
import pytest

from seg_pipeline.synthetic.study import StudyCase, run_seed, summarize

SEEDS = range(20)


@pytest.fixture(scope="module")
def default_effects(tmp_path_factory) -> pd.DataFrame:
    work = tmp_path_factory.mktemp("uplift")
    return pd.concat([run_seed(seed, StudyCase(), work) for seed in SEEDS], ignore_index=True)


def test_the_interval_covers_the_planted_uplift_in_most_seeds(default_effects):
    summary = summarize(default_effects).set_index("group")
    assert (summary["seeds"] == 20).all()
    assert (summary["covered"] >= 17).all(), summary
    assert summary["covered"].sum() >= 90, summary  # of 100 intervals (5 groups x 20 seeds)
    # on average the estimate is where the truth is (the planted effect, not zero)
    pooled = summary.loc["all_action_tiers"]
    assert abs(pooled["measured_uplift"] - pooled["planted_uplift"]) < 0.02, summary


def test_the_planted_uplift_of_the_study_is_the_generators(default_effects):
    tiers = default_effects[
        default_effects["group"].isin(["personal_outreach", "semi_automated", "automated"])
    ]
    assert (tiers["planted_uplift"] - tiers["planted_in_manifest"]).abs().max() < 1e-12


def test_a_large_effect_is_told_from_zero(tmp_path):
    case = StudyCase(effects=(("personal_outreach", 0.9), ("semi_automated", 0.9), ("automated", 0.9)))
    rows = pd.concat([run_seed(seed, case, tmp_path) for seed in SEEDS], ignore_index=True)
    summary = summarize(rows).set_index("group")
    enough = summary[summary["control_customers"] > 25]
    assert set(enough.index) == {"semi_automated", "automated", "retention_list", "all_action_tiers"}
    assert (enough["excludes_zero"] >= 19).all(), summary
    assert (summary["covered"] >= 17).all(), summary
