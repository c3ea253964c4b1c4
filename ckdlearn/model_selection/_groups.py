"""Scan-series groups inferred from slice file numbers and image content.

Public datasets of CT slices rarely ship patient or series ids, yet slices
of one scan series are near-identical neighbours: a random slice-level split
puts the same scan on both sides. This module recovers series ids so that
grouped cross-validation (``StratifiedGroupKFold``) can keep them whole.
"""

import numbers
import re
import warnings

import numpy as np

from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .._fingerprints import DEFAULT_NEAR_THRESHOLD, Fingerprints, duplicate_pairs_within
from ..utils._param_validation import Interval, validate_params
from ..utils.input_checks import check_images
from ._leakage import FINGERPRINT_CONSTRAINTS
from ..utils._stack import external_stacklevel

__all__ = ["ScanGroupingWarning", "infer_scan_groups"]

#: Below this median number of slices per inferred series, most "series"
#: are single slices: the file numbering no longer follows the scans.
MIN_MEDIAN_SLICES = 3
#: Above this median step between neighbouring file numbers, files are not
#: consecutive slices (every 8th slice of a scan: step 8).
MAX_MEDIAN_STEP = 2


class ScanGroupingWarning(UserWarning):
    """Inferred scan-series groups that may not keep each scan whole.

    Raised by :func:`infer_scan_groups` when the file numbering or the
    images do not support the inference (every n-th slice, unrelated files,
    mixed image sizes). Pass the true groups instead where they are known.
    """


# The last run of digits in a file name is its slice number:
# "Cyst- (1219).jpg" -> prefix "Cyst- (", number 1219, suffix ").jpg".
_SLICE_NUMBER = re.compile(r"^(.*?)(\d+)(\D*)$")


@validate_params(
    {
        "images": ["array-like"],
        "filenames": ["array-like"],
        "change_threshold": [Interval(numbers.Real, 0, None, closed="left")],
        "gap_change_threshold": [Interval(numbers.Real, 0, None, closed="left")],
        **FINGERPRINT_CONSTRAINTS,
        "image_sizes": ["array-like", None],
        "return_diagnostics": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def infer_scan_groups(
    images,
    filenames,
    *,
    change_threshold=0.035,
    gap_change_threshold=0.015,
    near_threshold=DEFAULT_NEAR_THRESHOLD,
    max_shift=1,
    thumbnail_size=16,
    image_sizes=None,
    return_diagnostics=False,
):
    """Infer a scan-series id for every CT slice.

    Slices of one scan series are near-identical neighbours. Keeping each
    series on one side of a split (pass the result as ``groups`` to
    :class:`~sklearn.model_selection.StratifiedGroupKFold`) stops a
    classifier from being tested on the scan it was trained on.

    Parameters
    ----------
    images : array-like of shape (n_slices, height, width) or \
            (n_slices, height * width)
        The slices, scaled to [0, 1] (``uint8`` input is divided by 255).
        Flat rows must be square images.

    filenames : sequence of str or path-like of length n_slices
        The slices' file names, e.g. ``"Cyst/Cyst- (1219).jpg"``. The folder
        and the text around the last number of the name identify a numbered
        sequence of slices; the last number orders it.

    change_threshold : float, default=0.035
        Thumbnail distance above which two consecutively numbered slices
        belong to different series (an abrupt image change).

    gap_change_threshold : float, default=0.015
        Thumbnail distance above which two slices with numbers missing
        between them belong to different series. Lower than
        ``change_threshold``: a numbering gap is already a hint of a new
        series, so less image change is needed to confirm it.

    near_threshold : float, default=0.15
        Largest distance between normalised thumbnails at which two slices
        are near duplicates, exactly as in
        :func:`~ckdlearn.model_selection.audit_leakage` (0 for thumbnails
        that agree up to brightness and contrast, about 1.41 for unrelated
        ones; 0.15 means a correlation of at least 0.989). Series holding a
        pair of near or exact duplicates are merged, wherever the slices
        sit in the numbering.

    max_shift : int, default=1
        Largest translation, in pixels in each direction, still matched as
        a near duplicate, as in
        :func:`~ckdlearn.model_selection.audit_leakage`; 0 turns the shift
        search off.

    thumbnail_size : int, default=16
        Side of the area-averaged thumbnails the distances are measured on,
        in the cuts and in the near-duplicate search (smaller images are
        used at their own size); at least 2, as in the audit.

    image_sizes : array-like of shape (n_slices, 2), default=None
        Each slice's size in its file, ``(height, width)``, where known
        (the images are usually resized): slices of one scan share a size,
        so a series mixing sizes is a sign of a wrong grouping.

    return_diagnostics : bool, default=False
        If True, also return what the grouping rests on and whether it is
        reliable.

    Returns
    -------
    groups : ndarray of shape (n_slices,), dtype int64
        Series id of each slice: ``0, 1, ...`` in order of first appearance
        in ``filenames``, unique across folders and classes.

    diagnostics : dict
        Only if ``return_diagnostics`` is True; JSON-ready: ``source``
        (``"inferred"``), ``reliable`` (bool), ``reasons`` (why not, one
        sentence each), ``n_slices``, ``n_groups``,
        ``median_slices_per_group``, ``median_number_step`` (between
        neighbouring numbered files of a sequence, None without any),
        ``n_unnumbered`` and ``n_image_sizes`` (None if not given).

    Warns
    -----
    ScanGroupingWarning
        If the grouping is unreliable: the median series has fewer than 3
        slices (subsampled or unrelated files), neighbouring file numbers
        are typically more than 2 apart (every n-th slice: a scan's slices
        no longer look alike from file to file), several files of a
        sequence carry no number (their order is a guess), or a series
        mixes image sizes. Groups that do not keep each scan whole let
        ``StratifiedGroupKFold`` test on scans it trained on; pass the true
        groups where they are known.

    Raises
    ------
    ValueError
        If ``images`` is not a stack of 2-D images, if ``filenames`` has a
        different length, if ``change_threshold`` or
        ``gap_change_threshold`` is negative, if ``near_threshold`` is not
        in [0, 2] or ``max_shift`` not a non-negative integer (the checks
        of :func:`~ckdlearn.model_selection.audit_leakage`), or if
        ``thumbnail_size`` is below 2.

    See Also
    --------
    sklearn.model_selection.StratifiedGroupKFold : Stratified K-fold that
        keeps each group on one side of every split.
    audit_cv : Check each fold of a cross-validation for duplicates.

    Notes
    -----
    Slices are split into numbered sequences (same folder, same text around
    the number), cut where neighbours differ by more than
    ``change_threshold`` (``gap_change_threshold`` across missing numbers)
    on ``thumbnail_size`` block means, and series that hold a pair of
    slices :func:`~ckdlearn.model_selection.audit_leakage` flags are merged,
    so the groups never leak by the audit's definition. On the 3,879
    slices of the CT KIDNEY DATASET's development subset this gives 81
    series (28 Cyst, 16 Normal, 27 Stone, 10 Tumor) at every image size
    from 16 to 128 px. How the thresholds were read off the data, and what
    the ids can and cannot mean: :ref:`scan_series`.

    Examples
    --------
    >>> from ckdlearn.datasets import load_ct_kidney_sample
    >>> from ckdlearn.model_selection import infer_scan_groups
    >>> sample = load_ct_kidney_sample()
    >>> groups = infer_scan_groups(sample.images, sample.filenames)
    >>> int(groups.max()) + 1  # 16 scan groups in the sample; one is cut in two
    17
    >>> # No inferred series mixes two of the series found on the full data:
    >>> all(len(set(sample.groups[groups == g])) == 1 for g in set(groups))
    True
    >>> from sklearn.model_selection import StratifiedGroupKFold
    >>> cv = StratifiedGroupKFold(n_splits=5)
    >>> folds = list(cv.split(sample.data, sample.target, groups))

    No fold holds a duplicate of its training images, by construction:

    >>> from ckdlearn.model_selection import audit_cv
    >>> reports = audit_cv(sample.data, sample.target, groups, cv=cv)
    >>> [report.n_leaked_test for report in reports]
    [0, 0, 0, 0, 0]

    Every 8th slice of a scan no longer looks like its neighbour file; the
    grouping says it cannot be trusted:

    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     _, diagnostics = infer_scan_groups(
    ...         sample.images[::8], sample.filenames[::8], return_diagnostics=True)
    >>> diagnostics["reliable"], diagnostics["median_slices_per_group"]
    (False, 1.0)
    """
    if len(filenames) == 0 and np.ndim(images) == 3 and len(images) == 0:
        groups = np.zeros(0, dtype=np.int64)
        return (groups, _diagnose(groups, [], None)) if return_diagnostics else groups
    slices = check_images(images, name="images", require_image=True)
    if slices.shape[1] != 1:
        raise ValueError(
            "images must have shape (n_slices, height, width) or (n_slices, "
            f"height * width) of greyscale slices, got shape {np.shape(images)}."
        )
    filenames = [str(name) for name in filenames]
    if len(filenames) != len(slices):
        raise ValueError(
            f"images holds {len(slices)} slices but filenames has "
            f"{len(filenames)} names; pass one file name per slice, in the "
            "same order."
        )
    fingerprints = Fingerprints(
        slices, max_shift=max_shift, thumbnail_size=thumbnail_size, shifted=False
    )
    series = _cut_sequences(fingerprints.means, filenames, change_threshold, gap_change_threshold)
    exact, near, _ = duplicate_pairs_within(fingerprints, near_threshold=near_threshold)
    groups = _number_by_first_appearance(_merge(series, np.concatenate([exact, near])))
    if image_sizes is not None:
        image_sizes = np.asarray(image_sizes, dtype=np.int64).reshape(len(groups), -1)
    diagnostics = _diagnose(groups, filenames, image_sizes)
    if not diagnostics["reliable"]:
        warnings.warn(grouping_warning_message(diagnostics), ScanGroupingWarning,
                      stacklevel=external_stacklevel())
    return (groups, diagnostics) if return_diagnostics else groups


def grouping_warning_message(diagnostics):
    """The warning of an unreliable inferred grouping: what, why, what to do."""
    return (
        f"The {diagnostics['n_groups']} scan series inferred for {diagnostics['n_slices']} "
        "slices may not keep each scan whole: " + "; ".join(diagnostics["reasons"])
        + ". Grouped cross-validation on them can test on scans it trained on, and "
        "per-scan answers may pool unrelated slices. Pass the true groups where they "
        "are known (groups=..., or --groups FILE on the command line)."
    )


def _diagnose(groups, filenames, image_sizes):
    """Whether inferred groups can be trusted, and why not (JSON-ready)."""
    n_slices = len(groups)
    sizes_per_group = np.bincount(groups) if n_slices else np.zeros(0, dtype=np.int64)
    median_size = float(np.median(sizes_per_group)) if n_slices else 0.0
    keys = [_sequence_key(name) for name in filenames]
    by_sequence = {}
    for sequence, number in keys:
        if number is not None:
            by_sequence.setdefault(sequence, []).append(number)
    steps = np.concatenate(
        [np.diff(np.unique(numbers)) for numbers in by_sequence.values()] or [np.zeros(0)]
    )
    median_step = float(np.median(steps)) if len(steps) else None
    unnumbered = {}
    for sequence, number in keys:
        if number is None:
            unnumbered[sequence] = unnumbered.get(sequence, 0) + 1
    n_unnumbered = sum(unnumbered.values())
    reasons = []
    if n_slices >= MIN_MEDIAN_SLICES and median_size < MIN_MEDIAN_SLICES:
        reasons.append(
            f"the median series holds {median_size:g} slice(s) ({int((sizes_per_group == 1).sum())} "
            "of the series are single slices), as when slices are subsampled or the files "
            "come from unrelated scans"
        )
    if median_step is not None and median_step > MAX_MEDIAN_STEP:
        reasons.append(
            f"neighbouring file numbers are typically {median_step:g} apart (as when every "
            f"n-th slice is kept, n = {median_step:g}), so neighbouring files are not "
            "neighbouring slices and a scan's files need not look alike"
        )
    if any(count > 1 for count in unnumbered.values()):
        reasons.append(
            f"{n_unnumbered} file name(s) carry no slice number, so their order (by name) "
            "stands in for the slice order"
        )
    n_image_sizes = None
    if image_sizes is not None and n_slices:
        _, size_ids = np.unique(image_sizes, axis=0, return_inverse=True)
        size_ids = size_ids.ravel()
        n_image_sizes = int(size_ids.max()) + 1
        mixed = sum(
            len(np.unique(size_ids[groups == group])) > 1 for group in np.unique(groups)
        )
        if mixed:
            reasons.append(
                f"{mixed} series mix slices of different image sizes, which one scan's "
                "slices do not"
            )
    return {
        "source": "inferred",
        "reliable": not reasons,
        "reasons": reasons,
        "n_slices": int(n_slices),
        "n_groups": int(len(sizes_per_group)),
        "median_slices_per_group": median_size,
        "median_number_step": median_step,
        "n_unnumbered": int(n_unnumbered),
        "n_image_sizes": n_image_sizes,
    }


def _sequence_key(filename):
    """Return (sequence id, slice number or None) of one file name."""
    folder, _, name = filename.replace("\\", "/").rpartition("/")
    match = _SLICE_NUMBER.match(name)
    if match is None:
        return (folder, None, None), None
    prefix, number, suffix = match.groups()
    return (folder, prefix, suffix), int(number)


def _cut_sequences(thumbnails, filenames, change_threshold, gap_change_threshold):
    """Series labels from cuts between numbered neighbours."""
    keys = [_sequence_key(name) for name in filenames]
    # Sort by sequence, then number (unnumbered files by name) so that each
    # sequence is one contiguous run of neighbours.
    order = sorted(
        range(len(filenames)),
        key=lambda i: (
            keys[i][0][0],
            keys[i][0][1] is None,
            keys[i][0][1] or "",
            keys[i][0][2] or "",
            -1 if keys[i][1] is None else keys[i][1],
            filenames[i],
        ),
    )
    order = np.asarray(order)
    sequence = [keys[i][0] for i in order]
    numbers = np.array(
        [-1 if keys[i][1] is None else keys[i][1] for i in order], dtype=np.int64
    )
    distance = np.empty(max(len(order) - 1, 0), dtype=np.float32)
    # In chunks: gathering all neighbours at once would copy the thumbnails twice.
    for start in range(0, len(distance), 1024):
        stop = min(start + 1024, len(distance))
        later = thumbnails[order[start + 1 : stop + 1]]
        earlier = thumbnails[order[start:stop]]
        distance[start:stop] = np.abs(later - earlier).mean(axis=(1, 2))
    step = np.diff(numbers)
    same_sequence = np.array(
        [a == b for a, b in zip(sequence[1:], sequence[:-1])], dtype=bool
    )
    # Unnumbered files (number -1, step 0) count as consecutive, as does a
    # file name given twice.
    consecutive = step <= 1
    new_series = (
        ~same_sequence
        | (consecutive & (distance > change_threshold))
        | (~consecutive & (distance > gap_change_threshold))
    )
    labels_sorted = np.concatenate([[0], np.cumsum(new_series)])
    labels = np.empty(len(order), dtype=np.int64)
    labels[order] = labels_sorted
    return labels


def _merge(series, pairs):
    """Merge the series linked by any pair of slices (connected components)."""
    n_series = int(series.max()) + 1
    first, second = series[pairs[:, 0]], series[pairs[:, 1]]
    across = first != second
    links = coo_matrix(
        (np.ones(int(across.sum()), dtype=np.int8), (first[across], second[across])),
        shape=(n_series, n_series),
    )
    _, component = connected_components(links, directed=False)
    return component[series]


def _number_by_first_appearance(labels):
    """Renumber labels 0, 1, ... in order of first appearance."""
    _, first_index, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first_index), dtype=np.int64)
    rank[np.argsort(first_index, kind="stable")] = np.arange(len(first_index))
    return rank[inverse.ravel()]
