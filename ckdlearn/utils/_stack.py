"""Where a warning should point: the user's line, not ckdlearn's."""

import inspect
import os

from ._param_validation import WRAPPER_FILE

__all__ = ["external_stacklevel"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def external_stacklevel():
    """The ``stacklevel`` that makes :func:`warnings.warn` name the first caller outside ckdlearn.

    Call it as the argument of ``warnings.warn`` (``stacklevel=external_stacklevel()``):
    a warning raised deep in a loader then points at the user's call
    whichever public function led there, where a fixed number would fit one
    path only. scikit-learn's ``validate_params`` wrapper is skipped too.
    """
    frame = inspect.currentframe().f_back  # the function that warns: stacklevel 1
    level = 1
    try:
        while frame is not None and (
            frame.f_code.co_filename.startswith(_PACKAGE) or frame.f_code.co_filename == WRAPPER_FILE
        ):
            frame = frame.f_back
            level += 1
    finally:
        del frame
    return level
