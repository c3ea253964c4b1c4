"""Deprecated: the input checks moved to :mod:`ckdlearn.utils.input_checks`.

The old name read like ``CKDNetClassifier(validation=...)``, which holds
scan series out; this path still imports, with a ``FutureWarning``, and
will be removed in a future release.
"""

from .utils.deprecation import warn_moved
from .utils.input_checks import (  # noqa: F401
    IntegerInterval,
    as_image_batch,
    check_images,
    resolve_image_shape,
)

__all__ = ["IntegerInterval", "as_image_batch", "check_images", "resolve_image_shape"]

warn_moved("ckdlearn.validation", "ckdlearn.utils.input_checks")
