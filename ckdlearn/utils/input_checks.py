"""Input validation: how arrays of CT slices are checked and shaped.

Every public entry point that takes images (the classifier, explanations,
the leakage audit, scan-series groups) reads them through
:func:`check_images`, so one set of rules and messages holds everywhere:
flat ``(n, H*W)``, ``(n, H, W)`` and ``(n, C, H, W)`` layouts, real
finite numbers, at least one image. :func:`as_image_batch` adds what the
network needs: float32, uint8 divided by 255.
"""

import math
import numbers

import numpy as np
from scipy import sparse

from ._param_validation import Interval

__all__ = ["IntegerInterval", "as_image_batch", "check_images", "resolve_image_shape"]


class IntegerInterval(Interval):
    """scikit-learn's ``Interval(numbers.Integral, ...)`` without booleans.

    For ``_parameter_constraints`` and ``validate_params``: ``True`` is an
    integer to Python, never a pixel count or a number of epochs here.

    Examples
    --------
    >>> from ckdlearn.utils.input_checks import IntegerInterval
    >>> IntegerInterval(0, None, closed="left").is_satisfied_by(True)
    False
    """

    def __init__(self, left, right, *, closed):
        super().__init__(numbers.Integral, left, right, closed=closed)

    def is_satisfied_by(self, val):
        return not isinstance(val, (bool, np.bool_)) and super().is_satisfied_by(val)



def resolve_image_shape(n_features, image_shape=None):
    """Return the ``(channels, height, width)`` that flat rows unfold into.

    Parameters
    ----------
    n_features : int
        Values per sample in the flat matrix.
    image_shape : tuple of int or None, default=None
        ``(height, width)`` or ``(channels, height, width)``. When None, a
        square feature count ``s*s`` is read as one ``s x s`` greyscale
        image and any other count as an image one pixel high (the layout
        tabular data, such as scikit-learn's estimator checks, gets).

    Returns
    -------
    image_shape : tuple of (int, int, int)
        ``(channels, height, width)`` whose product is ``n_features``.

    Raises
    ------
    ValueError
        If ``image_shape`` is malformed or its pixel count differs from
        ``n_features``.

    Examples
    --------
    >>> from ckdlearn.utils.input_checks import resolve_image_shape
    >>> resolve_image_shape(64 * 64)
    (1, 64, 64)
    >>> resolve_image_shape(3 * 28 * 28, image_shape=(3, 28, 28))
    (3, 28, 28)
    >>> resolve_image_shape(10)
    (1, 1, 10)
    """
    if image_shape is None:
        side = math.isqrt(n_features)
        return (1, side, side) if side * side == n_features else (1, 1, n_features)
    shape = tuple(image_shape) if np.iterable(image_shape) and not isinstance(image_shape, str) else ()
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or not all(
        isinstance(dim, numbers.Integral) and not isinstance(dim, bool) and dim >= 1
        for dim in shape
    ):
        raise ValueError(
            "image_shape must be (height, width) or (channels, height, width) "
            f"with positive integers; got image_shape={image_shape!r}."
        )
    shape = tuple(int(dim) for dim in shape)
    if math.prod(shape) != n_features:
        raise ValueError(
            f"image_shape={image_shape!r} holds {math.prod(shape)} values per "
            f"image, but X has {n_features} features per sample. Pass the "
            "shape the rows were flattened from, e.g. image_shape=(128, 128) "
            "for X of shape (n, 16384)."
        )
    return shape


def check_images(
    X,
    *,
    image_shape=None,
    expected_shape=None,
    name="X",
    require_image=False,
    estimator_name=None,
):
    """Validate images and return them as an ``(n, C, H, W)`` array.

    No copy and no cast: the result is a view of ``X`` where ``X`` is
    already a NumPy array (callers cast what they need).

    Parameters
    ----------
    X : array-like or torch.Tensor
        Flat ``(n, C*H*W)``, ``(n, H, W)`` or ``(n, C, H, W)`` images of
        real numbers (bool and integer dtypes included).
    image_shape : tuple of int or None, default=None
        How flat rows unfold, see :func:`resolve_image_shape`.
    expected_shape : tuple of (int, int, int) or None, default=None
        The ``(C, H, W)`` of a fitted model: ``X`` must match it.
    name : str, default="X"
        Used in messages.
    require_image : bool, default=False
        Refuse flat rows whose feature count is not square (rather than
        reading them as one-pixel-high images) unless ``image_shape`` says
        how they unfold.
    estimator_name : str or None, default=None
        Used in messages about ``expected_shape``.

    Returns
    -------
    images : ndarray of shape (n, C, H, W)

    Raises
    ------
    TypeError
        For sparse matrices and non-numeric values.
    ValueError
        For empty, 1-D or more than 4-D input, NaN or infinity, and shapes
        that disagree with ``image_shape`` or ``expected_shape``.

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn.utils.input_checks import check_images
    >>> check_images(np.zeros((5, 16 * 16), dtype=np.uint8)).shape
    (5, 1, 16, 16)
    >>> check_images(np.zeros((2, 3, 8, 8))).shape
    (2, 3, 8, 8)
    """
    X = _as_real_array(X, name)
    if X.ndim < 2 or X.ndim > 4:
        hint = f" Reshape your data: for a single image, add the sample axis: {name}[np.newaxis]." if X.ndim == 1 else ""
        # The first sentence is scikit-learn's, which its users recognise.
        raise ValueError(
            f"Expected 2D array, got {X.ndim}D array instead: {name} must be 2-D "
            "(n_images, height*width), 3-D (n_images, height, width) or 4-D "
            f"(n_images, channels, height, width); got a {X.ndim}-D array "
            f"({X.ndim} dimensions) of shape {X.shape}.{hint}"
        )
    if len(X) == 0:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is "
            f"required: {name} is empty (0 images)."
        )
    if 0 in X.shape[1:]:
        # The first sentence is scikit-learn's, which its checks recognise.
        raise ValueError(
            f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 "
            f"is required: {name} needs images with at least one pixel."
        )
    _check_finite(X, name)
    if expected_shape is not None:
        return _match_fitted_shape(X, tuple(expected_shape), estimator_name or name)
    if X.ndim == 2:
        if require_image and image_shape is None and math.isqrt(X.shape[1]) ** 2 != X.shape[1]:
            raise ValueError(
                f"{name} has {X.shape[1]} features per image, which is not a square "
                "number, so the image shape cannot be inferred. Pass "
                "image_shape=(height, width)."
            )
        return X.reshape((len(X), *resolve_image_shape(X.shape[1], image_shape)))
    images = X[:, np.newaxis] if X.ndim == 3 else X
    if image_shape is not None and resolve_image_shape(
        math.prod(images.shape[1:]), image_shape
    ) != images.shape[1:]:
        raise ValueError(
            f"{name} holds images of shape {X.shape[1:]}, which disagrees with "
            f"image_shape={image_shape!r}. Leave image_shape=None for shaped "
            "input, or pass flat rows."
        )
    return images


def _as_real_array(X, name):
    """``X`` as a NumPy array of bool, integers or floats, without copying arrays."""
    if hasattr(X, "detach"):  # a torch tensor
        X = X.detach().cpu().numpy()
    if sparse.issparse(X):
        raise TypeError(
            f"{name} is a sparse matrix; images must be a dense array. "
            f"Convert it with {name}.toarray()."
        )
    try:
        X = np.asarray(X)
    except ValueError as error:  # ragged nested lists
        raise ValueError(f"{name} must be a rectangular array of images: {error}") from None
    if X.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} must hold real pixel values.")
    if X.dtype.kind in "OUS":
        # Numbers stored as objects or text are taken, as scikit-learn does.
        try:
            X = X.astype(np.float64)
        except (TypeError, ValueError) as error:
            raise type(error)(
                f"{name} must hold numbers (real pixel values); got dtype {X.dtype} "
                f"({error}). Convert it with np.asarray({name}, dtype=np.float32)."
            ) from None
    if X.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold numbers (real pixel values); got dtype {X.dtype}. "
            f"Convert it with np.asarray({name}, dtype=np.float32)."
        )
    return X


def _check_finite(X, name, chunk=256):
    """Refuse NaN, infinity and values beyond float32, naming the first images that hold them."""
    if X.dtype.kind != "f":
        return
    # Images are compared and learnt from as float32: larger values would
    # turn into infinity there.
    limit = np.finfo(np.float32).max
    for start in range(0, len(X), chunk):
        part = X[start : start + chunk].reshape(-1, math.prod(X.shape[1:]))
        finite = np.isfinite(part).all(axis=1)
        huge = np.zeros(len(part), dtype=bool)
        if X.dtype.itemsize > 4:
            with np.errstate(invalid="ignore"):
                huge = finite & (np.abs(part).max(axis=1) > limit)
        for bad, what in ((~finite, "NaN or infinity"), (huge, "values beyond the float32 range (3.4e+38)")):
            bad = start + np.flatnonzero(bad)
            if len(bad):
                raise ValueError(
                    f"{name} contains {what} (image index "
                    f"{', '.join(map(str, bad[:5]))}{', ...' if len(bad) > 5 else ''}). "
                    "Drop, repair or rescale these images first."
                )


def _match_fitted_shape(X, expected_shape, estimator_name):
    if X.ndim == 2:
        if X.shape[1] != math.prod(expected_shape):
            # scikit-learn's wording, which users (and its checks) recognise.
            raise ValueError(
                f"X has {X.shape[1]} features, but {estimator_name} is expecting "
                f"{math.prod(expected_shape)} features as input (images of shape "
                f"{expected_shape} flattened)."
            )
        return X.reshape((len(X), *expected_shape))
    images = X[:, np.newaxis] if X.ndim == 3 else X
    if images.shape[1:] != expected_shape:
        raise ValueError(
            f"X holds images of shape {X.shape[1:]}, but {estimator_name} was "
            f"fitted on images of shape {expected_shape} (channels, height, "
            "width). Resize the images to the training size first, e.g. with "
            "ckdlearn.datasets.read_images(..., image_size=...)."
        )
    return images


def as_image_batch(X, image_shape=None, *, expected_shape=None, estimator_name="CKDNetClassifier"):
    """Validate input and return it as the network's float32 ``(n, C, H, W)`` batch.

    Accepted layouts and dtypes are those of :func:`check_images`.
    ``uint8`` images are scaled to [0, 1]; every other dtype is cast to
    float32 unchanged (so float input is taken to be already scaled, e.g.
    [0, 1] as :func:`ckdlearn.datasets.load_ct_kidney` returns).

    Parameters
    ----------
    X : array-like
        Images in one of the layouts above.
    image_shape : tuple of int or None, default=None
        How flat rows unfold, see :func:`resolve_image_shape`. Ignored
        when ``expected_shape`` is given.
    expected_shape : tuple of (int, int, int) or None, default=None
        The ``(C, H, W)`` a fitted model was trained on; X must match it.
    estimator_name : str, default="CKDNetClassifier"
        Used in error messages.

    Returns
    -------
    images : ndarray of shape (n, C, H, W), dtype float32
        C-contiguous and writeable; a view of ``X`` when no cast or copy
        was needed.

    Raises
    ------
    TypeError, ValueError
        As :func:`check_images`.

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn.utils.input_checks import as_image_batch
    >>> as_image_batch(np.zeros((5, 16 * 16), dtype=np.uint8)).shape
    (5, 1, 16, 16)
    >>> as_image_batch(np.full((2, 8, 8), 255, dtype=np.uint8)).max()
    np.float32(1.0)
    """
    X = check_images(
        X, image_shape=image_shape, expected_shape=expected_shape, estimator_name=estimator_name
    )
    images = np.asarray(X, dtype=np.float32)
    if X.dtype == np.uint8:
        images = images * np.float32(1 / 255)
    if not (images.flags.c_contiguous and images.flags.writeable):
        images = np.array(images, dtype=np.float32, order="C", copy=True)
    return images
