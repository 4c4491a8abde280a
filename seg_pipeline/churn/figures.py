"""Figures for a churn model on the holdout: ROC, calibration (reliability), lift by decile and the
permutation importance of its features.

Logged to MLflow with each training run and embedded in the report later. Built without pyplot (no GUI
backend, no global state), so they are safe to draw from any thread; render with ``fig.savefig(...)``.
Every curve function takes the holdout truth ``y_true`` (0/1) and one or more named probability vectors.
Each figure is at most 14 inches wide: 1,400 px at the default 100 dpi MLflow saves with, which its
artifact preview shows without shrinking the labels.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve

LIFT_COLUMNS = ["decile", "customers", "churners", "churn_rate", "lift", "cumulative_gain"]
HISTOGRAM_BINS = 20  # bins of the predicted-probability histogram under the reliability diagram
IMPORTANCE_FEATURES = 15  # bars of the importance figure: past these the bars are noise around 0


def _truth(y_true, *, both_classes: bool) -> np.ndarray:
    """``y_true`` as a 1-D int array of 0/1; with ``both_classes``, at least one of each."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y_true must be one-dimensional, got shape {y.shape}")
    if len(y) == 0:
        raise ValueError("y_true is empty")
    if not np.isin(y, [0, 1]).all():
        raise ValueError(f"y_true must contain only 0 and 1, got values {np.unique(y)[:10].tolist()}")
    y = y.astype(int)
    if both_classes and len(np.unique(y)) < 2:
        raise ValueError(
            f"y_true contains only class {int(y[0])}; ROC and calibration need both churners and non-churners"
        )
    return y


def _probability(name: str, probability, n: int, *, unit_interval: bool) -> np.ndarray:
    """One score vector as a finite 1-D float array of length ``n`` (within [0, 1] if ``unit_interval``)."""
    p = np.asarray(probability, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"scores of {name!r} must be one-dimensional, got shape {p.shape}")
    if len(p) != n:
        raise ValueError(f"{n} labels in y_true but {len(p)} scores for {name!r}")
    if not np.isfinite(p).all():
        raise ValueError(f"scores of {name!r} contain NaN or infinite values")
    if unit_interval and ((p < 0).any() or (p > 1).any()):
        raise ValueError(f"scores of {name!r} must be probabilities within [0, 1]")
    return p


def _inputs(y_true, scores: Mapping[str, np.ndarray], *, unit_interval: bool) -> tuple[np.ndarray, dict]:
    y = _truth(y_true, both_classes=True)
    if not scores:
        raise ValueError("no scores given: pass at least one named probability vector")
    checked = {str(name): _probability(str(name), p, len(y), unit_interval=unit_interval)
               for name, p in scores.items()}  # fmt: skip
    return y, checked


def _colors(n: int) -> list:
    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def roc_figure(y_true, scores: Mapping[str, np.ndarray]) -> Figure:
    """ROC curve per named model (e.g. ``{"champion v3": p1, "challenger v4": p2}``) with the chance
    diagonal; each legend entry carries the model's AUC to 3 decimals."""
    y, checked = _inputs(y_true, scores, unit_interval=False)

    fig = Figure(figsize=(7, 6.5), layout="constrained")
    ax = fig.subplots()
    for (name, p), color in zip(checked.items(), _colors(len(checked)), strict=True):
        fpr, tpr, _ = roc_curve(y, p)
        auc = roc_auc_score(y, p)
        ax.plot(fpr, tpr, color=color, linewidth=2, label=f"{name} (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.5", linewidth=1, label="chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC on the holdout")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    return fig


def calibration_figure(y_true, scores: Mapping[str, np.ndarray], bins: int = 10) -> Figure:
    """Reliability diagram per named model (quantile bins, so each point holds about the same number of
    customers) with the perfect-calibration diagonal; underneath, on the same x axis, a histogram of the
    predicted probabilities per model. Each legend entry carries the model's Brier score to 3 decimals."""
    if int(bins) < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    y, checked = _inputs(y_true, scores, unit_interval=True)

    fig = Figure(figsize=(7, 8), layout="constrained")
    curve_ax, hist_ax = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    curve_ax.plot([0, 1], [0, 1], linestyle="--", color="0.5", linewidth=1, label="perfectly calibrated")
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    for (name, p), color in zip(checked.items(), _colors(len(checked)), strict=True):
        observed, predicted = calibration_curve(y, p, n_bins=int(bins), strategy="quantile")
        brier = brier_score_loss(y, p)
        curve_ax.plot(predicted, observed, marker="o", markersize=5, linewidth=1.5, color=color,
                      label=f"{name} (Brier = {brier:.3f})")  # fmt: skip
        hist_ax.hist(p, bins=edges, histtype="step", linewidth=1.5, color=color, label=name)
    curve_ax.set_xlim(-0.01, 1.01)
    curve_ax.set_ylim(-0.01, 1.01)
    curve_ax.set_ylabel("observed churn rate")
    curve_ax.set_title("Calibration on the holdout")
    curve_ax.grid(True, alpha=0.3)
    curve_ax.legend(loc="upper left", fontsize=9)
    hist_ax.set_xlabel("predicted churn probability")
    hist_ax.set_ylabel("customers")
    hist_ax.grid(True, alpha=0.3)
    return fig


def lift_table(y_true, probability, deciles: int = 10) -> pd.DataFrame:
    """Customers sorted by ``probability`` (highest first) and cut into ``deciles`` groups of (nearly)
    equal size; one row per group, decile 1 = highest risk.

    Columns: decile, customers, churners, churn_rate, lift (churn rate in the decile / overall churn rate)
    and cumulative_gain (share of all churners in deciles 1..d). The split is by rank, so ties and heavy
    ties never merge or drop groups: tied customers keep their input order (as in
    ``train.top_decile_lift``, whose value is ``lift_table(...).loc[0, "lift"]``). The first decile holds
    ``ceil(n / deciles)`` customers; with fewer customers than deciles there is one decile per customer.
    Without any churners, lift and cumulative_gain are NaN.
    """
    if int(deciles) < 1:
        raise ValueError(f"deciles must be at least 1, got {deciles}")
    y = _truth(y_true, both_classes=False)
    p = _probability("probability", probability, len(y), unit_interval=False)

    n = len(y)
    groups = min(int(deciles), n)
    order = np.argsort(-p, kind="stable")
    decile = np.empty(n, dtype=int)
    decile[order] = np.arange(n) * groups // n + 1

    frame = pd.DataFrame({"decile": decile, "churn": y})
    table = frame.groupby("decile", sort=True)["churn"].agg(customers="size", churners="sum").reset_index()
    table["churners"] = table["churners"].astype(int)
    table["churn_rate"] = table["churners"] / table["customers"]
    total = int(y.sum())
    base = total / n
    table["lift"] = table["churn_rate"] / base if total else np.nan
    table["cumulative_gain"] = table["churners"].cumsum() / total if total else np.nan
    return table[LIFT_COLUMNS]


def lift_figure(y_true, probability: np.ndarray, deciles: int = 10) -> Figure:
    """Bar chart of lift per decile (see ``lift_table``) with the no-lift line at 1, the top-decile lift
    written on its bar, and the cumulative gains (share of all churners captured by the top deciles) on a
    twin axis next to the gains of random targeting."""
    table = lift_table(y_true, probability, deciles)
    x = table["decile"].to_numpy()
    lift = table["lift"].to_numpy(dtype=float)

    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.subplots()
    gains_ax = ax.twinx()
    bars = ax.bar(x, np.nan_to_num(lift), width=0.7, color="tab:blue", alpha=0.8, label="lift")
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="no lift (random)")
    if np.isfinite(lift[0]):
        ax.annotate(f"{lift[0]:.2f}", (bars[0].get_x() + bars[0].get_width() / 2, lift[0]),
                    xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=10,
                    fontweight="bold")  # fmt: skip
        ax.set_ylim(0, max(1.0, float(np.nanmax(lift))) * 1.15)
    else:
        ax.set_ylim(0, 1.5)
        ax.text(0.5, 0.6, "no churners in the holdout", ha="center", va="center", transform=ax.transAxes,
                fontsize=12, color="0.4")  # fmt: skip

    gains = table["cumulative_gain"].to_numpy(dtype=float)
    random_gains = table["customers"].cumsum().to_numpy() / table["customers"].sum()
    gains_ax.plot(x, gains, color="tab:orange", marker="o", linewidth=2, label="cumulative gain")
    gains_ax.plot(x, random_gains, color="tab:orange", linestyle=":", linewidth=1.5,
                  label="cumulative gain, random targeting")  # fmt: skip
    gains_ax.set_ylim(0, 1.05)
    gains_ax.set_ylabel("share of all churners captured (top deciles)")

    ax.set_xticks(x)
    ax.set_xlabel("decile (1 = highest predicted churn probability)")
    ax.set_ylabel("lift (decile churn rate / overall churn rate)")
    ax.set_title("Lift by decile (holdout)")
    ax.grid(True, axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = gains_ax.get_legend_handles_labels()
    ax.legend(handles + more_handles, labels + more_labels, loc="center right", fontsize=9)
    return fig


def importance_figure(importances: pd.DataFrame, model: str, top: int = IMPORTANCE_FEATURES) -> Figure:
    """Horizontal bars of the ``top`` features by permutation importance (columns feature, importance_mean,
    importance_std, as ``scores.permutation_importances`` returns them), largest on top, each with its
    spread over the shuffles as an error bar; ``model`` names the model in the title."""
    missing = [c for c in ("feature", "importance_mean", "importance_std") if c not in importances]
    if missing:
        raise ValueError(
            f"importances need the columns feature, importance_mean, importance_std; missing {missing}"
        )
    if int(top) < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    shown = importances.sort_values("importance_mean", ascending=False, kind="stable").head(int(top))

    fig = Figure(figsize=(9, 1.6 + 0.38 * max(len(shown), 3)), layout="constrained")
    ax = fig.subplots()
    ax.set_title(f"Permutation importance of {model} (holdout)")
    ax.set_xlabel("drop in ROC-AUC when the feature is shuffled (error bars: ±1 std over the shuffles)")
    if shown.empty:
        ax.text(0.5, 0.5, "no features", ha="center", va="center", transform=ax.transAxes, fontsize=12,
                color="0.4")  # fmt: skip
        ax.set_yticks([])
        return fig
    rows = np.arange(len(shown))[::-1]  # the most important on top
    mean = shown["importance_mean"].to_numpy(dtype=float)
    spread = np.nan_to_num(shown["importance_std"].to_numpy(dtype=float))
    ax.barh(rows, mean, xerr=spread, height=0.7, color=np.where(mean > 0, "tab:blue", "0.6"),
            error_kw={"ecolor": "0.2", "capsize": 3, "linewidth": 1})  # fmt: skip
    ax.set_yticks(rows, labels=[str(f) for f in shown["feature"]], fontsize=10)
    ax.axvline(0.0, color="0.3", linewidth=1)
    ax.grid(True, axis="x", alpha=0.3)
    ax.tick_params(axis="y", length=0)
    return fig
