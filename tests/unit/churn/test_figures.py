"""The churn figures render to PNG and show what they claim: AUC and Brier scores in the legends, lift by
decile computed by rank (ties and tiny holdouts included), clear errors for inputs that make no sense."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, roc_auc_score

from seg_pipeline.churn.figures import (
    calibration_figure,
    importance_figure,
    lift_figure,
    lift_table,
    roc_figure,
)
from seg_pipeline.churn.train import top_decile_lift

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=50)
    return buffer.getvalue()


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def holdout(n: int = 400, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A holdout with ~25% churners and three models of decreasing skill (probabilities in [0, 1])."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(int)
    signal = y + rng.normal(0, 1, n)

    def squash(z):
        return 1 / (1 + np.exp(-z))

    scores = {
        "hist_gradient_boosting": squash(2.0 * signal - 2.0),
        "logistic": squash(signal + rng.normal(0, 1, n) - 1.0),
        "random_forest": rng.random(n),
    }
    return y, scores


def test_roc_figure_renders_with_one_curve_per_model_and_sklearn_auc_in_the_legend():
    y, scores = holdout()
    fig = roc_figure(y, scores)

    assert png_bytes(fig).startswith(PNG_SIGNATURE)
    (ax,) = fig.axes
    assert ax.get_title() == "ROC on the holdout"
    assert ax.get_xlabel() == "false positive rate"
    assert ax.get_ylabel() == "true positive rate"
    expected = [f"{name} (AUC = {roc_auc_score(y, p):.3f})" for name, p in scores.items()]
    assert legend_texts(ax) == [*expected, "chance"]
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_array_equal(lines["chance"].get_xdata(), [0, 1])
    np.testing.assert_array_equal(lines["chance"].get_ydata(), [0, 1])
    # each curve runs from (0, 0) to (1, 1)
    for label in expected:
        xs, ys = lines[label].get_xdata(), lines[label].get_ydata()
        assert (xs[0], ys[0]) == (0.0, 0.0) and (xs[-1], ys[-1]) == (1.0, 1.0)


def test_roc_figure_champion_and_challenger_accept_lists_and_series():
    y, scores = holdout(n=200, seed=1)
    fig = roc_figure(pd.Series(y), {"champion v3": list(scores["logistic"]),
                                    "challenger v4": pd.Series(scores["hist_gradient_boosting"])})  # fmt: skip

    texts = legend_texts(fig.axes[0])
    assert texts[0] == f"champion v3 (AUC = {roc_auc_score(y, scores['logistic']):.3f})"
    assert texts[1] == f"challenger v4 (AUC = {roc_auc_score(y, scores['hist_gradient_boosting']):.3f})"


def test_calibration_figure_has_reliability_curves_brier_legend_and_shared_histogram():
    y, scores = holdout()
    fig = calibration_figure(y, scores, bins=8)

    assert png_bytes(fig).startswith(PNG_SIGNATURE)
    curve_ax, hist_ax = fig.axes
    assert curve_ax.get_title() == "Calibration on the holdout"
    assert hist_ax.get_shared_x_axes().joined(curve_ax, hist_ax)
    expected = [f"{name} (Brier = {brier_score_loss(y, p):.3f})" for name, p in scores.items()]
    assert legend_texts(curve_ax) == ["perfectly calibrated", *expected]
    lines = {line.get_label(): line for line in curve_ax.get_lines()}
    for p, label in zip(scores.values(), expected, strict=True):
        observed, predicted = calibration_curve(y, p, n_bins=8, strategy="quantile")
        np.testing.assert_allclose(lines[label].get_xdata(), predicted)
        np.testing.assert_allclose(lines[label].get_ydata(), observed)
    # one step histogram per model, each counting every customer
    assert len(hist_ax.patches) == len(scores)
    assert hist_ax.get_xlabel() == "predicted churn probability"


def test_calibration_figure_with_heavily_tied_probabilities_still_renders():
    y = np.array([0, 1] * 10)
    p = np.array([0.2] * 10 + [0.7] * 10)
    fig = calibration_figure(y, {"coarse": p})
    assert png_bytes(fig).startswith(PNG_SIGNATURE)


def test_lift_table_two_churners_in_the_top_two_of_twenty():
    rng = np.random.default_rng(5)
    p = np.linspace(0.95, 0.0, 20)
    y = np.zeros(20, dtype=int)
    y[:2] = 1
    shuffle = rng.permutation(20)  # the input order must not matter
    table = lift_table(y[shuffle], p[shuffle])

    assert list(table.columns) == ["decile", "customers", "churners", "churn_rate", "lift", "cumulative_gain"]
    assert table["decile"].tolist() == list(range(1, 11))
    assert table["customers"].tolist() == [2] * 10
    assert table["churners"].tolist() == [2] + [0] * 9
    assert table.loc[0, "lift"] == pytest.approx(10.0)  # churn rate 1.0 against a base rate of 2 / 20
    assert table["lift"].tolist()[1:] == [0.0] * 9
    assert table["cumulative_gain"].tolist() == [1.0] * 10


def test_lift_table_four_churners_exact_numbers():
    # distinct probabilities, highest first; churners at ranks 0, 1, 2 and 5; base rate 4 / 20 = 0.2
    p = np.linspace(0.99, 0.01, 20)
    y = np.zeros(20, dtype=int)
    y[[0, 1, 2, 5]] = 1
    table = lift_table(y, p)

    assert table["churners"].tolist() == [2, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    np.testing.assert_allclose(table["churn_rate"], [1.0, 0.5, 0.5] + [0.0] * 7)
    np.testing.assert_allclose(table["lift"], [5.0, 2.5, 2.5] + [0.0] * 7)
    np.testing.assert_allclose(table["cumulative_gain"], [0.5, 0.75, 1.0] + [1.0] * 7)
    assert table.loc[0, "lift"] == pytest.approx(top_decile_lift(y, p))


def test_lift_table_uneven_split_matches_train_top_decile_lift():
    y, scores = holdout(n=203, seed=2)
    p = scores["logistic"]
    table = lift_table(y, p)

    assert table["customers"].sum() == 203
    assert table.loc[0, "customers"] == 21  # ceil(203 / 10)
    assert set(table["customers"]) <= {20, 21}
    assert table["churners"].sum() == y.sum()
    assert table["cumulative_gain"].iloc[-1] == pytest.approx(1.0)
    assert table.loc[0, "lift"] == pytest.approx(top_decile_lift(y, p))
    # customers-weighted mean lift is 1 by construction
    assert np.average(table["lift"], weights=table["customers"]) == pytest.approx(1.0)


def test_lift_table_ties_keep_all_deciles_equal_sized():
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0] * 3)
    all_tied = lift_table(y, np.full(30, 0.3))
    assert all_tied["decile"].tolist() == list(range(1, 11))
    assert all_tied["customers"].tolist() == [3] * 10
    assert all_tied["churners"].sum() == 6
    assert all_tied["cumulative_gain"].iloc[-1] == pytest.approx(1.0)

    # three distinct values: ties are split by rank, never merged into fewer groups
    p = np.repeat([0.9, 0.5, 0.1], 10)
    few_values = lift_table(y, p)
    assert few_values["customers"].tolist() == [3] * 10
    assert few_values.loc[0, "lift"] == pytest.approx(top_decile_lift(y, p))


def test_lift_table_fewer_rows_than_deciles_gives_one_decile_per_customer():
    table = lift_table([0, 1, 0], [0.1, 0.8, 0.4])
    assert table["decile"].tolist() == [1, 2, 3]
    assert table["customers"].tolist() == [1, 1, 1]
    assert table["churners"].tolist() == [1, 0, 0]
    np.testing.assert_allclose(table["lift"], [3.0, 0.0, 0.0])
    np.testing.assert_allclose(table["cumulative_gain"], [1.0, 1.0, 1.0])


def test_lift_table_without_churners_has_nan_lift():
    table = lift_table(np.zeros(12, dtype=int), np.linspace(0, 1, 12))
    assert table["churners"].sum() == 0
    assert table["lift"].isna().all() and table["cumulative_gain"].isna().all()


def test_lift_figure_bars_labels_and_gains():
    p = np.linspace(0.99, 0.01, 20)
    y = np.zeros(20, dtype=int)
    y[[0, 1, 2, 5]] = 1
    fig = lift_figure(y, p)

    assert png_bytes(fig).startswith(PNG_SIGNATURE)
    ax, gains_ax = fig.axes
    assert ax.get_title() == "Lift by decile (holdout)"
    heights = [bar.get_height() for bar in ax.patches]
    np.testing.assert_allclose(heights, [5.0, 2.5, 2.5] + [0.0] * 7)
    assert [t.get_text() for t in ax.texts] == ["5.00"]
    no_lift = [line for line in ax.get_lines() if line.get_label() == "no lift (random)"]
    assert len(no_lift) == 1 and list(no_lift[0].get_ydata()) == [1.0, 1.0]
    gains = {line.get_label(): line for line in gains_ax.get_lines()}
    np.testing.assert_allclose(gains["cumulative gain"].get_ydata(), [0.5, 0.75] + [1.0] * 8)
    np.testing.assert_allclose(gains["cumulative gain, random targeting"].get_ydata(), np.arange(1, 11) / 10)
    assert legend_texts(ax) == ["no lift (random)", "lift", "cumulative gain",
                                "cumulative gain, random targeting"]  # fmt: skip


def test_lift_figure_tiny_and_churner_free_holdouts_render():
    assert png_bytes(lift_figure([1, 0], [0.4, 0.4])).startswith(PNG_SIGNATURE)
    fig = lift_figure(np.zeros(15, dtype=int), np.linspace(0, 1, 15))
    assert png_bytes(fig).startswith(PNG_SIGNATURE)
    assert [t.get_text() for t in fig.axes[0].texts] == ["no churners in the holdout"]


def test_mismatched_lengths_raise():
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="4 labels in y_true but 3 scores for 'challenger v4'"):
        roc_figure(
            y, {"champion v3": np.array([0.1, 0.9, 0.2, 0.8]), "challenger v4": np.array([0.1, 0.9, 0.2])}
        )
    with pytest.raises(ValueError, match="4 labels in y_true but 5 scores"):
        calibration_figure(y, {"m": np.full(5, 0.5)})
    with pytest.raises(ValueError, match="4 labels in y_true but 2 scores"):
        lift_table(y, [0.1, 0.2])
    with pytest.raises(ValueError, match="4 labels in y_true but 2 scores"):
        lift_figure(y, [0.1, 0.2])


def test_single_class_truth_raises_for_roc_and_calibration():
    p = np.linspace(0, 1, 6)
    with pytest.raises(ValueError, match="only class 0"):
        roc_figure(np.zeros(6, dtype=int), {"m": p})
    with pytest.raises(ValueError, match="only class 1"):
        calibration_figure(np.ones(6, dtype=int), {"m": p})


def test_other_bad_inputs_raise():
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="only 0 and 1"):
        roc_figure([0, 2, 0, 1], {"m": np.linspace(0, 1, 4)})
    with pytest.raises(ValueError, match="no scores"):
        roc_figure(y, {})
    with pytest.raises(ValueError, match="NaN"):
        roc_figure(y, {"m": [0.1, np.nan, 0.3, 0.4]})
    with pytest.raises(ValueError, match=r"within \[0, 1\]"):
        calibration_figure(y, {"m": [0.1, 1.2, 0.3, 0.4]})
    with pytest.raises(ValueError, match="empty"):
        lift_table([], [])
    with pytest.raises(ValueError, match="deciles must be at least 1"):
        lift_table(y, [0.1, 0.2, 0.3, 0.4], deciles=0)


def importances(n: int = 20) -> pd.DataFrame:
    """Permutation importances as scores.permutation_importances returns them, largest first."""
    mean = np.linspace(0.12, -0.01, n)
    return pd.DataFrame({"feature": [f"feature_{i}_with_a_long_name_365d" for i in range(n)],
                         "importance_mean": mean, "importance_std": np.full(n, 0.004)})  # fmt: skip


def test_importance_figure_bars_the_top_features_largest_on_top_with_their_spread():
    table = importances()
    fig = importance_figure(table, "hist_gradient_boosting", top=15)

    assert png_bytes(fig).startswith(PNG_SIGNATURE)
    (ax,) = fig.axes
    assert ax.get_title() == "Permutation importance of hist_gradient_boosting (holdout)"
    bars = sorted(ax.patches, key=lambda bar: -bar.get_y())  # top to bottom
    np.testing.assert_allclose([bar.get_width() for bar in bars], table["importance_mean"].head(15))
    labels = [t.get_text() for t in sorted(ax.get_yticklabels(), key=lambda t: -t.get_position()[1])]
    assert labels == table["feature"].head(15).tolist()
    assert min(t.get_fontsize() for t in ax.get_yticklabels()) >= 10
    (spread,) = [c for c in ax.collections if len(c.get_segments()) == 15]  # one error bar per feature
    widths = sorted(np.ptp(np.asarray(segment)[:, 0]) for segment in spread.get_segments())
    np.testing.assert_allclose(widths, 0.008)


def test_importance_figure_with_few_or_no_features_and_bad_input():
    assert png_bytes(importance_figure(importances(2), "baseline_recency")).startswith(PNG_SIGNATURE)
    empty = importance_figure(importances(0), "m")
    assert [t.get_text() for t in empty.axes[0].texts] == ["no features"]
    with pytest.raises(ValueError, match="missing \\['importance_std'\\]"):
        importance_figure(importances().drop(columns="importance_std"), "m")


def saved_width(fig: Figure) -> int:
    """Pixels across of the PNG as MLflow's log_figure saves it (``savefig`` with its defaults)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return int.from_bytes(buffer.getvalue()[16:20], "big")  # the IHDR chunk starts with the width


def test_every_churn_figure_fits_mlflow_preview():
    y, scores = holdout()
    for fig in (roc_figure(y, scores), calibration_figure(y, scores), lift_figure(y, scores["logistic"]),
                importance_figure(importances(40), "random_forest")):  # fmt: skip
        assert saved_width(fig) <= 1400
