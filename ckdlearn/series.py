"""One answer per scan series, from the probabilities of its slices.

A clinician reads a scan, not a slice. :func:`aggregate_series` combines
the slice probabilities of each series into one distribution (by default
the normalised geometric mean, i.e. the mean of log-probabilities: every
slice is evidence, and a slice that rules a class out counts).
"""

import numbers

import numpy as np
from sklearn.utils import Bunch

from .utils._param_validation import Interval, StrOptions, validate_params

__all__ = ["aggregate_series"]

# Probabilities are floored here before taking logs: a single slice at
# exactly 0 would otherwise veto a class for the whole series.
_FLOOR = 1e-6


@validate_params(
    {
        "proba": ["array-like"],
        "groups": ["array-like"],
        "method": [StrOptions({"mean_log", "mean", "vote"})],
        "floor": [Interval(numbers.Real, 0, 1, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def aggregate_series(proba, groups, *, method="mean_log", floor=_FLOOR):
    """Combine slice probabilities into one distribution per scan series.

    Parameters
    ----------
    proba : array-like of shape (n_slices, n_classes)
        Slice probabilities, e.g. ``predict_proba`` output.
    groups : array-like of shape (n_slices,)
        Scan series of each slice.
    method : {"mean_log", "mean", "vote"}, default="mean_log"
        ``"mean_log"``: the mean of the log-probabilities, exponentiated and
        normalised (a product of experts); ``"mean"``: the mean
        probability; ``"vote"``: the share of slices predicting each class.
    floor : float, default=1e-6
        Smallest probability used in ``"mean_log"``.

    Returns
    -------
    result : Bunch
        ``series`` (the distinct ids, sorted), ``proba`` of shape
        ``(n_series, n_classes)`` and ``n_slices`` per series.

    Raises
    ------
    ValueError
        If ``proba`` is not 2-D, holds values outside [0, 1] or NaN, or
        ``groups`` has another length.

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn.series import aggregate_series
    >>> proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    >>> result = aggregate_series(proba, ["a", "a", "b"])
    >>> result.series.tolist(), result.proba.round(3).tolist()
    (['a', 'b'], [[0.786, 0.214], [0.2, 0.8]])
    """
    proba = np.asarray(proba, dtype=np.float64)
    groups = np.asarray(groups)
    if proba.ndim != 2 or groups.shape != (len(proba),):
        raise ValueError(
            "proba must be (n_slices, n_classes) and groups hold one series id per "
            f"slice; got shapes {proba.shape} and {groups.shape}."
        )
    if not proba.size:
        raise ValueError(f"proba is empty (shape {proba.shape}); pass at least one slice.")
    if not np.isfinite(proba).all() or proba.min() < 0 or proba.max() > 1 + 1e-6:
        raise ValueError("proba must hold probabilities in [0, 1], as predict_proba returns.")
    series, index, n_slices = np.unique(groups, return_inverse=True, return_counts=True)
    if method == "vote":
        values = np.eye(proba.shape[1])[proba.argmax(axis=1)]
    elif method == "mean_log":
        values = np.log(np.maximum(proba, floor))
    else:
        values = proba
    sums = np.zeros((len(series), proba.shape[1]))
    np.add.at(sums, index.ravel(), values)
    combined = sums / n_slices[:, None]
    if method == "mean_log":
        combined = np.exp(combined - combined.max(axis=1, keepdims=True))
    combined /= combined.sum(axis=1, keepdims=True)
    return Bunch(series=series, proba=combined, n_slices=n_slices)
