"""Tests for ckdlearn.metrics: expected calibration error and reliability curves."""

import ast
from pathlib import Path

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from ckdlearn.metrics import (
    ReliabilityCurve,
    expected_calibration_error,
    reliability_curve,
)


def calibrated_sample(n_samples=200_000, n_classes=4, seed=0):
    """Probabilities from a Dirichlet, labels drawn from those probabilities:
    calibrated by construction."""
    rng = np.random.default_rng(seed)
    y_proba = rng.dirichlet(np.full(n_classes, 0.7), size=n_samples)
    cumulative = y_proba.cumsum(axis=1)
    y_true = (rng.random((n_samples, 1)) > cumulative).sum(axis=1)
    return np.minimum(y_true, n_classes - 1), y_proba


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("kind", ["top_label", "classwise"])
def test_calibrated_probabilities_have_ece_near_zero(strategy, kind):
    y_true, y_proba = calibrated_sample()
    ece = expected_calibration_error(y_true, y_proba, strategy=strategy, kind=kind)
    assert isinstance(ece, float)
    assert ece < 0.01


def test_overconfident_probabilities_have_large_ece():
    y_true, y_proba = calibrated_sample(n_samples=20_000)
    # Sharpen: same ranking, far more confident than the outcomes warrant.
    sharpened = y_proba**4
    sharpened /= sharpened.sum(axis=1, keepdims=True)
    ece = expected_calibration_error(y_true, sharpened)
    assert ece > 0.1
    assert expected_calibration_error(y_true, sharpened, kind="classwise") > 0.02


def test_ece_of_always_certain_model_is_its_error_rate():
    y_true = np.array(["Cyst", "Stone", "Stone", "Tumor", "Cyst"])
    labels = np.array(["Cyst", "Stone", "Tumor"])
    predicted = np.array(["Cyst", "Stone", "Cyst", "Tumor", "Tumor"])  # 3 of 5 right
    one_hot = (predicted[:, None] == labels[None, :]).astype(float)
    assert expected_calibration_error(y_true, one_hot, labels=labels) == pytest.approx(0.4)


def test_ece_is_a_weighted_mean_of_bin_gaps():
    y_true = np.array([0, 0, 1, 1, 1])
    y_proba = np.array([[0.95, 0.05], [0.55, 0.45], [0.3, 0.7], [0.9, 0.1], [0.2, 0.8]])
    # Bins of width 0.5: [0.5, 1.0] holds all five; confidences
    # 0.95, 0.55, 0.7, 0.9, 0.8 (mean 0.78); correct 4 of 5 (0.8).
    assert expected_calibration_error(y_true, y_proba, n_bins=2) == pytest.approx(0.02)
    # Bins of width 0.1: 0.95 and 0.9 [0.9,1]: acc 0.5 conf 0.925 -> 0.425 * 2/5;
    # 0.55: acc 1, 0.45 * 1/5; 0.7: acc 1, 0.3 * 1/5; 0.8: acc 1, 0.2 * 1/5.
    expected = (0.425 * 2 + 0.45 + 0.3 + 0.2) / 5
    assert expected_calibration_error(y_true, y_proba, n_bins=10) == pytest.approx(expected)


def test_reliability_curve_bins():
    y_true = np.array([0, 0, 1, 1, 1])
    y_proba = np.array([[0.95, 0.05], [0.55, 0.45], [0.3, 0.7], [0.9, 0.1], [0.2, 0.8]])
    curve = reliability_curve(y_true, y_proba, n_bins=10)
    assert isinstance(curve, ReliabilityCurve)
    np.testing.assert_allclose(curve.bin_edges, np.linspace(0, 1, 11))
    np.testing.assert_array_equal(curve.counts, [0, 0, 0, 0, 0, 1, 0, 1, 1, 2])
    filled = curve.counts > 0
    np.testing.assert_allclose(curve.confidence[filled], [0.55, 0.7, 0.8, 0.925])
    np.testing.assert_allclose(curve.accuracy[filled], [1.0, 1.0, 1.0, 0.5])
    assert np.isnan(curve.confidence[~filled]).all()
    assert np.isnan(curve.accuracy[~filled]).all()


def test_confidence_of_one_falls_in_the_last_bin():
    curve = reliability_curve([0, 1], [[1.0, 0.0], [0.0, 1.0]], n_bins=5)
    np.testing.assert_array_equal(curve.counts, [0, 0, 0, 0, 2])


def test_quantile_bins_hold_similar_counts():
    y_true, y_proba = calibrated_sample(n_samples=10_000)
    curve = reliability_curve(y_true, y_proba, n_bins=10, strategy="quantile")
    assert curve.counts.sum() == 10_000
    assert curve.counts.min() >= 900


def test_binary_probabilities_may_be_one_column():
    y_true = np.array([0, 1, 1, 0])
    positive = np.array([0.2, 0.9, 0.4, 0.1])
    two_columns = np.column_stack([1 - positive, positive])
    assert expected_calibration_error(y_true, positive) == pytest.approx(
        expected_calibration_error(y_true, two_columns)
    )


def test_string_labels_and_a_class_missing_from_y_true():
    labels = ["Cyst", "Normal", "Stone", "Tumor"]
    y_true = ["Cyst", "Normal", "Normal"]  # no Stone, no Tumor
    y_proba = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1]])
    ece = expected_calibration_error(y_true, y_proba, labels=labels, n_bins=10)
    assert ece == pytest.approx(abs(2 / 3 - 0.7))
    with pytest.raises(ValueError, match="2 distinct labels but y_proba has 4 columns.*labels="):
        expected_calibration_error(y_true, y_proba)


def test_works_with_calibrated_classifier_cv():
    X, y = make_classification(
        n_samples=600, n_features=8, n_informative=5, n_classes=3, random_state=0
    )
    with threadpool_limits(limits=1, user_api="blas"):  # tiny fits: threads only cost
        model = CalibratedClassifierCV(LogisticRegression(max_iter=500), cv=3)
        model.fit(X[:400], y[:400])
    y_proba = model.predict_proba(X[400:])
    ece = expected_calibration_error(y[400:], y_proba, labels=model.classes_)
    assert 0.0 <= ece < 0.2
    curve = reliability_curve(y[400:], y_proba, labels=model.classes_)
    assert curve.counts.sum() == 200


def test_float32_softmax_rows_are_accepted():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(100, 4)).astype(np.float32)
    y_proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected_calibration_error(rng.integers(0, 4, 100), y_proba, labels=[0, 1, 2, 3])


@pytest.mark.parametrize(
    "y_true, y_proba, kwargs, message",
    [
        ([0, 1], [[0.5, 0.5]], {}, r"y_true has 2 samples but y_proba has 1"),
        ([[0, 1]], [[0.5, 0.5]], {}, r"y_true must be 1-D"),
        ([0, 1], np.full((2, 2, 1), 0.5), {}, r"y_proba must be 2-D"),
        ([0, 1], [[np.nan, 0.5], [0.5, 0.5]], {}, r"NaN or infinity"),
        ([0, 1], [[np.inf, 0.5], [0.5, 0.5]], {}, r"NaN or infinity"),
        ([0, 1], [[0.6, 0.6], [0.5, 0.5]], {}, r"sum to 1 .*row sums from 1 to 1.2"),
        ([0, 1], [[2.0, -1.0], [0.5, 0.5]], {}, r"must lie in \[0, 1\].*logits"),
        ([0, 1], [[0.5, 0.5], [0.5, 0.5]], {"labels": [0, 1, 2]}, r"one label per column"),
        ([0, 1], [[0.5, 0.5], [0.5, 0.5]], {"labels": [0, 0]}, r"distinct"),
        ([0, 3], [[0.5, 0.5], [0.5, 0.5]], {"labels": [0, 1]}, r"labels \[3\] that are not in"),
        ([], np.empty((0, 2)), {}, r"empty"),
        ([0, 1], [[0.5, 0.5], [0.5, 0.5]], {"n_bins": 0}, r"n_bins"),
        ([0, 1], [[0.5, 0.5], [0.5, 0.5]], {"strategy": "log"}, r"strategy"),
        ([0, 1], [[0.5, 0.5], [0.5, 0.5]], {"kind": "marginal"}, r"kind"),
    ],
)
def test_invalid_input_raises_a_clear_error(y_true, y_proba, kwargs, message):
    with pytest.raises(ValueError, match=message):
        expected_calibration_error(y_true, y_proba, **kwargs)


def test_reliability_curve_validates_like_ece():
    with pytest.raises(ValueError, match="sum to 1"):
        reliability_curve([0, 1], [[0.6, 0.6], [0.5, 0.5]])


def test_metrics_module_does_not_import_torch():
    import ckdlearn.metrics as metrics

    tree = ast.parse(Path(metrics.__file__).read_text())
    imported = {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not any(name.split(".")[0] == "torch" for name in imported)


# --- grouped_bootstrap_interval ---------------------------------------------------------


def _series_predictions(n_series, seed, slices=8, right=0.7):
    """Series of one class each; each slice right with probability ``right``,
    whole series right or wrong together half the time (slices of a scan agree)."""
    rng = np.random.RandomState(seed)
    groups = np.repeat(np.arange(n_series), slices)
    y_true = np.repeat(rng.randint(0, 4, n_series), slices)
    series_right = np.repeat(rng.rand(n_series) < right, slices)
    slice_right = rng.rand(len(groups)) < right
    right_here = np.where(rng.rand(len(groups)) < 0.5, series_right, slice_right)
    y_pred = np.where(right_here, y_true, (y_true + 1 + rng.randint(0, 3, len(groups))) % 4)
    return y_true, y_pred, groups


@pytest.mark.parametrize("metric", ["f1_macro", "accuracy", "balanced_accuracy"])
def test_grouped_bootstrap_interval_holds_the_estimate_and_narrows_with_more_series(metric):
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    from ckdlearn.metrics import grouped_bootstrap_interval

    score = {"f1_macro": lambda t, p: f1_score(t, p, average="macro"),
             "accuracy": accuracy_score, "balanced_accuracy": balanced_accuracy_score}[metric]
    widths = []
    for n_series in (20, 80, 320):
        y_true, y_pred, groups = _series_predictions(n_series, seed=n_series)
        interval = grouped_bootstrap_interval(y_true, y_pred, groups, metric=metric,
                                              n_resamples=1000, random_state=0)
        assert interval.estimate == pytest.approx(score(y_true, y_pred))
        assert interval.low <= interval.estimate <= interval.high
        assert interval.n_groups == n_series and interval.confidence == 0.95
        widths.append(interval.high - interval.low)
    assert widths[0] > widths[1] > widths[2] > 0
    # Seeded: the same interval twice.
    again = grouped_bootstrap_interval(y_true, y_pred, groups, metric=metric,
                                       n_resamples=1000, random_state=0)
    assert again == interval


def test_grouped_bootstrap_interval_resamples_series_not_slices():
    # Whole series right or wrong: the interval over 30 series is as wide as
    # 30 independent answers, not as narrow as 30 x 20 slices would make it.
    from ckdlearn.metrics import grouped_bootstrap_interval

    rng = np.random.RandomState(0)
    groups = np.repeat(np.arange(30), 20)
    y_true = np.repeat(rng.randint(0, 2, 30), 20)
    y_pred = np.where(np.repeat(rng.rand(30) < 0.7, 20), y_true, 1 - y_true)
    by_series = grouped_bootstrap_interval(y_true, y_pred, groups, metric="accuracy", random_state=0)
    by_slice = grouped_bootstrap_interval(y_true, y_pred, np.arange(600), metric="accuracy",
                                          random_state=0)
    assert by_series.high - by_series.low > 3 * (by_slice.high - by_slice.low)


def test_grouped_bootstrap_interval_needs_two_groups():
    from ckdlearn.metrics import grouped_bootstrap_interval

    with pytest.raises(ValueError, match="at least 2 groups"):
        grouped_bootstrap_interval([0, 1, 1], [0, 1, 0], [5, 5, 5])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        grouped_bootstrap_interval([0, 1, 1], [0, 1], [1, 2, 3])
