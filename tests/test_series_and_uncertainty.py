"""Scan-level answers, uncertainty scores and selective prediction."""

import numpy as np
import pytest
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import make_pipeline
from sklearn.linear_model import LogisticRegression

from ckdlearn.metrics import accuracy_at_coverage, risk_coverage_curve, uncertainty_from_proba
from ckdlearn.model_selection import evaluate
from ckdlearn.series import aggregate_series

from helpers import make_blob_images, tiny_classifier as tiny


def test_mean_log_aggregation_is_a_normalised_geometric_mean():
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.5, 0.5]])
    groups = np.array([3, 3, 7, 7])
    result = aggregate_series(proba, groups)
    np.testing.assert_array_equal(result.series, [3, 7])
    np.testing.assert_array_equal(result.n_slices, [2, 2])
    geometric = np.sqrt(proba[0] * proba[1])
    np.testing.assert_allclose(result.proba[0], geometric / geometric.sum())
    np.testing.assert_allclose(result.proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(aggregate_series(proba, groups, method="mean").proba[0], [0.75, 0.25])
    np.testing.assert_allclose(aggregate_series(proba, groups, method="vote").proba[1], [0.5, 0.5])


def test_one_confident_slice_does_not_veto_a_class():
    proba = np.array([[0.0, 1.0]] + [[0.99, 0.01]] * 9)
    result = aggregate_series(proba, np.zeros(10))
    assert result.proba[0, 0] > 0.5


@pytest.mark.parametrize(
    "proba, groups, message",
    [
        (np.ones(3), [0, 0, 1], "shapes"),
        (np.full((2, 2), 0.5), [0], "shapes"),
        (np.array([[np.nan, 1.0]]), [0], r"\[0, 1\]"),
        (np.array([[2.0, -1.0]]), [0], r"\[0, 1\]"),
    ],
)
def test_aggregation_refuses_bad_input(proba, groups, message):
    with pytest.raises(ValueError, match=message):
        aggregate_series(proba, groups)


def test_risk_coverage_curve_and_accuracy_at_coverage():
    y_true = np.array([0, 0, 0, 1, 1, 1])
    y_pred = np.array([0, 0, 1, 1, 0, 1])
    unsure = np.array([0.1, 0.2, 0.9, 0.3, 0.8, 0.3])  # the two errors are the least sure
    curve = risk_coverage_curve(y_true, y_pred, unsure)
    np.testing.assert_allclose(curve.coverage, [1 / 6, 2 / 6, 4 / 6, 5 / 6, 1.0])  # a tie at 0.3
    np.testing.assert_allclose(curve.accuracy, [1, 1, 1, 0.8, 4 / 6])
    assert curve.auroc == 1.0
    assert accuracy_at_coverage(y_true, y_pred, unsure, coverage=0.6) == 1.0
    assert accuracy_at_coverage(y_true, y_pred, unsure, coverage=1.0) == pytest.approx(4 / 6)
    backwards = risk_coverage_curve(y_true, y_pred, -unsure)
    assert backwards.auroc == 0.0 and backwards.aurc > curve.aurc
    with pytest.raises(ValueError, match="one entry per sample"):
        risk_coverage_curve(y_true, y_pred[:-1], unsure)
    with pytest.raises(ValueError, match="coverage"):
        accuracy_at_coverage(y_true, y_pred, unsure, coverage=0)


def test_uncertainty_from_probabilities():
    proba = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.4, 0.0]])
    np.testing.assert_allclose(uncertainty_from_proba(proba), [0.0, 1.0, 0.6126], atol=1e-4)
    np.testing.assert_allclose(uncertainty_from_proba(proba, "margin"), [0.0, 1.0, 0.8])


@pytest.fixture(scope="module")
def fitted():
    X, y = make_blob_images(n_per_class=12)
    return tiny(max_epochs=6, lr=1e-2).fit(X, y), X, y


def test_predict_series_and_uncertainty(fitted):
    clf, X, y = fitted
    groups = np.repeat(np.arange(len(X) // 4), 4)
    result = clf.predict_series(X, groups)
    assert len(result.series) == len(X) // 4 == len(result.label) == len(result.uncertainty)
    np.testing.assert_allclose(result.proba.sum(axis=1), 1.0, atol=1e-6)
    assert set(result.label) <= set(clf.classes_)
    for method in ("entropy", "margin", "knn"):
        scores = clf.predict_uncertainty(X, method=method)
        assert scores.shape == (len(X),) and np.isfinite(scores).all() and scores.min() >= 0
    # Features of training images are their own nearest neighbours; noise is not.
    noise = np.random.RandomState(0).rand(5, X.shape[1]).astype(np.float32)
    knn = clf.predict_uncertainty(np.concatenate([X[:5], noise]), method="knn")
    assert knn[5:].mean() > knn[:5].mean()
    assert clf.predict_series(X, groups, uncertainty="knn").uncertainty.shape == (len(X) // 4,)
    with pytest.raises(ValueError, match="method must be one of"):
        clf.predict_uncertainty(X, method="dropout")


@pytest.mark.slow
def test_evaluate_reports_series_and_selective_prediction():
    X, y = make_blob_images(n_per_class=16)
    groups = np.repeat(np.arange(len(X) // 4), 4)
    result = evaluate(
        make_pipeline(SMOTE(k_neighbors=3, random_state=0), tiny(max_epochs=4, lr=1e-2)),
        X, y, groups=groups, cv=4, audit=False,
    )
    assert len(result.series.ids) == len(np.unique(groups))
    assert set(result.series.scores) == {"accuracy", "macro_f1"}
    for index, series_id in enumerate(result.series.ids):
        assert result.series.y_true[index] == y[groups == series_id][0]
    assert result.uncertainty.shape == result.y_true.shape
    assert 0 <= result.selective.accuracy_at_80 <= 1
    assert "scan series" in str(result) and "80% coverage" in str(result)
    plain = evaluate(LogisticRegression(max_iter=500), X, y, groups=groups, cv=4, audit=False)
    assert plain.selective is not None and plain.series is not None
    with pytest.raises(ValueError, match="needs an estimator with predict_uncertainty"):
        evaluate(LogisticRegression(), X, y, groups=groups, cv=4, audit=False, uncertainty="knn")
