"""Cross-validated evaluation that keeps scan series whole.

The protocol that inflated the original paper's 100% accuracy was SMOTE
applied to all images before a random slice-level split. ``evaluate``
makes the honest protocol the default: resampling happens inside the
pipeline, on training folds only; folds split by scan series; every fold
is audited for duplicated images; and calibration is reported with
accuracy. The folds run through scikit-learn's ``cross_validate``; what is
ckdlearn's own is the audit, the pooled out-of-fold predictions and the
scores computed from them.
"""

import inspect
import numbers
import time
import warnings

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score
from sklearn.model_selection import cross_validate
from sklearn.utils import Bunch

from .._fingerprints import DEFAULT_NEAR_THRESHOLD
from ..metrics import (
    accuracy_at_coverage,
    expected_calibration_error,
    label_scores,
    risk_coverage_curve,
    uncertainty_from_proba,
)
from ..pipeline import final_step_input
from ..series import aggregate_series
from ..utils._param_validation import (
    HasMethods,
    StrOptions,
    validate_parameter_constraints,
    validate_params,
)
from ..utils.input_checks import IntegerInterval, check_images
from ._leakage import (
    FINGERPRINT_CONSTRAINTS,
    LeakageWarning,
    audit_splits,
    resolve_cv,
    split_indices,
)

__all__ = ["EvaluationResult", "evaluate"]

_BUILTIN_METRICS = ("accuracy", "macro_f1", "roc_auc_ovr", "ece")
_AUDIT_DEFAULTS = {"near_threshold": DEFAULT_NEAR_THRESHOLD, "max_shift": 1, "thumbnail_size": 16}


class EvaluationResult(Bunch):
    """Per-fold and pooled scores of a cross-validated classifier.

    A :class:`sklearn.utils.Bunch`: every attribute is also a key.
    Returned by :func:`evaluate`; not meant to be built by hand.

    Attributes
    ----------
    classes : ndarray of shape (n_classes,)
        The sorted distinct labels of ``y``; the column order of
        ``y_proba``, ``precision`` and ``recall``.
    fold_scores : dict of str to ndarray of shape (n_folds,)
        ``"accuracy"``, ``"macro_f1"``, and when the estimator has
        ``predict_proba``, ``"roc_auc_ovr"`` (macro one-vs-rest) and
        ``"ece"`` (top-label expected calibration error); then the
        ``scoring`` extras.
    pooled_scores : dict of str to float
        The built-in metrics computed once on all out-of-fold predictions.
    fold_precision, fold_recall : ndarray of shape (n_folds, n_classes)
        Per-class precision and recall in each fold; NaN where undefined
        (no prediction of, or no sample of, the class in that fold).
    precision, recall : ndarray of shape (n_classes,)
        Per-class precision and recall of the pooled predictions.
    y_true, y_pred : ndarray of shape (n_predictions,)
        Out-of-fold labels and predictions, fold after fold.
    y_proba : ndarray of shape (n_predictions, n_classes) or None
        Out-of-fold probabilities, columns in ``classes`` order; None when
        the estimator has no ``predict_proba``.
    indices : ndarray of shape (n_predictions,)
        Row of ``X`` each pooled prediction belongs to.
    fold : ndarray of shape (n_predictions,)
        Fold number of each pooled prediction.
    splits : list of (ndarray, ndarray)
        The (train, test) row indices of each fold.
    fit_time, score_time : ndarray of shape (n_folds,)
        Seconds spent fitting, and predicting and scoring, in each fold.
    leakage : list of LeakageReport or None
        The duplicate audit of each fold (pairs are rows of ``X``); None
        when ``audit=False``.
    estimators : list of estimator or None
        The fitted estimator of each fold when ``return_estimator=True``.
    cv : cross-validation generator
        The splitter that made the folds.
    grouped : bool
        Whether groups were given.
    uncertainty : ndarray of shape (n_predictions,) or None
        Uncertainty of each pooled prediction (higher: less sure); None
        without ``predict_proba``.
    selective : Bunch or None
        The pooled :func:`~ckdlearn.metrics.risk_coverage_curve`
        (``coverage``, ``accuracy``, ``aurc``, ``auroc`` of the uncertainty
        for telling wrong from right) and ``accuracy_at_80`` (accuracy on
        the 80% of slices the model is surest of).
    series : Bunch or None
        With groups and ``predict_proba``: one answer per held-out scan
        series (``ids``, ``fold``, ``y_true``, ``y_pred``, ``proba``,
        ``uncertainty``), its ``scores`` (accuracy, macro_f1) and its own
        ``selective`` summary.
    """

    @property
    def n_folds(self):
        return len(self.splits)

    def confusion_matrix(self, normalize=None):
        """Confusion matrix of the pooled out-of-fold predictions.

        Parameters
        ----------
        normalize : {None, "true", "pred", "all"}, default=None
            As in :func:`sklearn.metrics.confusion_matrix`; ``"true"``
            divides each row by the number of samples of its class.

        Returns
        -------
        matrix : ndarray of shape (n_classes, n_classes)
            Rows are true classes, columns predicted ones, in ``classes``
            order.
        """
        return confusion_matrix(
            self.y_true, self.y_pred, labels=self.classes, normalize=normalize
        )

    def to_dict(self):
        """Return the scores, settings and audit counts as plain Python types.

        The pooled predictions are left out; read them from the attributes.

        Returns
        -------
        result : dict
        """
        return {
            "classes": self.classes.tolist(),
            "n_folds": self.n_folds,
            "grouped": self.grouped,
            "cv": repr(self.cv),
            "fold_scores": {name: values.tolist() for name, values in self.fold_scores.items()},
            "pooled_scores": dict(self.pooled_scores),
            "precision": self.precision.tolist(),
            "recall": self.recall.tolist(),
            "fit_time": self.fit_time.tolist(),
            "score_time": self.score_time.tolist(),
            "leakage": None if self.leakage is None else [
                {
                    key: value
                    for key, value in report.to_dict().items()
                    if not key.endswith(("pairs", "distances"))
                }
                for report in self.leakage
            ],
            "selective": None if self.selective is None else _selective_summary(self.selective),
            "series": None if self.series is None else {
                "n_series": len(self.series.ids),
                **self.series.scores,
                "selective": _selective_summary(self.series.selective),
            },
        }

    def __repr__(self):
        accuracy = self.fold_scores["accuracy"]
        return (
            f"EvaluationResult(n_folds={self.n_folds}, grouped={self.grouped}, "
            f"accuracy={accuracy.mean():.3f}+/-{accuracy.std():.3f})"
        )

    def __str__(self):
        splitting = "scan series kept whole" if self.grouped else "NO scan-series groups"
        lines = [
            f"Cross-validated evaluation: {self.n_folds} folds of "
            f"{type(self.cv).__name__}, {splitting}.",
            f"  {'metric':<14s}{'mean':>8s}{'std':>8s}{'pooled':>8s}",
        ]
        for name, values in self.fold_scores.items():
            pooled = self.pooled_scores.get(name)
            pooled_text = f"{pooled:>8.3f}" if pooled is not None else f"{'':>8s}"
            if np.isnan(values).all():
                mean_text = f"{'n/a':>8s}{'':>8s}"
            else:
                mean_text = f"{np.nanmean(values):>8.3f}{np.nanstd(values):>8.3f}"
            lines.append(f"  {name:<14s}{mean_text}{pooled_text}")
        lines.append(f"  {'class':<14s}{'precision':>10s}{'recall':>8s}   (pooled)")
        for label, precision, recall in zip(self.classes, self.precision, self.recall):
            lines.append(f"  {str(label):<14s}{precision:>10.3f}{recall:>8.3f}")
        if self.series is not None:
            lines.append(
                f"  scan series ({len(self.series.ids)}): accuracy "
                f"{self.series.scores['accuracy']:.3f}, macro-F1 {self.series.scores['macro_f1']:.3f}"
            )
        if self.selective is not None:
            lines.append(
                f"  uncertainty: AUROC for wrong predictions {self.selective.auroc:.3f}, "
                f"accuracy at 80% coverage {self.selective.accuracy_at_80:.3f}"
            )
        if self.leakage is not None:
            leaked = [report.leaked_fraction for report in self.leakage]
            lines.append(
                "  leakage audit: test images with a duplicate in training, "
                "per fold: " + ", ".join(f"{fraction:.1%}" for fraction in leaked)
            )
        return "\n".join(lines)


def _selective_summary(curve):
    return {name: float(curve[name]) for name in ("auroc", "aurc", "accuracy_at_80")}


def _macro_roc_auc_ovr(y_true, y_proba, classes):
    """Mean one-vs-rest ROC AUC over the classes it is defined for.

    sklearn's roc_auc_score(multi_class="ovr") refuses a fold that misses a
    class; here such classes are left out of the mean instead.
    """
    per_class = [
        roc_auc_score(y_true == label, y_proba[:, k])
        for k, label in enumerate(classes)
        if 0 < np.sum(y_true == label) < len(y_true)
    ]
    return float(np.mean(per_class)) if per_class else float("nan")


def _scores(y_true, y_pred, y_proba, classes, n_bins):
    """The built-in metrics, and per-class precision and recall."""
    scores = label_scores(y_true, y_pred)
    if y_proba is not None:
        scores["roc_auc_ovr"] = _macro_roc_auc_ovr(y_true, y_proba, classes)
        scores["ece"] = expected_calibration_error(y_true, y_proba, labels=classes, n_bins=n_bins)
    precision, recall, _, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=np.nan
    )
    return scores, precision, recall


def _selective(y_true, y_pred, uncertainty):
    curve = risk_coverage_curve(y_true, y_pred, uncertainty)
    curve.accuracy_at_80 = accuracy_at_coverage(y_true, y_pred, uncertainty, coverage=0.8)
    return curve


def _uncertainty(estimator, X_test, y_proba, method):
    """``predict_uncertainty`` of the classifier, or the same score from its probabilities."""
    final, Xt = final_step_input(estimator, X_test)
    if hasattr(final, "predict_uncertainty"):
        return final.predict_uncertainty(Xt, method=method)
    if method == "knn":
        raise ValueError("uncertainty='knn' needs an estimator with predict_uncertainty.")
    return uncertainty_from_proba(y_proba, method)


def _series_answers(y, groups, splits, y_proba, uncertainty, classes):
    """One prediction per held-out scan series, and its scores."""
    parts = []
    for k, (_, test) in enumerate(splits):
        rows = slice(sum(len(t) for _, t in splits[:k]), sum(len(t) for _, t in splits[: k + 1]))
        combined = aggregate_series(y_proba[rows], groups[test])
        index = np.unique(groups[test], return_inverse=True)[1].ravel()
        first = np.unique(index, return_index=True)[1]
        parts.append(dict(
            ids=combined.series, fold=np.full(len(combined.series), k),
            y_true=y[test][first], proba=combined.proba,
            uncertainty=np.bincount(index, weights=uncertainty[rows]) / combined.n_slices,
        ))
    series = Bunch(**{key: np.concatenate([part[key] for part in parts]) for key in parts[0]})
    series.y_pred = classes[series.proba.argmax(axis=1)]
    series.scores = label_scores(series.y_true, series.y_pred)
    series.selective = _selective(series.y_true, series.y_pred, series.uncertainty)
    return series


def _predict_fold(estimator, X_test, classes):
    """Labels and probabilities (columns of all ``classes``) of one fitted fold."""
    y_pred = np.asarray(estimator.predict(X_test))
    if not hasattr(estimator, "predict_proba"):
        return y_pred, None
    raw = np.asarray(estimator.predict_proba(X_test), dtype=np.float64)
    # A training fold without some class gives fewer columns.
    fitted_classes = np.asarray(getattr(estimator, "classes_", classes))
    if raw.shape[1] != len(fitted_classes):
        raise ValueError(
            f"predict_proba returned {raw.shape[1]} columns but the estimator has "
            f"{len(fitted_classes)} classes_."
        )
    y_proba = np.zeros((len(X_test), len(classes)))
    y_proba[:, np.searchsorted(classes, fitted_classes)] = raw
    return y_pred, y_proba


def _check_data(X, y, groups):
    X = np.asarray(X)
    if X.ndim < 2:
        raise ValueError(
            f"X must hold one image per row: 2-D (n_images, height*width), "
            f"3-D or 4-D; got shape {X.shape}."
        )
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(
            f"y must be 1-D with one label per image ({len(X)}); got shape {y.shape}."
        )
    if len(np.unique(y)) < 2:
        raise ValueError(
            "y holds a single class; a classifier needs at least two to be evaluated."
        )
    if groups is not None:
        groups = np.asarray(groups)
        if groups.ndim != 1 or len(groups) != len(X):
            raise ValueError(
                f"groups must be 1-D with one scan-series id per image ({len(X)}); "
                f"got shape {groups.shape}."
            )
    return X, y, groups


def _describe_cv(cv, splitter):
    """How messages name the splitting: the user's ``cv`` resolved to ``splitter``."""
    # An iterable of (train, test) splits, as check_cv tells them apart:
    # its wrapper's repr would print every index.
    if cv is not None and not isinstance(cv, numbers.Integral) and not hasattr(cv, "split"):
        return "the (train, test) splits given as cv"
    return f"cv={splitter!r}"


def _warn_if_groups_shared(splits, groups, described_cv):
    shared = sum(
        len(np.intersect1d(groups[train], groups[test])) > 0 for train, test in splits
    )
    if shared:
        warnings.warn(
            f"In {shared} of {len(splits)} folds the same scan series (groups) "
            f"appear in both training and test data: {described_cv} does "
            "not keep groups whole. Use a group-aware splitter such as "
            "StratifiedGroupKFold, or pass an integer cv.",
            LeakageWarning,
            stacklevel=5,  # evaluate's caller, past validate_params
        )


def _checked_splits(X, y, groups, cv):
    """The splitter and its (train, test) indices, after warning about
    missing or shared scan series and refusing one-class training folds."""
    if groups is None:
        warnings.warn(
            "evaluate() got no groups, so the folds split CT slices without "
            "regard to scan series. Adjacent slices of one series are near "
            "duplicates: with slices of the same scan on both sides of a "
            "split, the score measures recognition of scans already seen, not "
            "accuracy on new patients (a CNN scoring 100% this way scored "
            "0.56 on unseen series). Pass groups= with one scan-series "
            "id per image, e.g. load_ct_kidney(...).groups or "
            "ckdlearn.model_selection.infer_scan_groups(...).",
            LeakageWarning,
            stacklevel=4,  # evaluate's caller, past validate_params
        )
    splitter = resolve_cv(cv, y, groups)
    splits = split_indices(splitter, X, y, groups)
    if groups is not None:
        _warn_if_groups_shared(splits, groups, _describe_cv(cv, splitter))
    for k, (train, _) in enumerate(splits):
        if len(np.unique(y[train])) < 2:
            raise ValueError(
                f"Fold {k + 1} of {_describe_cv(cv, splitter)} trains on one class only "
                f"({np.unique(y[train]).tolist()}); a classifier needs two. Use fewer "
                "folds or a stratified splitter."
            )
    return splitter, splits


def _extra_scoring(scoring):
    """The user's ``scoring`` without the metrics evaluate computes itself."""
    if isinstance(scoring, dict):
        return {name: scorer for name, scorer in scoring.items() if name not in _BUILTIN_METRICS}
    if isinstance(scoring, (list, tuple, set)):
        return [name for name in scoring if name not in _BUILTIN_METRICS]
    if isinstance(scoring, str) and scoring in _BUILTIN_METRICS:
        return None
    return scoring


def _extra_scores(scoring, extras):
    """Per-fold scores of the extra ``scoring``, from cross_validate's result."""
    if not scoring:
        return {}
    if isinstance(scoring, str) or callable(scoring):
        return {scoring if isinstance(scoring, str) else "score": extras["test_score"]}
    return {name: extras[f"test_{name}"] for name in scoring}


def _fold_scores(y, splits, predictions, classes, n_bins, has_proba):
    """The built-in metrics, precision and recall of each fold."""
    fold_scores = {name: [] for name in _BUILTIN_METRICS[: 4 if has_proba else 2]}
    fold_precision, fold_recall = [], []
    for (_, test), (y_pred, y_proba) in zip(splits, predictions):
        scores, precision, recall = _scores(
            y[test], y_pred, y_proba if has_proba else None, classes, n_bins
        )
        for name in fold_scores:
            fold_scores[name].append(scores[name])
        fold_precision.append(precision)
        fold_recall.append(recall)
    return fold_scores, fold_precision, fold_recall


def _audit(X, splits, image_shape, audit_params):
    """The leakage audit of every fold, warning when any fold leaks."""
    params = {**_AUDIT_DEFAULTS, **(audit_params or {})}
    unknown = set(params) - set(_AUDIT_DEFAULTS)
    if unknown:
        raise ValueError(
            f"audit_params accepts near_threshold, max_shift and "
            f"thumbnail_size; got unknown keys {sorted(unknown)}."
        )
    validate_parameter_constraints(FINGERPRINT_CONSTRAINTS, params, caller_name="evaluate's audit")
    try:
        images = check_images(X, image_shape=image_shape, require_image=True)
    except ValueError as error:
        raise ValueError(
            f"The leakage audit could not read X as images: {error} "
            "Pass image_shape=, or audit=False to skip the audit."
        ) from error
    reports = audit_splits(images, splits, **params)
    leaky = [report for report in reports if report.has_leakage]
    if leaky:
        mean_fraction = np.mean([report.leaked_fraction for report in reports])
        warnings.warn(
            f"The leakage audit found test images with an exact or near "
            f"duplicate in the training data in {len(leaky)} of {len(reports)} "
            f"folds ({mean_fraction:.1%} of test images on average), so the "
            "scores are likely overstated. Inspect result.leakage for the "
            "index pairs; check that groups identify scan series, and drop "
            "duplicated images before splitting.",
            LeakageWarning,
            stacklevel=3,
        )
    return reports


@validate_params(
    {
        "estimator": [HasMethods(["fit", "predict"])],
        "X": ["array-like"],
        "y": ["array-like"],
        "groups": ["array-like", None],
        "cv": ["cv_object"],
        "scoring": [str, callable, list, tuple, set, dict, None],
        "n_jobs": [IntegerInterval(None, None, closed="neither"), None],
        "return_estimator": ["boolean"],
        "audit": ["boolean"],
        "image_shape": ["array-like", None],
        "audit_params": [dict, None],
        "n_bins": [IntegerInterval(1, None, closed="left")],
        "uncertainty": [StrOptions({"entropy", "margin", "knn"})],
        "verbose": ["verbose"],
    },
    prefer_skip_nested_validation=False,
)
def evaluate(
    estimator,
    X,
    y,
    *,
    groups=None,
    cv=5,
    scoring=None,
    n_jobs=None,
    return_estimator=False,
    audit=True,
    image_shape=None,
    audit_params=None,
    n_bins=15,
    uncertainty="entropy",
    verbose=0,
):
    """Cross-validate a classifier on CT slices, scan series kept whole.

    **The rule: resample inside the pipeline, split by series.** Put SMOTE
    (or any resampler) as a step of an imbalanced-learn ``Pipeline`` so
    that it sees training folds only, and pass ``groups`` with the scan
    series of each slice so that no series is split between training and
    test. Resampling all images before splitting plants synthetic copies of
    test images in the training data; splitting slices at random puts
    near-identical neighbours on both sides. Either makes a weak model look
    perfect: the CNN of the paper ckdlearn started from scores 100% that
    way and 0.56 accuracy on scan series it never saw. ``evaluate`` cannot see
    resampling done before it is called; only the pipeline can prevent it.

    Parameters
    ----------
    estimator : estimator object
        A classifier with ``fit`` and ``predict``, typically
        ``make_pipeline(SMOTE(), CKDNetClassifier())`` from
        ``imblearn.pipeline``. It is cloned for every fold.
    X : array-like of shape (n_images, height*width), \
            (n_images, height, width) or (n_images, channels, height, width)
        Images, as the estimator takes them.
    y : array-like of shape (n_images,)
        Class labels (ints or strings).
    groups : array-like of shape (n_images,), default=None
        Scan-series id of each image, e.g. ``load_ct_kidney(...).groups``
        or ``ckdlearn.model_selection.infer_scan_groups``. Without groups a
        :class:`LeakageWarning` is issued: slices of one scan on both sides
        of a split overstate accuracy.
    cv : int, cross-validation generator or iterable, default=5
        An integer gives ``StratifiedGroupKFold(cv)`` with groups and
        ``StratifiedKFold(cv)`` without. A splitter or an iterable of
        ``(train, test)`` index arrays is used as it is; if its folds share
        groups between training and test, a :class:`LeakageWarning` says so.
    scoring : str, callable, list or dict, default=None
        Extra per-fold metrics, as in
        :func:`sklearn.model_selection.cross_validate`: a scorer name, a
        callable ``scorer(estimator, X, y)``, a list of names, or a dict of
        name to scorer. Names of the built-in metrics (``"accuracy"``,
        ``"macro_f1"``, ``"roc_auc_ovr"``, ``"ece"``) are always computed
        here and cannot be replaced.
    n_jobs : int, default=None
        Folds fitted in parallel (joblib); None means 1.
    return_estimator : bool, default=False
        Keep the fitted estimator of each fold in ``result.estimators``.
    audit : bool, default=True
        Look for exact and near-duplicate images across each fold's split
        (see :func:`audit_leakage`), store the reports in
        ``result.leakage`` and issue a :class:`LeakageWarning` when any are
        found. Needs images: 2-D ``X`` must have a square feature count or
        ``image_shape``.
    image_shape : tuple of int, default=None
        ``(height, width)`` of flattened images, for the audit.
    audit_params : dict, default=None
        Other keyword arguments of the audit: ``near_threshold``,
        ``max_shift``, ``thumbnail_size``.
    n_bins : int, default=15
        Bins of the expected calibration error.
    uncertainty : {"entropy", "margin", "knn"}, default="entropy"
        The uncertainty score of each prediction (see
        :meth:`ckdlearn.CKDNetClassifier.predict_uncertainty`), for the
        selective-prediction summary; ``"knn"`` needs a classifier that
        has ``predict_uncertainty``.
    verbose : int, default=0
        Passed to :func:`~sklearn.model_selection.cross_validate`: 2 or
        more prints a line as each fold ends, with its time.

    Returns
    -------
    result : EvaluationResult
        Per-fold scores (``fold_scores``: accuracy, macro-F1, and with
        ``predict_proba`` ROC AUC one-vs-rest macro and ECE), pooled scores
        (``pooled_scores``), per-class ``precision`` and ``recall``, the
        pooled out-of-fold ``y_true``, ``y_pred``, ``y_proba`` (for a
        confusion matrix or reliability diagram), the fold audits
        (``leakage``) and timings.

    Raises
    ------
    ValueError
        If ``X``, ``y`` or ``groups`` do not agree in length, ``y`` has one
        class, ``scoring`` is malformed, or the audit cannot read ``X`` as
        images (pass ``image_shape`` or ``audit=False``).

    Warns
    -----
    LeakageWarning
        When ``groups`` is None, when folds share groups, or when the audit
        finds duplicates across a split.

    See Also
    --------
    audit_leakage : The duplicate audit of one split.
    ckdlearn.plotting.plot_confusion_matrix, \
    ckdlearn.plotting.plot_reliability_diagram : Figures from the result.

    Notes
    -----
    ROC AUC is the mean of the one-vs-rest AUCs of the classes present in
    a fold's test set (sklearn refuses folds that miss a class). Pooled
    scores treat all out-of-fold predictions as one test set; with splitters
    whose test sets overlap (e.g. ``ShuffleSplit``) an image can appear
    more than once in the pooled arrays.

    Examples
    --------
    >>> import numpy as np
    >>> from imblearn.over_sampling import SMOTE
    >>> from imblearn.pipeline import make_pipeline
    >>> from sklearn.linear_model import LogisticRegression
    >>> from ckdlearn.model_selection import evaluate
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 0, 0, 0, 1, 1], 10)        # 6 scan series of 10 slices
    >>> groups = np.repeat([0, 1, 2, 3, 4, 5], 10)
    >>> X = rng.random((60, 8 * 8)) + y[:, None]     # 8x8 images, flattened
    >>> pipe = make_pipeline(SMOTE(k_neighbors=2, random_state=0),
    ...                      LogisticRegression())
    >>> result = evaluate(pipe, X, y, groups=groups, cv=2)
    >>> result.fold_scores["accuracy"]
    array([1., 1.])
    >>> result.y_proba.shape
    (60, 2)
    """
    X, y, groups = _check_data(X, y, groups)
    splitter, splits = _checked_splits(X, y, groups, cv)
    leakage = _audit(X, splits, image_shape, audit_params) if audit else None

    scoring = _extra_scoring(scoring)
    # Estimators whose fit takes groups (ckdlearn's pipeline and classifier,
    # to hold validation series out) get each training fold's.
    takes_groups = groups is not None and "groups" in inspect.signature(estimator.fit).parameters
    extras = cross_validate(
        estimator, X, y, cv=splits, scoring=scoring or None, n_jobs=n_jobs,
        return_estimator=True, error_score="raise", verbose=verbose,
        params={"groups": groups} if takes_groups else None,
    )

    classes = np.unique(y)
    predictions, predict_time = [], []
    for fitted, (_, test) in zip(extras["estimator"], splits):
        started = time.perf_counter()
        predictions.append(_predict_fold(fitted, X[test], classes))
        predict_time.append(time.perf_counter() - started)
    has_proba = all(proba is not None for _, proba in predictions)

    fold_scores, fold_precision, fold_recall = _fold_scores(
        y, splits, predictions, classes, n_bins, has_proba)
    fold_scores.update(_extra_scores(scoring, extras))

    y_true = np.concatenate([y[test] for _, test in splits])
    y_pred = np.concatenate([y_pred for y_pred, _ in predictions])
    y_proba = np.vstack([proba for _, proba in predictions]) if has_proba else None
    pooled_scores, precision, recall = _scores(y_true, y_pred, y_proba, classes, n_bins)
    scores_of_uncertainty = selective = series = None
    if has_proba:
        scores_of_uncertainty = np.concatenate([
            _uncertainty(fitted, X[test], proba, uncertainty)
            for fitted, (_, test), (_, proba) in zip(extras["estimator"], splits, predictions)
        ])
        selective = _selective(y_true, y_pred, scores_of_uncertainty)
        if groups is not None:
            series = _series_answers(y, groups, splits, y_proba, scores_of_uncertainty, classes)
    return EvaluationResult(
        classes=classes,
        fold_scores={name: np.asarray(v, dtype=np.float64) for name, v in fold_scores.items()},
        pooled_scores=pooled_scores,
        fold_precision=np.asarray(fold_precision),
        fold_recall=np.asarray(fold_recall),
        precision=precision,
        recall=recall,
        y_true=y_true,
        y_pred=y_pred,
        y_proba=y_proba,
        indices=np.concatenate([test for _, test in splits]),
        fold=np.concatenate([np.full(len(test), k) for k, (_, test) in enumerate(splits)]),
        splits=splits,
        fit_time=np.asarray(extras["fit_time"]),
        score_time=np.asarray(extras["score_time"]) + np.asarray(predict_time),
        leakage=leakage,
        estimators=list(extras["estimator"]) if return_estimator else None,
        cv=splitter,
        grouped=groups is not None,
        uncertainty=scores_of_uncertainty,
        selective=selective,
        series=series,
    )
