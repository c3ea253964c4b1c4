"""DICOM CT slices to windowed intensities.

pydicom is an optional dependency (the ``dicom`` extra), imported only when
a DICOM file is read.
"""

import numpy as np

# Soft-tissue / abdomen window: kidneys, cysts, tumours and stones all fall
# inside [-160, 240] HU, air and dense bone saturate.
DEFAULT_WINDOW_LEVEL = 40.0
DEFAULT_WINDOW_WIDTH = 400.0


def _import_pydicom():
    try:
        import pydicom
    except ImportError as exc:
        raise ImportError(
            "Reading DICOM files needs pydicom, which is not installed. "
            "Install it with: pip install 'ckdlearn[dicom]' (or pip install pydicom)."
        ) from exc
    return pydicom


def _modality_lut():
    """pydicom's modality LUT (slope/intercept to HU) across versions."""
    try:  # pydicom >= 3
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut
    return apply_modality_lut


def read_dicom_hounsfield(path):
    """Read one single-frame greyscale DICOM slice in Hounsfield units.

    Parameters
    ----------
    path : str or path-like
        The DICOM file. Files without the 128-byte preamble, as some
        scanners export, are accepted.

    Returns
    -------
    hounsfield : ndarray of shape (rows, columns), dtype float32
        Stored values mapped through the modality LUT: ``RescaleSlope`` and
        ``RescaleIntercept`` (or a Modality LUT Sequence) give Hounsfield
        units for CT.

    Raises
    ------
    ImportError
        If pydicom is not installed.
    ValueError
        If the file holds no pixel data, several frames or colour samples.
    """
    pydicom = _import_pydicom()
    # force=True reads files lacking the "DICM" preamble; anything that is
    # not DICOM then fails the pixel-data check below with a clear reason.
    dataset = pydicom.dcmread(path, force=True)
    if "PixelData" not in dataset:
        raise ValueError("not a DICOM image (no pixel data element)")
    samples_per_pixel = int(dataset.get("SamplesPerPixel", 1))
    if samples_per_pixel != 1:
        raise ValueError(
            f"colour DICOM ({samples_per_pixel} samples per pixel); "
            "expected a greyscale CT slice"
        )
    n_frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if n_frames != 1:
        raise ValueError(
            f"multi-frame DICOM ({n_frames} frames); expected one slice per "
            "file - export the series as single-frame files"
        )
    stored = dataset.pixel_array
    hounsfield = _modality_lut()(stored, dataset)
    return np.asarray(hounsfield, dtype=np.float32)


def window(hounsfield, level=DEFAULT_WINDOW_LEVEL, width=DEFAULT_WINDOW_WIDTH):
    """Map Hounsfield units through a display window to [0, 1].

    Values below ``level - width / 2`` become 0, above ``level + width / 2``
    become 1, linearly in between.
    """
    low = level - width / 2
    windowed = (np.asarray(hounsfield, dtype=np.float32) - np.float32(low)) / np.float32(
        width
    )
    return np.clip(windowed, 0.0, 1.0, out=windowed)


#: The DICOM identifiers that group slices for splitting, most inclusive
#: first: a patient's scans are one group (they share anatomy).
GROUPING_TAGS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")


def read_dicom_group_key(path):
    """``(tag, value)`` of the most inclusive identifier a DICOM file carries.

    Reads the header only. Returns None where the file has none of
    :data:`GROUPING_TAGS` (or they are empty), or cannot be read.
    """
    pydicom = _import_pydicom()
    try:
        header = pydicom.dcmread(
            path, force=True, stop_before_pixels=True, specific_tags=list(GROUPING_TAGS)
        )
    except Exception:  # an unreadable header: the file's grouping is inferred instead
        return None
    for tag in GROUPING_TAGS:
        value = str(header.get(tag, "") or "").strip()
        if value:
            return tag, value
    return None
