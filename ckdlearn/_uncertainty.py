"""How sure :class:`~ckdlearn.CKDNetClassifier` is: per slice and per scan series.

:class:`UncertaintyMixin` adds the network's penultimate features
(``transform_features``), an uncertainty score per image
(``predict_uncertainty``) and one answer per scan series
(``predict_series``, with :func:`ckdlearn.series.aggregate_series`).
"""

import numpy as np
import torch

from .metrics import uncertainty_from_proba
from .series import aggregate_series

__all__ = ["UNCERTAINTY_METHODS", "UncertaintyMixin"]

#: Uncertainty scores of :meth:`CKDNetClassifier.predict_uncertainty`.
UNCERTAINTY_METHODS = ("entropy", "margin", "knn")
# Nearest training features the ``knn`` score averages over.
_KNN_NEIGHBOURS = 10


class UncertaintyMixin:
    """Uncertainty and scan-series answers of a fitted classifier; mixed into CKDNetClassifier.

    It needs the classifier's ``to_images``, ``forward``, ``predict_proba``,
    ``module_``, ``classes_`` and, for ``"knn"``, ``train_features_``.
    """

    def transform_features(self, X):
        """The network's penultimate features of each image, scaled to unit length.

        The input of the network's last linear layer: what the classifier
        head sees.

        Parameters
        ----------
        X : array-like
            Images in any layout :meth:`fit` accepts, of the training size.

        Returns
        -------
        features : ndarray of shape (n, n_features), dtype float32
        """
        images = self.to_images(X)
        linear = [m for m in self.module_.modules() if isinstance(m, torch.nn.Linear)]
        if not linear:
            raise ValueError(
                f"{type(self.module_).__name__} has no torch.nn.Linear layer whose input "
                "could serve as features."
            )
        captured = []
        handle = linear[-1].register_forward_pre_hook(
            lambda module, args: captured.append(args[0].detach().float().cpu())
        )
        try:
            self.forward(images, training=False)
        finally:
            handle.remove()
        features = torch.cat(captured).flatten(1).numpy()
        return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)

    def predict_uncertainty(self, X, *, method="entropy"):
        """How unsure the model is about each image: higher is less sure.

        Parameters
        ----------
        X : array-like
            Images in any layout :meth:`fit` accepts, of the training size.
        method : {"entropy", "margin", "knn"}, default="entropy"
            ``"entropy"``: entropy of ``predict_proba``, divided by its
            largest value ``log(n_classes)`` (0 certain, 1 uniform);
            ``"margin"``: one minus the gap between the two largest
            probabilities; ``"knn"``: how far the image's features lie from
            the training images' (one minus the mean cosine similarity of
            its 10 nearest training features), which flags scans unlike any
            seen in training even when the softmax is confident.

        Returns
        -------
        uncertainty : ndarray of shape (n,), dtype float64
            In [0, 1] for ``"entropy"`` and ``"margin"``, [0, 2] for ``"knn"``.

        Examples
        --------
        >>> import numpy as np
        >>> from ckdlearn import CKDNetClassifier
        >>> X = np.random.RandomState(0).rand(20, 64).astype(np.float32)
        >>> clf = CKDNetClassifier(max_epochs=1, module__width=2, module__depth=1,
        ...                        augment=None, random_state=0).fit(X, [0, 1] * 10)
        >>> clf.predict_uncertainty(X[:3], method="knn").shape
        (3,)
        """
        if method not in UNCERTAINTY_METHODS:
            raise ValueError(
                f"method must be one of {list(UNCERTAINTY_METHODS)}; got {method!r}."
            )
        if method == "knn":
            similarity = self.transform_features(X) @ self.train_features_.T
            k = min(_KNN_NEIGHBOURS, similarity.shape[1])
            nearest = -np.partition(-similarity, k - 1, axis=1)[:, :k]
            return 1.0 - nearest.mean(axis=1).astype(np.float64)
        return uncertainty_from_proba(self.predict_proba(X), method)

    def predict_series(self, X, groups, *, method="mean_log", uncertainty="entropy"):
        """One answer per scan series, with how unsure it is.

        Parameters
        ----------
        X : array-like
            The slices, in any layout :meth:`fit` accepts.
        groups : array-like of shape (n,)
            Scan series of each slice.
        method : {"mean_log", "mean", "vote"}, default="mean_log"
            How slice probabilities combine, see
            :func:`ckdlearn.series.aggregate_series`.
        uncertainty : {"entropy", "margin", "knn"}, default="entropy"
            As in :meth:`predict_uncertainty`: of the series' combined
            probabilities, or for ``"knn"`` the mean over its slices.

        Returns
        -------
        result : Bunch
            ``series`` (sorted ids), ``label``, ``proba`` (n_series,
            n_classes), ``uncertainty`` and ``n_slices``.

        Examples
        --------
        >>> import numpy as np
        >>> from ckdlearn import CKDNetClassifier
        >>> X = np.random.RandomState(0).rand(20, 64).astype(np.float32)
        >>> clf = CKDNetClassifier(max_epochs=1, module__width=2, module__depth=1,
        ...                        augment=None, random_state=0).fit(X, [0, 1] * 10)
        >>> result = clf.predict_series(X, np.repeat(["scan-a", "scan-b"], 10))
        >>> result.series.tolist(), result.n_slices.tolist()
        (['scan-a', 'scan-b'], [10, 10])
        """
        proba = self.predict_proba(X)
        result = aggregate_series(proba, groups, method=method)
        result.label = self.classes_[result.proba.argmax(axis=1)]
        if uncertainty == "knn":
            slices = self.predict_uncertainty(X, method="knn")
            index = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
            result.uncertainty = np.bincount(index, weights=slices) / result.n_slices
        else:
            result.uncertainty = uncertainty_from_proba(result.proba, uncertainty)
        return result
