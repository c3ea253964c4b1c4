"""Helpers the test modules share: tiny synthetic images, a fast classifier,
and where the real data is."""

from pathlib import Path

import numpy as np
import pytest

from ckdlearn import CKDNetClassifier
from ckdlearn.datasets._local import local_data_folder, not_found_message

#: The repository's default folder of datasets (CI keeps them there);
#: CKDLEARN_DATA names another.
DEFAULT_DATA_HOME = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASET_NAME = "CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone"


def shared_root(name="ct-kidney"):
    """The local copy of a dataset (``ct-kidney/``), or None."""
    return local_data_folder(name, default=DEFAULT_DATA_HOME)


def skip_message(name="ct-kidney"):
    return f"real CT data not found: {not_found_message(name, default=DEFAULT_DATA_HOME)}"


SHARED_ROOT = shared_root()
REAL_DATA = SHARED_ROOT / DATASET_NAME if SHARED_ROOT is not None else None
requires_shared_data = pytest.mark.skipif(SHARED_ROOT is None, reason=skip_message())


def make_blob_images(n_per_class=12, size=16, n_classes=3, seed=0):
    """Noisy images whose class is a texture: stripes one way or the other,
    a checkerboard, or a bright central square.

    Returns flat float32 rows in [0, 1] and string labels, the way a loader
    would give them.
    """
    rng = np.random.RandomState(seed)
    rows, cols = np.mgrid[:size, :size]
    quarter = size // 4
    patterns = [
        (rows // 2) % 2,
        (cols // 2) % 2,
        ((rows // 2) + (cols // 2)) % 2,
        ((abs(rows - size / 2) < quarter) & (abs(cols - size / 2) < quarter)),
    ]
    names = np.array(["Cyst", "Normal", "Stone", "Tumor"])[:n_classes]
    images, labels = [], []
    for label, pattern in zip(names, patterns):
        for _ in range(n_per_class):
            image = 0.5 * pattern + 0.5 * rng.rand(size, size)
            images.append(image.astype(np.float32))
            labels.append(label)
    images = np.stack(images)
    return images.reshape(len(images), -1), np.array(labels)


def tiny_classifier(**params):
    """A classifier that trains in well under a second on the blob images:
    a 4-channel, 2-block network for 2 epochs, no augmentation, seeded."""
    defaults = dict(
        max_epochs=2,
        batch_size=16,
        module__width=4,
        module__depth=2,
        augment=None,
        random_state=0,
    )
    return CKDNetClassifier(**{**defaults, **params})
