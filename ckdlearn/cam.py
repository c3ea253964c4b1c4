"""Deprecated alias of :mod:`ckdlearn.explanation`.

The class activation maps, faithfulness scores, sanity checks and
localisation score moved to :mod:`ckdlearn.explanation` (one module per
idea); import them from there. This module will be removed in a future
release.
"""

import warnings

from .explanation import (  # noqa: F401
    CAM_METHODS,
    FAITHFULNESS_METRICS,
    compute_heatmaps,
    explain,
    faithfulness_scores,
    heatmap_energy_in_mask,
    randomisation_test,
)

__all__ = [
    "CAM_METHODS",
    "FAITHFULNESS_METRICS",
    "compute_heatmaps",
    "explain",
    "faithfulness_scores",
    "heatmap_energy_in_mask",
    "randomisation_test",
]

warnings.warn(
    "ckdlearn.cam is deprecated and will be removed in a future release; "
    "import its names from ckdlearn.explanation instead "
    "(e.g. from ckdlearn.explanation import compute_heatmaps).",
    FutureWarning,
    stacklevel=2,
)
