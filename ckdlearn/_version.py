"""The package version, and the versions of what results depend on."""

__version__ = "0.1.0.dev0"


def library_versions():
    """Versions of ckdlearn, Python and the libraries a model depends on.

    Recorded in model files and reports so that a result can be traced to
    the software that produced it.

    Returns
    -------
    versions : dict of str to str

    Examples
    --------
    >>> from ckdlearn.utils import library_versions
    >>> sorted(library_versions())[:3]
    ['ckdlearn', 'grad-cam', 'imbalanced-learn']
    """
    import platform
    from importlib import metadata

    versions = {"ckdlearn": __version__, "python": platform.python_version()}
    for distribution in (
        "numpy", "torch", "scikit-learn", "imbalanced-learn", "skorch",
        "grad-cam", "safetensors",
    ):
        try:
            versions[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[distribution] = "not installed"
    return versions
