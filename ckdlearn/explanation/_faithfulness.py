"""Faithfulness: does the network rely on what a heatmap marks?

:func:`faithfulness_scores` removes the pixels a heatmap marks (or keeps
only them) and measures the change in the explained class's probability,
with pytorch-grad-cam's ROAD imputation and confidence-change metrics.
"""

import warnings
from numbers import Real
from types import MappingProxyType

import numpy as np
import torch
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from pytorch_grad_cam.metrics.road import NoisyLinearImputer
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from sklearn.utils import check_random_state

from ..utils._param_validation import Interval, StrOptions, validate_params
from ..utils.input_checks import check_images
from ._network import (
    NETWORK_PARAMETERS,
    check_class_indices,
    check_class_range,
    check_network_images,
    input_error,
    module_device,
    network_untouched,
)

__all__ = ["FAITHFULNESS_METRICS", "faithfulness_scores"]

#: Faithfulness metrics by name, each with the default ``percentile``
#: :func:`faithfulness_scores` uses for it.
FAITHFULNESS_METRICS = MappingProxyType(
    {
        "confidence_drop": 80,
        "decision_flip": 80,
        "road": (20, 40, 60, 80),
        "cam_mult": None,
    }
)


@validate_params(
    {
        **NETWORK_PARAMETERS,
        "heatmaps": ["array-like"],
        "metric": [StrOptions(set(FAITHFULNESS_METRICS))],
        "percentile": [Interval(Real, 0, 100, closed="neither"), "array-like", None],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def faithfulness_scores(
    module, images, class_indices, heatmaps, *, metric="confidence_drop", percentile=None,
    batch_size=32, device="cpu", random_state=0,
):
    """How faithfully each heatmap reflects what the network relies on.

    A heatmap is faithful when the pixels it marks are the ones the
    prediction depends on. Each metric perturbs the image according to the
    heatmap and measures the change in the explained class's softmax
    probability. For every metric, **higher means more faithful**.

    * ``"confidence_drop"``: ``p(image) - p(image with its most relevant
      pixels removed)``, in [-1, 1]: the pixels above the heatmap's
      ``percentile`` (default 80: the top 20 %) are filled in from their
      neighbours by ROAD's noisy linear imputation. Near 0 or negative:
      what the map marks does not matter to the network.
    * ``"decision_flip"``: 1 when the explained class is the top class
      before that removal and not after, 0 when nothing changes, -1 when
      it becomes the top one. It ignores confidence, so it compares
      networks of different calibration (label smoothing, temperature).
    * ``"road"``: ROAD (Rong et al., 2022), as pytorch-grad-cam's
      ``ROADCombined``: the mean over ``percentile`` thresholds (default
      20, 40, 60, 80) of ``(p(least relevant removed) - p(most relevant
      removed)) / 2``, in [-0.5, 0.5]; comparing both orders cancels the
      effect of the imputation itself.
    * ``"cam_mult"``: pytorch-grad-cam's ``CamMultImageConfidenceChange``,
      ``p(image * heatmap) - p(image)`` in [-1, 1]: keeping only what the
      map marks should keep the prediction.

    Probability scores compare heatmaps of the *same* network and images
    (methods, layers, a map against a random one): a less confident
    network has less to lose. Across networks, compare ``"decision_flip"``
    or each network's margin over a random map.

    Parameters
    ----------
    module : torch.nn.Module
        The network the heatmaps explain.
    images : ndarray of shape (n, C, H, W)
        The images, as the network takes them.
    class_indices : array-like of int of shape (n,) or None
        The class each heatmap explains; None for the predicted class.
    heatmaps : ndarray of shape (n, H, W)
        One map per image, e.g. from :func:`compute_heatmaps`; larger is more relevant.
    metric : {"confidence_drop", "decision_flip", "road", "cam_mult"}, \
            default="confidence_drop"
        See above and :data:`FAITHFULNESS_METRICS`.
    percentile : float, sequence of float or None, default=None
        Heatmap percentile(s) in (0, 100) that split the pixels, as in
        pytorch-grad-cam's ROAD: at 80, the 20 % of pixels with the largest
        values are the "most relevant", the 20 % with the smallest the
        "least relevant". One number for ``"confidence_drop"`` and
        ``"decision_flip"``, one or more for ``"road"``, unused by
        ``"cam_mult"``; None takes :data:`FAITHFULNESS_METRICS`' default.
        Ties are broken at random, so exactly that share of pixels is
        removed even from a map with flat (e.g. zero) regions.
    batch_size : int, default=32
        Images per forward pass.
    device : str or torch.device, default="cpu"
        Used only when the module's parameters do not give its device.
    random_state : int, RandomState instance or None, default=0
        Seeds the imputation noise and tie-breaking per image (scores do not
        depend on ``batch_size``); torch's global random state is untouched.

    Returns
    -------
    scores : ndarray of shape (n,), dtype float32
        Higher is more faithful.

    Raises
    ------
    ValueError
        For an unknown metric, a percentile outside (0, 100), heatmaps
        not shaped like the images, or malformed images, class indices or
        batch size.

    See Also
    --------
    compute_heatmaps : The heatmaps to score.
    randomisation_test : Whether the heatmaps depend on the weights at all.
    heatmap_energy_in_mask : Localisation against a known region.

    Notes
    -----
    Pixels are filled in by pytorch-grad-cam's ``NoisyLinearImputer`` (the
    mean of the neighbours plus a little noise: a sparse solve per image
    and threshold, so ``"road"`` costs about ``2 * len(percentile)`` times
    ``"confidence_drop"``). Unlike its threshold-based
    ``RemoveMostRelevantFirst``, pixels are ranked: on a Grad-CAM map that
    is zero over half the image, every threshold below 50 would remove the
    whole image. The network is left untouched, as in
    :func:`compute_heatmaps`.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from ckdlearn.nets import CKDNet
    >>> from ckdlearn.explanation import compute_heatmaps, faithfulness_scores
    >>> _ = torch.manual_seed(0)
    >>> net = CKDNet(n_classes=2, width=4, depth=2)
    >>> images = np.random.RandomState(0).rand(4, 1, 16, 16).astype(np.float32)
    >>> heatmaps, classes = compute_heatmaps(net, images)
    >>> scores = faithfulness_scores(net, images, classes, heatmaps, metric="road")
    >>> scores.shape, scores.dtype
    ((4,), dtype('float32'))
    >>> bool(np.all(np.abs(scores) <= 0.5))
    True
    """
    images = check_network_images(images)
    n_images = len(images)
    if tuple(np.shape(heatmaps)) != (n_images, *images.shape[2:]):
        raise ValueError(f"heatmaps must be (n, H, W) = {(n_images, *images.shape[2:])} to match "
                         f"images of shape {images.shape}; got shape {np.shape(heatmaps)}.")
    if n_images:
        heatmaps = np.asarray(check_images(heatmaps, name="heatmaps")[:, 0], dtype=np.float32)
    class_indices = check_class_indices(class_indices, n_images)
    percentiles = _check_percentiles(metric, percentile)
    run_device = module_device(module, device)
    seed = int(check_random_state(random_state).randint(2**31 - 1))

    scores = np.zeros(n_images, dtype=np.float32)
    # The imputation noise comes from torch's generator, seeded per image;
    # numpy warns about the torch masks the imputer indexes with.
    with network_untouched(module), torch.no_grad(), torch.random.fork_rng(devices=[]), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", "__array_wrap__", DeprecationWarning)
        for start in range(0, n_images, batch_size):
            stop = min(start + batch_size, n_images)
            batch = torch.from_numpy(images[start:stop]).to(run_device)
            maps = heatmaps[start:stop]
            try:
                logits = module(batch)
            except RuntimeError as error:
                raise input_error(module, images, error) from None
            if class_indices is None:
                classes = logits.argmax(dim=-1).cpu().numpy()
            else:
                classes = class_indices[start:stop]
                check_class_range(classes, logits.shape[-1])
            targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes]
            if metric == "cam_mult":
                scores[start:stop] = CamMultImageConfidenceChange()(batch, maps, targets, module)
                continue
            before = _target_scores(logits, targets)
            was_top = logits.argmax(dim=-1).cpu().numpy() == classes
            total = np.zeros(stop - start, dtype=np.float32)
            for step, threshold in enumerate(percentiles):
                # One seed per image, threshold and order: independent of batch_size.
                seeds = [(seed, start + i, step) for i in range(stop - start)]
                removal = (module, batch, maps, targets, threshold, seeds)
                most_removed, top_after = _scores_after_removal(*removal, most_relevant_first=True)
                if metric == "confidence_drop":
                    total += before - most_removed
                elif metric == "decision_flip":
                    total += was_top.astype(np.float32) - (top_after == classes)
                else:
                    least_removed, _ = _scores_after_removal(*removal, most_relevant_first=False)
                    total += (least_removed - most_removed) / 2
            scores[start:stop] = total / len(percentiles)
    return scores


def _target_scores(logits, targets):
    return np.float32([target(output).cpu().numpy() for target, output in zip(targets, logits)])


def _scores_after_removal(module, images, heatmaps, targets, percentile, seeds, most_relevant_first):
    """Target scores and top classes once each image has lost a fixed share
    of its pixels, most (or least) relevant first, ties in random order."""
    perturbed = []
    for image, heatmap, image_seed in zip(images.cpu(), heatmaps, seeds):
        rng = np.random.default_rng([*image_seed, int(most_relevant_first)])
        values = heatmap.reshape(-1)
        n_removed = min(max(round(values.size * (100 - percentile) / 100), 1), values.size - 1)
        if n_removed < 1:  # a one-pixel image has nothing to compare with
            perturbed.append(image)
            continue
        order = np.lexsort((rng.random(values.size), values))  # ascending relevance
        keep = torch.ones(values.size)
        keep[order[-n_removed:] if most_relevant_first else order[:n_removed]] = 0
        torch.manual_seed(int(rng.integers(2**63)))
        perturbed.append(NoisyLinearImputer()(image, keep.reshape(heatmap.shape)))
    outputs = module(torch.stack(perturbed).to(images.device))
    return _target_scores(outputs, targets), outputs.argmax(dim=-1).cpu().numpy()


def _check_percentiles(metric, percentile):
    if FAITHFULNESS_METRICS[metric] is None:
        return None
    values = np.atleast_1d(np.asarray(
        FAITHFULNESS_METRICS[metric] if percentile is None else percentile, dtype=float))
    if metric != "road" and values.size != 1:
        raise ValueError(f"metric={metric!r} takes one percentile; got {percentile!r}. "
                         'Use metric="road" to average over several.')
    if values.ndim != 1 or values.size == 0 or not np.all((values > 0) & (values < 100)):
        raise ValueError("percentile must be a number (or, for metric='road', numbers) strictly "
                         f"between 0 and 100; got {percentile!r}.")
    return values.tolist()
