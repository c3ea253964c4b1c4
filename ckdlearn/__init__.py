"""ckdlearn: explainable CNN classification of kidney CT slices, the scikit-learn way.

The public names:

* :class:`CKDNetClassifier`, the scikit-learn classifier;
* :func:`explain`, Grad-CAM heatmaps for a fitted classifier or pipeline;
* :class:`CKDNet` and :class:`PaperCNN`, the networks;
* :func:`save` and :func:`load`, model files that load without pickle;
* :func:`load_pretrained`, the reference model that ships with ckdlearn.

Submodules: :mod:`ckdlearn.datasets`, :mod:`ckdlearn.model_selection`,
:mod:`ckdlearn.explanation`, :mod:`ckdlearn.metrics`, :mod:`ckdlearn.plotting`,
:mod:`ckdlearn.persistence`. The ``ckdlearn`` command is an application
beside the library, :mod:`ckdlearn.app`, which the library never imports.

The names are imported on first use, so ``import ckdlearn.datasets`` or
``ckdlearn.metrics`` does not pay for loading torch.
"""

from importlib import import_module

from ._version import __version__

_PUBLIC = {
    "CKDNet": ".nets",
    "CKDNetClassifier": ".estimator",
    "ModelFileError": ".persistence",
    "PaperCNN": ".nets",
    "explain": ".explanation",
    "load": ".persistence",
    "load_pretrained": ".datasets",
    "save": ".persistence",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'ckdlearn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
