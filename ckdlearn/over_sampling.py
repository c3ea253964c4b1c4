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

import numbers

import numpy as np
from imblearn.over_sampling import SMOTE
from scipy import sparse
from sklearn.utils import check_random_state

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
    As SMOTE does, new rows are computed in float64 and cast to the input
    dtype; only one chunk is float64 at a time. Give float32 images (uint8
    differences would wrap around).

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
        if not isinstance(self.chunk_size, numbers.Integral) or self.chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer; got {self.chunk_size!r}.")
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
            for start in range(0, n_samples, self.chunk_size):
                chunk = slice(start, start + self.chunk_size)
                base = X_class[rows[chunk]]
                towards = X_class[neighbours[rows[chunk], cols[chunk]]]
                out[chunk] = base + steps[chunk] * (towards - base)
            y_resampled[offset : offset + n_samples] = class_sample
            offset += n_samples
        return X_resampled, y_resampled
