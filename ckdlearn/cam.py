"""Deprecated alias of :mod:`ckdlearn.explanation`.

The class activation maps, faithfulness scores, sanity checks and
localisation score moved to :mod:`ckdlearn.explanation` (one module per
idea); import them from there. This module will be removed in a future
release.
"""

import warnings

from . import explanation as _explanation
from .explanation import *  # noqa: F401,F403  (every public name, at its old path)

__all__ = list(_explanation.__all__)

warnings.warn(
    "ckdlearn.cam is deprecated and will be removed in a future release; "
    "import its names from ckdlearn.explanation instead "
    "(e.g. from ckdlearn.explanation import compute_heatmaps).",
    FutureWarning,
    stacklevel=2,
)
