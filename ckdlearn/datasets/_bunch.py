"""The one shape every ckdlearn dataset loader returns."""

from importlib import resources

import numpy as np
from sklearn.utils import Bunch


def load_descr(file_name):
    """Text of a description shipped in ``ckdlearn/datasets/data``."""
    return (resources.files("ckdlearn.datasets") / "data" / file_name).read_text(
        encoding="utf-8"
    )


def make_dataset(
    images, target, target_names, filenames, groups, descr, *, skipped, root, domain,
    return_X_y, groups_source=None, groups_diagnostics=None,
):
    """Bunch (or ``(data, target)``) with ``data`` a flat view of ``images``."""
    # A reshape of a C-contiguous stack is a view: data and images share one
    # buffer, so the dataset costs its size once.
    data = images.reshape(len(images), images.shape[1] * images.shape[2])
    if return_X_y:
        return data, target
    return Bunch(
        data=data,
        images=images,
        target=target,
        target_names=np.asarray(target_names, dtype=str),
        filenames=np.asarray(filenames, dtype=str),
        groups=groups,
        groups_source=groups_source,
        groups_diagnostics=groups_diagnostics,
        skipped=list(skipped),
        root=root,
        domain=domain,
        DESCR=descr,
    )
