"""Deprecated alias of :mod:`ckdlearn.explanation`.

The class activation maps, faithfulness scores, sanity checks and
localisation score moved to :mod:`ckdlearn.explanation` (one module per
idea); import them from there. This module will be removed in a future
release.
"""

from . import explanation as _explanation
from .explanation import *  # noqa: F401,F403  (every public name, at its old path)
from .utils.deprecation import warn_moved

__all__ = list(_explanation.__all__)

warn_moved("ckdlearn.cam", "ckdlearn.explanation")
