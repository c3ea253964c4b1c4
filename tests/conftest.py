"""Shared fixtures: tiny synthetic CT-like images and the real data folder."""

from pathlib import Path

import numpy as np
import pytest

REAL_DATA = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "ct-kidney"
    / "CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone"
)



@pytest.fixture(scope="session")
def real_data_root():
    """The shared real CT KIDNEY folder; skips the test where it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real CT data not found at {REAL_DATA}")
    return REAL_DATA


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


@pytest.fixture(scope="session")
def blob_data():
    return make_blob_images()
