"""Finding a local copy of a dataset through the ``CKDLEARN_DATA`` variable."""

import os
from pathlib import Path

#: The environment variable naming the folder that holds local datasets.
DATA_VARIABLE = "CKDLEARN_DATA"


def local_data_folder(name="ct-kidney", *, default=None):
    """The folder of a local copy of a dataset, or None where there is none.

    ``CKDLEARN_DATA`` names a folder holding datasets, one subfolder each
    (``ct-kidney/``, ``ct-kidney-full/``: the layout of the repository's
    ``../shared/data``); where it is not set, ``default`` is that folder.
    Tests, benchmarks and examples find the real data this way.

    Parameters
    ----------
    name : str, default="ct-kidney"
        The dataset's subfolder, e.g. ``"ct-kidney"`` (the 3,879-slice
        development subset) or ``"ct-kidney-full"``.

    default : str or path-like, default=None
        The folder of datasets used where ``CKDLEARN_DATA`` is not set.

    Returns
    -------
    folder : pathlib.Path or None
        ``<CKDLEARN_DATA or default>/<name>`` if it is a folder, else None;
        pass it to :func:`load_ct_kidney`.

    Examples
    --------
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> from ckdlearn.datasets import local_data_folder
    >>> home = Path(tempfile.mkdtemp())
    >>> (home / "ct-kidney").mkdir()
    >>> os.environ["CKDLEARN_DATA"] = str(home)
    >>> local_data_folder("ct-kidney") == home / "ct-kidney"
    True
    >>> local_data_folder("ct-kidney-full") is None
    True
    >>> del os.environ["CKDLEARN_DATA"]
    """
    home = os.environ.get(DATA_VARIABLE) or default
    if not home:
        return None
    folder = Path(home).expanduser() / name
    return folder if folder.is_dir() else None


def not_found_message(name="ct-kidney", *, default=None):
    """Where a dataset was looked for, and how to point ``CKDLEARN_DATA`` to it
    (the skip message of tests and benchmarks)."""
    home = os.environ.get(DATA_VARIABLE)
    if home:
        looked = f"no {name}/ in {home} (from {DATA_VARIABLE})"
    elif default:
        looked = f"no {name}/ in {default} ({DATA_VARIABLE} is not set)"
    else:
        looked = f"{DATA_VARIABLE} is not set"
    return (
        f"{looked}; set {DATA_VARIABLE} to the folder holding {name}/, e.g. "
        f"export {DATA_VARIABLE}=/path/to/shared/data"
    )
