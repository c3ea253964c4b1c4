"""Kidney CT slices as ``X, y, groups``: loaders, a shipped sample, a reader.

- :func:`load_ct_kidney` reads the public CT KIDNEY DATASET (or any folder
  of class folders of JPEG, PNG or DICOM slices) from disk.
- :func:`fetch_ct_kidney` downloads it from Kaggle first.
- :func:`load_ct_kidney_sample` returns a small real subset shipped with
  ckdlearn, for demos, docs and tests.
- :func:`read_images` reads a list of slice files into one array, and
  :func:`find_slice_files` lists the slice files of folders.
- :func:`load_pretrained` loads the reference model that ships with
  ckdlearn, trained on the complete data less the sample's scans.
- :func:`local_data_folder` finds a local copy named by ``CKDLEARN_DATA``.
- :func:`resolve_scan_groups` groups slice files by scan: from DICOM
  identifiers where the files carry them, else inferred.
"""

from ._ct_kidney import load_ct_kidney
from ._fetch import fetch_ct_kidney
from ._io import find_slice_files, read_images
from ._local import local_data_folder
from ._reference import load_pretrained, reference_model_info
from ._sample import load_ct_kidney_sample
from ._scan_groups import resolve_scan_groups

__all__ = [
    "fetch_ct_kidney",
    "find_slice_files",
    "load_ct_kidney",
    "load_ct_kidney_sample",
    "load_pretrained",
    "local_data_folder",
    "read_images",
    "reference_model_info",
    "resolve_scan_groups",
]
