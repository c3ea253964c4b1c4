"""Memory-lean oversampling for image matrices.

imbalanced-learn's :class:`~imblearn.over_sampling.SMOTE` is written for
tabular data. On images, where a row holds thousands of pixels, its
``fit_resample`` peaks at about twice the resampled matrix: it keeps every
class's new rows in a list and stacks them with X at the end (two
resampled matrices alive at once), and builds the new rows in float64
with temporaries the size of each class's block.

:class:`LeanSMOTE` draws the same random numbers and returns the same
bytes, but allocates the resampled matrix once and fills it in chunks, so
its peak stays near the output's size (``benchmarks/bench_memory.py``:
1.17x instead of 2.11x at 12,500 slices of 128 px).
"""

import numpy as np
from imblearn.over_sampling import SMOTE
from scipy import sparse
from sklearn.utils import check_random_state

from .utils.input_checks import IntegerInterval

__all__ = ["LeanSMOTE"]


class LeanSMOTE(SMOTE):
    """SMOTE whose only full-size allocation is the resampled matrix.

    A drop-in replacement for :class:`imblearn.over_sampling.SMOTE` on
    dense input: same parameters, same random draws, bit-identical
    output. Memory beyond the output is one class's rows (for the
    neighbour search) and ``chunk_size`` new rows at a time. Sparse input
    is passed to SMOTE unchanged.

    Parameters
    ----------
    sampling_strategy : float, str, dict or callable, default="auto"
        Which classes to oversample and how far, as for SMOTE.
    random_state : int, RandomState instance or None, default=None
        Seeds the choice of neighbours and interpolation steps.
    k_neighbors : int or estimator, default=5
        Neighbours interpolated towards, as for SMOTE. Each class to
        oversample needs at least ``k_neighbors + 1`` images.
    chunk_size : int, default=256
        New rows generated per step; larger chunks trade memory for
        fewer NumPy calls.

    Attributes
    ----------
    sampling_strategy_ : dict
        Number of new rows per class.
    nn_k_ : estimator
        The fitted nearest-neighbours search of the last class.
    n_features_in_ : int
        Values per row.

    See Also
    --------
    imblearn.over_sampling.SMOTE : the reference implementation.

    Notes
    -----
    New rows are computed in float64, one chunk at a time, and cast to the
    input dtype. For float input that is exactly SMOTE's arithmetic. For
    integer images (uint8, uint16) the differences are taken in float64 and
    the new pixels rounded: imbalanced-learn's SMOTE subtracts them in the
    integer dtype, where ``3 - 5`` wraps around to 254.

    A class to oversample needs more images than ``k_neighbors``; with
    fewer, the error names the class, its count and the largest
    ``k_neighbors`` it allows.

    Examples
    --------
    >>> import numpy as np
    >>> from imblearn.over_sampling import SMOTE
    >>> from ckdlearn.over_sampling import LeanSMOTE
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(30, 64 * 64).astype(np.float32)  # 30 flat 64x64 images
    >>> y = np.array([0] * 20 + [1] * 10)
    >>> X_lean, y_lean = LeanSMOTE(random_state=0).fit_resample(X, y)
    >>> X_lean.shape, np.bincount(y_lean)
    ((40, 4096), array([20, 20]))
    >>> X_ref, _ = SMOTE(random_state=0).fit_resample(X, y)
    >>> np.array_equal(X_lean, X_ref)
    True
    """

    _parameter_constraints = {
        **SMOTE._parameter_constraints,
        "chunk_size": [IntegerInterval(1, None, closed="left")],
    }

    def __init__(
        self,
        *,
        sampling_strategy="auto",
        random_state=None,
        k_neighbors=5,
        chunk_size=256,
    ):
        super().__init__(
            sampling_strategy=sampling_strategy,
            random_state=random_state,
            k_neighbors=k_neighbors,
        )
        self.chunk_size = chunk_size

    def _fit_resample(self, X, y):
        if sparse.issparse(X):
            return super()._fit_resample(X, y)
        self._validate_estimator()
        n_new = sum(self.sampling_strategy_.values())
        X_resampled = np.empty((len(X) + n_new, X.shape[1]), dtype=X.dtype)
        X_resampled[: len(X)] = X
        y_resampled = np.empty(len(y) + n_new, dtype=y.dtype)
        y_resampled[: len(y)] = y
        offset = len(X)
        for class_sample, n_samples in self.sampling_strategy_.items():
            if n_samples == 0:
                continue
            X_class = X[np.flatnonzero(y == class_sample)]
            k = self.nn_k_.n_neighbors - 1
            if len(X_class) <= k:
                raise ValueError(
                    f"SMOTE cannot oversample class {np.asarray(class_sample).item()!r}: it has "
                    f"{len(X_class)} image(s) and k_neighbors={k} needs at least {k + 1}. "
                    + (f"Use k_neighbors={len(X_class) - 1} or lower, add images"
                       if len(X_class) > 1 else "Add images")
                    + " of that class, or weight the loss instead (class_weight='balanced')."
                )
            self.nn_k_.fit(X_class)
            neighbours = self.nn_k_.kneighbors(X_class, return_distance=False)[:, 1:]
            # SMOTE draws a fresh generator per class, picks then steps; the
            # same order here gives the same rows.
            random_state = check_random_state(self.random_state)
            picks = random_state.randint(low=0, high=neighbours.size, size=n_samples)
            steps = random_state.uniform(size=n_samples)[:, np.newaxis]
            rows = np.floor_divide(picks, neighbours.shape[1])
            cols = np.mod(picks, neighbours.shape[1])
            out = X_resampled[offset : offset + n_samples]
            integers = X.dtype.kind in "biu"
            for start in range(0, n_samples, self.chunk_size):
                chunk = slice(start, start + self.chunk_size)
                base = X_class[rows[chunk]]
                towards = X_class[neighbours[rows[chunk], cols[chunk]]]
                if integers:  # no wrap-around in the difference
                    base, towards = base.astype(np.float64), towards.astype(np.float64)
                new = base + steps[chunk] * (towards - base)
                out[chunk] = np.rint(new) if integers else new
            y_resampled[offset : offset + n_samples] = class_sample
            offset += n_samples
        return X_resampled, y_resampled
