"""Checks of the parameters shared by the dataset loaders.

They run on scikit-learn's ``validate_parameter_constraints`` (through
:mod:`ckdlearn.utils._param_validation`), so a bad value raises its
``InvalidParameterError`` with its message, ``The 'image_size' parameter
of load_ct_kidney must be ... Got 0 instead.`` Each constraint names what
its values mean rather than only their type and range.
"""

import numbers

from ..utils._param_validation import Interval, Options, StrOptions, validate_parameter_constraints
from ..utils.input_checks import IntegerInterval

ON_ERROR_CHOICES = ("raise", "skip")


class _Described(Options):
    """A constraint that scikit-learn's error message names by ``description``.

    scikit-learn names a constraint by its type and range ("an int in the
    range [1, inf)"); these say what the value is for. Deriving from
    ``Options`` is how ``validate_parameter_constraints`` accepts a
    constraint of ours.
    """

    def __init__(self, description, *constraints):
        super().__init__(object, set())
        self.description, self.constraints = description, constraints

    def is_satisfied_by(self, val):
        return any(
            val is None if constraint is None else constraint.is_satisfied_by(val)
            for constraint in self.constraints
        )

    def __str__(self):
        return self.description


class _Number(Interval):
    """scikit-learn's ``Interval(numbers.Real, ...)`` without booleans (not Hounsfield units)."""

    def __init__(self, left, right, *, closed):
        super().__init__(numbers.Real, left, right, closed=closed)

    def is_satisfied_by(self, val):
        return not isinstance(val, bool) and super().is_satisfied_by(val)


_CONSTRAINTS = {
    "image_size": [_Described(
        "a positive integer (the side in pixels of the square output images, e.g. 128)",
        IntegerInterval(1, None, closed="left"),
    )],
    "on_error": [_Described(
        "'raise' (stop at the first unreadable file) or 'skip' (leave unreadable "
        "files out and list them)",
        StrOptions(set(ON_ERROR_CHOICES)),
    )],
    "window_level": [_Described("a number of Hounsfield units", _Number(None, None, closed="neither"))],
    "window_width": [_Described(
        "positive (the HU range mapped onto [0, 1], e.g. 400 for soft tissue)",
        _Number(0, None, closed="neither"),
    )],
    "verbose": [_Described(
        "None (progress bar on a terminal for long loads), True (always) or False (never)",
        None, Options(bool, {True, False}),
    )],
}


def check_loader_params(caller, **params):
    """Raise ``InvalidParameterError`` (a ValueError) for a bad loader parameter.

    ``params`` are any of ``image_size``, ``on_error``, ``window_level``,
    ``window_width`` and ``verbose``; ``caller`` names the loader in the
    message. Returns ``image_size`` as an int when it is given.
    """
    validate_parameter_constraints(
        {name: _CONSTRAINTS[name] for name in params}, params, caller_name=caller
    )
    return int(params["image_size"]) if "image_size" in params else None


# The single-parameter checks ``read_images`` calls (``_io.py``).


def check_image_size(image_size):
    """Return ``image_size`` as an int, or raise a ValueError saying why not."""
    return check_loader_params("read_images", image_size=image_size)


def check_on_error(on_error):
    """Raise a ValueError unless ``on_error`` is 'raise' or 'skip'."""
    check_loader_params("read_images", on_error=on_error)
    return on_error


def check_window(window_level, window_width):
    """Return the window as floats, or raise a ValueError saying why not."""
    check_loader_params("read_images", window_level=window_level, window_width=window_width)
    return float(window_level), float(window_width)


def check_verbose(verbose):
    """Raise a ValueError unless ``verbose`` is None, True or False."""
    check_loader_params("read_images", verbose=verbose)
    return verbose
