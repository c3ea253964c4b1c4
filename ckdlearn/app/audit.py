"""How much a split leaks: scan-series folds beside random slice folds, on one folder."""

import numpy as np

from .inputs import load_labelled
from .progress import silent

__all__ = ["audit_folder"]


def _fold_row(report):
    return {
        "n_train": int(report.n_train),
        "n_test": int(report.n_test),
        "n_exact": int(report.n_exact),
        "n_near": int(report.n_near),
        "leaked_fraction": float(report.leaked_fraction),
    }


def audit_folder(data, *, image_size=64, folds=5, on_error="raise", progress=silent, groups=None):
    """Audit a labelled folder for duplicate slices across splits.

    Splits it into ``folds`` folds twice, by scan series
    (``StratifiedGroupKFold``; the loader's groups, or those of ``groups``,
    a CSV of ``filename,group`` rows) and at random (``KFold``), and counts
    the test images with an exact or near duplicate in training.

    Returns
    -------
    summary : dict
        ``n_images``, ``n_scan_series``, ``scan_groups`` (where the series
        came from, and whether the inferred ones are reliable), and per
        fold of each split
        (``by_scan_series``, ``random_slices``): ``n_train``, ``n_test``,
        ``n_exact``, ``n_near``, ``leaked_fraction``. JSON-ready.
    """
    from sklearn.model_selection import KFold, StratifiedGroupKFold

    from ..model_selection import audit_cv

    # Duplicates are found among the files as they are: no domain step.
    dataset = load_labelled(data, image_size, on_error, progress, groups=groups, domain="raw")
    X, y, groups = dataset.data, dataset.target, dataset.groups
    progress("auditing splits ...")
    by_series = audit_cv(X, y, groups, cv=StratifiedGroupKFold(folds))
    at_random = audit_cv(X, y, cv=KFold(folds, shuffle=True, random_state=0))
    return {
        "n_images": int(len(X)),
        "n_scan_series": int(len(np.unique(groups))),
        "scan_groups": dataset.groups_diagnostics,
        "by_scan_series": [_fold_row(r) for r in by_series],
        "random_slices": [_fold_row(r) for r in at_random],
    }
