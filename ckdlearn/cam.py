"""Class activation maps for CT slice classifiers, and how far to trust them.

This module wraps `pytorch-grad-cam <https://github.com/jacobgil/pytorch-grad-cam>`_
so that explaining a fitted network is one call that leaves the network
exactly as it found it:

* :func:`compute_heatmaps` runs a CAM method (:data:`CAM_METHODS`) over a
  batch of images and returns one heatmap per image, in [0, 1], at the
  input resolution;
* :func:`faithfulness_scores` checks a heatmap against the network it
  claims to explain, by removing the pixels it marks and watching the
  prediction (pytorch-grad-cam's ROAD and confidence-change metrics);
* :func:`heatmap_energy_in_mask` scores localisation against a known
  region (the energy-based "pointing game");
* :func:`explain` explains a fitted :class:`~ckdlearn.CKDNetClassifier`,
  or a pipeline that ends in one, on the raw input the pipeline takes.

Every function here puts the network in eval mode, stops gradients from
reaching its parameters and releases every hook it registers, also when
it raises: weights, buffers, train/eval modes and ``requires_grad`` flags
are the same afterwards, and no parameter is left with a ``.grad``.

The module is named ``cam`` so that ``ckdlearn.explain`` can be the
function users call, with no submodule of the same name to hide it.
"""

import importlib
import numbers
from contextlib import contextmanager
from types import MappingProxyType, SimpleNamespace

import numpy as np
import torch
from pytorch_grad_cam import (
    AblationCAM,
    EigenCAM,
    EigenGradCAM,
    FullGrad,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from pytorch_grad_cam.metrics.road import NoisyLinearImputer
from pytorch_grad_cam.utils.find_layers import replace_layer_recursive
from pytorch_grad_cam.utils.model_targets import (
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
)
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import spsolve
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from torch import nn

__all__ = [
    "CAM_METHODS",
    "FAITHFULNESS_METRICS",
    "compute_heatmaps",
    "explain",
    "faithfulness_scores",
    "heatmap_energy_in_mask",
]

#: CAM methods by name: the pytorch-grad-cam class each name runs.
#:
#: Gradient-weighted methods ("gradcam", "gradcam++", "hirescam",
#: "xgradcam", "layercam", "eigengradcam", "gradcamelementwise") need one
#: forward and one backward pass per batch; "eigencam" needs a forward pass
#: only; "scorecam" and "ablationcam" need one forward pass per channel of
#: the layer *for every image*, so they are far slower. "fullgrad" ignores
#: ``layer`` and combines the input gradient with the bias gradients of
#: every convolution and batch-norm layer.
CAM_METHODS = MappingProxyType(
    {
        "gradcam": GradCAM,
        "gradcam++": GradCAMPlusPlus,
        "hirescam": HiResCAM,
        "xgradcam": XGradCAM,
        "layercam": LayerCAM,
        "eigencam": EigenCAM,
        "eigengradcam": EigenGradCAM,
        "gradcamelementwise": GradCAMElementWise,
        "scorecam": ScoreCAM,
        "ablationcam": AblationCAM,
        "fullgrad": FullGrad,
    }
)

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

# pytorch-grad-cam draws a tqdm progress bar per image in these modules.
_CHATTY_MODULES = ("pytorch_grad_cam.score_cam", "pytorch_grad_cam.ablation_cam")


# -- heatmaps -------------------------------------------------------------------


def compute_heatmaps(
    module,
    images,
    class_indices=None,
    *,
    method="gradcam",
    layer=None,
    batch_size=32,
    device="cpu",
):
    """Class activation heatmaps of a network for a batch of images.

    For each image, the chosen CAM method weighs the feature maps of
    ``layer`` by how much they support the explained class, and upsamples
    the result to the image size: bright where the evidence is.

    Parameters
    ----------
    module : torch.nn.Module
        The network; it maps ``(n, C, H, W)`` float tensors to class
        logits ``(n, n_classes)``. It is used as it is, on the device its
        parameters are on, and left as it was found (see Notes).
    images : ndarray of shape (n, C, H, W)
        The images, as the network takes them (any real dtype; cast to
        float32).
    class_indices : array-like of int of shape (n,) or None, default=None
        The output (class index) to explain for each image. None explains
        the class the network predicts (its largest logit in eval mode).
    method : str, default="gradcam"
        A key of :data:`CAM_METHODS`.
    layer : str, torch.nn.Module or None, default=None
        The layer whose activations the heatmap weighs; its output must be
        ``(n, channels, height, width)``. A name from
        ``dict(module.named_modules())``, or the submodule itself. None
        uses ``module.cam_layer`` when the network names one, else its last
        :class:`torch.nn.Conv2d`. Ignored by ``"fullgrad"``.
    batch_size : int, default=32
        Images per forward/backward pass.
    device : str or torch.device, default="cpu"
        Where the images go when the module does not say: the batches are
        sent to the device of the module's parameters (where
        pytorch-grad-cam runs the model), so this matters only for a module
        whose parameters cannot be found.

    Returns
    -------
    heatmaps : ndarray of shape (n, H, W), dtype float32
        One map per image at the input resolution, min-max scaled per image
        to [0, 1] as pytorch-grad-cam scales them; a map that is zero
        everywhere stays zero.
    class_indices : ndarray of shape (n,), dtype int64
        The class each heatmap explains (the predicted ones when
        ``class_indices`` was None).

    Raises
    ------
    ValueError
        If ``method`` is unknown; if ``layer`` is not a submodule name,
        not a submodule, or does not output 4-D feature maps; if ``images``
        is not 4-D; if ``class_indices`` has the wrong length, is not
        integer, or names a class the network does not output; if
        ``batch_size`` is not a positive integer.
    TypeError
        If ``layer`` is neither a string, a module nor None.

    See Also
    --------
    faithfulness_scores : Check the heatmaps against the network.
    explain : Heatmaps for a fitted classifier or pipeline.
    CKDNetClassifier.explain : The same on the classifier's raw input.

    Notes
    -----
    The network runs in eval mode (batch-norm statistics frozen, dropout
    off) with ``requires_grad`` switched off on its parameters, so the
    backward pass of gradient methods stops at ``layer`` and never touches
    the weights; afterwards every module's train/eval mode and every
    parameter's ``requires_grad`` are restored, parameter ``.grad``
    attributes are cleared to None (as pytorch-grad-cam's
    ``model.zero_grad()`` does) and all hooks are removed, also when an
    error is raised.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from ckdlearn.nets import CKDNet
    >>> from ckdlearn.cam import compute_heatmaps
    >>> _ = torch.manual_seed(0)
    >>> net = CKDNet(n_classes=3, width=4, depth=2)
    >>> images = np.random.RandomState(0).rand(5, 1, 16, 16).astype(np.float32)
    >>> heatmaps, classes = compute_heatmaps(net, images, method="gradcam++")
    >>> heatmaps.shape, heatmaps.dtype, classes.shape
    ((5, 16, 16), dtype('float32'), (5,))
    >>> bool(heatmaps.min() >= 0 and heatmaps.max() <= 1)
    True
    >>> heatmaps, classes = compute_heatmaps(net, images, [2, 2, 2, 2, 2], layer="features.0")
    >>> classes.tolist()
    [2, 2, 2, 2, 2]
    """
    cam_class = _check_method(method)
    images = _check_images(images)
    n_images, height, width = images.shape[0], images.shape[2], images.shape[3]
    class_indices = _check_class_indices(class_indices, n_images)
    batch_size = _check_batch_size(batch_size)
    target_layer = _resolve_layer(module, layer)
    run_device = _module_device(module, device)

    heatmaps = np.zeros((n_images, height, width), dtype=np.float32)
    used_indices = np.zeros(n_images, dtype=np.int64)
    if n_images == 0:
        return heatmaps, used_indices

    # pytorch-grad-cam's __exit__ swallows IndexError (after printing it),
    # which would return unfilled heatmaps; keep it and raise it below.
    index_error = None
    with _network_untouched(module), _quiet_progress_bars(cam_class):
        cam = _make_cam(cam_class, module, target_layer, batch_size)
        with cam:
            handle = None
            if cam_class is not FullGrad:
                handle = target_layer.register_forward_hook(
                    _layer_output_hook(target_layer, cam.uses_gradients), prepend=True
                )
            try:
                for start in range(0, n_images, batch_size):
                    stop = min(start + batch_size, n_images)
                    batch = torch.from_numpy(images[start:stop]).to(run_device)
                    targets = None
                    if class_indices is not None:
                        targets = [
                            ClassifierOutputTarget(int(c)) for c in class_indices[start:stop]
                        ]
                    heatmaps[start:stop] = cam(input_tensor=batch, targets=targets)
                    if class_indices is None:
                        # The CAM's own forward pass picked the predicted class.
                        used_indices[start:stop] = cam.outputs.argmax(dim=-1).cpu().numpy()
                    else:
                        used_indices[start:stop] = class_indices[start:stop]
                    # Drop the graph kept for the backward pass before the next batch.
                    cam.outputs = None
            except IndexError as error:
                index_error = error
            finally:
                if handle is not None:
                    handle.remove()
                if cam_class is AblationCAM:
                    # AblationCAM swaps the layer out while it runs and only
                    # swaps it back when it finishes without error.
                    replace_layer_recursive(module, cam.ablation_layer, target_layer)
                outputs = getattr(cam, "outputs", None)
                n_outputs = None if outputs is None else outputs.shape[-1]
    if index_error is not None:
        if class_indices is not None and n_outputs is not None:
            bad = class_indices[(class_indices >= n_outputs)]
            if bad.size:
                raise ValueError(
                    f"class_indices holds {sorted(set(bad.tolist()))}, but the network "
                    f"has only {n_outputs} outputs; expected indices in [0, {n_outputs - 1}]."
                ) from index_error
        raise index_error
    np.nan_to_num(heatmaps, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(heatmaps, 0.0, 1.0, out=heatmaps)
    return heatmaps, used_indices


def _make_cam(cam_class, module, target_layer, batch_size):
    if cam_class is FullGrad:
        # FullGrad picks its own layers and warns when given any.
        return FullGrad(module, [])
    if cam_class is AblationCAM:
        # A fresh ablation layer: the default argument is one shared instance.
        return AblationCAM(
            module, [target_layer], ablation_layer=AblationLayer(), batch_size=batch_size
        )
    cam = cam_class(module, [target_layer])
    if cam_class is ScoreCAM:
        cam.batch_size = batch_size  # masked copies per forward pass
    return cam


def _layer_output_hook(target_layer, uses_gradients):
    """Check the layer's output and start the gradient tape there.

    The parameters are frozen while explaining, so nothing below the layer
    is recorded for autograd: a gradient method's backward pass runs from
    the class score down to the layer's output and stops, and no weight
    gradient is ever computed. Making the output a leaf that requires grad
    lets pytorch-grad-cam hook its gradient as usual.
    """

    def hook(layer, inputs, output):
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            if isinstance(output, torch.Tensor):
                shape = tuple(output.shape)
            else:
                shape = type(output).__name__
            raise ValueError(
                f"The CAM layer {type(target_layer).__name__} outputs {shape}; CAM methods "
                "need a convolutional layer whose output is (n, channels, height, width). "
                "Pass layer= the name of a convolution or convolution block."
            )
        if uses_gradients and torch.is_grad_enabled() and not output.requires_grad:
            return output.detach().requires_grad_()
        return None

    return hook


# -- faithfulness ---------------------------------------------------------------


def faithfulness_scores(
    module,
    images,
    class_indices,
    heatmaps,
    *,
    metric="confidence_drop",
    percentile=None,
    batch_size=32,
    device="cpu",
    random_state=0,
):
    """How faithfully each heatmap reflects what the network relies on.

    A heatmap is faithful when the pixels it marks are the ones the
    prediction depends on. Each metric perturbs the image according to the
    heatmap and measures the change in the explained class's softmax
    probability. For every metric, **higher means more faithful**.

    * ``"confidence_drop"``: ``p(image) - p(image with its most relevant
      pixels removed)``, in [-1, 1]. The pixels above the heatmap's
      ``percentile`` (default 80: the top 20 %) are removed by ROAD's noisy
      linear imputation (they are filled in from their neighbours). Near 0
      or negative: removing what the map marks does not matter to the
      network.
    * ``"decision_flip"``: 1 when the explained class is the network's top
      class before the most relevant pixels are removed (as for
      ``"confidence_drop"``) and no longer after, 0 when removal changes
      nothing, -1 when the class becomes the top one. Its mean is the
      share of decisions the marked pixels carry. It depends only on which
      class wins, not on how confident the network is, so unlike the
      probability-unit metrics it compares networks of different
      calibration (label smoothing, temperature scaling).
    * ``"road"``: ROAD (Rong et al., 2022, "A consistent and efficient
      evaluation strategy for attribution methods"), as pytorch-grad-cam's
      ``ROADCombined``: the mean over ``percentile`` thresholds (default
      20, 40, 60, 80) of ``(p(least relevant removed) - p(most relevant
      removed)) / 2``, in [-0.5, 0.5]. Comparing both orders cancels the
      effect of the imputation itself.
    * ``"cam_mult"``: pytorch-grad-cam's ``CamMultImageConfidenceChange``:
      ``p(image * heatmap) - p(image)``, in [-1, 1]: keeping only what the
      map marks should keep the prediction (0 or above).

    Scores in probability units compare heatmaps of the *same* network and
    images (methods, layers, a map against a random one): a network that
    is less confident has less probability to lose. Across networks,
    compare ``"decision_flip"`` or each network's margin over a random
    map.

    Parameters
    ----------
    module : torch.nn.Module
        The network the heatmaps explain.
    images : ndarray of shape (n, C, H, W)
        The images, as the network takes them.
    class_indices : array-like of int of shape (n,) or None
        The class each heatmap explains; None for the predicted class.
    heatmaps : ndarray of shape (n, H, W)
        One heatmap per image, e.g. from :func:`compute_heatmaps`; larger
        means more relevant.
    metric : {"confidence_drop", "decision_flip", "road", "cam_mult"}, \
            default="confidence_drop"
        See above and :data:`FAITHFULNESS_METRICS`.
    percentile : float, sequence of float or None, default=None
        Heatmap percentile(s) in (0, 100) that split the pixels, as in
        pytorch-grad-cam's ROAD metrics: at ``percentile=80``, the 20 % of
        pixels with the largest heatmap values are the "most relevant" and
        the 20 % with the smallest the "least relevant". One number for
        ``"confidence_drop"`` and ``"decision_flip"``, one or more for
        ``"road"``; not used by
        ``"cam_mult"``. None takes the metric's default from
        :data:`FAITHFULNESS_METRICS`. Ties between equal heatmap values are
        broken at random, so exactly that share of pixels is removed even
        from a map with large flat (e.g. zero) regions.
    batch_size : int, default=32
        Images per forward pass.
    device : str or torch.device, default="cpu"
        Used only when the module's parameters do not give its device.
    random_state : int, RandomState instance or None, default=0
        Seeds the imputation noise and the tie-breaking (per image, so
        scores do not depend on ``batch_size``); torch's global random
        state is not touched.

    Returns
    -------
    scores : ndarray of shape (n,), dtype float32
        Higher is more faithful.

    Raises
    ------
    ValueError
        For an unknown metric, a percentile outside (0, 100), heatmaps
        whose shape differs from the images', or malformed images, class
        indices or batch size.

    See Also
    --------
    compute_heatmaps : The heatmaps to score.
    heatmap_energy_in_mask : Localisation against a known region.

    Notes
    -----
    Removed pixels are filled in with pytorch-grad-cam's ROAD imputation
    (``NoisyLinearImputer``: the average of the neighbours plus a little
    noise), which solves a sparse linear system per image and threshold, so
    ``"road"`` costs about ``2 * len(percentile)`` times
    ``"confidence_drop"``. Unlike pytorch-grad-cam's threshold-based
    ``RemoveMostRelevantFirst``, the pixels are ranked, so exactly the
    share asked for is removed even where the map is flat. The network is
    left untouched, as in :func:`compute_heatmaps`.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from ckdlearn.nets import CKDNet
    >>> from ckdlearn.cam import compute_heatmaps, faithfulness_scores
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
    if metric not in FAITHFULNESS_METRICS:
        raise ValueError(
            f"Unknown faithfulness metric {metric!r}; expected one of "
            f"{sorted(FAITHFULNESS_METRICS)}."
        )
    images = _check_images(images)
    n_images = images.shape[0]
    heatmaps = _check_heatmaps(heatmaps, images.shape)
    class_indices = _check_class_indices(class_indices, n_images)
    batch_size = _check_batch_size(batch_size)
    percentiles = _check_percentiles(metric, percentile)
    run_device = _module_device(module, device)
    seed = int(check_random_state(random_state).randint(2**31 - 1))
    imputer = _SeededImputer()

    scores = np.zeros(n_images, dtype=np.float32)
    with _network_untouched(module), torch.no_grad():
        for start in range(0, n_images, batch_size):
            stop = min(start + batch_size, n_images)
            batch = torch.from_numpy(images[start:stop]).to(run_device)
            maps = heatmaps[start:stop]
            logits = module(batch)
            if class_indices is None:
                classes = logits.argmax(dim=-1).cpu().numpy()
            else:
                classes = class_indices[start:stop]
                if classes.size and classes.max() >= logits.shape[-1]:
                    raise ValueError(
                        f"class_indices holds {int(classes.max())}, but the network has "
                        f"only {logits.shape[-1]} outputs; expected indices in "
                        f"[0, {logits.shape[-1] - 1}]."
                    )
            targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes]
            if metric == "cam_mult":
                change = CamMultImageConfidenceChange()(batch, maps, targets, module)
                scores[start:stop] = change
                continue
            before = _target_scores(logits, targets)
            was_top = logits.argmax(dim=-1).cpu().numpy() == classes
            batch_scores = np.zeros(stop - start, dtype=np.float32)
            for step, threshold in enumerate(percentiles):
                removal = dict(
                    module=module, images=batch, heatmaps=maps, targets=targets,
                    percentile=threshold, imputer=imputer,
                    # One generator per image, threshold and order, so the
                    # scores do not depend on batch_size.
                    seeds=[(seed, start + i, step) for i in range(stop - start)],
                )
                most_removed, top_after = _scores_after_removal(most_relevant_first=True, **removal)
                if metric == "confidence_drop":
                    batch_scores += before - most_removed
                elif metric == "decision_flip":
                    is_top = top_after == classes
                    batch_scores += was_top.astype(np.float32) - is_top.astype(np.float32)
                else:
                    least_removed, _ = _scores_after_removal(most_relevant_first=False, **removal)
                    batch_scores += (least_removed - most_removed) / 2
            scores[start:stop] = batch_scores / len(percentiles)
    return scores


def _target_scores(logits, targets):
    return np.float32([target(output).cpu().numpy() for target, output in zip(targets, logits)])


def _scores_after_removal(
    module, images, heatmaps, targets, percentile, imputer, seeds, most_relevant_first
):
    """Target scores and top classes once each image has lost its most
    (least) relevant pixels."""
    perturbed = [
        _remove_ranked(
            image, heatmap, percentile, most_relevant_first, imputer,
            np.random.default_rng([*image_seed, int(most_relevant_first)]),
        )
        for image, heatmap, image_seed in zip(images.cpu(), heatmaps, seeds)
    ]
    outputs = module(torch.stack(perturbed).to(images.device))
    return _target_scores(outputs, targets), outputs.argmax(dim=-1).cpu().numpy()


def _remove_ranked(image, heatmap, percentile, most_relevant_first, imputer, rng):
    """Impute a fixed share of the pixels, most or least relevant first.

    pytorch-grad-cam's ``RemoveMostRelevantFirst`` thresholds the heatmap
    at a percentile, so on a Grad-CAM map that is zero over half the image
    every threshold below 50 removes the whole image. Ranking the pixels
    (ties in random order) removes exactly the share asked for, which keeps
    the scores of sparse and dense maps comparable.
    """
    values = heatmap.reshape(-1)
    n_pixels = values.size
    n_removed = int(round(n_pixels * (100 - percentile) / 100))
    n_removed = min(max(n_removed, 1), n_pixels - 1) if n_pixels > 1 else 0
    if n_removed == 0:
        return image
    order = np.lexsort((rng.random(n_pixels), values))  # ascending relevance
    removed = order[-n_removed:] if most_relevant_first else order[:n_removed]
    keep = np.ones(n_pixels, dtype=np.float32)
    keep[removed] = 0
    return imputer(image, keep.reshape(heatmap.shape), rng)


class _SeededImputer(NoisyLinearImputer):
    """ROAD's noisy linear imputation with a given random generator.

    Same equations as pytorch-grad-cam's ``NoisyLinearImputer``, solved on
    numpy arrays, with the noise drawn from ``rng`` rather than torch's
    global generator.
    """

    def __call__(self, image, keep, rng):
        image_np = image.numpy()
        keep_np = np.asarray(keep)
        flat = image_np.reshape(image_np.shape[0], -1).copy()
        missing = np.flatnonzero(keep_np.reshape(-1) == 0)
        if missing.size == 0:
            return image
        system, rhs = self.setup_sparse_system(keep_np, image_np, self.weighting)
        solution = np.asarray(spsolve(csc_matrix(system), rhs)).reshape(missing.size, -1)
        noise = self.noise * rng.standard_normal(solution.shape)
        flat[:, missing] = (solution + noise).T
        return torch.from_numpy(flat.reshape(image_np.shape).astype(np.float32))


# -- localisation ---------------------------------------------------------------


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
    >>> from ckdlearn.cam import heatmap_energy_in_mask
    >>> heatmaps = np.zeros((2, 4, 4), dtype=np.float32)
    >>> heatmaps[0, :2, :2] = 1          # all mass in the upper-left quarter
    >>> heatmaps[1] = 1                  # spread evenly
    >>> mask = np.zeros((4, 4), dtype=bool)
    >>> mask[:2, :2] = True
    >>> heatmap_energy_in_mask(heatmaps, mask)
    array([1.  , 0.25], dtype=float32)
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float64)
    if heatmaps.ndim != 3:
        raise ValueError(
            f"heatmaps must be (n, H, W); got an array of shape {heatmaps.shape}."
        )
    if not np.all(np.isfinite(heatmaps)) or np.any(heatmaps < 0):
        raise ValueError(
            "heatmaps must be finite and non-negative (e.g. compute_heatmaps' "
            "output in [0, 1])."
        )
    masks = np.asarray(masks)
    if masks.shape not in (heatmaps.shape, heatmaps.shape[1:]):
        raise ValueError(
            f"masks must be (n, H, W) = {heatmaps.shape} or (H, W) = "
            f"{heatmaps.shape[1:]}; got shape {masks.shape}."
        )
    inside = (heatmaps * (masks != 0)).sum(axis=(1, 2))
    total = heatmaps.sum(axis=(1, 2))
    energy = np.divide(inside, total, out=np.zeros_like(total), where=total > 0)
    return energy.astype(np.float32)


# -- estimators and pipelines ---------------------------------------------------


def explain(
    estimator,
    X,
    *,
    method="gradcam",
    target=None,
    layer=None,
    batch_size=None,
    return_scores=False,
):
    """Explain the predictions of a fitted classifier, or of a pipeline ending in one.

    For a scikit-learn or imbalanced-learn pipeline, ``X`` is what the
    pipeline's ``predict`` takes: it goes through every step before the
    last that transforms (samplers such as SMOTE, which only act during
    ``fit``, are skipped, as imbalanced-learn does at predict time), then
    the final step's ``explain`` produces the heatmaps. Anything else must
    have an ``explain`` method itself, as :class:`~ckdlearn.CKDNetClassifier`
    does.

    Parameters
    ----------
    estimator : estimator or Pipeline
        A fitted :class:`~ckdlearn.CKDNetClassifier` (or any fitted object
        with the same ``explain`` method), a fitted ``Pipeline`` whose last
        step is one, or a fitted search (e.g. ``GridSearchCV``) whose
        ``best_estimator_`` is either.
    X : array-like
        The input the pipeline (or estimator) predicts on.
    method : str, default="gradcam"
        A key of :data:`CAM_METHODS`.
    target : label, array-like of labels or None, default=None
        The class to explain, in the classifier's own labels: None explains
        each image's predicted class; one label explains that class for
        every image; an array gives one label per image.
    layer : str, torch.nn.Module or None, default=None
        The network layer to explain, see :func:`compute_heatmaps`.
    batch_size : int or None, default=None
        Images per pass; the classifier's ``batch_size`` when None.
    return_scores : bool, default=False
        Also return :func:`faithfulness_scores` (``"confidence_drop"``).

    Returns
    -------
    heatmaps : ndarray of shape (n, H, W), dtype float32
        Values in [0, 1] at the resolution the network sees.
    scores : ndarray of shape (n,), dtype float32
        Only when ``return_scores=True``; higher is more faithful.

    Raises
    ------
    TypeError
        If the estimator (or the pipeline's last step) has no ``explain``
        method, or an intermediate pipeline step can neither transform nor
        resample.
    sklearn.exceptions.NotFittedError
        If the classifier is not fitted.
    ValueError
        For an unknown method, layer or target label, or malformed ``X``.

    See Also
    --------
    compute_heatmaps : The engine, on a network and image batch.
    faithfulness_scores : The scores ``return_scores=True`` adds.

    Examples
    --------
    >>> import numpy as np
    >>> from imblearn.over_sampling import SMOTE
    >>> from imblearn.pipeline import make_pipeline
    >>> import ckdlearn
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(30, 16 * 16).astype(np.float32)
    >>> y = np.array(["Cyst"] * 20 + ["Stone"] * 10)
    >>> X[y == "Stone", :64] += 1.0
    >>> pipe = make_pipeline(
    ...     SMOTE(k_neighbors=2, random_state=0),
    ...     ckdlearn.CKDNetClassifier(max_epochs=2, module__width=4, module__depth=2,
    ...                               augment=None, random_state=0),
    ... ).fit(X, y)
    >>> ckdlearn.explain(pipe, X[:3], target="Stone").shape
    (3, 16, 16)
    """
    explainer, Xt = _explainer_and_input(estimator, X)
    return explainer.explain(
        Xt,
        method=method,
        target=target,
        layer=layer,
        batch_size=batch_size,
        return_scores=return_scores,
    )


def _explainer_and_input(estimator, X):
    """The object whose ``explain`` to call, and the input it should get."""
    if not hasattr(estimator, "explain") and hasattr(estimator, "best_estimator_"):
        estimator = estimator.best_estimator_
    steps = getattr(estimator, "steps", None)
    if steps is None or hasattr(estimator, "explain"):
        if not hasattr(estimator, "explain"):
            raise TypeError(
                f"explain needs a fitted classifier with an explain method, such as "
                f"ckdlearn.CKDNetClassifier, or a Pipeline ending in one; got "
                f"{type(estimator).__name__}, which has no explain method."
            )
        if hasattr(estimator, "fit"):
            check_is_fitted(estimator)
        return estimator, X
    if not steps:
        raise TypeError(
            "explain got a Pipeline with no steps; expected one ending in a classifier."
        )
    final_name, final = steps[-1]
    if not hasattr(final, "explain") and not hasattr(final, "steps"):
        raise TypeError(
            f"explain needs a Pipeline whose last step has an explain method, such as "
            f"ckdlearn.CKDNetClassifier; its last step {final_name!r} is "
            f"{type(final).__name__ if not isinstance(final, str) else repr(final)}."
        )
    if hasattr(final, "explain") and hasattr(final, "fit"):
        check_is_fitted(final)
    Xt = X
    for name, step in steps[:-1]:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        if hasattr(step, "fit_resample"):
            # Samplers change the training set only; predictions see X as is.
            continue
        if not hasattr(step, "transform"):
            raise TypeError(
                f"Pipeline step {name!r} ({type(step).__name__}) has neither transform "
                "nor fit_resample, so explain cannot pass X through it."
            )
        Xt = step.transform(Xt)
    return _explainer_and_input(final, Xt)


# -- shared checks and context --------------------------------------------------


@contextmanager
def _network_untouched(module):
    """Eval mode and frozen parameters inside; the module as it was after."""
    modes = [(submodule, submodule.training) for submodule in module.modules()]
    parameters = list(module.parameters())
    requires_grad = [parameter.requires_grad for parameter in parameters]
    module.eval()
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(parameters, requires_grad):
            parameter.requires_grad_(flag)
            parameter.grad = None
        for submodule, mode in modes:
            submodule.training = mode


@contextmanager
def _quiet_progress_bars(cam_class):
    """Silence the progress bar ScoreCAM and AblationCAM draw per image."""
    if cam_class not in (ScoreCAM, AblationCAM):
        yield
        return
    chatty = [importlib.import_module(name) for name in _CHATTY_MODULES]
    originals = [module.tqdm for module in chatty]
    silent = SimpleNamespace(tqdm=lambda iterable, *args, **kwargs: iterable)
    for module in chatty:
        module.tqdm = silent
    try:
        yield
    finally:
        for module, original in zip(chatty, originals):
            module.tqdm = original


def _check_method(method):
    if not isinstance(method, str) or method not in CAM_METHODS:
        raise ValueError(
            f"Unknown CAM method {method!r}; expected one of {list(CAM_METHODS)}."
        )
    return CAM_METHODS[method]


def _check_images(images):
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"images must be a 4-D array (n, channels, height, width); got shape "
            f"{images.shape}. Use CKDNetClassifier.to_images(X) to shape flat rows."
        )
    if not np.issubdtype(images.dtype, np.number) or np.iscomplexobj(images):
        raise ValueError(f"images must hold real numbers; got dtype {images.dtype}.")
    images = np.ascontiguousarray(images, dtype=np.float32)
    if not np.all(np.isfinite(images)):
        raise ValueError("images hold NaN or infinite values; expected finite numbers.")
    return images


def _check_heatmaps(heatmaps, image_shape):
    heatmaps = np.asarray(heatmaps)
    expected = (image_shape[0], image_shape[2], image_shape[3])
    if heatmaps.shape != expected:
        raise ValueError(
            f"heatmaps must be (n, H, W) = {expected} to match images of shape "
            f"{tuple(image_shape)}; got shape {heatmaps.shape}."
        )
    heatmaps = np.ascontiguousarray(heatmaps, dtype=np.float32)
    if not np.all(np.isfinite(heatmaps)):
        raise ValueError("heatmaps hold NaN or infinite values; expected finite numbers.")
    return heatmaps


def _check_class_indices(class_indices, n_images):
    if class_indices is None:
        return None
    indices = np.asarray(class_indices)
    if indices.shape != (n_images,):
        raise ValueError(
            f"class_indices must be None or one class index per image, shape "
            f"({n_images},); got shape {indices.shape}."
        )
    if indices.size and (
        not np.issubdtype(indices.dtype, np.integer) or indices.dtype == np.bool_
    ):
        raise ValueError(
            f"class_indices must be integers (output positions); got dtype "
            f"{indices.dtype}. Map labels to positions first, e.g. with "
            "np.searchsorted(classes, labels)."
        )
    if indices.size and indices.min() < 0:
        raise ValueError(
            f"class_indices must be non-negative; got {int(indices.min())}."
        )
    return indices.astype(np.int64)


def _check_batch_size(batch_size):
    if (
        not isinstance(batch_size, numbers.Integral)
        or isinstance(batch_size, bool)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    return int(batch_size)


def _check_percentiles(metric, percentile):
    default = FAITHFULNESS_METRICS[metric]
    if default is None:
        return None
    if percentile is None:
        percentile = default
    values = np.atleast_1d(np.asarray(percentile, dtype=float))
    if metric != "road" and values.size != 1:
        raise ValueError(
            f"metric={metric!r} takes one percentile; got {percentile!r}. "
            'Use metric="road" to average over several.'
        )
    if values.ndim != 1 or values.size == 0 or not np.all((values > 0) & (values < 100)):
        raise ValueError(
            f"percentile must be a number (or, for metric='road', numbers) strictly "
            f"between 0 and 100; got {percentile!r}."
        )
    return values.tolist()


def _resolve_layer(module, layer):
    named = dict(module.named_modules())
    if layer is None:
        layer = getattr(module, "cam_layer", None)
        if layer is None:
            convolutions = [m for m in named.values() if isinstance(m, nn.Conv2d)]
            if not convolutions:
                raise ValueError(
                    f"{type(module).__name__} has no cam_layer attribute and no "
                    "torch.nn.Conv2d layer; pass layer= the name of the layer to explain. "
                    f"Layers: {_some_layer_names(named)}."
                )
            return convolutions[-1]
    if isinstance(layer, str):
        if not layer or layer not in named:
            raise ValueError(
                f"Unknown layer {layer!r}: {type(module).__name__} has no submodule of "
                f"that name. Valid names include {_some_layer_names(named)}; see "
                "dict(module.named_modules()) for all."
            )
        return named[layer]
    if isinstance(layer, nn.Module):
        if layer is module or not any(layer is m for m in named.values()):
            raise ValueError(
                f"layer must be a submodule of the network; the given "
                f"{type(layer).__name__} is not one of {type(module).__name__}'s "
                f"submodules ({_some_layer_names(named)}, ...)."
            )
        return layer
    raise TypeError(
        f"layer must be None, a submodule name or a torch.nn.Module; got "
        f"{type(layer).__name__}."
    )


def _some_layer_names(named, limit=12):
    shallow = [name for name in named if name and name.count(".") <= 1]
    names = shallow[:limit]
    return ", ".join(repr(name) for name in names) + (", ..." if len(shallow) > limit else "")


def _module_device(module, fallback):
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device(fallback)
