"""Localisation: how much of a heatmap falls inside a known region."""

import numpy as np

__all__ = ["heatmap_energy_in_mask"]


def heatmap_energy_in_mask(heatmaps, masks):
    """Share of each heatmap's mass that falls inside a region.

    The energy-based pointing game (Wang et al., 2020, Score-CAM): for a
    lesion or organ mask, ``sum(heatmap * mask) / sum(heatmap)``. 1 means
    the map lies entirely inside the region; a map spread evenly scores the
    region's share of the image.

    Parameters
    ----------
    heatmaps : array-like of shape (n, H, W)
        Non-negative heatmaps, e.g. from :func:`compute_heatmaps`.
    masks : array-like of shape (n, H, W) or (H, W)
        The regions (nonzero = inside); one mask for all images is
        broadcast.

    Returns
    -------
    energy : ndarray of shape (n,), dtype float32
        In [0, 1]; 0 for a heatmap that is zero everywhere.

    Raises
    ------
    ValueError
        If the heatmaps are not 3-D, hold negative or non-finite values,
        or the masks do not match them in shape.

    See Also
    --------
    faithfulness_scores : Whether the network relies on what the map marks.

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn.explanation import heatmap_energy_in_mask
    >>> heatmaps = np.zeros((2, 4, 4), dtype=np.float32)
    >>> heatmaps[0, :2, :2] = 1          # all mass in the upper-left quarter
    >>> heatmaps[1] = 1                  # spread evenly
    >>> mask = np.zeros((4, 4), dtype=bool)
    >>> mask[:2, :2] = True
    >>> heatmap_energy_in_mask(heatmaps, mask)
    array([1.  , 0.25], dtype=float32)
    """
    heatmaps, masks = np.asarray(heatmaps, dtype=np.float64), np.asarray(masks)
    if heatmaps.ndim != 3:
        raise ValueError(f"heatmaps must be (n, H, W); got an array of shape {heatmaps.shape}.")
    if not np.all(np.isfinite(heatmaps)) or np.any(heatmaps < 0):
        raise ValueError("heatmaps must be finite and non-negative (e.g. compute_heatmaps' "
                         "output in [0, 1]).")
    if masks.shape not in (heatmaps.shape, heatmaps.shape[1:]):
        raise ValueError(f"masks must be (n, H, W) = {heatmaps.shape} or (H, W) = "
                         f"{heatmaps.shape[1:]}; got shape {masks.shape}.")
    inside = (heatmaps * (masks != 0)).sum(axis=(1, 2))
    total = heatmaps.sum(axis=(1, 2))
    energy = np.divide(inside, total, out=np.zeros_like(total), where=total > 0)
    return energy.astype(np.float32)
