"""PSI against a stored reference: known answers, missing values, discrete features, no reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seg_pipeline.publish.drift import MISSING_BIN, bin_shares, build_reference, compare, psi, reference_bins


def test_psi_known_answer():
    # two bins 50/50 -> 25/75: (0.25-0.5)ln(0.5) + (0.75-0.5)ln(1.5)
    expected = -0.25 * np.log(0.5) + 0.25 * np.log(1.5)
    assert psi(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(expected)
    assert psi(np.array([0.2, 0.8]), np.array([0.2, 0.8])) == 0.0


def test_reference_bins_are_deciles_with_a_missing_bin():
    values = pd.Series(np.arange(1000, dtype=float)).where(lambda s: s % 10 != 0)  # 10 % missing
    bins = reference_bins(values, bins=10)
    assert bins["bin"].tolist() == [*range(10), MISSING_BIN]
    assert bins["share"].sum() == pytest.approx(1.0)
    assert bins.loc[bins["bin"] == MISSING_BIN, "share"].item() == pytest.approx(0.1)
    assert bins.loc[bins["bin"] >= 0, "share"].to_numpy() == pytest.approx(np.full(10, 0.09), abs=0.002)


def test_discrete_values_get_one_bin_each_not_empty_interpolated_bins():
    bins = reference_bins(pd.Series([0, 0, 0, 1, 1, 2] * 50, dtype=float))
    numbered = bins[bins["bin"] >= 0]
    assert len(numbered) == 3 and (numbered["share"] > 0).all()


def test_same_distribution_is_stable_and_a_shift_is_flagged():
    rng = np.random.default_rng(1)
    before = pd.DataFrame({"spend": rng.lognormal(3, 1, 5000), "visits": rng.poisson(4, 5000).astype(float)})
    reference = build_reference(before, ["spend", "visits", "absent"], "2024-06-30", "run-a")
    assert set(reference["feature"]) == {"spend", "visits"}

    same = pd.DataFrame({"spend": rng.lognormal(3, 1, 5000), "visits": rng.poisson(4, 5000).astype(float)})
    stable = compare(same, reference, threshold=0.2)
    assert (stable["psi"] < 0.02).all() and not stable["flagged"].any()
    assert stable["reference_run_id"].eq("run-a").all()

    shifted = same.assign(spend=same["spend"] * 3)  # prices tripled
    drifted = compare(shifted, reference, threshold=0.2).set_index("feature")
    assert drifted.loc["spend", "flagged"] and drifted.loc["spend", "psi"] > 1
    assert not drifted.loc["visits", "flagged"]


def test_values_becoming_missing_count_as_drift():
    values = pd.Series(np.linspace(0, 1, 1000))
    bins = reference_bins(values)
    half_missing = values.where(values > 0.5)
    shares = bin_shares(half_missing, bins)
    assert shares[bins["bin"].to_numpy() == MISSING_BIN].item() == pytest.approx(0.5, abs=0.01)
    assert psi(bins["share"].to_numpy(), shares) > 1


def test_without_a_reference_nothing_is_compared():
    out = compare(pd.DataFrame({"x": [1.0, 2.0]}), None, threshold=0.2)
    assert out.empty and list(out.columns) == [
        "feature",
        "psi",
        "reference_as_of",
        "reference_run_id",
        "flagged",
    ]
