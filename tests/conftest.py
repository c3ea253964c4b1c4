"""Shared fixtures: tiny synthetic CT-like images and the real data folder."""

from pathlib import Path

import pytest

from helpers import make_blob_images

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


@pytest.fixture(scope="session")
def blob_data():
    return make_blob_images()
