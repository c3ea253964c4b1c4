"""Class activation maps for CT slice classifiers, and how far to trust them.

Named ``explanation``, not ``explain``: :func:`ckdlearn.explain` is the function users call.

The package wraps `pytorch-grad-cam <https://github.com/jacobgil/pytorch-grad-cam>`_
so that explaining a fitted network is one call that leaves the network
exactly as it found it. One module per idea:

* the CAM engine: :func:`compute_heatmaps` runs a CAM method
  (:data:`CAM_METHODS`) over a batch of images and returns one heatmap per
  image, in [0, 1], at the input resolution;
* faithfulness: :func:`faithfulness_scores` checks a heatmap against the
  network it claims to explain, by removing the pixels it marks and
  watching the prediction (pytorch-grad-cam's ROAD and confidence-change
  metrics);
* sanity checks: :func:`randomisation_test` checks that the heatmaps
  depend on what the network learned: they should change when its weights
  are randomised, or when it is trained on shuffled labels (Adebayo et
  al., 2018);
* localisation: :func:`heatmap_energy_in_mask` scores a heatmap against a
  known region (the energy-based "pointing game");
* :func:`explain` explains a fitted :class:`~ckdlearn.CKDNetClassifier`,
  or a pipeline that ends in one, on the raw input the pipeline takes.

Every function here puts the network in eval mode, stops gradients from
reaching its parameters and releases every hook it registers, also when
it raises: weights, buffers, train/eval modes and ``requires_grad`` flags
are the same afterwards, and no parameter is left with a ``.grad``.
"""

from ._cam import CAM_METHODS, compute_heatmaps
from ._classifier import ExplainMixin
from ._explain import explain
from ._faithfulness import FAITHFULNESS_METRICS, faithfulness_scores
from ._localisation import heatmap_energy_in_mask
from ._sanity import randomisation_test

__all__ = [
    "CAM_METHODS",
    "ExplainMixin",
    "FAITHFULNESS_METRICS",
    "compute_heatmaps",
    "explain",
    "faithfulness_scores",
    "heatmap_energy_in_mask",
    "randomisation_test",
]
