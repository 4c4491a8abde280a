"""Figures for a segmentation fit: candidate scores, customers in two dimensions, segment profiles.

Logged to MLflow with each fit and embedded in the report later. Built without pyplot (no GUI backend,
no global state), so they are safe to draw from any thread; render with ``fig.savefig(...)``. None is
wider than ``MAX_WIDTH_INCHES``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from sklearn.decomposition import PCA

ALGORITHM_ORDER = ["kmeans", "gmm", "agglomerative", "hdbscan"]
K_LABEL = "number of segments k"
# Metric panels of the selection figure: column, title, y label.
METRIC_PANELS = [
    ("silhouette", "Silhouette (higher is better)", "silhouette"),
    ("davies_bouldin", "Davies-Bouldin (lower is better)", "Davies-Bouldin index"),
    ("stability", "Stability (higher is better)", "bootstrap ARI"),
]
HEATMAP_CLIP = 3.0  # colour scale of the profile heatmap, in standard deviations either side of 0
# MLflow saves figures at 100 dpi and its artifact preview shows about 1,400 px without shrinking the labels
MAX_WIDTH_INCHES = 14.0
HEATMAP_SEGMENTS_PER_PANEL = 10  # segments side by side in one panel of the profile heatmap


def _highlight(ax, x: float, y: float) -> None:
    """An open black ring around the selected candidate (gid "selected", so it can be found again)."""
    if not (np.isfinite(x) and np.isfinite(y)):
        return
    ring = ax.scatter([x], [y], s=220, facecolors="none", edgecolors="black", linewidths=2, zorder=5)
    ring.set_gid("selected")


def selection_figure(selection: pd.DataFrame) -> Figure:
    """2x2 grid: silhouette, Davies-Bouldin and stability by k per algorithm, and the k-means elbow.

    ``selection`` is the selection table (one row per candidate; columns algorithm, k, silhouette,
    davies_bouldin, stability, inertia, selected). The selected candidate is ringed in every panel it
    appears in; NaN scores are left out.
    """
    table = selection.copy()
    for column in ("k", "silhouette", "davies_bouldin", "stability", "inertia"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    table["selected"] = table["selected"].eq(True)
    table = table.sort_values("k", kind="stable")

    present = list(dict.fromkeys(table["algorithm"].astype(str)))
    algorithms = [a for a in ALGORITHM_ORDER if a in present] + sorted(set(present) - set(ALGORITHM_ORDER))
    palette = matplotlib.colormaps["tab10"]
    colors = {name: palette(i % 10) for i, name in enumerate(algorithms)}
    chosen = table[table["selected"]]

    fig = Figure(figsize=(11, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    fig.suptitle("Segmentation candidates", fontsize=14)

    for ax, (column, title, ylabel) in zip(axes.flat[:3], METRIC_PANELS, strict=True):
        for name in algorithms:
            rows = table[(table["algorithm"] == name) & table[column].notna()]
            if rows.empty:
                continue
            # a single k (hdbscan finds k itself) shows as a lone marker
            ax.plot(rows["k"], rows[column], marker="o", markersize=6, linewidth=1.5, color=colors[name],
                    label=name)  # fmt: skip
        for _, row in chosen.iterrows():
            _highlight(ax, row["k"], row[column])
        ax.set_title(title)
        ax.set_xlabel(K_LABEL)
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)

    elbow = axes.flat[3]
    kmeans = table[(table["algorithm"] == "kmeans") & table["inertia"].notna()]
    if kmeans.empty:
        elbow.text(0.5, 0.5, "no k-means candidates", ha="center", va="center", transform=elbow.transAxes,
                   fontsize=12, color="0.4")  # fmt: skip
        elbow.set_xticks([])
        elbow.set_yticks([])
    else:
        elbow.plot(kmeans["k"], kmeans["inertia"], marker="o", markersize=6, linewidth=1.5,
                   color=colors["kmeans"], label="kmeans")  # fmt: skip
        for _, row in chosen[chosen["algorithm"] == "kmeans"].iterrows():
            _highlight(elbow, row["k"], row["inertia"])
        elbow.set_xlabel(K_LABEL)
        elbow.set_ylabel("inertia (within-segment sum of squares)")
        elbow.xaxis.set_major_locator(MaxNLocator(integer=True))
        elbow.grid(True, alpha=0.3)
    elbow.set_title("k-means elbow (inertia)")

    handles = [Line2D([], [], color=colors[name], marker="o", label=name) for name in algorithms]
    if not chosen.empty:
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=12, markerfacecolor="none",
                              markeredgecolor="black", markeredgewidth=2, label="selected"))  # fmt: skip
    if handles:
        axes.flat[0].legend(handles=handles, fontsize=9, loc="best")
    return fig


def _segment_colors(n: int) -> list:
    if n <= 10:
        cmap = matplotlib.colormaps["tab10"]
        return [cmap(i) for i in range(n)]
    if n <= 20:
        cmap = matplotlib.colormaps["tab20"]
        return [cmap(i) for i in range(n)]
    cmap = matplotlib.colormaps["turbo"]
    return [cmap(i / (n - 1)) for i in range(n)]


def projection_figure(X: np.ndarray, labels: np.ndarray, names: Mapping[int, str], *, seed: int = 0,
                      max_points: int = 5000) -> Figure:  # fmt: skip
    """Customers on the first two principal components of ``X`` (scaled design matrix), coloured by segment.

    At most ``max_points`` random rows (``seed``) are drawn; the PCA is fitted on that sample. A label
    missing from ``names`` is shown by its number alone.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    labels = np.asarray(labels)
    if len(labels) != len(X):
        raise ValueError(f"{len(X)} rows in X but {len(labels)} labels")

    rng = np.random.default_rng(seed)
    if len(X) > max_points:
        rows = np.sort(rng.choice(len(X), max_points, replace=False))
        X, labels = X[rows], labels[rows]

    coords = np.zeros((len(X), 2))
    ratios = np.zeros(2)
    n_components = min(2, X.shape[0], X.shape[1])
    # identical points (a single segment of alike customers) have no principal components
    if n_components >= 1 and len(X) >= 2 and np.ptp(X, axis=0).any():
        pca = PCA(n_components=n_components, random_state=seed)
        coords[:, :n_components] = pca.fit_transform(X)
        ratios[:n_components] = np.nan_to_num(pca.explained_variance_ratio_)

    segments = np.unique(labels)
    colors = _segment_colors(len(segments))
    index = np.searchsorted(segments, labels)
    big = len(X) > 1000

    fig = Figure(figsize=(9, 7), layout="constrained")
    ax = fig.subplots()
    # one scatter in random order, so no segment is painted over all the others
    order = rng.permutation(len(X))
    ax.scatter(coords[order, 0], coords[order, 1], c=[colors[i] for i in index[order]], s=4 if big else 16,
               alpha=0.5 if big else 0.8, linewidths=0, rasterized=big)  # fmt: skip
    handles = [
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=7,
            color=colors[i],
            label=f"{label}: {names[label]}" if label in names else f"{label}",
        )  # fmt: skip
        for i, label in enumerate(segments.tolist())
    ]
    if handles:
        ax.legend(handles=handles, title="segment", fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0.0)  # fmt: skip
    ax.set_xlabel(f"PC1 ({ratios[0]:.0%} variance)")
    ax.set_ylabel(f"PC2 ({ratios[1]:.0%} variance)")
    ax.set_title("Customers by segment (2-D projection)")
    ax.grid(True, alpha=0.3)
    return fig


def _wrapped(label: str, width: int) -> str:
    return "\n".join(textwrap.wrap(label, width, break_long_words=False, break_on_hyphens=False)) or label


def profile_heatmap(deviations: pd.DataFrame) -> Figure:
    """Feature x segment heatmap of standardized deviations from the population, each cell annotated.

    ``deviations`` is segment x feature (one row per segment); the figure shows it transposed, features
    down and segments across (their labels wrapped on top), so it grows in height with the features and
    stays at most ``MAX_WIDTH_INCHES`` wide: more than ``HEATMAP_SEGMENTS_PER_PANEL`` segments are drawn
    in panels one under another. Colours are clipped at +-3 standard deviations (the annotations show the
    unclipped values); NaN cells are grey and unannotated.
    """
    values = deviations.to_numpy(dtype=float).T  # features down, segments across
    n_features, n_segments = values.shape
    features = [str(c) for c in deviations.columns]
    segments = [str(r) for r in deviations.index]
    if n_features == 0 or n_segments == 0:
        fig = Figure(figsize=(6.0, 3.5), layout="constrained")
        ax = fig.subplots()
        ax.set_title("Segment profiles")
        ax.text(0.5, 0.5, "no segments or features", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig

    panels = [list(range(start, min(start + HEATMAP_SEGMENTS_PER_PANEL, n_segments)))
              for start in range(0, n_segments, HEATMAP_SEGMENTS_PER_PANEL)]  # fmt: skip
    across = len(panels[0])
    label_width = min(max(len(f) for f in features), 40) * 0.075 + 0.3  # inches of feature names
    cell_width = min(1.0, (MAX_WIDTH_INCHES - label_width - 1.4) / across)
    characters = max(int(cell_width * 14), 6)  # of a wrapped segment label at 8 pt
    header_lines = max(len(_wrapped(s, characters).splitlines()) for s in segments)
    panel_height = 0.32 * n_features + 0.16 * header_lines + 0.3
    width = max(label_width + cell_width * across + 1.4, 6.0)
    fig = Figure(figsize=(width, 0.6 + panel_height * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=[1] * len(panels))[:, 0]
    fig.suptitle("Segment profiles: deviation of each segment from the population", fontsize=12)

    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.85")
    for ax, columns in zip(axes, panels, strict=True):
        block = values[:, columns]
        image = ax.imshow(np.ma.masked_invalid(block), cmap=cmap, vmin=-HEATMAP_CLIP, vmax=HEATMAP_CLIP,
                          aspect="auto", interpolation="nearest")  # fmt: skip
        for i in range(n_features):
            for j in range(len(columns)):
                v = block[i, j]
                if np.isnan(v):
                    continue
                ax.text(j, i, f"{round(v, 1) + 0.0:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if abs(v) > 0.6 * HEATMAP_CLIP else "black")  # fmt: skip
        # empty slots keep every panel's cells as wide as the first panel's
        ax.set_xlim(-0.5, across - 0.5)
        ax.set_xticks(np.arange(len(columns)), labels=[_wrapped(segments[c], characters) for c in columns],
                      fontsize=8)  # fmt: skip
        ax.xaxis.tick_top()
        ax.set_yticks(np.arange(n_features), labels=features, fontsize=9)
        ax.tick_params(length=0)
        ax.spines[:].set_visible(False)  # no frame around the empty slots of a last, narrower panel
    # a bar of about 6 inches however tall the figure: a scale, not a column beside every feature
    colorbar = fig.colorbar(image, ax=list(axes), extend="both", shrink=min(1.0, 6.0 / fig.get_figheight()))
    colorbar.set_label("deviation from population (std)")
    return fig
