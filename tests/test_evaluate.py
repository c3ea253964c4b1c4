"""Tests for grouped evaluation (ckdlearn.model_selection._evaluate).

Cheap scikit-learn estimators stand in for the CNN: evaluate only needs
fit / predict / predict_proba.
"""

import json
import warnings

import numpy as np
import pytest
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import make_pipeline
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, make_scorer, recall_score
from sklearn.model_selection import KFold, StratifiedGroupKFold
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from ckdlearn.model_selection import (
    EvaluationResult,
    LeakageReport,
    LeakageWarning,
    evaluate,
)


def series_images(series_per_class=(5, 4, 3), slices_per_series=5, size=8, seed=0):
    """Flat 8x8 images in scan series: each series has its own random
    "anatomy", its slices differ by a little noise, and each class adds a
    pattern of its own. Returns X, y (strings) and groups (series ids)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    patterns = [rows < size // 2, cols < size // 2, (abs(rows - 3.5) < 2) & (abs(cols - 3.5) < 2)]
    names = np.array(["Cyst", "Normal", "Stone"])
    X, y, groups = [], [], []
    for label, n_series in enumerate(series_per_class):
        for _ in range(n_series):
            anatomy = 0.5 * rng.random((size, size)) + 0.4 * patterns[label]
            for _ in range(slices_per_series):
                X.append(np.clip(anatomy + rng.normal(0, 0.01, (size, size)), 0, 1).ravel())
                y.append(names[label])
                groups.append(len(groups) // slices_per_series)
    return np.array(X, dtype=np.float32), np.array(y), np.array(groups)


@pytest.fixture(scope="module", autouse=True)
def single_blas_thread():
    """Tiny fits: multi-threaded BLAS only adds overhead on a shared machine."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def smote_pipeline():
    return make_pipeline(SMOTE(k_neighbors=2, random_state=0), LogisticRegression(max_iter=1000))


@pytest.fixture(scope="module")
def data():
    return series_images()


@pytest.fixture(scope="module")
def grouped_result(data):
    X, y, groups = data
    with warnings.catch_warnings():
        warnings.simplefilter("error", LeakageWarning)
        return evaluate(smote_pipeline(), X, y, groups=groups, cv=3)


# --------------------------------------------------------------------------
# Grouped evaluation and its result


def test_grouped_evaluation_keeps_series_whole(grouped_result, data):
    _, _, groups = data
    result = grouped_result
    assert isinstance(result, EvaluationResult)
    assert isinstance(result.cv, StratifiedGroupKFold)
    assert result.grouped and result.n_folds == 3
    for train, test in result.splits:
        assert not set(groups[train]) & set(groups[test])


def test_result_holds_per_fold_and_pooled_scores(grouped_result):
    result = grouped_result
    assert list(result.fold_scores) == ["accuracy", "macro_f1", "roc_auc_ovr", "ece"]
    for values in result.fold_scores.values():
        assert values.shape == (3,) and np.isfinite(values).all()
    assert set(result.pooled_scores) == {"accuracy", "macro_f1", "roc_auc_ovr", "ece"}
    assert result.fold_scores["accuracy"].min() > 0.9  # the classes are easy
    assert result.fold_precision.shape == result.fold_recall.shape == (3, 3)
    assert result.precision.shape == result.recall.shape == (3,)
    assert result.fit_time.shape == result.score_time.shape == (3,)
    assert result.estimators is None


def test_pooled_predictions_cover_every_image_once(grouped_result, data):
    X, y, _ = data
    result = grouped_result
    np.testing.assert_array_equal(np.sort(result.indices), np.arange(len(X)))
    np.testing.assert_array_equal(result.y_true, y[result.indices])
    np.testing.assert_array_equal(result.classes, ["Cyst", "Normal", "Stone"])
    assert result.y_proba.shape == (len(X), 3)
    np.testing.assert_allclose(result.y_proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(result.y_pred, result.classes[result.y_proba.argmax(axis=1)])
    for k, (_, test) in enumerate(result.splits):
        np.testing.assert_array_equal(result.indices[result.fold == k], test)
    matrix = result.confusion_matrix()
    assert matrix.sum() == len(X)
    np.testing.assert_allclose(result.confusion_matrix(normalize="true").sum(axis=1), 1.0)


def test_scores_match_sklearn(grouped_result, data):
    X, y, _ = data
    result = grouped_result
    assert result.pooled_scores["accuracy"] == pytest.approx(
        accuracy_score(result.y_true, result.y_pred)
    )
    assert result.pooled_scores["macro_f1"] == pytest.approx(
        f1_score(result.y_true, result.y_pred, average="macro")
    )
    np.testing.assert_allclose(
        result.recall,
        recall_score(result.y_true, result.y_pred, average=None, labels=result.classes),
    )
    for k, (train, test) in enumerate(result.splits):
        refitted = clone(smote_pipeline()).fit(X[train], y[train])
        assert result.fold_scores["accuracy"][k] == pytest.approx(
            accuracy_score(y[test], refitted.predict(X[test]))
        )


def test_grouped_folds_pass_the_leakage_audit(grouped_result):
    assert len(grouped_result.leakage) == 3
    for report in grouped_result.leakage:
        assert isinstance(report, LeakageReport)
        assert not report.has_leakage


def test_text_and_dict(grouped_result):
    text = str(grouped_result)
    assert "3 folds of StratifiedGroupKFold, scan series kept whole" in text
    for name in ("accuracy", "macro_f1", "roc_auc_ovr", "ece", "Cyst", "leakage audit"):
        assert name in text
    assert repr(grouped_result).startswith("EvaluationResult(n_folds=3, grouped=True, accuracy=")
    as_dict = json.loads(json.dumps(grouped_result.to_dict()))
    assert as_dict["classes"] == ["Cyst", "Normal", "Stone"]
    assert len(as_dict["fold_scores"]["accuracy"]) == 3
    assert as_dict["leakage"][0]["n_exact"] == 0


def test_docstring_states_the_rule():
    assert "resample inside the pipeline, split by series" in evaluate.__doc__.lower()


# --------------------------------------------------------------------------
# Leakage warnings


def test_missing_groups_warn_and_the_audit_finds_the_leak(data):
    X, y, _ = data
    with pytest.warns(LeakageWarning) as record:
        result = evaluate(smote_pipeline(), X, y, cv=KFold(3, shuffle=True, random_state=0))
    messages = [str(warning.message) for warning in record if warning.category is LeakageWarning]
    assert any(
        "no groups" in m and "infer_scan_groups" in m and "load_ct_kidney" in m for m in messages
    )
    assert any("duplicate" in m and "result.leakage" in m for m in messages)
    assert not result.grouped
    assert all(report.leaked_fraction > 0.5 for report in result.leakage)


def test_missing_groups_with_integer_cv_uses_stratified_kfold(data):
    X, y, _ = data
    with pytest.warns(LeakageWarning, match="no groups"):
        result = evaluate(smote_pipeline(), X, y, cv=2, audit=False)
    assert type(result.cv).__name__ == "StratifiedKFold"


def test_splitter_that_ignores_groups_is_flagged(data):
    X, y, groups = data
    with pytest.warns(LeakageWarning, match="same scan series .* both training and test"):
        evaluate(
            smote_pipeline(), X, y, groups=groups, cv=KFold(3, shuffle=True, random_state=0),
            audit=False,
        )


def test_leakage_warning_is_a_public_user_warning():
    assert issubclass(LeakageWarning, UserWarning)


# --------------------------------------------------------------------------
# Estimators, labels and options


def test_estimator_without_predict_proba(data):
    X, y, groups = data
    result = evaluate(LinearSVC(), X, y, groups=groups, cv=3, audit=False)
    assert result.y_proba is None
    assert list(result.fold_scores) == ["accuracy", "macro_f1"]
    assert set(result.pooled_scores) == {"accuracy", "macro_f1"}


def test_training_fold_missing_a_class_keeps_probability_columns_aligned(data):
    X, y, groups = data
    stone = np.flatnonzero(y == "Stone")
    even = np.flatnonzero((y != "Stone") & (groups % 2 == 0))
    odd = np.flatnonzero((y != "Stone") & (groups % 2 == 1))
    # Whole series on each side. Fold 0 trains without any Stone; fold 1
    # tests without any Stone.
    splits = [(even, np.concatenate([odd, stone])), (np.concatenate([odd, stone]), even)]
    result = evaluate(
        LogisticRegression(max_iter=1000), X, y, groups=groups, cv=splits, audit=False
    )
    first_fold = result.fold == 0
    np.testing.assert_array_equal(result.y_proba[first_fold, 2], 0.0)
    np.testing.assert_allclose(result.y_proba.sum(axis=1), 1.0, atol=1e-6)
    # Fold 1 tests no Stone: its ROC AUC averages the classes it can score.
    assert np.isfinite(result.fold_scores["roc_auc_ovr"]).all()
    assert np.isnan(result.fold_precision[0, 2]), "Stone is never predicted in fold 0"


def test_integer_labels(data):
    X, y, groups = data
    codes = np.unique(y, return_inverse=True)[1]
    result = evaluate(smote_pipeline(), X, codes, groups=groups, cv=3, audit=False)
    np.testing.assert_array_equal(result.classes, [0, 1, 2])


def test_return_estimator_gives_fitted_clones(data):
    X, y, groups = data
    pipeline = smote_pipeline()
    result = evaluate(pipeline, X, y, groups=groups, cv=3, return_estimator=True, audit=False)
    assert len(result.estimators) == 3
    assert len({id(estimator) for estimator in result.estimators}) == 3
    assert all(hasattr(estimator[-1], "coef_") for estimator in result.estimators)
    assert not hasattr(pipeline[-1], "coef_"), "the estimator passed in stays unfitted"


def test_verbose_reports_each_fold(data, capsys):
    X, y, groups = data
    evaluate(smote_pipeline(), X, y, groups=groups, cv=3, audit=False)
    assert capsys.readouterr().out == ""
    evaluate(smote_pipeline(), X, y, groups=groups, cv=3, audit=False, verbose=2)
    assert capsys.readouterr().out.count("total time") == 3


def test_extra_scoring(data):
    X, y, groups = data
    result = evaluate(
        smote_pipeline(), X, y, groups=groups, cv=3, audit=False,
        scoring={
            "balanced": "balanced_accuracy",
            "recall_macro": make_scorer(recall_score, average="macro"),
            "accuracy": "accuracy",  # built in: computed once, not replaced
        },
    )
    assert list(result.fold_scores) == [
        "accuracy", "macro_f1", "roc_auc_ovr", "ece", "balanced", "recall_macro"
    ]
    np.testing.assert_allclose(result.fold_scores["balanced"], result.fold_scores["recall_macro"])
    listed = evaluate(
        smote_pipeline(), X, y, groups=groups, cv=3, audit=False, scoring=["balanced_accuracy"]
    )
    assert "balanced_accuracy" in listed.fold_scores


def test_audit_needs_images_or_can_be_turned_off(data):
    X, y, groups = data
    X_odd = X[:, :60]  # 60 features: not a square image
    with pytest.raises(ValueError, match="not read X as images.*image_shape=, or audit=False"):
        evaluate(smote_pipeline(), X_odd, y, groups=groups, cv=3)
    result = evaluate(smote_pipeline(), X_odd, y, groups=groups, cv=3, image_shape=(6, 10))
    assert len(result.leakage) == 3
    assert evaluate(smote_pipeline(), X_odd, y, groups=groups, cv=3, audit=False).leakage is None


def test_audit_params_are_passed_on(data):
    X, y, groups = data
    result = evaluate(
        smote_pipeline(), X, y, groups=groups, cv=3,
        audit_params={"near_threshold": 0.05, "max_shift": 0},
    )
    assert result.leakage[0].near_threshold == 0.05 and result.leakage[0].max_shift == 0


def test_inputs_are_not_modified(data):
    X, y, groups = (array.copy() for array in data)
    for array in (X, y, groups):
        array.flags.writeable = False
    evaluate(smote_pipeline(), X, y, groups=groups, cv=3)
    np.testing.assert_array_equal(X, data[0])
    np.testing.assert_array_equal(y, data[1])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda X, y, g: (X, y[:-1], g), r"y must be 1-D with one label per image \(60\)"),
        (lambda X, y, g: (X, y, g[:-1]), r"groups must be 1-D with one scan-series id per image"),
        (lambda X, y, g: (X, np.full(len(y), "Cyst"), g), r"single class"),
        (lambda X, y, g: (X[:, 0], y, g), r"X must hold one image per row"),
    ],
)
def test_invalid_data_raises_a_clear_error(data, change, message):
    X, y, groups = change(*data)
    with pytest.raises(ValueError, match=message):
        evaluate(smote_pipeline(), X, y, groups=groups, cv=3)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"scoring": 3}, ValueError, r"'scoring' parameter of evaluate must be"),
        ({"audit_params": {"threshold": 0.1}}, ValueError, r"unknown keys \['threshold'\]"),
        ({"audit_params": {"near_threshold": 5}}, ValueError,
         r"^The 'near_threshold' parameter of evaluate's audit must be a float in the range"),
        ({"n_bins": 0}, ValueError, r"n_bins"),
    ],
)
def test_invalid_options_raise(data, kwargs, error, message):
    X, y, groups = data
    with pytest.raises(error, match=message):
        evaluate(smote_pipeline(), X, y, groups=groups, cv=3, **kwargs)


def test_estimator_must_fit_and_predict(data):
    X, y, groups = data
    with pytest.raises(TypeError, match="implementing 'fit' and 'predict'"):
        evaluate(SMOTE(), X, y, groups=groups)


def test_shared_series_warning_names_an_iterable_cv_without_its_indices():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.RandomState(0)
    X, y, groups = rng.rand(40, 16).astype(np.float32), np.repeat([0, 1], 20), np.arange(40) % 5
    splits = [(np.r_[0:15, 20:35], np.r_[15:20, 35:40]), (np.r_[5:20, 25:40], np.r_[0:5, 20:25])]
    with pytest.warns(LeakageWarning, match=r"the \(train, test\) splits given as cv does not") as record:
        evaluate(LogisticRegression(), X, y, groups=groups, cv=splits, audit=False)
    assert record[0].filename == __file__  # the caller's line, not a wrapper's
