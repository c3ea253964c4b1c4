"""ckdlearn: explainable CNN classification of kidney CT slices, the scikit-learn way.

The public names:

* :class:`CKDNetClassifier`, the scikit-learn classifier;
* :func:`explain`, Grad-CAM heatmaps for a fitted classifier or pipeline;
* :class:`CKDNet` and :class:`PaperCNN`, the networks.

Submodules: :mod:`ckdlearn.datasets`, :mod:`ckdlearn.model_selection`,
:mod:`ckdlearn.metrics`, :mod:`ckdlearn.plotting`.
"""

from ._version import __version__
from .estimator import CKDNetClassifier
from .explain import explain
from .nets import CKDNet, PaperCNN
from .persistence import load, save

__all__ = ["CKDNet", "CKDNetClassifier", "PaperCNN", "__version__", "explain", "load", "save"]
