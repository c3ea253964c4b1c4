"""The ``explain`` method of :class:`~ckdlearn.CKDNetClassifier`.

:class:`ExplainMixin` runs the CAM engine (:func:`compute_heatmaps`) and,
on request, :func:`faithfulness_scores` on the classifier's own network,
for the classes named in the classifier's labels.
"""

import numpy as np

from ._cam import compute_heatmaps
from ._faithfulness import faithfulness_scores

__all__ = ["ExplainMixin"]


class ExplainMixin:
    """Heatmaps of a fitted skorch classifier's predictions; mixed into CKDNetClassifier.

    It needs the classifier's ``to_images``, ``module_``, ``classes_``,
    ``batch_size``, ``device`` and its encoding of labels into class
    indices (``_encode_labels``).
    """

    def explain(
        self,
        X,
        *,
        method="gradcam",
        target=None,
        layer=None,
        batch_size=None,
        return_scores=False,
    ):
        """Class activation heatmaps for each image.

        Parameters
        ----------
        X : array-like
            Images in any layout :meth:`fit` accepts, of the training size.
        method : str, default="gradcam"
            One of :data:`ckdlearn.explanation.CAM_METHODS`: ``"gradcam"``,
            ``"gradcam++"``, ``"hirescam"``, ``"xgradcam"``,
            ``"layercam"``, ``"eigencam"``, ``"scorecam"``, ...
        target : label, array-like of labels or None, default=None
            The class to explain: None explains each image's predicted
            class; one label explains that class for every image; an
            array gives one label per image.
        layer : str, torch.nn.Module or None, default=None
            The layer whose activations are weighted: a module name from
            ``module_.named_modules()`` or a module. By default the
            network's ``cam_layer`` attribute, else its last convolution.
        batch_size : int or None, default=None
            Images per forward/backward pass; defaults to ``batch_size``.
        return_scores : bool, default=False
            Also return a faithfulness score per image (see
            :func:`ckdlearn.explanation.faithfulness_scores`).

        Returns
        -------
        heatmaps : ndarray of shape (n, H, W), dtype float32
            Values in [0, 1] at the input resolution.
        scores : ndarray of shape (n,), dtype float32
            Only when ``return_scores=True``.

        Raises
        ------
        ValueError
            For an unknown method, layer or target label, or malformed X.
        """
        images = self.to_images(X)
        class_indices = self._target_indices(target, len(images))
        kwargs = dict(
            method=method,
            layer=layer,
            batch_size=batch_size or self.batch_size,
            device=self.device,
        )
        heatmaps, class_indices = compute_heatmaps(
            self.module_, images, class_indices, **kwargs
        )
        if not return_scores:
            return heatmaps
        scores = faithfulness_scores(
            self.module_, images, class_indices, heatmaps,
            batch_size=kwargs["batch_size"], device=self.device,
        )
        return heatmaps, scores

    def _target_indices(self, target, n_images):
        """Class indices to explain: None means 'the predicted class'."""
        if target is None:
            return None
        targets = np.asarray(target)
        if targets.ndim == 0:
            targets = np.repeat(targets, n_images)
        elif targets.shape != (n_images,):
            raise ValueError(
                "target must be None, one label, or one label per image; got "
                f"{targets.shape[0] if targets.ndim == 1 else targets.shape} "
                f"targets for {n_images} images."
            )
        try:
            return self._encode_labels(targets)
        except (ValueError, TypeError):
            unknown = [t for t in np.unique(targets).tolist() if t not in self.classes_.tolist()]
            raise ValueError(
                f"Unknown target label(s) {unknown}; expected one of the "
                f"classes {self.classes_.tolist()}."
            ) from None
