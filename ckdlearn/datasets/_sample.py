"""The small real subset of the CT KIDNEY DATASET shipped inside ckdlearn."""

from importlib import resources

import numpy as np

from ._bunch import load_descr, make_dataset
from ._io import resize_float
from ._layout import select_classes
from ._validation import check_loader_params

__all__ = ["load_ct_kidney_sample"]

SAMPLE_FILE = "ct_kidney_sample.npz"


def load_ct_kidney_sample(*, image_size=64, classes=None, return_X_y=False):
    """Load the small CT KIDNEY sample shipped with ckdlearn.

    Sixteen scan groups of the complete CT KIDNEY DATASET, four of each
    class, each as a run of at most 30 consecutive slices from its middle,
    in the dataset's CLAHE domain (:mod:`ckdlearn.preprocessing`), stored
    at 96 x 96 pixels. They were drawn before the reference model was
    trained and left out of its training data, so the reference model
    (:func:`load_pretrained`) is scored on the sample honestly: on scans it
    never saw. No download.

    =================   ======================================
    Classes             4 (Cyst, Normal, Stone, Tumor)
    Samples total       434 (107 / 120 / 99 / 108)
    Series per class    4 / 4 / 4 / 4
    Dimensionality      image_size * image_size
    Features            float32 greyscale intensities in [0, 1]
    Domain              ``"clahe"``
    =================   ======================================

    Parameters
    ----------
    image_size : int, default=64
        Side of the square output images in pixels. The sample is stored at
        96 px; other sizes are resized from it (area-averaged when
        shrinking), so larger sizes add no detail.

    classes : list of str, default=None
        Classes to load, e.g. ``["Cyst", "Tumor"]``; ``None`` loads all.

    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    dataset : :class:`~sklearn.utils.Bunch`
        The fields of :func:`load_ct_kidney`: ``data`` (a flat view of
        ``images``), ``images``, ``target``, ``target_names``,
        ``filenames`` (the slices' names in the original dataset),
        ``groups`` (scan-series ids inferred on the full data),
        ``groups_source`` (``"inferred"``), ``groups_diagnostics``, ``skipped``
        (always empty), ``root`` (``None``: the images live in the package),
        ``domain`` (``"clahe"``) and ``DESCR``.

    (data, target) : tuple if ``return_X_y`` is True

    Raises
    ------
    ValueError
        If ``image_size`` is not a positive integer or a class in
        ``classes`` does not exist.

    See Also
    --------
    load_ct_kidney : Load the full dataset from disk.

    Notes
    -----
    The images are real CT slices, shared under CC BY 4.0 by Islam M. N.
    et al. (Scientific Reports 12:11440, 2022); see ``DESCR`` and
    ``ckdlearn/datasets/data/ATTRIBUTION.md``. The script
    ``tools/make_sample.py`` rebuilds the sample from the dataset.

    Examples
    --------
    >>> from sklearn.model_selection import StratifiedGroupKFold
    >>> from ckdlearn.datasets import load_ct_kidney_sample
    >>> sample = load_ct_kidney_sample()
    >>> sample.images.shape[1:], sample.data.dtype
    ((64, 64), dtype('float32'))
    >>> sample.target_names.tolist()
    ['Cyst', 'Normal', 'Stone', 'Tumor']
    >>> cv = StratifiedGroupKFold(n_splits=4)
    >>> folds = list(cv.split(sample.data, sample.target, sample.groups))
    >>> X, y = load_ct_kidney_sample(image_size=32, return_X_y=True)
    >>> X.shape[1]
    1024
    """
    image_size = check_loader_params("load_ct_kidney_sample", image_size=image_size)
    resource = resources.files("ckdlearn.datasets") / "data" / SAMPLE_FILE
    with resource.open("rb") as handle, np.load(handle, allow_pickle=False) as archive:
        stored = archive["images"]
        target = archive["target"].astype(np.int64)
        all_names = [str(name) for name in archive["target_names"]]
        filenames = archive["filenames"].astype(str)
        groups = archive["groups"].astype(np.int64)
        domain = str(archive["domain"])

    names = select_classes(all_names, classes, "the classes of the shipped sample")
    keep = np.isin(target, [all_names.index(name) for name in names])
    stored, filenames, groups = stored[keep], filenames[keep], groups[keep]
    target = np.searchsorted([all_names.index(name) for name in names], target[keep])
    # Keep ids 0, 1, ... after a class subset, as load_ct_kidney would.
    _, groups = np.unique(groups, return_inverse=True)

    images = np.empty((len(stored), image_size, image_size), dtype=np.float32)
    for row, pixels in zip(images, stored):
        pixels = pixels / np.float32(255)
        row[...] = resize_float(pixels.astype(np.float32), image_size)

    return make_dataset(
        images,
        target,
        names,
        filenames,
        groups.astype(np.int64),
        load_descr("ct_kidney_sample.rst") + "\n" + load_descr("ct_kidney.rst"),
        skipped=[],
        root=None,
        domain=domain,
        return_X_y=return_X_y,
        # Inferred on the full data, where every series is whole.
        groups_source=np.full(len(groups), "inferred"),
        groups_diagnostics={
            "source": {"inferred": int(len(groups))}, "reliable": True, "reasons": [],
            "n_slices": int(len(groups)), "n_groups": int(len(np.unique(groups))),
            "inferred": None,
        },
    )
