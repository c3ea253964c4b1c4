"""Tests for ckdlearn.plotting: figures are checked by content, not pixels."""

import ast
from pathlib import Path

import numpy as np
import pytest

plt = pytest.importorskip("matplotlib.pyplot")
from matplotlib.figure import Figure  # noqa: E402

from ckdlearn.metrics import expected_calibration_error  # noqa: E402
from ckdlearn.plotting import (  # noqa: E402
    overlay_heatmap,
    plot_confusion_matrix,
    plot_cv_scores,
    plot_explanations,
    plot_reliability_diagram,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def cell_texts(ax, n_classes):
    """The texts written in the cells, as an (n_classes, n_classes) array."""
    texts = np.empty((n_classes, n_classes), dtype=object)
    for text in ax.texts:
        column, row = text.get_position()
        texts[int(round(row)), int(round(column))] = text.get_text()
    return texts


Y_TRUE = np.array(["Cyst", "Cyst", "Cyst", "Normal", "Stone", "Stone", "Tumor", "Tumor"])
Y_PRED = np.array(["Cyst", "Cyst", "Stone", "Normal", "Stone", "Cyst", "Tumor", "Normal"])
COUNTS = np.array([[2, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1]])


# --------------------------------------------------------------------------
# Confusion matrix


def test_confusion_matrix_cells_show_the_counts():
    figure = plot_confusion_matrix(Y_TRUE, Y_PRED)
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    np.testing.assert_array_equal(cell_texts(ax, 4), COUNTS.astype(str))
    classes = ["Cyst", "Normal", "Stone", "Tumor"]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == classes
    assert [tick.get_text() for tick in ax.get_yticklabels()] == classes
    assert ax.get_xlabel() == "Predicted label" and ax.get_ylabel() == "True label"
    assert len(figure.axes) == 2, "the matrix and its colour bar"


def test_row_normalised_confusion_matrix():
    figure = plot_confusion_matrix(Y_TRUE, Y_PRED, normalize="true")
    expected = COUNTS / COUNTS.sum(axis=1, keepdims=True)
    texts = cell_texts(figure.axes[0], 4)
    np.testing.assert_allclose(texts.astype(float), expected, atol=0.005)
    assert texts[0, 0] == "0.67"
    assert "normalised" in figure.axes[0].get_title()


def test_confusion_matrix_label_order_and_absent_classes():
    labels = ["Tumor", "Stone", "Normal", "Cyst", "Other"]
    figure = plot_confusion_matrix(Y_TRUE, Y_PRED, labels=labels, colorbar=False)
    texts = cell_texts(figure.axes[0], 5)
    reordered = COUNTS[::-1, ::-1]
    np.testing.assert_array_equal(texts[:4, :4], reordered.astype(str))
    assert (texts[4] == "0").all() and (texts[:, 4] == "0").all()
    assert len(figure.axes) == 1


def test_confusion_matrix_draws_into_given_axes():
    figure, axes = plt.subplots(1, 2)
    returned = plot_confusion_matrix(Y_TRUE, Y_PRED, ax=axes[1], title="Counts")
    assert returned is figure
    assert len(axes[0].texts) == 0 and len(axes[1].texts) == 16
    assert axes[1].get_title() == "Counts"


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match=r"'normalize' parameter of confusion_matrix must be a str among"):
        plot_confusion_matrix(Y_TRUE, Y_PRED, normalize="rows")
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        plot_confusion_matrix(Y_TRUE, Y_PRED[:-1])


# --------------------------------------------------------------------------
# Reliability diagram


def probabilities(n_samples=400, seed=0):
    rng = np.random.default_rng(seed)
    y_proba = rng.dirichlet(np.ones(3), size=n_samples)
    y_true = rng.integers(0, 3, n_samples)
    return y_true, y_proba


def test_reliability_diagram_has_ece_title_and_histogram():
    y_true, y_proba = probabilities()
    figure = plot_reliability_diagram(y_true, y_proba, n_bins=10)
    assert isinstance(figure, Figure)
    diagram, histogram = figure.axes
    ece = expected_calibration_error(y_true, y_proba, n_bins=10)
    assert diagram.get_title() == f"Reliability diagram (ECE = {ece:.3f})"

    confidences = y_proba.max(axis=1)
    counts, _ = np.histogram(confidences, bins=np.arange(11) / 10)
    heights = [patch.get_height() for patch in histogram.patches]
    np.testing.assert_array_equal(heights, counts)
    assert histogram.get_xlabel().startswith("Confidence")

    # One accuracy bar and one gap bar per non-empty bin.
    assert len(diagram.patches) == 2 * np.count_nonzero(counts)


def test_reliability_diagram_into_given_axes_uses_a_twin_axis():
    y_true, y_proba = probabilities()
    figure, ax = plt.subplots()
    returned = plot_reliability_diagram(y_true, y_proba, ax=ax, title="Fold 1")
    assert returned is figure
    assert ax.get_title() == "Fold 1"
    assert len(figure.axes) == 2  # ax and its twin for the counts


def test_reliability_diagram_validates_probabilities():
    with pytest.raises(ValueError, match="sum to 1"):
        plot_reliability_diagram([0, 1], [[0.6, 0.6], [0.5, 0.5]])


# --------------------------------------------------------------------------
# Heatmap overlays


def test_overlay_heatmap_blends_into_rgb():
    image = np.linspace(0, 1, 16).reshape(4, 4)
    heatmap = np.zeros((4, 4))
    heatmap[0, 0] = 1.0

    overlay = overlay_heatmap(image, heatmap, alpha=0.4, cmap="jet")

    assert overlay.shape == (4, 4, 3)
    assert overlay.min() >= 0.0 and overlay.max() <= 1.0
    import matplotlib

    jet = matplotlib.colormaps["jet"]
    np.testing.assert_allclose(overlay[2, 3], 0.6 * image[2, 3] + 0.4 * np.array(jet(0.0)[:3]))
    np.testing.assert_allclose(overlay[0, 0], 0.6 * image[0, 0] + 0.4 * np.array(jet(1.0)[:3]))
    np.testing.assert_allclose(overlay_heatmap(image, heatmap, alpha=0.0)[..., 1], image)


def test_overlay_heatmap_accepts_uint8_and_flat_images():
    image = np.full((8, 8), 255, dtype=np.uint8)
    overlay = overlay_heatmap(image.ravel(), np.zeros(64), alpha=0.0)
    np.testing.assert_allclose(overlay, 1.0)


@pytest.mark.parametrize(
    "image, heatmap, alpha, message",
    [
        (np.zeros((4, 4)), np.zeros((5, 5)), 0.4, r"heatmap has shape \(5, 5\) but image"),
        (np.full((4, 4), 2.0), np.zeros((4, 4)), 0.4, r"image values must lie in \[0, 1\]"),
        (np.zeros((4, 4)), np.full((4, 4), -1.0), 0.4, r"heatmap values must lie in \[0, 1\]"),
        (np.zeros((4, 4)), np.zeros((4, 4)), 1.5, r"alpha must be"),
        (np.zeros((4, 4, 2)), np.zeros((4, 4)), 0.4, r"\(H, W\) greyscale or \(H, W, 3\)"),
    ],
)
def test_overlay_heatmap_errors(image, heatmap, alpha, message):
    with pytest.raises(ValueError, match=message):
        overlay_heatmap(image, heatmap, alpha=alpha)


@pytest.mark.parametrize("layout", ["flat", "stack", "channel"])
def test_plot_explanations_grid(layout):
    rng = np.random.default_rng(0)
    images, heatmaps = rng.random((5, 16, 16)), rng.random((5, 16, 16))
    shaped = {
        "flat": images.reshape(5, -1),
        "stack": images,
        "channel": images[:, None],
    }[layout]
    titles = [f"slice {i}" for i in range(5)]

    figure = plot_explanations(shaped, heatmaps, titles=titles, ncols=3, alpha=0.5)

    assert isinstance(figure, Figure)
    assert len(figure.axes) == 6  # 2 rows of 3
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == titles
    assert not figure.axes[5].get_visible()
    shown = visible[2].get_images()[0].get_array()
    np.testing.assert_allclose(shown, overlay_heatmap(images[2], heatmaps[2], alpha=0.5))


def test_plot_explanations_single_image_without_titles():
    figure = plot_explanations(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)))
    assert len(figure.axes) == 1
    assert figure.axes[0].get_title() == ""


@pytest.mark.parametrize(
    "images, heatmaps, kwargs, message",
    [
        (np.zeros((2, 8, 8)), np.zeros((3, 8, 8)), {}, r"same shape"),
        (np.zeros((2, 8, 8)), np.zeros((2, 4, 4)), {}, r"same shape"),
        (np.zeros((2, 50)), np.zeros((2, 50)), {}, r"not a square number"),
        (np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), {"titles": ["a"]}, r"one title per image"),
        (np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), {"ncols": 0}, r"ncols"),
        (np.zeros((0, 8, 8)), np.zeros((0, 8, 8)), {}, r"empty"),
        (np.zeros((2, 8, 8)), np.full((2, 8, 8), 1.5), {}, r"heatmap values must lie in \[0, 1\]"),
        (np.zeros((2, 8, 8)), np.full((2, 8, 8), np.nan), {}, r"NaN"),
    ],
)
def test_plot_explanations_errors(images, heatmaps, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plot_explanations(images, heatmaps, **kwargs)


# --------------------------------------------------------------------------
# Cross-validation scores


def test_plot_cv_scores_from_dict_and_result_like_object():
    scores = {"accuracy": [0.9, 0.8, 0.85], "macro_f1": [0.7, 0.75, 0.8], "ece": [0.1, 0.05, 0.08]}
    figure = plot_cv_scores(scores, metrics=["macro_f1", "accuracy"])
    ax = figure.axes[0]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["macro_f1", "accuracy"]
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 1], scores["macro_f1"])

    class Result:
        fold_scores = scores

    assert len(plot_cv_scores(Result()).axes[0].get_xticklabels()) == 3
    with pytest.raises(ValueError, match=r"No scores for \['roc_auc'\]"):
        plot_cv_scores(scores, metrics=["roc_auc"])


# --------------------------------------------------------------------------
# Module hygiene


def test_plotting_does_not_import_torch_or_pyplot_at_import_time():
    import ckdlearn.plotting as plotting

    tree = ast.parse(Path(plotting.__file__).read_text())
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    names = {alias.name for node in top_level if isinstance(node, ast.Import) for alias in node.names}
    names |= {
        node.module for node in top_level if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not any(name.split(".")[0] in {"torch", "matplotlib"} for name in names)
    called = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not called & {"show", "use", "switch_backend"}
