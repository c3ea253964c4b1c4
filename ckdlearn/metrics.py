"""Metrics of trust: calibration, and accuracy when the model may decline.

A classifier can rank well and still be over- or under-confident. For a
clinical reader the confidence matters as much as the label, so ckdlearn
reports the expected calibration error (ECE) beside accuracy and draws
reliability diagrams from :func:`reliability_curve`. A model that says "I
don't know" on its least certain cases is judged by its accuracy at each
coverage (:func:`risk_coverage_curve`, :func:`accuracy_at_coverage`).
Slices of one scan are not independent: :func:`grouped_bootstrap_interval`
gives a score's uncertainty by resampling whole scan series.
"""

import numbers
from typing import NamedTuple

import numpy as np
from sklearn.utils import Bunch

from .utils._param_validation import Interval, StrOptions, validate_params
from .utils.input_checks import IntegerInterval

__all__ = [
    "BootstrapInterval",
    "ReliabilityCurve",
    "accuracy_at_coverage",
    "expected_calibration_error",
    "grouped_bootstrap_interval",
    "label_scores",
    "reliability_curve",
    "risk_coverage_curve",
    "uncertainty_from_proba",
]

_BINNING = {
    "n_bins": [IntegerInterval(1, None, closed="left")],
    "strategy": [StrOptions({"uniform", "quantile"})],
}

# Tolerance on row sums of y_proba: float32 softmax outputs are off by ~1e-7,
# values rounded for display by ~1e-4; anything further is not a probability.
_ROW_SUM_TOLERANCE = 1e-3


class ReliabilityCurve(NamedTuple):
    """Per-bin mean confidence, accuracy and count of a reliability diagram.

    Attributes
    ----------
    confidence : ndarray of shape (n_bins,)
        Mean predicted confidence in each bin; NaN for empty bins.
    accuracy : ndarray of shape (n_bins,)
        Fraction of correct predictions in each bin; NaN for empty bins.
    counts : ndarray of shape (n_bins,)
        Number of predictions in each bin.
    bin_edges : ndarray of shape (n_bins + 1,)
        Bin boundaries; bins are closed on the left, the last also on the
        right.
    """

    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray
    bin_edges: np.ndarray


def _check_inputs(y_true, y_proba, labels):
    """Validate and return (y_true, y_proba (n, n_classes), labels)."""
    y_true = np.asarray(y_true)
    if y_true.ndim != 1:
        raise ValueError(
            f"y_true must be 1-D (one label per sample); got shape {y_true.shape}."
        )
    try:
        y_proba = np.asarray(y_proba, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(
            "y_proba must be numeric probabilities, as returned by "
            "predict_proba."
        ) from error
    if y_proba.ndim not in (1, 2):
        raise ValueError(
            "y_proba must be 2-D (n_samples, n_classes), as returned by "
            "predict_proba, or 1-D (probability of the positive class in a "
            f"binary problem); got shape {y_proba.shape}."
        )
    if len(y_proba) != len(y_true):
        raise ValueError(
            f"y_true has {len(y_true)} samples but y_proba has {len(y_proba)}; "
            "pass the labels and probabilities of the same samples."
        )
    if len(y_true) == 0 or y_proba.size == 0:
        raise ValueError(
            f"y_true and y_proba must not be empty; got y_proba of shape {y_proba.shape}."
        )
    if not np.isfinite(y_proba).all():
        raise ValueError(
            "y_proba contains NaN or infinity; probabilities must be finite. "
            "Check the model's output (a diverged network gives NaN)."
        )
    if y_proba.min() < -_ROW_SUM_TOLERANCE or y_proba.max() > 1 + _ROW_SUM_TOLERANCE:
        raise ValueError(
            f"y_proba must lie in [0, 1]; found values from {y_proba.min():.4g} to "
            f"{y_proba.max():.4g}. Pass predict_proba output, not decision "
            "scores or logits (apply a softmax first)."
        )
    if y_proba.ndim == 1:
        y_proba = np.column_stack([1.0 - y_proba, y_proba])
    row_sums = y_proba.sum(axis=1)
    if np.abs(row_sums - 1.0).max() > _ROW_SUM_TOLERANCE:
        raise ValueError(
            "Each row of y_proba must sum to 1 (one probability per class); "
            f"found row sums from {row_sums.min():.4g} to {row_sums.max():.4g}. "
            "Pass predict_proba output, with one column per class."
        )
    y_proba = np.clip(y_proba, 0.0, 1.0)

    n_classes = y_proba.shape[1]
    if labels is None:
        labels = np.unique(y_true)
        if len(labels) != n_classes:
            raise ValueError(
                f"y_true contains {len(labels)} distinct labels but y_proba has "
                f"{n_classes} columns, so the column of each label is unknown. "
                "Pass labels= in column order (e.g. labels=model.classes_)."
            )
    else:
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) != n_classes:
            raise ValueError(
                f"labels must list one label per column of y_proba ({n_classes}); "
                f"got {labels.tolist()!r}."
            )
        if len(np.unique(labels)) != len(labels):
            raise ValueError(f"labels must be distinct; got {labels.tolist()!r}.")
        unknown = np.setdiff1d(y_true, labels)
        if len(unknown):
            raise ValueError(
                f"y_true contains labels {unknown.tolist()!r} that are not in "
                f"labels={labels.tolist()!r}."
            )
    return y_true, y_proba, labels


def _bin(confidence, outcome, n_bins, strategy):
    """Group confidences into bins; return a ReliabilityCurve."""
    if strategy == "uniform":
        # i / n_bins is correctly rounded, so an edge equals the literal a
        # user would write (np.linspace gives 0.7000000000000001 for 7/10).
        bin_edges = np.arange(n_bins + 1) / n_bins
    else:
        bin_edges = np.quantile(confidence, np.linspace(0.0, 1.0, n_bins + 1))
        bin_edges[0], bin_edges[-1] = 0.0, 1.0
    # Interior edges only: a confidence of exactly 1 falls in the last bin.
    bin_index = np.searchsorted(bin_edges[1:-1], confidence, side="right")
    counts = np.bincount(bin_index, minlength=n_bins)
    confidence_sums = np.bincount(bin_index, weights=confidence, minlength=n_bins)
    outcome_sums = np.bincount(bin_index, weights=outcome, minlength=n_bins)
    filled = counts > 0
    mean_confidence = np.full(n_bins, np.nan)
    accuracy = np.full(n_bins, np.nan)
    np.divide(confidence_sums, counts, out=mean_confidence, where=filled)
    np.divide(outcome_sums, counts, out=accuracy, where=filled)
    return ReliabilityCurve(mean_confidence, accuracy, counts, bin_edges)


def _ece_from_curve(curve):
    filled = curve.counts > 0
    gaps = np.abs(curve.accuracy[filled] - curve.confidence[filled])
    return float(np.sum(curve.counts[filled] * gaps) / curve.counts.sum())


@validate_params(
    {"y_true": ["array-like"], "y_proba": ["array-like"], "labels": ["array-like", None], **_BINNING},
    prefer_skip_nested_validation=True,
)
def reliability_curve(y_true, y_proba, *, n_bins=15, strategy="uniform", labels=None):
    """Top-label reliability curve: accuracy against confidence, per bin.

    The confidence of a prediction is its largest class probability; it is
    correct when that class is the true label. A calibrated model is right
    90% of the time when 90% confident: its bins lie on the diagonal.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels (ints or strings).
    y_proba : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, columns in the order of ``labels``, as
        returned by ``predict_proba`` (including ``CalibratedClassifierCV``).
        A 1-D array is the probability of the second of two labels.
    n_bins : int, default=15
        Number of confidence bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        ``"uniform"``: equal-width bins on [0, 1]. ``"quantile"``: bins
        holding about equally many predictions (ties can leave some empty).
    labels : array-like of shape (n_classes,), default=None
        The label of each column of ``y_proba``, e.g. ``model.classes_``.
        None means the sorted distinct values of ``y_true``, which must then
        number ``n_classes``.

    Returns
    -------
    curve : ReliabilityCurve
        Named tuple ``(confidence, accuracy, counts, bin_edges)``; empty
        bins have count 0 and NaN confidence and accuracy.

    Raises
    ------
    ValueError
        If shapes disagree, ``y_proba`` holds NaN or infinity, values
        outside [0, 1] or rows that do not sum to 1, or labels do not match
        the columns.

    See Also
    --------
    expected_calibration_error : The curve summarised in one number.
    ckdlearn.plotting.plot_reliability_diagram : The curve drawn.

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn.metrics import reliability_curve
    >>> y_true = np.array([0, 0, 1, 1])
    >>> y_proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
    >>> curve = reliability_curve(y_true, y_proba, n_bins=2)
    >>> curve.counts
    array([0, 4])
    >>> print(curve.accuracy[1], curve.confidence[1])
    0.75 0.75
    """
    y_true, y_proba, labels = _check_inputs(y_true, y_proba, labels)
    predicted = labels[np.argmax(y_proba, axis=1)]
    confidence = y_proba.max(axis=1)
    correct = (predicted == y_true).astype(np.float64)
    return _bin(confidence, correct, n_bins, strategy)


@validate_params(
    {"y_true": ["array-like"], "y_proba": ["array-like"], "labels": ["array-like", None],
     "kind": [StrOptions({"top_label", "classwise"})], **_BINNING},
    prefer_skip_nested_validation=True,
)
def expected_calibration_error(
    y_true, y_proba, *, n_bins=15, strategy="uniform", labels=None, kind="top_label"
):
    """Expected calibration error (ECE) of predicted probabilities.

    With ``kind="top_label"`` (the usual "confidence ECE" of Guo et al.,
    2017): predictions are binned by their confidence (largest class
    probability) and ECE is the average over bins of
    ``|accuracy - mean confidence|``, weighted by the fraction of
    predictions in each bin. 0 is perfect calibration; an always-100%
    confident model that is right 60% of the time scores 0.4.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels (ints or strings).
    y_proba : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, columns in the order of ``labels``, as
        returned by ``predict_proba`` (including ``CalibratedClassifierCV``).
        A 1-D array is the probability of the second of two labels.
    n_bins : int, default=15
        Number of bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width bins on [0, 1], or bins holding about equally many
        predictions.
    labels : array-like of shape (n_classes,), default=None
        The label of each column of ``y_proba``, e.g. ``model.classes_``.
        None means the sorted distinct values of ``y_true``.
    kind : {"top_label", "classwise"}, default="top_label"
        ``"top_label"``: calibration of the predicted class's probability.
        ``"classwise"``: for every class, bin that class's probability and
        compare with the frequency of the class; return the mean over
        classes (Kull et al., 2019). Classwise also sees miscalibration in
        the probabilities of classes that are not predicted.

    Returns
    -------
    ece : float
        In [0, 1]; lower is better.

    Raises
    ------
    ValueError
        If shapes disagree, ``y_proba`` holds NaN or infinity, values
        outside [0, 1] or rows that do not sum to 1, labels do not match
        the columns, or a parameter is invalid.

    Notes
    -----
    The binned estimate is biased upwards for small samples: even a
    perfectly calibrated model gets an ECE around ``sqrt(n_bins / n)``
    from sampling noise. Compare models on the same test set and bins.

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn.metrics import expected_calibration_error
    >>> y_true = np.array([0, 1, 1, 0])
    >>> overconfident = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    >>> expected_calibration_error(y_true, overconfident)  # right half the time
    0.5
    >>> honest = np.full((4, 2), 0.5)
    >>> expected_calibration_error(y_true, honest)
    0.0
    """
    y_true, y_proba, labels = _check_inputs(y_true, y_proba, labels)
    if kind == "top_label":
        predicted = labels[np.argmax(y_proba, axis=1)]
        correct = (predicted == y_true).astype(np.float64)
        return _ece_from_curve(_bin(y_proba.max(axis=1), correct, n_bins, strategy))
    per_class = [
        _ece_from_curve(
            _bin(y_proba[:, k], (y_true == label).astype(np.float64), n_bins, strategy)
        )
        for k, label in enumerate(labels)
    ]
    return float(np.mean(per_class))


def _check_selective(y_true, y_pred, uncertainty):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    uncertainty = np.asarray(uncertainty, dtype=np.float64)
    if not (y_true.ndim == y_pred.ndim == uncertainty.ndim == 1) or not (
        len(y_true) == len(y_pred) == len(uncertainty)
    ):
        raise ValueError(
            "y_true, y_pred and uncertainty must be 1-D with one entry per sample; got "
            f"shapes {y_true.shape}, {y_pred.shape} and {uncertainty.shape}."
        )
    if len(y_true) == 0:
        raise ValueError("y_true is empty; pass at least one prediction.")
    if not np.isfinite(uncertainty).all():
        raise ValueError("uncertainty holds NaN or infinity; expected finite scores.")
    return y_true == y_pred, uncertainty


@validate_params(
    {"y_true": ["array-like"], "y_pred": ["array-like"], "uncertainty": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def risk_coverage_curve(y_true, y_pred, uncertainty):
    """Accuracy on the most certain predictions, at every coverage.

    A model that may decline to answer keeps the predictions it is most
    sure of: at coverage 0.8 it answers the 80% with the lowest
    uncertainty. The curve shows what that buys; its area under the risk
    (1 - accuracy) is the AURC (Geifman & El-Yaniv, 2017), lower is better.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        True and predicted labels.
    uncertainty : array-like of shape (n,)
        Higher means less sure, e.g. from
        :meth:`ckdlearn.CKDNetClassifier.predict_uncertainty`.

    Returns
    -------
    curve : Bunch
        ``coverage`` and ``accuracy`` (one point per distinct uncertainty,
        ties answered together), ``threshold`` (answer when the uncertainty
        is at most this), ``aurc`` (mean risk over the points, weighted by
        coverage steps) and ``auroc`` (ROC AUC of the uncertainty for
        telling wrong from right predictions; NaN when all are right or all
        wrong).

    Examples
    --------
    >>> from ckdlearn.metrics import risk_coverage_curve
    >>> curve = risk_coverage_curve([0, 0, 1, 1], [0, 0, 1, 0], [0.1, 0.2, 0.3, 0.9])
    >>> curve.coverage.tolist(), curve.accuracy.tolist()
    ([0.25, 0.5, 0.75, 1.0], [1.0, 1.0, 1.0, 0.75])
    >>> float(curve.auroc)
    1.0
    """
    from sklearn.metrics import roc_auc_score

    correct, uncertainty = _check_selective(y_true, y_pred, uncertainty)
    order = np.argsort(uncertainty, kind="stable")
    sorted_uncertainty = uncertainty[order]
    # The last index of each run of equal uncertainty: ties are answered together.
    ends = np.flatnonzero(np.r_[sorted_uncertainty[1:] != sorted_uncertainty[:-1], True])
    answered = ends + 1
    accuracy = np.cumsum(correct[order])[ends] / answered
    coverage = answered / len(correct)
    steps = np.diff(np.r_[0.0, coverage])
    wrong = ~correct
    auroc = roc_auc_score(wrong, uncertainty) if 0 < wrong.sum() < len(wrong) else float("nan")
    return Bunch(
        coverage=coverage,
        accuracy=accuracy,
        threshold=sorted_uncertainty[ends],
        aurc=float(np.sum(steps * (1 - accuracy))),
        auroc=float(auroc),
    )


@validate_params(
    {"y_true": ["array-like"], "y_pred": ["array-like"], "uncertainty": ["array-like"],
     "coverage": [Interval(numbers.Real, 0, 1, closed="right")]},
    prefer_skip_nested_validation=True,
)
def accuracy_at_coverage(y_true, y_pred, uncertainty, *, coverage=0.8):
    """Accuracy on the ``coverage`` share of predictions the model is surest of.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
    uncertainty : array-like of shape (n,)
        Higher means less sure.
    coverage : float in (0, 1], default=0.8
        Share of predictions answered (rounded up to whole predictions).

    Returns
    -------
    accuracy : float

    Examples
    --------
    >>> from ckdlearn.metrics import accuracy_at_coverage
    >>> accuracy_at_coverage([0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0.1, 0.2, 0.3, 0.4, 0.9])
    1.0
    """
    correct, uncertainty = _check_selective(y_true, y_pred, uncertainty)
    kept = int(np.ceil(coverage * len(correct) - 1e-9))
    return float(correct[np.argsort(uncertainty, kind="stable")[:kept]].mean())


@validate_params(
    {"proba": ["array-like"], "method": [StrOptions({"entropy", "margin"})]},
    prefer_skip_nested_validation=True,
)
def uncertainty_from_proba(proba, method="entropy"):
    """How unsure each prediction is, from its class probabilities.

    Parameters
    ----------
    proba : array-like of shape (n, n_classes)
    method : {"entropy", "margin"}, default="entropy"
        ``"entropy"``: the entropy divided by ``log(n_classes)`` (0 for a
        certain prediction, 1 for a uniform one); ``"margin"``: one minus
        the gap between the two largest probabilities.

    Returns
    -------
    uncertainty : ndarray of shape (n,)
        In [0, 1]; higher is less sure.

    Examples
    --------
    >>> from ckdlearn.metrics import uncertainty_from_proba
    >>> uncertainty_from_proba([[1.0, 0.0], [0.5, 0.5]]).tolist()
    [0.0, 1.0]
    """
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(f"proba must be (n, n_classes) with n_classes >= 2; got {proba.shape}.")
    if method == "margin":
        top_two = np.sort(proba, axis=1)[:, -2:]
        return 1.0 - (top_two[:, 1] - top_two[:, 0])
    entropy = -(proba * np.log(np.clip(proba, 1e-300, 1))).sum(axis=1)
    return np.clip(entropy / np.log(proba.shape[1]) + 0.0, 0.0, 1.0)


class BootstrapInterval(NamedTuple):
    """A score on all the data and its bootstrap confidence interval."""

    #: The score on all the data.
    estimate: float
    #: Lower end of the interval.
    low: float
    #: Upper end of the interval.
    high: float
    #: Confidence level of the interval, e.g. 0.95.
    confidence: float
    #: Number of groups resampled.
    n_groups: int


def _scores_from_confusion(confusion, metric):
    """``metric`` of each confusion matrix in a stack of shape (..., k, k)."""
    true_positive = np.diagonal(confusion, axis1=-2, axis2=-1)
    per_true = confusion.sum(axis=-1)
    per_predicted = confusion.sum(axis=-2)
    total = per_true.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "accuracy":
            return true_positive.sum(axis=-1) / total
        if metric == "balanced_accuracy":
            recall = np.where(per_true > 0, true_positive / per_true, np.nan)
            return np.nanmean(recall, axis=-1)
        # Macro-F1 over the classes present among true or predicted labels,
        # as sklearn.metrics.f1_score(average="macro") counts them.
        denominator = per_true + per_predicted
        f1 = np.where(denominator > 0, 2 * true_positive / denominator, np.nan)
        return np.nanmean(f1, axis=-1)


@validate_params(
    {
        "y_true": ["array-like"],
        "y_pred": ["array-like"],
        "groups": ["array-like"],
        "metric": [StrOptions({"accuracy", "f1_macro", "balanced_accuracy"})],
        "confidence": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_resamples": [IntegerInterval(1, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def grouped_bootstrap_interval(
    y_true, y_pred, groups, *, metric="f1_macro", confidence=0.95, n_resamples=2000,
    random_state=None,
):
    """A classification score with a bootstrap interval over groups (scan series).

    Slices of one scan series are near copies of each other: resampling
    slices would treat them as independent and give intervals far too
    narrow. This resamples whole groups with replacement (a cluster
    bootstrap), recomputes the score on each resample, and returns the
    percentile interval (:func:`scipy.stats.bootstrap` over the group
    indices, vectorised through per-group confusion matrices).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        True and predicted labels.

    groups : array-like of shape (n,)
        The group (scan series, patient) of each sample.

    metric : {"f1_macro", "accuracy", "balanced_accuracy"}, default="f1_macro"
        Macro-F1 (the unweighted mean of the per-class F1 scores, over the
        classes among ``y_true`` and ``y_pred``, as
        :func:`sklearn.metrics.f1_score` with ``average="macro"``),
        accuracy, or balanced accuracy (the mean per-class recall).

    confidence : float in (0, 1), default=0.95
        Confidence level of the interval.

    n_resamples : int, default=2000
        Bootstrap resamples.

    random_state : int, RandomState instance or None, default=None
        Seeds the resampling.

    Returns
    -------
    interval : BootstrapInterval
        ``estimate`` (the score on all the data), ``low``, ``high``,
        ``confidence`` and ``n_groups``.

    Raises
    ------
    ValueError
        If the arrays differ in length, or hold fewer than 2 groups (one
        group cannot be resampled).

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn.metrics import grouped_bootstrap_interval
    >>> rng = np.random.RandomState(0)
    >>> groups = np.repeat(np.arange(40), 10)          # 40 series of 10 slices
    >>> y_true = np.repeat(rng.randint(0, 3, 40), 10)  # one class per series
    >>> right = np.repeat(rng.rand(40) < 0.8, 10)       # about 80% of series right
    >>> y_pred = np.where(right, y_true, (y_true + 1) % 3)
    >>> ci = grouped_bootstrap_interval(y_true, y_pred, groups, metric="accuracy",
    ...                                 random_state=0)
    >>> round(ci.estimate, 3), ci.low < ci.estimate < ci.high, ci.n_groups
    (0.875, True, 40)
    """
    from scipy.stats import bootstrap
    from sklearn.utils import check_random_state
    from sklearn.utils.validation import check_consistent_length, column_or_1d

    y_true, y_pred, groups = (column_or_1d(a) for a in (y_true, y_pred, groups))
    check_consistent_length(y_true, y_pred, groups)
    classes, encoded = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    n, k = len(y_true), len(classes)
    group_names, group_of = np.unique(groups, return_inverse=True)
    n_groups = len(group_names)
    if n_groups < 2:
        raise ValueError(
            f"grouped_bootstrap_interval needs at least 2 groups to resample; got "
            f"{n_groups}. With one scan series there is no interval over series."
        )
    # One confusion matrix per group; a resample's is the sum of its groups'.
    per_group = np.zeros((n_groups, k, k), dtype=np.int64)
    np.add.at(per_group, (group_of, encoded[:n], encoded[n:]), 1)
    metric_name = "f1" if metric == "f1_macro" else metric

    def statistic(indices, axis=-1):
        indices = np.moveaxis(np.asarray(indices, dtype=np.int64), axis, -1)
        return _scores_from_confusion(per_group[indices].sum(axis=-3), metric_name)

    estimate = float(_scores_from_confusion(per_group.sum(axis=0), metric_name))
    result = bootstrap(
        (np.arange(n_groups),), statistic, n_resamples=n_resamples, batch=500,
        confidence_level=confidence, method="percentile", vectorized=True,
        random_state=check_random_state(random_state),
    )
    low, high = result.confidence_interval
    return BootstrapInterval(float(estimate), float(low), float(high), float(confidence),
                             int(n_groups))


def label_scores(y_true, y_pred):
    """Accuracy and macro-F1 (over the labels that occur) of predicted labels.

    A class never predicted nor present adds nothing; one predicted but
    never present (or the reverse) has an F1 of 0. These are the two
    figures every report of ckdlearn leads with.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        The true labels.
    y_pred : array-like of shape (n_samples,)
        The predicted labels.

    Returns
    -------
    scores : dict
        ``accuracy`` and ``macro_f1``, as Python floats.

    Examples
    --------
    >>> from ckdlearn.metrics import label_scores
    >>> label_scores(["Cyst", "Cyst", "Stone"], ["Cyst", "Stone", "Stone"])
    {'accuracy': 0.666..., 'macro_f1': 0.666...}
    """
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }
