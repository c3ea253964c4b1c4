"""Checks of the parameters shared by the dataset loaders."""

import numbers

ON_ERROR_CHOICES = ("raise", "skip")


def check_image_size(image_size):
    """Return ``image_size`` as an int, or raise a ValueError saying why not."""
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral):
        raise ValueError(
            f"image_size must be a positive integer (the side in pixels of "
            f"the square output images, e.g. 128), got {image_size!r}."
        )
    if image_size < 1:
        raise ValueError(
            f"image_size must be a positive integer (the side in pixels of "
            f"the square output images, e.g. 128), got {image_size}."
        )
    return int(image_size)


def check_on_error(on_error):
    """Raise a ValueError unless ``on_error`` is 'raise' or 'skip'."""
    if not isinstance(on_error, str) or on_error not in ON_ERROR_CHOICES:
        raise ValueError(
            f"on_error must be 'raise' (stop at the first unreadable file) or "
            f"'skip' (leave unreadable files out and list them), got {on_error!r}."
        )
    return on_error


def check_window(window_level, window_width):
    """Return the window as floats, or raise a ValueError saying why not."""
    for name, value in [("window_level", window_level), ("window_width", window_width)]:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name} must be a number of Hounsfield units, got {value!r}.")
    if not window_width > 0:
        raise ValueError(
            f"window_width must be positive (the HU range mapped onto [0, 1], "
            f"e.g. 400 for soft tissue), got {window_width!r}."
        )
    return float(window_level), float(window_width)


def check_verbose(verbose):
    """Raise a ValueError unless ``verbose`` is None, True or False."""
    if verbose is not None and not isinstance(verbose, bool):
        raise ValueError(
            "verbose must be None (progress bar on a terminal for long loads), "
            f"True (always) or False (never), got {verbose!r}."
        )
    return verbose
