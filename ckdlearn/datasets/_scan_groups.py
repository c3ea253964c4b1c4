"""Scan groups of slice files: DICOM identifiers first, inferred groups for the rest."""

import numpy as np

from ..model_selection import infer_scan_groups
from ._io import is_dicom_file

__all__ = ["resolve_scan_groups"]


def resolve_scan_groups(images, filenames, *, paths=None, image_sizes=None):
    """Scan groups of slice files, from DICOM identifiers where the files carry them.

    DICOM slices are grouped by ``PatientID`` (else ``StudyInstanceUID``,
    else ``SeriesInstanceUID``): a patient's scans are one group. The other
    slices get :func:`~ckdlearn.model_selection.infer_scan_groups`, which warns when its grouping is
    unreliable. This is how :func:`load_ct_kidney` and
    ``ckdlearn predict`` group the slices they read.

    Parameters
    ----------
    images : array-like of shape (n_slices, height, width) or (n_slices, height * width)
        The slices, as for :func:`~ckdlearn.model_selection.infer_scan_groups`.
    filenames : sequence of str or path-like of length n_slices
        The names :func:`~ckdlearn.model_selection.infer_scan_groups` reads the numbering from.
    paths : sequence of str or path-like, default=None
        The files, read for DICOM identifiers; ``filenames`` when None.
    image_sizes : array-like of shape (n_slices, 2), default=None
        The slices' sizes on disk, as for :func:`~ckdlearn.model_selection.infer_scan_groups`.

    Returns
    -------
    groups : ndarray of shape (n_slices,), dtype int64
        Group ids, numbered by first appearance.
    sources : ndarray of shape (n_slices,), dtype str
        Where each slice's group came from: ``"dicom:PatientID"`` (or
        ``"dicom:StudyInstanceUID"``, ``"dicom:SeriesInstanceUID"``) or
        ``"inferred"``.
    diagnostics : dict
        JSON-ready: ``source`` (slices per source), ``reliable`` and
        ``reasons`` (of the inferred part), ``n_slices``, ``n_groups``, and
        ``inferred`` (the diagnostics of :func:`~ckdlearn.model_selection.infer_scan_groups`, None
        where no slice was inferred).

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn.datasets import resolve_scan_groups
    >>> rng = np.random.RandomState(0)
    >>> scans = [rng.rand(16, 16) for _ in range(2)]
    >>> images = np.stack([scan + 0.001 * i for scan in scans for i in range(6)])
    >>> names = [f"Cyst/Cyst- ({i}).jpg" for i in range(1, 13)]
    >>> groups, sources, diagnostics = resolve_scan_groups(images, names)
    >>> groups.tolist(), set(sources.tolist())
    ([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1], {'inferred'})
    """
    filenames = [str(name) for name in filenames]
    paths = filenames if paths is None else [str(path) for path in paths]
    keys = [None] * len(paths)
    dicom = [i for i, path in enumerate(paths) if is_dicom_file(path)]
    if dicom:
        from ._dicom import read_dicom_group_key

        for i in dicom:
            keys[i] = read_dicom_group_key(paths[i])
    inferred = np.array([key is None for key in keys], dtype=bool)
    sources = np.array(
        ["inferred" if key is None else f"dicom:{key[0]}" for key in keys], dtype=object
    ).astype(str)
    labels = np.empty(len(paths), dtype=object)
    diagnostics = None
    if inferred.any():
        where = np.flatnonzero(inferred)
        if len(where) < len(paths):  # a copy of the inferred rows only where needed
            images = np.asarray(images)[where]
            image_sizes = None if image_sizes is None else np.asarray(image_sizes)[where]
        part, diagnostics = infer_scan_groups(
            images, [filenames[i] for i in where], image_sizes=image_sizes,
            return_diagnostics=True,
        )
        labels[where] = [("inferred", int(g)) for g in part]
    for i, key in enumerate(keys):
        if key is not None:
            labels[i] = key
    codes = {}
    groups = np.array([codes.setdefault(label, len(codes)) for label in labels], dtype=np.int64)
    names, counts = np.unique(sources, return_counts=True)
    return groups, sources, {
        "source": {str(name): int(count) for name, count in zip(names, counts)},
        "reliable": diagnostics is None or diagnostics["reliable"],
        "reasons": [] if diagnostics is None else diagnostics["reasons"],
        "n_slices": int(len(paths)),
        "n_groups": int(len(codes)),
        "inferred": diagnostics,
    }
