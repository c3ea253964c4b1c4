"""Downloading the CT KIDNEY DATASET from Kaggle with kagglehub."""

import contextlib
import os
from pathlib import Path

from ._ct_kidney import load_ct_kidney
from ._layout import KAGGLE_URL

__all__ = ["fetch_ct_kidney"]

KAGGLE_HANDLE = "nazmul0087/ct-kidney-dataset-normal-cyst-tumor-and-stone"
# kagglehub reads its cache folder from this variable at each download.
_KAGGLEHUB_CACHE_VARIABLE = "KAGGLEHUB_CACHE"


def fetch_ct_kidney(data_home=None, *, version=None, force_download=False, **load_kwargs):
    """Download the CT KIDNEY DATASET from Kaggle (once), then load it.

    Needs the ``kaggle`` extra (``pip install 'ckdlearn[kaggle]'``) and, for
    the first download, internet access and Kaggle credentials (see the
    kagglehub documentation). Later calls reuse the cached copy.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Folder to cache the download in. ``None`` uses kagglehub's cache
        (``~/.cache/kagglehub``, or ``$KAGGLEHUB_CACHE``).

    version : int, default=None
        Kaggle version of the dataset. ``None`` asks Kaggle for the latest,
        which needs the network even when a copy is cached; pin a version
        (e.g. ``version=1``) for reproducible results and offline reuse.

    force_download : bool, default=False
        Download again even if a cached copy exists.

    **load_kwargs
        Passed to :func:`load_ct_kidney`: ``image_size``, ``classes``,
        ``return_X_y``, ``on_error``, ``n_jobs``, ``verbose``.

    Returns
    -------
    dataset : :class:`~sklearn.utils.Bunch` or tuple
        What :func:`load_ct_kidney` returns.

    Raises
    ------
    ImportError
        If kagglehub is not installed.
    ConnectionError
        If the download fails (offline, no credentials, Kaggle unavailable).

    See Also
    --------
    load_ct_kidney : Load a copy already on disk.
    load_ct_kidney_sample : A small subset shipped with ckdlearn, no download.

    Examples
    --------
    >>> from ckdlearn.datasets import fetch_ct_kidney
    >>> dataset = fetch_ct_kidney(version=1, image_size=64)  # doctest: +SKIP
    >>> dataset.images.shape  # doctest: +SKIP
    (12446, 64, 64)
    """
    try:
        import kagglehub
    except ImportError as exc:
        raise ImportError(
            "fetch_ct_kidney downloads with kagglehub, which is not installed. "
            "Install it with: pip install 'ckdlearn[kaggle]'. Or download the "
            f"dataset yourself from {KAGGLE_URL} and call load_ct_kidney(path)."
        ) from exc
    handle = KAGGLE_HANDLE if version is None else f"{KAGGLE_HANDLE}/versions/{int(version)}"
    cache = None if data_home is None else Path(data_home).expanduser()
    try:
        with _kagglehub_cache(cache):
            path = kagglehub.dataset_download(handle, force_download=force_download)
    except Exception as exc:  # kagglehub raises many types; all mean "no data"
        raise ConnectionError(
            f"Could not download the CT KIDNEY DATASET ({handle}) from Kaggle: "
            f"{type(exc).__name__}: {exc}. Check the internet connection and "
            "your Kaggle credentials (kagglehub.login()), or download it from "
            f"{KAGGLE_URL} and call load_ct_kidney(path)."
        ) from exc
    return load_ct_kidney(path, **load_kwargs)


@contextlib.contextmanager
def _kagglehub_cache(folder):
    """Point kagglehub's cache at ``folder`` for the duration of a download."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get(_KAGGLEHUB_CACHE_VARIABLE)
    os.environ[_KAGGLEHUB_CACHE_VARIABLE] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            del os.environ[_KAGGLEHUB_CACHE_VARIABLE]
        else:
            os.environ[_KAGGLEHUB_CACHE_VARIABLE] = previous
