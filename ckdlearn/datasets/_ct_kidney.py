"""Loading the CT KIDNEY DATASET (or any folder of class folders) as X, y, groups."""

import warnings

import numpy as np

from ._scan_groups import resolve_scan_groups
from ..preprocessing import conversion
from ._bunch import load_descr, make_dataset
from ._io import decode_into, drop_rows, warn_skipped
from ._layout import CSV_NAME, list_dataset_files
from ._validation import check_loader_params
from ..utils._stack import external_stacklevel

__all__ = ["load_ct_kidney"]


def load_ct_kidney(
    root,
    *,
    image_size=96,
    domain="clahe",
    input_domain="raw",
    classes=None,
    return_X_y=False,
    on_error="raise",
    n_jobs=None,
    verbose=None,
):
    """Load the CT KIDNEY DATASET (Cyst / Normal / Stone / Tumor) from disk.

    =================   ======================================
    Classes             4 (Cyst, Normal, Stone, Tumor)
    Samples total       12,446 slices (Kaggle release)
    Samples per class   3,709 / 5,077 / 1,377 / 2,283
    Dimensionality      image_size * image_size
    Features            float32 greyscale intensities in [0, 1]
    Groups              inferred scan-series ids
    =================   ======================================

    Also reads any folder of class folders holding JPEG, PNG or DICOM
    slices (e.g. your own DICOM series, one file per slice).

    Parameters
    ----------
    root : str or path-like
        The dataset folder (holding ``Cyst/``, ``Normal/``, ``Stone/``,
        ``Tumor/`` and optionally ``kidneyData.csv``), the folder above it,
        or the outer folder of Kaggle's doubly nested download.

    image_size : int, default=96
        Side of the square output images in pixels. 96 is the size the
        default :class:`~ckdlearn.CKDNetClassifier` recipe was measured at
        (``ckdlearn train`` uses it too); larger slices cost time and,
        measured on unseen scan series, did not help.

    domain : {"clahe", "raw"}, default="clahe"
        The domain of the returned slices (:mod:`ckdlearn.preprocessing`):
        contrast-equalised as the complete CT KIDNEY DATASET is, the domain
        of the default recipe and of the reference model, or as the files
        hold them.

    input_domain : {"raw", "clahe"}, default="raw"
        The domain of the files: ``"raw"`` for slices as exported (the
        Kaggle download, your own JPEG, PNG or DICOM files), ``"clahe"``
        for slices already equalised (such as the complete data's
        ``ct-kidney-full`` copy), which are then never equalised twice.

    classes : list of str, default=None
        Classes to load, e.g. ``["Cyst", "Tumor"]``; ``None`` loads all,
        with a warning naming the classes found when one of them is not
        Cyst, Normal, Stone or Tumor (a misspelt ``Tumour/`` folder would
        otherwise become a fifth class). ``target`` counts over the loaded
        classes only.

    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    on_error : {'raise', 'skip'}, default='raise'
        What to do with an unreadable, truncated or non-image file: raise an
        error naming it and why, or leave it out, warn, and list it in
        ``skipped``.

    n_jobs : int, default=None
        Threads decoding in parallel. ``None`` means 1 unless in a
        :func:`joblib.parallel_config` context; ``-1`` means all CPUs.

    verbose : bool, default=None
        Progress bar on stderr. ``None`` shows it only on a terminal and only
        once the load has lasted a second; ``True`` always; ``False`` never.

    Returns
    -------
    dataset : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the fields:

        data : ndarray of shape (n_slices, image_size * image_size), float32
            Flattened slices in [0, 1], the input of a SMOTE pipeline. A
            view of ``images``: both share one buffer.
        images : ndarray of shape (n_slices, image_size, image_size), float32
            The slices.
        target : ndarray of shape (n_slices,), int64
            Class index of each slice into ``target_names``.
        target_names : ndarray of str
            Class names, e.g. ``['Cyst', 'Normal', 'Stone', 'Tumor']``.
        filenames : ndarray of str
            Path of each slice relative to ``root``, e.g.
            ``'Cyst/Cyst- (1).jpg'``.
        groups : ndarray of shape (n_slices,), int64
            Scan-series id of each slice; pass it to
            ``StratifiedGroupKFold``. DICOM slices are grouped by
            ``PatientID`` (else ``StudyInstanceUID``, else
            ``SeriesInstanceUID``), so a patient's scans are one group;
            other slices by :func:`ckdlearn.model_selection.infer_scan_groups`
            with its default thresholds, which warns
            (:class:`~ckdlearn.model_selection.ScanGroupingWarning`) where
            the inference is unreliable.
        groups_source : ndarray of str
            Where each slice's group came from: ``"dicom:PatientID"``,
            ``"dicom:StudyInstanceUID"``, ``"dicom:SeriesInstanceUID"`` or
            ``"inferred"``.
        groups_diagnostics : dict
            JSON-ready: ``source`` (slices per source), ``reliable``,
            ``reasons`` (why the inferred groups may not keep scans whole),
            ``n_slices``, ``n_groups`` and ``inferred`` (the diagnostics of
            :func:`~ckdlearn.model_selection.infer_scan_groups`).
        skipped : list of (str, str)
            ``(relative path, reason)`` of every file left out: rows of
            ``kidneyData.csv`` without a file, and unreadable files with
            ``on_error='skip'``.
        root : str
            The dataset folder that was found (holding the class folders).
        domain : str
            The domain of ``images`` (``"clahe"`` or ``"raw"``).
        DESCR : str
            Description of the dataset, its source and licence.

    (data, target) : tuple if ``return_X_y`` is True

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist, or a file vanished and
        ``on_error='raise'``.
    ValueError
        If no class folders are found, a class folder is empty, a class in
        ``classes`` does not exist, ``kidneyData.csv`` disagrees with the
        folders, a file cannot be read with ``on_error='raise'``, or a
        parameter is invalid.

    See Also
    --------
    fetch_ct_kidney : Download the dataset from Kaggle, then load it.
    load_ct_kidney_sample : A small subset shipped with ckdlearn.
    read_images : Read a list of slice files.

    Notes
    -----
    With ``kidneyData.csv`` present, the files it lists are loaded and
    labelled by it; rows whose file is missing are reported in ``skipped``,
    and slice files it does not list are left out with a warning. Without
    it, every slice file in the class folders is loaded. Either way slices
    are ordered by class, then by file name with numbers in numeric order,
    so the order does not depend on the file system or the CSV.

    JPEG slices are decoded directly at reduced scale (DCT scaling), which
    makes loading several times faster than decoding full images and
    resizing. DICOM slices are converted to Hounsfield units and shown
    through the soft-tissue window (level 40, width 400); use
    :func:`read_images` for another window.

    Examples
    --------
    Write the shipped sample as a folder of class folders, then load it:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from ckdlearn.datasets import load_ct_kidney, load_ct_kidney_sample
    >>> sample = load_ct_kidney_sample()
    >>> root = Path(tempfile.mkdtemp())
    >>> for image, name in zip(sample.images, sample.filenames):
    ...     (root / name).parent.mkdir(exist_ok=True)
    ...     Image.fromarray((image * 255).round().astype("uint8")).save(root / name)
    >>> dataset = load_ct_kidney(root, image_size=32)
    >>> dataset.target_names.tolist()
    ['Cyst', 'Normal', 'Stone', 'Tumor']
    >>> dataset.data.shape[1], dataset.images.shape[1:]
    (1024, (32, 32))
    >>> X, y, groups = dataset.data, dataset.target, dataset.groups
    """
    image_size = check_loader_params(
        "load_ct_kidney", image_size=image_size, on_error=on_error, verbose=verbose
    )
    step = conversion(input_domain, domain)
    files = list_dataset_files(root, classes)
    if files.unlisted:
        warnings.warn(
            f"{len(files.unlisted)} slice file(s) in {files.root} are not listed in "
            f"{files.csv_path} and were not loaded (e.g. {files.unlisted[0]!r}). "
            f"Add them to {CSV_NAME}, or delete the CSV to load every file in "
            "the class folders.",
            UserWarning,
            stacklevel=external_stacklevel(),
        )

    n_slices = len(files.relative_paths)
    images = np.empty((n_slices, image_size, image_size), dtype=np.float32)
    sizes = np.zeros((n_slices, 2), dtype=np.int64)
    paths = [str(files.root / relative) for relative in files.relative_paths]
    failures = decode_into(
        paths, images, on_error=on_error, n_jobs=n_jobs, verbose=verbose, sizes=sizes,
        preprocessing=step,
    )
    failed = [index for index, _, _ in failures]
    images = drop_rows(images, failed)
    keep = np.ones(n_slices, dtype=bool)
    keep[failed] = False
    filenames = [name for name, kept in zip(files.relative_paths, keep) if kept]
    target = files.target[keep]

    skipped = files.missing + [
        (files.relative_paths[index], reason) for index, _, reason in failures
    ]
    if skipped:
        warn_skipped(skipped, root=files.root)

    # (data, target) callers have no use for the groups: skip inferring them.
    groups = sources = diagnostics = None
    if not return_X_y:
        groups, sources, diagnostics = resolve_scan_groups(
            images, filenames, paths=[p for p, kept in zip(paths, keep) if kept],
            image_sizes=sizes[keep],
        )
    return make_dataset(
        images,
        target,
        files.class_names,
        filenames,
        groups,
        _describe(files, image_size, target) + load_descr("ct_kidney.rst"),
        skipped=skipped,
        root=str(files.root),
        domain=domain,
        return_X_y=return_X_y,
        groups_source=sources,
        groups_diagnostics=diagnostics,
    )


def _describe(files, image_size, target):
    """A header saying what this call loaded, above the dataset's description."""
    counts = np.bincount(target, minlength=len(files.class_names))
    per_class = ", ".join(
        f"{name} {count:,}" for name, count in zip(files.class_names, counts)
    )
    if files.csv_path is not None:
        source = f"labels from {files.csv_path.name}"
    else:
        source = "labels from class folders"
    return (
        f"Loaded {len(target):,} slices at {image_size}x{image_size} px from "
        f"{files.root} ({source}): {per_class}.\n\n"
    )
