"""How :class:`~ckdlearn.CKDNetClassifier` reads its input: images and labels.

:class:`ImageInputMixin` holds the classifier's side of skorch's data hooks
(``check_data``, ``get_dataset``): what ``fit`` learns from the data (the
image shape, the intensity range, the classes and their weights), how
labels become class indices, and how input for prediction is validated
and shaped into the image batches the network takes
(:func:`ckdlearn.utils.input_checks.as_image_batch`).
"""

import warnings

import numpy as np
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d
from skorch.utils import is_dataset

from .utils.input_checks import as_image_batch

__all__ = ["ImageInputMixin"]

# Flat rows this wide that are not square are probably images given
# without their shape (tabular data has far fewer features).
_IMAGE_SIZED_FEATURES = 256
# Fewer images than this say too little about their domain to warn on.
_DOMAIN_CHECK_MIN_IMAGES = 8


def _image_statistics(images):
    """Per-image mean intensity and detail (mean absolute neighbour difference)."""
    flat = images.reshape(len(images), -1, *images.shape[-2:]).astype(np.float32)
    detail = np.abs(np.diff(flat, axis=-1)).mean(axis=(1, 2, 3)) if flat.shape[-1] > 1 \
        else np.zeros(len(images), dtype=np.float32)
    return {"intensity": flat.mean(axis=(1, 2, 3)), "detail": detail}


def _domain_profile(images):
    """5th, 50th and 95th percentiles of each of :func:`_image_statistics`."""
    return {name: [float(v) for v in np.percentile(values, [5, 50, 95])]
            for name, values in _image_statistics(images).items()}


class ImageInputMixin:
    """Input handling of a skorch classifier of images; mixed into CKDNetClassifier.

    It reads the classifier's ``image_shape``, ``classes`` and
    ``class_weight`` parameters, and sets ``classes_``, ``image_shape_``,
    ``n_features_in_``, ``intensity_range_`` and ``class_weight_``.
    """

    def _learn_data(self, X, y, classes=None):
        """Validate the data; set what it determines."""
        name = type(self).__name__
        if y is None:
            raise ValueError(
                f"{name} requires y to be passed, but the target y is None. "
                "Pass one label per image."
            )
        images = as_image_batch(X, self.image_shape, estimator_name=name)
        if np.asarray(X).ndim == 2 and self.image_shape is None and images.shape[2] == 1 \
                and images.shape[3] >= _IMAGE_SIZED_FEATURES:
            warnings.warn(
                f"X has {images.shape[3]} features per row, which is not a square "
                "number, so each row is read as an image one pixel high. If the rows "
                "are flattened images, pass image_shape=(height, width).",
                UserWarning,
                stacklevel=3,
            )
        y = column_or_1d(y, warn=True)
        if len(y) != len(images):
            raise ValueError(
                f"X and y must have the same number of samples; got {len(images)} "
                f"images and {len(y)} labels."
            )
        check_classification_targets(y)
        labels = self.classes if classes is None else classes
        known = np.unique(y) if labels is None else np.asarray(labels)
        if len(known) < 2:
            raise ValueError(
                f"{name} needs at least 2 classes to learn from; y holds only "
                f"one class: {known.tolist()}."
            )
        self.classes_inferred_ = known
        self._encode_labels(y)  # refuses labels outside ``classes``
        self.image_shape_ = tuple(int(side) for side in images.shape[1:])
        self.n_features_in_ = int(np.prod(self.image_shape_))
        self.intensity_range_ = (float(images.min()), float(images.max()))
        self.domain_profile_ = _domain_profile(images)
        self.class_weight_ = (
            None if self.class_weight is None
            else compute_class_weight(self.class_weight, classes=known, y=y)
        )
        return images, y

    @property
    def classes_(self):
        # The classes learnt in fit (skorch's property would return the
        # ``classes`` parameter even before fit, or instead of
        # ``partial_fit(classes=...)``).
        try:
            return self.classes_inferred_
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__} has no attribute 'classes_' before fit."
            ) from None

    def _encode_labels(self, y):
        # Not LabelEncoder: it numbers the classes in sorted order, and
        # ``classes_`` keeps the order given in ``classes=``; the search in
        # a sorted view (as scikit-learn's own encoder does) maps back to it.
        order = np.argsort(self.classes_, kind="stable")
        sorted_classes = self.classes_[order]
        positions = np.clip(np.searchsorted(sorted_classes, y), 0, len(sorted_classes) - 1)
        unknown = sorted_classes[positions] != y
        if unknown.any():
            raise ValueError(
                f"y contains labels {np.unique(y[unknown]).tolist()} that are not "
                f"among the classes {self.classes_.tolist()}."
            )
        return order[positions].astype(np.int64)

    def check_data(self, X, y=None):
        # The data were validated and learnt from before initialisation
        # (the network's shape depends on them); skorch's own check would
        # infer the classes again from the encoded targets.
        pass

    def get_dataset(self, X, y=None):
        """skorch's dataset of the validated image batch and encoded labels."""
        if is_dataset(X):
            return super().get_dataset(X, y)
        check_is_fitted(self)
        images = as_image_batch(
            X, expected_shape=self.image_shape_, estimator_name=type(self).__name__
        )
        if y is None:
            self._check_intensity_scale(images)
            self._check_domain(images)
        else:
            y = self._encode_labels(column_or_1d(y))
        return super().get_dataset(images, y)

    def _check_intensity_scale(self, images):
        low, high = self.intensity_range_
        span = high - low
        if not span:
            return
        lowest, highest = float(images.min()), float(images.max())
        if highest > high + span or lowest < low - span:
            raise ValueError(
                f"X holds values from {lowest:.4g} to {highest:.4g}, but "
                f"{type(self).__name__} was trained on values from {low:.4g} to "
                f"{high:.4g}: the images are on another scale. Scale them as the "
                "training images were (e.g. divide 0-255 values by 255, or pass "
                "uint8 arrays, which are divided by 255)."
            )

    def _check_domain(self, images):
        """Warn when a batch's pixels look unlike the training images' domain.

        Both the median intensity and the median detail of the batch must
        lie outside the central 90% of the training images' values: on the
        complete data this warned on about half of the raw scan series
        given to a CLAHE model and on 5% of unseen CLAHE series
        (``benchmarks/domain_check.py``), a hint rather than a proof.
        """
        profile = getattr(self, "domain_profile_", None)
        if profile is None or len(images) < _DOMAIN_CHECK_MIN_IMAGES:
            return
        batch = _image_statistics(images)
        off = [name for name, values in batch.items()
               if not profile[name][0] <= float(np.median(values)) <= profile[name][2]]
        if len(off) == len(batch):
            warnings.warn(
                f"These {len(images)} images look unlike the ones {type(self).__name__} was "
                f"trained on (domain {self.domain!r}): their median intensity and detail "
                f"both lie outside the central 90% of the training images'. If they are in "
                f"another domain, bring them into {self.domain!r} first, e.g. "
                f"read_images(paths, domain={self.domain!r}, input_domain=...) or "
                f"'--input-domain' on the command line.",
                UserWarning,
                stacklevel=4,
            )

    def to_images(self, X):
        """Validate ``X`` and return it as the network sees it.

        Parameters
        ----------
        X : array-like
            Images in any layout :meth:`fit` accepts, of the training size.

        Returns
        -------
        images : ndarray of shape (n, C, H, W), dtype float32
            Scaled as in training (uint8 divided by 255), C-contiguous.
        """
        check_is_fitted(self)
        images = as_image_batch(
            X, expected_shape=self.image_shape_, estimator_name=type(self).__name__
        )
        self._check_intensity_scale(images)
        return images
