"""Leakage audit: duplicated images on both sides of a train/test split.

Adjacent CT slices of one scan series look almost identical. When a split
puts them on both sides, a classifier is tested on images it has, in
effect, already seen, and its score says little about new patients. This
module finds such pairs, exact and near, so that a split can be checked
before its score is believed.
"""

import html
import numbers
import warnings

import numpy as np
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    check_cv,
)

from .._fingerprints import DEFAULT_NEAR_THRESHOLD, Fingerprints, duplicate_pairs
from ..utils._param_validation import Interval, validate_params
from ..utils.input_checks import IntegerInterval, check_images

__all__ = ["LeakageWarning", "LeakageReport", "audit_leakage", "audit_cv"]

#: The constraints of the fingerprint settings, shared by every function
#: that takes them.
FINGERPRINT_CONSTRAINTS = {
    "near_threshold": [Interval(numbers.Real, 0, 2, closed="both")],
    "max_shift": [IntegerInterval(0, None, closed="left")],
    "thumbnail_size": [IntegerInterval(2, None, closed="left")],
}


class LeakageWarning(UserWarning):
    """Warning about an evaluation whose score may be overstated by leakage.

    Raised when information about the test images reaches the model during
    training, typically because slices of one scan series land on both
    sides of a split, because no scan-series groups were given, or because
    an audit found duplicated images across a split.
    """


class LeakageReport:
    """Duplicated images found across a training and a test set.

    Returned by :func:`audit_leakage` and :func:`audit_cv`; not meant to be
    built by hand.

    Parameters
    ----------
    n_train, n_test : int
        Number of images in the training and the test set.
    exact_pairs : ndarray of shape (n_exact, 2)
        ``[train_index, test_index]`` pairs of byte-identical images
        (after casting to float32).
    near_pairs : ndarray of shape (n_near, 2)
        ``[train_index, test_index]`` pairs of near duplicates that are not
        exact duplicates.
    near_distances : ndarray of shape (n_near,)
        Thumbnail distance of each near pair, 0 for identical thumbnails.
    near_threshold : float
        Largest thumbnail distance counted as a near duplicate.
    max_shift : int
        Largest shift, in pixels, tolerated between near duplicates.
    thumbnail_size : int
        Side of the thumbnails that were compared.

    Attributes
    ----------
    n_exact : int
        Number of exact-duplicate pairs.
    n_near : int
        Number of near-duplicate pairs (exact pairs not included).
    leaked_test_indices : ndarray of int
        Sorted indices of the test images that have at least one exact or
        near duplicate in the training set.
    n_leaked_test : int
        ``len(leaked_test_indices)``.
    leaked_fraction : float
        Fraction of test images with a duplicate in the training set.
    has_leakage : bool
        Whether any duplicate was found.
    """

    def __init__(
        self,
        *,
        n_train,
        n_test,
        exact_pairs,
        near_pairs,
        near_distances,
        near_threshold,
        max_shift,
        thumbnail_size,
    ):
        self.n_train = int(n_train)
        self.n_test = int(n_test)
        self.exact_pairs = np.asarray(exact_pairs, dtype=np.int64).reshape(-1, 2)
        self.near_pairs = np.asarray(near_pairs, dtype=np.int64).reshape(-1, 2)
        self.near_distances = np.asarray(near_distances, dtype=np.float64).ravel()
        self.near_threshold = float(near_threshold)
        self.max_shift = int(max_shift)
        self.thumbnail_size = int(thumbnail_size)

    @property
    def n_exact(self):
        return len(self.exact_pairs)

    @property
    def n_near(self):
        return len(self.near_pairs)

    @property
    def leaked_test_indices(self):
        return np.unique(
            np.concatenate([self.exact_pairs[:, 1], self.near_pairs[:, 1]])
        )

    @property
    def n_leaked_test(self):
        return len(self.leaked_test_indices)

    @property
    def leaked_fraction(self):
        return self.n_leaked_test / self.n_test if self.n_test else 0.0

    @property
    def has_leakage(self):
        return self.n_exact > 0 or self.n_near > 0

    def to_dict(self):
        """Return the report as plain Python types (JSON-serialisable).

        Returns
        -------
        report : dict
            Counts, settings and the index pairs as lists.
        """
        return {
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_exact": self.n_exact,
            "n_near": self.n_near,
            "n_leaked_test": self.n_leaked_test,
            "leaked_fraction": self.leaked_fraction,
            "exact_pairs": self.exact_pairs.tolist(),
            "near_pairs": self.near_pairs.tolist(),
            "near_distances": self.near_distances.tolist(),
            "near_threshold": self.near_threshold,
            "max_shift": self.max_shift,
            "thumbnail_size": self.thumbnail_size,
        }

    def _example_pairs(self, limit):
        """The closest pairs first: exact ones, then near ones by distance."""
        rows = [(int(i), int(j), "exact", 0.0) for i, j in self.exact_pairs[:limit]]
        order = np.argsort(self.near_distances, kind="stable")[: limit - len(rows)]
        rows += [
            (int(self.near_pairs[k, 0]), int(self.near_pairs[k, 1]), "near",
             float(self.near_distances[k]))
            for k in order
        ]
        return rows

    def _settings_text(self):
        return (
            f"thumbnail distance <= {self.near_threshold:g}, "
            f"shifts up to {self.max_shift} px"
        )

    def __repr__(self):
        return (
            f"LeakageReport(n_train={self.n_train}, n_test={self.n_test}, "
            f"n_exact={self.n_exact}, n_near={self.n_near}, "
            f"leaked_fraction={self.leaked_fraction:.3f})"
        )

    def __str__(self):
        if not self.has_leakage:
            return (
                f"LeakageReport: no exact or near duplicates between "
                f"{self.n_train} training and {self.n_test} test images "
                f"({self._settings_text()})."
            )
        lines = [
            f"LeakageReport: {self.n_leaked_test} of {self.n_test} test images "
            f"({self.leaked_fraction:.1%}) have a duplicate among the "
            f"{self.n_train} training images.",
            f"  exact duplicates: {self.n_exact} pairs",
            f"  near duplicates:  {self.n_near} pairs ({self._settings_text()})",
            "  closest pairs (train index, test index, kind, distance):",
        ]
        lines += [
            f"    {i:>6d} {j:>6d}  {kind:<5s}  {distance:.3f}"
            for i, j, kind, distance in self._example_pairs(5)
        ]
        lines.append(
            "  Fix: keep each scan series on one side of the split (pass "
            "groups, e.g. StratifiedGroupKFold) and drop exact duplicates "
            "before splitting."
        )
        return "\n".join(lines)

    def _repr_html_(self):
        summary = (
            f"{self.n_leaked_test} of {self.n_test} test images "
            f"({self.leaked_fraction:.1%}) have a duplicate among "
            f"{self.n_train} training images"
            if self.has_leakage
            else f"No duplicates between {self.n_train} training and "
            f"{self.n_test} test images"
        )
        rows = "".join(
            f"<tr><td>{i}</td><td>{j}</td><td>{kind}</td><td>{d:.3f}</td></tr>"
            for i, j, kind, d in self._example_pairs(10)
        )
        pairs_table = (
            "<table><thead><tr><th>train index</th><th>test index</th>"
            f"<th>kind</th><th>distance</th></tr></thead><tbody>{rows}</tbody>"
            "</table>"
            if rows
            else ""
        )
        return (
            "<div><strong>LeakageReport</strong>: "
            f"{html.escape(summary)}<br>"
            f"exact pairs: {self.n_exact}, near pairs: {self.n_near} "
            f"({html.escape(self._settings_text())}){pairs_table}</div>"
        )


def _report(n_train, n_test, pairs, rows=None, **settings):
    """The LeakageReport of ``duplicate_pairs`` output; ``rows`` map positions to indices."""
    exact, near, distances = pairs
    if rows is not None:
        train_rows, test_rows = rows
        exact = np.column_stack([train_rows[exact[:, 0]], test_rows[exact[:, 1]]])
        near = np.column_stack([train_rows[near[:, 0]], test_rows[near[:, 1]]])
    return LeakageReport(
        n_train=n_train, n_test=n_test, exact_pairs=exact, near_pairs=near,
        near_distances=distances, **settings,
    )


@validate_params(
    {"X_train": ["array-like", "sparse matrix"], "X_test": ["array-like", "sparse matrix"], "image_shape": ["array-like", None],
     **FINGERPRINT_CONSTRAINTS},
    prefer_skip_nested_validation=True,
)
def audit_leakage(
    X_train,
    X_test,
    *,
    image_shape=None,
    near_threshold=DEFAULT_NEAR_THRESHOLD,
    max_shift=1,
    thumbnail_size=16,
):
    """Find training images that are exact or near copies of test images.

    A test image with a duplicate in the training set does not measure how
    the model does on unseen data. In CT slice data this happens whenever
    adjacent slices of one scan series are split apart.

    Parameters
    ----------
    X_train : array-like of shape (n_train, height*width), \
            (n_train, height, width) or (n_train, channels, height, width)
        Training images. Any numeric dtype and value range; the two sets
        must share the image shape.
    X_test : array-like, same layout as X_train
        Test images.
    image_shape : tuple of int, default=None
        ``(height, width)`` or ``(channels, height, width)`` of the
        flattened images in 2-D input. None infers a square single-channel
        shape from the number of features.
    near_threshold : float, default=0.15
        Largest distance between normalised thumbnails counted as a near
        duplicate: 0 for thumbnails that agree up to brightness and
        contrast, about 1.41 for unrelated ones. The distance relates to the
        thumbnails' Pearson correlation r by ``sqrt(2 * (1 - r))``, so 0.15
        means r >= 0.989.
    max_shift : int, default=1
        Largest translation, in pixels in each direction, still matched as
        a near duplicate. The cost grows as ``(2 * max_shift + 1) ** 2``;
        0 turns the shift search off.
    thumbnail_size : int, default=16
        Side of the thumbnails that are compared (smaller for smaller
        images). ``near_threshold`` was calibrated for 16.

    Returns
    -------
    report : LeakageReport
        Counts (``n_exact``, ``n_near``, ``leaked_fraction``), the
        ``[train_index, test_index]`` pairs (``exact_pairs``,
        ``near_pairs``) and the near pairs' distances.

    Raises
    ------
    ValueError
        If a set is empty, holds NaN or infinity, is not 2-, 3- or 4-D, has
        a non-square feature count and no ``image_shape``, or if the two
        sets hold images of different shapes.
    TypeError
        If a set is sparse or not numeric.

    See Also
    --------
    audit_cv : The same audit for each fold of a cross-validation.

    Notes
    -----
    *Exact duplicates* have equal bytes after casting to float32 (-0.0 made
    0.0); *near duplicates* have zero-mean, unit-norm 16x16 block-mean
    thumbnails within ``near_threshold`` of each other after shifting the
    test image by up to ``max_shift`` pixels, which removes brightness,
    contrast and pixel noise. Each candidate pair's distance is computed in
    float64 from its two thumbnails alone, so a pair has the same distance
    in every fold and on every CPU. Constant images match only exactly;
    exact pairs are not repeated as near. How the default threshold was
    chosen: :ref:`scan_series`.

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn.model_selection import audit_leakage
    >>> rng = np.random.default_rng(0)
    >>> images = rng.random((6, 32, 32)).astype(np.float32)
    >>> X_train = images[:4].reshape(4, -1)
    >>> X_test = np.stack([images[1], images[4], images[5]]).reshape(3, -1)
    >>> report = audit_leakage(X_train, X_test)
    >>> report.n_exact, report.n_near
    (1, 0)
    >>> report.exact_pairs  # [train index, test index]
    array([[1, 0]])
    >>> round(report.leaked_fraction, 3)
    0.333
    """
    train_images = check_images(X_train, image_shape=image_shape, name="X_train", require_image=True)
    test_images = check_images(X_test, image_shape=image_shape, name="X_test", require_image=True)
    if train_images.shape[1:] != test_images.shape[1:]:
        raise ValueError(
            f"X_train holds images of shape {train_images.shape[1:]} "
            f"(channels, height, width) but X_test holds {test_images.shape[1:]}. "
            "Both sets must be prepared the same way; resize them to one "
            "image size (e.g. load_ct_kidney(..., image_size=...))."
        )
    settings = dict(near_threshold=near_threshold, max_shift=max_shift, thumbnail_size=thumbnail_size)
    shape = dict(max_shift=max_shift, thumbnail_size=thumbnail_size)
    pairs = duplicate_pairs(
        Fingerprints(train_images, **shape, shifted=False),
        Fingerprints(test_images, **shape),
        near_threshold=near_threshold,
    )
    return _report(len(train_images), len(test_images), pairs, **settings)


def resolve_cv(cv, y, groups):
    """A splitter that keeps groups whole when there are groups.

    An integer becomes StratifiedGroupKFold with groups (GroupKFold without
    labels), StratifiedKFold without groups (KFold without labels). Other
    values go through sklearn's check_cv.
    """
    if cv is None:
        cv = 5
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        if groups is not None:
            return StratifiedGroupKFold(n_splits=cv) if y is not None else GroupKFold(n_splits=cv)
        return StratifiedKFold(n_splits=cv) if y is not None else KFold(n_splits=cv)
    return check_cv(cv, y, classifier=y is not None)


def split_indices(cv, X, y, groups):
    n_samples = len(X)
    with warnings.catch_warnings():
        # Splitters that ignore groups still accept them; say so ourselves.
        warnings.simplefilter("ignore", UserWarning)
        try:
            splits = [
                (np.asarray(train, dtype=np.intp), np.asarray(test, dtype=np.intp))
                for train, test in cv.split(np.zeros((n_samples, 1)), y, groups)
            ]
        except ValueError as error:
            raise ValueError(
                f"cv={cv!r} cannot split these {n_samples} images: {error} Use fewer "
                "folds, or more images and scan series per class."
            ) from None
    if not splits:
        raise ValueError(f"cv={cv!r} produced no train/test splits.")
    return splits


@validate_params(
    {"X": ["array-like", "sparse matrix"], "y": ["array-like", None], "groups": ["array-like", None],
     "cv": ["cv_object"], "image_shape": ["array-like", None], **FINGERPRINT_CONSTRAINTS},
    prefer_skip_nested_validation=True,
)
def audit_cv(
    X,
    y=None,
    groups=None,
    *,
    cv=5,
    image_shape=None,
    near_threshold=DEFAULT_NEAR_THRESHOLD,
    max_shift=1,
    thumbnail_size=16,
):
    """Audit every train/test split of a cross-validation for duplicates.

    Each image is fingerprinted once; each fold then compares its test
    images with its training images as :func:`audit_leakage` does.

    Parameters
    ----------
    X : array-like of shape (n_images, height*width), \
            (n_images, height, width) or (n_images, channels, height, width)
        All images.
    y : array-like of shape (n_images,), default=None
        Class labels, used by stratified splitters.
    groups : array-like of shape (n_images,), default=None
        Scan-series id of each image, used by group-aware splitters.
    cv : int, cross-validation generator or iterable, default=5
        An integer gives ``StratifiedGroupKFold`` when ``groups`` is given
        and ``StratifiedKFold`` otherwise (the ``KFold`` variants without
        ``y``). Splitters and iterables of ``(train, test)`` index arrays
        are used as they are.
    image_shape, near_threshold, max_shift, thumbnail_size
        As in :func:`audit_leakage`.

    Returns
    -------
    reports : list of LeakageReport
        One report per fold. Their index pairs are row indices of ``X``
        (not positions within the fold).

    Raises
    ------
    ValueError, TypeError
        As :func:`audit_leakage`, and if ``y`` or ``groups`` do not have one
        entry per image.

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn.model_selection import audit_cv
    >>> rng = np.random.default_rng(0)
    >>> series = rng.random((4, 16, 16))               # 4 scan series...
    >>> X = np.tile(series, (3, 1, 1)).reshape(12, -1)  # ...of 3 identical slices
    >>> groups = np.tile([0, 1, 2, 3], 3)
    >>> from sklearn.model_selection import KFold
    >>> [report.n_exact for report in audit_cv(X, cv=KFold(3))]  # series split
    [8, 8, 8]
    >>> [report.n_exact for report in audit_cv(X, groups=groups, cv=4)]
    [0, 0, 0, 0]
    """
    images = check_images(X, image_shape=image_shape, require_image=True)
    n_images = len(images)
    for name, values in (("y", y), ("groups", groups)):
        if values is not None and len(values) != n_images:
            raise ValueError(
                f"{name} has {len(values)} entries but X has {n_images} images; "
                "give one entry per image."
            )
    y = None if y is None else np.asarray(y)
    groups = None if groups is None else np.asarray(groups)
    splits = split_indices(resolve_cv(cv, y, groups), images, y, groups)
    return audit_splits(
        images, splits, near_threshold=near_threshold, max_shift=max_shift,
        thumbnail_size=thumbnail_size,
    )


def audit_splits(images, splits, *, near_threshold, max_shift, thumbnail_size):
    """Reports for validated ``(n, C, H, W)`` images and explicit (train, test) splits.

    Each image is fingerprinted once; the pairs of each report are rows of
    ``images``. Used by :func:`audit_cv` and by ``evaluate``.
    """
    fingerprints = Fingerprints(images, max_shift=max_shift, thumbnail_size=thumbnail_size)
    settings = dict(near_threshold=near_threshold, max_shift=max_shift, thumbnail_size=thumbnail_size)
    reports = []
    for train, test in splits:
        if len(train) == 0 or len(test) == 0:
            raise ValueError(
                "A cross-validation split has an empty training or test set; "
                "check the cv splitter and the number of groups."
            )
        pairs = duplicate_pairs(
            fingerprints.take(train), fingerprints.take(test), near_threshold=near_threshold
        )
        reports.append(_report(len(train), len(test), pairs, rows=(train, test), **settings))
    return reports
