"""The one input domain: CT slices contrast-equalised as the CT KIDNEY DATASET is.

Every slice of the complete public CT KIDNEY DATASET survives in one
processing domain: CLAHE (contrast-limited adaptive histogram equalisation,
OpenCV's ``createCLAHE`` with clip limit 4 on an 8 x 8 grid of tiles) on
the full-resolution slice, then a resize. A model learns the intensities of
its domain, so slices from elsewhere are brought into it the same way
before they reach the model, and slices already in it are declared so and
left alone:

=================  ==========================================================
``"raw"``          a windowed slice as exported (JPEG / PNG), or a DICOM
                   slice after its display window
``"clahe"``        the slice after :func:`clahe`, the dataset's domain
=================  ==========================================================

:func:`conversion` says which step takes one domain to another: from
``"raw"`` to ``"clahe"`` it is :func:`clahe` on the full-resolution slice
(the loaders apply it before resizing, see
:func:`ckdlearn.datasets.read_images`); CLAHE cannot be undone, so asking
for ``"raw"`` from ``"clahe"`` input is an error.

OpenCV does the equalisation: on the 3,879 slices that the raw development
subset and the complete data share, its CLAHE and kornia's
``equalize_clahe`` reproduce the dataset's copies equally well (median
mean absolute difference 8.41 and 8.42 grey levels of 255, against 15.81
for no CLAHE; the raw copies were stored at 256 px, which accounts for
the rest) and OpenCV is nine times faster (2.5 against 23 ms a slice,
``benchmarks/clahe_agreement.py``); scikit-image's ``equalize_adapthist``
clips differently (9.28).
"""

import numpy as np

__all__ = ["CLAHE_CLIP_LIMIT", "CLAHE_TILE_GRID", "DOMAINS", "check_domain", "clahe",
           "conversion"]

DOMAINS = ("raw", "clahe")
CLAHE_CLIP_LIMIT = 4.0
CLAHE_TILE_GRID = 8


def check_domain(domain, name="domain"):
    """``domain`` if it is one of :data:`DOMAINS`, else a ValueError naming ``name``."""
    if not isinstance(domain, str) or domain not in DOMAINS:
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, DOMAINS))}; got {domain!r}. "
            "'raw' is a slice as exported (or a DICOM slice after windowing), 'clahe' a "
            "slice contrast-equalised as the CT KIDNEY DATASET is."
        )
    return domain


def conversion(input_domain, domain):
    """The step taking slices from ``input_domain`` into ``domain``.

    Parameters
    ----------
    input_domain : {"raw", "clahe"}
        What the slices are.
    domain : {"raw", "clahe"}
        What the model (or the caller) needs.

    Returns
    -------
    step : {"clahe"} or None
        ``"clahe"`` when :func:`clahe` must be applied to the full-resolution
        slice, None when the slices are already in ``domain``.

    Raises
    ------
    ValueError
        If a domain is unknown, or raw slices are asked for from CLAHE input
        (the equalisation cannot be undone).

    Examples
    --------
    >>> from ckdlearn.preprocessing import conversion
    >>> conversion("raw", "clahe")
    'clahe'
    >>> conversion("clahe", "clahe") is None
    True
    """
    check_domain(input_domain, "input_domain")
    check_domain(domain, "domain")
    if input_domain == domain:
        return None
    if input_domain == "clahe":
        raise ValueError(
            "The slices are in the 'clahe' domain (contrast-equalised) but 'raw' slices are "
            "needed, and CLAHE cannot be undone. Use a model trained in the 'clahe' domain "
            "(such as ckdlearn.load_pretrained()), or give the original slices."
        )
    return "clahe"


def clahe(image, *, clip_limit=CLAHE_CLIP_LIMIT, tile_grid_size=CLAHE_TILE_GRID):
    """Contrast-limited adaptive histogram equalisation, as the dataset's.

    Apply it to the full-resolution slice, before any resize: the tiles
    are a fixed grid over the slice, so equalising a thumbnail gives
    another image.

    Parameters
    ----------
    image : ndarray of shape (height, width)
        A greyscale slice: ``uint8``, or floats in [0, 1] (rounded to 256
        levels first, as the dataset's 8-bit slices were).
    clip_limit : float, default=4.0
        OpenCV's clip limit: the histogram of each tile is clipped at this
        multiple of its mean bin count before equalising.
    tile_grid_size : int, default=8
        Tiles per side.

    Returns
    -------
    equalised : ndarray of the shape and kind of ``image``
        ``uint8`` for ``uint8`` input, float32 in [0, 1] for float input.

    Raises
    ------
    ValueError
        If ``image`` is not 2-D, or floats outside [0, 1] or not finite.

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn.preprocessing import clahe
    >>> ramp = np.tile(np.linspace(0.3, 0.5, 64, dtype=np.float32), (64, 1))
    >>> out = clahe(ramp)
    >>> out.shape, out.dtype
    ((64, 64), dtype('float32'))
    >>> bool(np.ptp(out) > np.ptp(ramp))  # a narrow range is spread out
    True
    """
    import cv2  # imported on use: loading it costs ~0.1 s

    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"clahe expects one greyscale slice of shape (height, width); "
                         f"got shape {image.shape}.")
    as_float = image.dtype != np.uint8
    if as_float:
        if not np.isfinite(image).all() or image.min(initial=0) < 0 or image.max(initial=0) > 1:
            raise ValueError("clahe expects uint8 pixels or finite floats in [0, 1].")
        image = np.rint(image * 255).astype(np.uint8)
    grid = (int(tile_grid_size), int(tile_grid_size))
    out = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=grid).apply(image)
    return out.astype(np.float32) / np.float32(255) if as_float else out
