"""The segmentation figures render to PNG and show what they claim: the selected candidate ringed, the
segment names in the legend, one annotation per known heatmap cell."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from seg_pipeline.segmentation.figures import profile_heatmap, projection_figure, selection_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=50)
    return buffer.getvalue()


def selection_table(selected: tuple[str, int] = ("gmm", 3), algorithms=("kmeans", "gmm", "agglomerative")):
    """Candidates k = 2..6 per algorithm plus one hdbscan at k = 4; exactly one row selected."""
    rows = []
    for offset, algorithm in enumerate(algorithms):
        for k in range(2, 7):
            rows.append({"algorithm": algorithm, "k": k, "silhouette": 0.5 - 0.03 * k + 0.01 * offset,
                         "davies_bouldin": 0.8 + 0.05 * k + 0.02 * offset,
                         "calinski_harabasz": 900.0 - 50 * k, "stability": 0.95 - 0.04 * k - 0.01 * offset,
                         "inertia": 5000.0 / k if algorithm == "kmeans" else np.nan})  # fmt: skip
    rows.append({"algorithm": "hdbscan", "k": 4, "silhouette": 0.21, "davies_bouldin": 1.4,
                 "calinski_harabasz": 300.0, "stability": 0.55, "inertia": np.nan})  # fmt: skip
    table = pd.DataFrame(rows)
    table["selected"] = (table["algorithm"] == selected[0]) & (table["k"] == selected[1])
    assert table["selected"].sum() == 1
    return table


def rings(ax) -> list[tuple[float, float]]:
    """Centres of the 'selected' rings drawn on ``ax``."""
    return [tuple(xy) for c in ax.collections if c.get_gid() == "selected" for xy in c.get_offsets()]


def test_selection_figure_rings_the_selected_candidate_in_every_metric_panel():
    table = selection_table(selected=("gmm", 3))
    fig = selection_figure(table)

    assert png_bytes(fig).startswith(PNG_SIGNATURE)
    assert len(fig.axes) == 4
    assert fig.get_suptitle() == "Segmentation candidates"
    chosen = table[table["selected"]].iloc[0]
    for ax, column in zip(fig.axes[:3], ["silhouette", "davies_bouldin", "stability"], strict=True):
        assert rings(ax) == [pytest.approx((3.0, chosen[column]))]
        assert ax.get_xlabel() == "number of segments k"
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {"kmeans", "gmm", "agglomerative", "hdbscan"}
        assert len(lines["kmeans"].get_xdata()) == 5
        assert list(lines["hdbscan"].get_xdata()) == [4]  # a single point, still visible as a marker
        assert lines["hdbscan"].get_marker() not in (None, "", "None")
    # the selected candidate is not k-means, so the elbow has no ring, but it has the k-means inertia line
    elbow = fig.axes[3]
    assert rings(elbow) == []
    (inertia,) = elbow.get_lines()
    np.testing.assert_allclose(inertia.get_ydata(), [5000.0 / k for k in range(2, 7)])
    legend_texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend_texts == ["kmeans", "gmm", "agglomerative", "hdbscan", "selected"]


def test_selection_figure_rings_a_selected_kmeans_on_the_elbow_too():
    table = selection_table(selected=("kmeans", 5))
    fig = selection_figure(table)
    assert rings(fig.axes[3]) == [pytest.approx((5.0, 1000.0))]


def test_selection_figure_without_kmeans_says_so_in_the_elbow_panel():
    table = selection_table(selected=("hdbscan", 4), algorithms=("gmm", "agglomerative"))
    fig = selection_figure(table)

    assert png_bytes(fig).startswith(PNG_SIGNATURE)
    elbow = fig.axes[3]
    assert [t.get_text() for t in elbow.texts] == ["no k-means candidates"]
    assert elbow.get_lines() == []
    assert rings(fig.axes[0]) == [pytest.approx((4.0, 0.21))]


def test_projection_figure_small_input_has_named_legend_and_variance_labels():
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(0, 1, (5, 3)), rng.normal(5, 1, (5, 3))])
    labels = np.array([0] * 5 + [1] * 5)
    fig = projection_figure(X, labels, {0: "Loyal", 1: "Lapsed"})

    assert png_bytes(fig).startswith(PNG_SIGNATURE)
    (ax,) = fig.axes
    assert ax.get_title() == "Customers by segment (2-D projection)"
    assert "variance" in ax.get_xlabel() and ax.get_xlabel().startswith("PC1")
    assert "variance" in ax.get_ylabel() and ax.get_ylabel().startswith("PC2")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0: Loyal", "1: Lapsed"]
    assert len(ax.collections[0].get_offsets()) == 10


def test_projection_figure_samples_large_inputs_down_to_max_points():
    rng = np.random.default_rng(2)
    n, d, k = 20_000, 40, 10
    labels = rng.integers(0, k, n)
    X = rng.normal(size=(n, d)) + labels[:, None] * 0.5
    names = {i: f"segment {i}" for i in range(k)}
    fig = projection_figure(X, labels, names, seed=3, max_points=2000)

    assert png_bytes(fig).startswith(PNG_SIGNATURE)
    (ax,) = fig.axes
    assert len(ax.collections[0].get_offsets()) == 2000
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"{i}: segment {i}" for i in range(k)]


def test_projection_figure_one_feature_plots_against_zero():
    X = np.arange(10, dtype=float)[:, None]
    labels = np.array([0, 1] * 5)
    fig = projection_figure(X, labels, {0: "A", 1: "B"})

    assert png_bytes(fig).startswith(PNG_SIGNATURE)
    (ax,) = fig.axes
    offsets = np.asarray(ax.collections[0].get_offsets())
    np.testing.assert_array_equal(offsets[:, 1], 0.0)
    assert np.ptp(offsets[:, 0]) == pytest.approx(9.0)
    assert "variance" in ax.get_xlabel() and "variance" in ax.get_ylabel()


def test_profile_heatmap_small_annotates_every_known_cell():
    deviations = pd.DataFrame(
        [[1.234, -0.5, np.nan], [4.2, -0.04, -3.7]],
        index=["1 High-value frequent buyers", "2 Dormant"],
        columns=["monetary_365d", "recency_days", "email_open_rate"],
    )
    fig = profile_heatmap(deviations)

    assert png_bytes(fig).startswith(PNG_SIGNATURE)
    ax, colorbar_ax = fig.axes
    assert fig.get_suptitle().startswith("Segment profiles")
    # features down, segments across: cells row by row are a feature's value in each segment
    assert [t.get_text() for t in ax.texts] == ["1.2", "4.2", "-0.5", "0.0", "-3.7"]
    (image,) = ax.get_images()
    assert (image.norm.vmin, image.norm.vmax) == (-3.0, 3.0)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(deviations.columns)
    segment_labels = [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()]
    assert segment_labels == list(deviations.index)
    assert colorbar_ax.get_ylabel() == "deviation from population (std)"


def test_profile_heatmap_large_grows_down_and_skips_nan():
    rng = np.random.default_rng(4)
    values = rng.normal(0, 2, (10, 40))
    values[rng.random(values.shape) < 0.1] = np.nan
    deviations = pd.DataFrame(
        values,
        index=[f"{i} Segment {i}" for i in range(10)],
        columns=[f"feature_{j}_365d" for j in range(40)],
    )
    fig = profile_heatmap(deviations)

    assert png_bytes(fig).startswith(PNG_SIGNATURE)
    assert len(fig.axes) == 2
    assert len(fig.axes[0].texts) == int(np.isfinite(values).sum())
    small = profile_heatmap(deviations.iloc[:2, :3])
    assert fig.get_figwidth() > small.get_figwidth()
    assert fig.get_figheight() > small.get_figheight()


def saved_pixels(fig: Figure) -> tuple[int, int]:
    """Width and height of the PNG as MLflow's log_figure saves it (``savefig`` with its defaults)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    header = buffer.getvalue()[16:24]  # the IHDR chunk: width and height, big-endian
    return int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")


def test_profile_heatmap_of_the_demo_company_fits_mlflow_preview():
    """Five segments with long names by 46 features (the demo: 2,687 px wide before) fit 1,400 px, with
    labels of at least 8 pt and every segment name whole."""
    names = ["High-value frequent buyers", "Dormant one-time buyers", "Support-heavy enterprise accounts",
             "New app-first customers", "Discount hunters"]  # fmt: skip
    features = [f"{kind}_{j}_{suffix}" for j, (kind, suffix) in
                enumerate([("channel_share", "web"), ("btyd_expected_orders", "horizon")] * 23)]  # fmt: skip
    deviations = pd.DataFrame(
        np.random.default_rng(5).normal(0, 1.5, (5, 46)),
        index=[f"{i + 1} {name}" for i, name in enumerate(names)],
        columns=features,
    )
    fig = profile_heatmap(deviations)

    width, height = saved_pixels(fig)
    assert width <= 1400 and height > width  # grows down, not across
    ax = fig.axes[0]
    labels = [*ax.get_xticklabels(), *ax.get_yticklabels()]
    assert min(t.get_fontsize() for t in labels) >= 8
    assert [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()] == list(deviations.index)


def test_profile_heatmap_with_many_segments_stacks_panels_within_the_width():
    deviations = pd.DataFrame(
        np.random.default_rng(6).normal(0, 1, (23, 12)),
        index=[f"{i + 1} A rather long segment name {i}" for i in range(23)],
        columns=[f"feature_{j}_365d" for j in range(12)],
    )
    fig = profile_heatmap(deviations)

    assert saved_pixels(fig)[0] <= 1400
    *panels, _colorbar = fig.axes
    assert [len(ax.get_xticklabels()) for ax in panels] == [10, 10, 3]
    assert sum(len(ax.texts) for ax in panels) == 23 * 12
    shown = [t.get_text().replace("\n", " ") for ax in panels for t in ax.get_xticklabels()]
    assert shown == list(deviations.index)


def test_every_segmentation_figure_fits_mlflow_preview():
    table = selection_table()
    rng = np.random.default_rng(7)
    X = rng.normal(size=(3000, 5))
    labels = rng.integers(0, 12, 3000)
    names = {i: f"segment with a long descriptive name {i}" for i in range(12)}
    for fig in (selection_figure(table), projection_figure(X, labels, names)):
        assert saved_pixels(fig)[0] <= 1400
