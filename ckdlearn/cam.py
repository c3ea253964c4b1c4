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
* :func:`randomisation_test` checks that the heatmaps depend on what the
  network learned: they should change when its weights are randomised,
  or when it is trained on shuffled labels (Adebayo et al., 2018);
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

import copy
import itertools
import sys
import warnings
from contextlib import contextmanager, nullcontext
from numbers import Real
from types import MappingProxyType, SimpleNamespace
from unittest import mock

import numpy as np
import torch
import pytorch_grad_cam as grad_cam
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from pytorch_grad_cam.metrics.road import NoisyLinearImputer
from pytorch_grad_cam.utils.find_layers import replace_layer_recursive
from pytorch_grad_cam.utils.model_targets import (
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
)
from scipy.ndimage import uniform_filter
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .pipeline import final_step_input
from .validation import IntegerInterval, check_images

__all__ = [
    "CAM_METHODS",
    "FAITHFULNESS_METRICS",
    "compute_heatmaps",
    "explain",
    "faithfulness_scores",
    "heatmap_energy_in_mask",
    "randomisation_test",
]

#: CAM methods by name: the pytorch-grad-cam class each name runs. Most
#: need one forward and one backward pass per batch ("eigencam" a forward
#: pass only); "scorecam" and "ablationcam" need a forward pass per channel
#: of the layer *for every image*. "fullgrad" ignores ``layer``.
CAM_METHODS = MappingProxyType(
    {
        "gradcam": grad_cam.GradCAM,
        "gradcam++": grad_cam.GradCAMPlusPlus,
        "hirescam": grad_cam.HiResCAM,
        "xgradcam": grad_cam.XGradCAM,
        "layercam": grad_cam.LayerCAM,
        "eigencam": grad_cam.EigenCAM,
        "eigengradcam": grad_cam.EigenGradCAM,
        "gradcamelementwise": grad_cam.GradCAMElementWise,
        "scorecam": grad_cam.ScoreCAM,
        "ablationcam": grad_cam.AblationCAM,
        "fullgrad": grad_cam.FullGrad,
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

# Constraints shared by the functions that run a network over images.
_NETWORK_PARAMETERS = {
    "module": [nn.Module],
    "images": ["array-like"],
    "class_indices": ["array-like", None],
    "batch_size": [IntegerInterval(1, None, closed="left")],
    "device": [str, torch.device],
}


# -- heatmaps -------------------------------------------------------------------


@validate_params(
    {**_NETWORK_PARAMETERS, "method": [StrOptions(set(CAM_METHODS))], "layer": [str, nn.Module, None]},
    prefer_skip_nested_validation=True,
)
def compute_heatmaps(
    module, images, class_indices=None, *, method="gradcam", layer=None, batch_size=32, device="cpu"
):
    """Class activation heatmaps of a network for a batch of images.

    For each image, the chosen CAM method weighs the feature maps of
    ``layer`` by how much they support the explained class, and upsamples
    the result to the image size: bright where the evidence is.

    Parameters
    ----------
    module : torch.nn.Module
        The network, mapping ``(n, C, H, W)`` float tensors to logits
        ``(n, n_classes)``; run where its parameters are, left as found.
    images : ndarray of shape (n, C, H, W)
        The images, as the network takes them (cast to float32).
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
        Used only when the module's parameters do not give its device
        (pytorch-grad-cam runs the model where its parameters are).

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
        For an unknown method; a layer that is not a submodule (name) or
        does not output 4-D feature maps; images that are not 4-D; class
        indices of the wrong length or dtype, or beyond the network's
        outputs; a batch size that is not a positive integer.
    TypeError
        If ``layer`` is neither a string, a module nor None.

    See Also
    --------
    faithfulness_scores : Check the heatmaps against the network.
    randomisation_test : Check that the heatmaps depend on the weights.
    explain : Heatmaps for a fitted classifier or pipeline.
    CKDNetClassifier.explain : The same on the classifier's raw input.

    Notes
    -----
    The network runs in eval mode with its parameters frozen, so the
    backward pass of gradient methods stops at ``layer`` and never touches
    the weights; afterwards modes and ``requires_grad`` flags are restored,
    ``.grad`` attributes are None (as after pytorch-grad-cam's
    ``model.zero_grad()``) and all hooks are removed, also on error.

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
    cam_class = CAM_METHODS[method]
    images = _check_network_images(images)
    n_images = len(images)
    class_indices = _check_class_indices(class_indices, n_images)
    target_layer = _resolve_layer(module, layer)
    run_device = _module_device(module, device)
    heatmaps = np.zeros((n_images, *images.shape[2:]), dtype=np.float32)
    used = np.zeros(n_images, np.int64) if class_indices is None else class_indices
    if n_images == 0:
        return heatmaps, used

    with _network_untouched(module), _quiet_progress_bars(cam_class):
        cam = _make_cam(cam_class, module, target_layer, batch_size)
        # Not ``with cam``: its __exit__ swallows an IndexError (a class
        # index out of range) after printing it, leaving maps unfilled.
        handle = None if cam_class is grad_cam.FullGrad else target_layer.register_forward_hook(
            _layer_output_hook(target_layer, cam.uses_gradients), prepend=True)
        try:
            for start in range(0, n_images, batch_size):
                stop = min(start + batch_size, n_images)
                targets = None if class_indices is None else [
                    ClassifierOutputTarget(int(c)) for c in class_indices[start:stop]]
                batch = torch.from_numpy(images[start:stop]).to(run_device)
                heatmaps[start:stop] = cam(input_tensor=batch, targets=targets)
                if class_indices is None:  # the CAM's own forward pass picked the class
                    used[start:stop] = cam.outputs.argmax(dim=-1).cpu().numpy()
                cam.outputs = None  # drop the graph kept for the backward pass
        except IndexError as error:
            if cam.outputs is not None:
                _check_class_range(class_indices, cam.outputs.shape[-1], error)
            raise
        except RuntimeError as error:  # torch's words for input the network cannot take
            raise _input_error(module, images, error) from None
        finally:
            if handle is not None:
                handle.remove()
            cam.activations_and_grads.release()
            if cam_class is grad_cam.AblationCAM:
                # AblationCAM swaps the layer out while it runs and only
                # swaps it back when it finishes without error.
                replace_layer_recursive(module, cam.ablation_layer, target_layer)
    np.nan_to_num(heatmaps, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(heatmaps, 0.0, 1.0, out=heatmaps)
    return heatmaps, used


def _input_error(module, images, error):
    return ValueError(
        f"{type(module).__name__} cannot take images of shape {images.shape[1:]} "
        f"(channels, height, width): {error}. Pass images as the network was trained on them."
    )


def _make_cam(cam_class, module, target_layer, batch_size):
    if cam_class is grad_cam.FullGrad:
        return grad_cam.FullGrad(module, [])  # it picks its own layers, and warns when given any
    if cam_class is grad_cam.AblationCAM:  # a fresh layer: the default is one shared instance
        return cam_class(module, [target_layer], ablation_layer=AblationLayer(), batch_size=batch_size)
    cam = cam_class(module, [target_layer])
    cam.batch_size = batch_size  # ScoreCAM: masked copies per forward pass
    return cam


def _layer_output_hook(target_layer, uses_gradients):
    """Check the layer's output and start the gradient tape there.

    With the parameters frozen, nothing below the layer is recorded, so a
    gradient method's backward pass stops at the layer's output and no
    weight gradient is computed; making that output a leaf that requires
    grad lets pytorch-grad-cam hook its gradient as usual.
    """

    def hook(layer, inputs, output):
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ValueError(f"The CAM layer {type(target_layer).__name__} outputs {shape}; CAM "
                             "methods need a convolutional layer whose output is (n, channels, "
                             "height, width). Pass layer= the name of a convolution or block.")
        if uses_gradients and torch.is_grad_enabled() and not output.requires_grad:
            return output.detach().requires_grad_()
        return None

    return hook


def _quiet_progress_bars(cam_class):
    """Silence the tqdm bar ScoreCAM and AblationCAM draw per image."""
    if cam_class not in (grad_cam.ScoreCAM, grad_cam.AblationCAM):
        return nullcontext()
    silent = SimpleNamespace(tqdm=lambda iterable, *args, **kwargs: iterable)
    return mock.patch.object(sys.modules[cam_class.__module__], "tqdm", silent)


# -- faithfulness ---------------------------------------------------------------


@validate_params(
    {
        **_NETWORK_PARAMETERS,
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
    images = _check_network_images(images)
    n_images = len(images)
    if tuple(np.shape(heatmaps)) != (n_images, *images.shape[2:]):
        raise ValueError(f"heatmaps must be (n, H, W) = {(n_images, *images.shape[2:])} to match "
                         f"images of shape {images.shape}; got shape {np.shape(heatmaps)}.")
    if n_images:
        heatmaps = np.asarray(check_images(heatmaps, name="heatmaps")[:, 0], dtype=np.float32)
    class_indices = _check_class_indices(class_indices, n_images)
    percentiles = _check_percentiles(metric, percentile)
    run_device = _module_device(module, device)
    seed = int(check_random_state(random_state).randint(2**31 - 1))

    scores = np.zeros(n_images, dtype=np.float32)
    # The imputation noise comes from torch's generator, seeded per image;
    # numpy warns about the torch masks the imputer indexes with.
    with _network_untouched(module), torch.no_grad(), torch.random.fork_rng(devices=[]), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", "__array_wrap__", DeprecationWarning)
        for start in range(0, n_images, batch_size):
            stop = min(start + batch_size, n_images)
            batch = torch.from_numpy(images[start:stop]).to(run_device)
            maps = heatmaps[start:stop]
            try:
                logits = module(batch)
            except RuntimeError as error:
                raise _input_error(module, images, error) from None
            if class_indices is None:
                classes = logits.argmax(dim=-1).cpu().numpy()
            else:
                classes = class_indices[start:stop]
                _check_class_range(classes, logits.shape[-1])
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


# -- sanity checks --------------------------------------------------------------


@validate_params(
    {
        "estimator": "no_validation",
        "X": ["array-like"],
        "test": [StrOptions({"cascading", "labels"})],
        "methods": [StrOptions(set(CAM_METHODS)), list, tuple],
        "X_train": ["array-like", None],
        "y_train": ["array-like", None],
        "fit_params": [dict, None],
        "shuffled_estimator": "no_validation",
        "stages": [list, tuple, None],
        "layer": [str, None],
        "batch_size": [IntegerInterval(1, None, closed="left"), None],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def randomisation_test(
    estimator,
    X,
    *,
    test="cascading",
    methods=("gradcam",),
    X_train=None,
    y_train=None,
    fit_params=None,
    shuffled_estimator=None,
    stages=None,
    layer=None,
    batch_size=None,
    random_state=0,
):
    """Do the heatmaps change when what the network learned is destroyed?

    The sanity checks of Adebayo et al. (2018, "Sanity checks for saliency
    maps"). A heatmap that explains a prediction must depend on the
    network's weights and on the labels they were learned from; a method
    whose maps barely change when both are randomised shows the image (its
    edges, its bright regions), not the model.

    * ``test="cascading"``, the model-parameter randomisation test: on a
      copy of the network, re-initialise the classifier head, then each
      block below it in turn (top-down, cumulatively), and compute the maps
      at each stage.
    * ``test="labels"``, the data randomisation test: train a clone of the
      estimator on ``X_train`` with ``y_train`` permuted at random, and
      compute its maps.

    Each stage's map of an image is compared with the trained network's
    map of the same image, for the same class (the one the trained network
    predicts), by Spearman's rank correlation and by SSIM. A method passes
    when the similarity is low: near the ``baseline``, the correlation
    between the trained maps of two *different* images.

    Parameters
    ----------
    estimator : estimator or Pipeline
        A fitted :class:`~ckdlearn.CKDNetClassifier`, a fitted pipeline
        ending in one, or a fitted search whose ``best_estimator_`` is
        either (as for :func:`explain`). It is not modified: the cascading
        test randomises a deep copy of its network, the label test a clone.
    X : array-like
        The images to explain, as the pipeline's ``predict`` takes them;
        held-out slices are the usual choice.
    test : {"cascading", "labels"}, default="cascading"
        Which randomisation, see above.
    methods : str or list of str, default=("gradcam",)
        Keys of :data:`CAM_METHODS`.
    X_train, y_train : array-like or None, default=None
        The training data for ``test="labels"`` (the clone is fitted on
        ``X_train`` and a permutation of ``y_train``); unused otherwise.
    fit_params : dict or None, default=None
        Extra arguments of the clone's ``fit``, e.g. ``{"groups": ...}``.
    shuffled_estimator : estimator or None, default=None
        For ``test="labels"``: a clone already trained on permuted labels,
        such as ``result.shuffled_estimator`` of an earlier call, to explain
        other images without training again. ``X_train`` and ``y_train``
        are then optional.
    stages : list of str or None, default=None
        For ``test="cascading"``: names of the submodules to re-initialise,
        top layer first, from ``dict(module_.named_modules())``. None uses
        the network's top-level children that hold parameters, expanding
        ``nn.Sequential`` containers one level, in reverse order of
        registration; for :class:`~ckdlearn.nets.CKDNet` that is
        ``["classifier", "features.3", ..., "features.0"]``.
    layer : str or None, default=None
        The layer the CAM methods explain, by name, see
        :func:`compute_heatmaps`.
    batch_size : int or None, default=None
        Images per pass; the classifier's ``batch_size`` when None.
    random_state : int, RandomState instance or None, default=0
        Seeds the re-initialisation of each stage (cascading) or the label
        permutation (labels); torch's global random state is not touched
        by the cascading test.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        With keys

        ``test`` : str
            The test run.
        ``stages`` : list of str
            The cascading stages in order (``stages[k]`` is the submodule
            re-initialised last at stage ``k``, all before it stay
            re-initialised), or ``["labels"]``.
        ``methods`` : list of str
            The CAM methods, in order.
        ``spearman``, ``ssim`` : dict of str to ndarray of shape (n_stages, n)
            Per method, the similarity of each image's map at each stage
            with its trained map. Spearman's rho is in [-1, 1]; a map that
            is constant has no ranking and scores 0. SSIM uses a 7 x 7
            uniform window on maps in [0, 1].
        ``baseline`` : dict of str to ndarray of shape (n,)
            Per method, Spearman's rho between the trained maps of image
            ``i`` and image ``i - 1``: what two unrelated maps share
            (their common shape, e.g. the body outline).
        ``trained_heatmaps`` : dict of str to ndarray of shape (n, H, W)
            Per method, the trained network's maps.
        ``heatmaps`` : dict of str to ndarray of shape (n_stages, n, H, W)
            Per method, the maps at each stage.
        ``classes`` : ndarray of shape (n,)
            The class index each map explains, in ``classes_`` order.
        ``images`` : ndarray of shape (n, C, H, W)
            The images as the network sees them.
        ``shuffled_estimator`` : estimator
            Only for ``test="labels"``: the clone trained on permuted labels.
        ``train_accuracy`` : float or None
            Only for ``test="labels"``: the clone's accuracy on the
            permuted training labels (how far it memorised them); None
            for a ``shuffled_estimator`` given without training data.

    Raises
    ------
    ValueError
        For an unknown test or method, a stage that is not a submodule or
        holds no parameters, ``test="labels"`` without training data, a
        clone that learned a different set of classes, or malformed input.
    TypeError
        If the estimator (or the pipeline's last step) has no ``explain``
        method.
    sklearn.exceptions.NotFittedError
        If the classifier is not fitted.

    See Also
    --------
    faithfulness_scores : Whether the network relies on what a map marks.
    ckdlearn.plotting.plot_randomisation_test : Draw the result.

    Notes
    -----
    Re-initialising a submodule calls ``reset_parameters()`` on it and on
    each of its submodules that has one, as a freshly built network draws
    its weights: convolution and linear weights are drawn anew and
    batch-norm layers return to unit scale, zero shift and fresh running
    statistics. Parameters of modules without ``reset_parameters`` keep
    their values.

    Quantus (``quantus.MPRT``, ``quantus.RandomLogit``) was considered and
    not used: it requires opencv-python, scikit-image and pandas for this
    one check; its cascade re-initialises every layer with
    ``reset_parameters`` one at a time (each convolution and batch-norm
    separately: about twenty CAM passes for a 4-block CKDNet instead of
    five) after seeding torch's *global* generator with the same seed at
    every layer; and ``RandomLogit`` is the random-class test of Sixt et
    al. (2020), not the label randomisation of Adebayo et al., which needs
    the estimator's own ``fit``. Captum has no randomisation test. What is
    used here is torch's own initialisers, scipy's ``rankdata`` and the
    CAM methods of pytorch-grad-cam.

    The label test trains the clone with the estimator's own settings
    (epochs, augmentation, resampling); Adebayo et al. trained until the
    random labels were memorised. ``train_accuracy`` says how far the
    clone got.

    Examples
    --------
    >>> import numpy as np
    >>> import ckdlearn
    >>> from ckdlearn.cam import randomisation_test
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(40, 16 * 16).astype(np.float32)
    >>> y = np.repeat(["Cyst", "Stone"], 20)
    >>> X[y == "Stone", :64] += 1.0
    >>> clf = ckdlearn.CKDNetClassifier(max_epochs=3, module__width=4, module__depth=2,
    ...                                 augment=None, random_state=0).fit(X, y)
    >>> result = randomisation_test(clf, X[:6], methods=["gradcam", "eigencam"])
    >>> result.stages
    ['classifier', 'features.1', 'features.0']
    >>> result.spearman["gradcam"].shape
    (3, 6)
    >>> float(result.spearman["eigencam"][0].min())  # class-agnostic: ignores the head
    1.0
    >>> labels = randomisation_test(clf, X[:6], test="labels", X_train=X, y_train=y)
    >>> labels.stages, labels.ssim["gradcam"].shape
    (['labels'], (1, 6))
    """
    methods = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in methods if not isinstance(m, str) or m not in CAM_METHODS]
    if not methods or unknown:
        raise ValueError(
            f"methods must name at least one CAM method, from {sorted(CAM_METHODS)}; "
            f"got {unknown if unknown else methods!r}."
        )
    explainer, Xt = _explainer_and_input(estimator, X)
    images = explainer.to_images(Xt)
    options = dict(layer=layer, batch_size=batch_size or explainer.batch_size,
                   device=explainer.device)
    trained, classes = {}, None
    for method in methods:  # the first method's pass finds the predicted classes
        trained[method], classes = compute_heatmaps(
            explainer.module_, images, classes, method=method, **options)
    rng = check_random_state(random_state)
    randomised = {method: [] for method in methods}
    result = Bunch(test=test, methods=methods)

    if test == "cascading":
        result.stages = _cascade_stages(explainer.module_, stages)
        network = copy.deepcopy(explainer.module_)
        submodules = dict(network.named_modules())
        for name in result.stages:
            _reinitialise(submodules[name], int(rng.randint(2**31 - 1)))
            for method in methods:
                maps, _ = compute_heatmaps(network, images, classes, method=method, **options)
                randomised[method].append(maps)
    else:
        has_data = X_train is not None and y_train is not None
        if shuffled_estimator is None and not has_data:
            raise ValueError(
                "test='labels' trains a clone of the estimator on permuted labels: "
                "pass its training data as X_train= and y_train=."
            )
        shuffled = rng.permutation(np.asarray(y_train)) if has_data else None
        clone_ = shuffled_estimator
        if clone_ is None:
            base = getattr(estimator, "best_estimator_", estimator)
            base = estimator if hasattr(estimator, "explain") else base
            clone_ = clone(base).fit(X_train, shuffled, **(fit_params or {}))
        clone_explainer, clone_Xt = _explainer_and_input(clone_, X)
        if not np.array_equal(clone_explainer.classes_, explainer.classes_):
            raise ValueError(
                f"The clone trained on y_train learned the classes "
                f"{list(clone_explainer.classes_)}, the estimator "
                f"{list(explainer.classes_)}; pass the training data of the estimator."
            )
        clone_images = clone_explainer.to_images(clone_Xt)
        for method in methods:
            maps, _ = compute_heatmaps(
                clone_explainer.module_, clone_images, classes, method=method, **options)
            randomised[method].append(maps)
        result.update(stages=["labels"], shuffled_estimator=clone_,
                      train_accuracy=float(clone_.score(X_train, shuffled)) if has_data else None)

    previous = np.roll(np.arange(len(images)), 1)
    result.update(
        trained_heatmaps=trained,
        heatmaps={method: np.stack(maps) for method, maps in randomised.items()},
        classes=classes,
        images=images,
    )
    result.spearman = {m: _rank_correlation(trained[m], result.heatmaps[m]) for m in methods}
    result.ssim = {m: _structural_similarity(trained[m], result.heatmaps[m]) for m in methods}
    result.baseline = {m: _rank_correlation(trained[m], trained[m][previous]) for m in methods}
    return result


def _cascade_stages(module, stages):
    """Names of the submodules to re-initialise, top layer first."""
    named = dict(module.named_modules())
    if stages is None:
        stages = []
        for name, child in module.named_children():
            if isinstance(child, (nn.Sequential, nn.ModuleList)):
                stages += [f"{name}.{sub}" for sub, grandchild in child.named_children()
                           if any(True for _ in grandchild.parameters())]
            elif any(True for _ in child.parameters()):
                stages.append(name)
        stages = stages[::-1]
    bad = [name for name in stages if not isinstance(name, str) or name not in named
           or name == "" or not any(True for _ in named[name].parameters())]
    if bad or not stages:
        raise ValueError(
            f"stages must name submodules of {type(module).__name__} that hold "
            f"parameters, top layer first; got {bad if bad else list(stages)!r}. "
            f"Submodules include {_some_layer_names(named)}."
        )
    return list(stages)


def _reinitialise(module, seed):
    """Draw a submodule's parameters afresh, seeded, torch's generators left as they were."""
    devices = sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for submodule in module.modules():
            if callable(getattr(submodule, "reset_parameters", None)):
                submodule.reset_parameters()


def _rank_correlation(reference, maps):
    """Spearman's rho per image: Pearson's r of the ranks, ties averaged."""
    reference = rankdata(reference.reshape(*reference.shape[:-2], -1), axis=-1)
    ranks = rankdata(maps.reshape(*maps.shape[:-2], -1), axis=-1)
    reference = reference - reference.mean(axis=-1, keepdims=True)
    ranks = ranks - ranks.mean(axis=-1, keepdims=True)
    products = (reference * ranks).sum(axis=-1)
    norms = np.sqrt((reference**2).sum(axis=-1) * (ranks**2).sum(axis=-1))
    rho = np.divide(products, norms, out=np.zeros_like(products), where=norms > 0)
    return np.clip(rho, -1, 1).astype(np.float32)


def _structural_similarity(reference, maps, window=7):
    """SSIM (Wang et al., 2004) per image, for values in [0, 1], uniform window."""
    x = np.broadcast_to(reference, maps.shape).astype(np.float64)
    y = maps.astype(np.float64)
    size = (1,) * (x.ndim - 2) + (window, window)

    def mean(values):
        return uniform_filter(values, size=size, mode="reflect")

    mean_x, mean_y = mean(x), mean(y)
    var_x, var_y = mean(x * x) - mean_x**2, mean(y * y) - mean_y**2
    covariance = mean(x * y) - mean_x * mean_y
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)) / (
        (mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim.mean(axis=(-2, -1)).astype(np.float32)


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


# -- estimators and pipelines ---------------------------------------------------


def explain(estimator, X, *, method="gradcam", target=None, layer=None, batch_size=None,
            return_scores=False):
    """Explain the predictions of a fitted classifier, or of a pipeline ending in one.

    For a pipeline, ``X`` is what its ``predict`` takes: it goes through
    ``pipeline[:-1].transform`` (samplers such as SMOTE act during ``fit``
    only and are skipped, as at predict time), then the last step's
    ``explain`` makes the heatmaps. Anything else must have an ``explain``
    method itself, as :class:`~ckdlearn.CKDNetClassifier` does.

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
        method, or a step before it can neither transform nor resample.
    sklearn.exceptions.NotFittedError
        If the classifier is not fitted.
    ValueError
        For an unknown method, layer or target label, or malformed ``X``.

    See Also
    --------
    compute_heatmaps : The engine, on a network and image batch.
    faithfulness_scores : The scores ``return_scores=True`` adds.
    randomisation_test : Sanity checks of the methods.

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
    return explainer.explain(Xt, method=method, target=target, layer=layer,
                             batch_size=batch_size, return_scores=return_scores)


def _explainer_and_input(estimator, X):
    """The object whose ``explain`` to call, and the input it should get."""
    if not hasattr(estimator, "explain") and hasattr(estimator, "best_estimator_"):
        estimator = estimator.best_estimator_
    final = estimator
    steps = getattr(estimator, "steps", None)
    if steps is not None and not hasattr(estimator, "explain"):
        if not steps:
            raise TypeError("explain got a Pipeline with no steps; expected one ending in a classifier.")
        name, last = steps[-1]
        if not hasattr(last, "explain") and not hasattr(last, "steps"):
            raise TypeError(f"explain needs a Pipeline whose last step has an explain method, such as "
                            f"ckdlearn.CKDNetClassifier; its last step {name!r} is "
                            f"{repr(last) if isinstance(last, str) else type(last).__name__}.")
        final, X = final_step_input(estimator, X)
    if not hasattr(final, "explain"):
        raise TypeError(f"explain needs a fitted classifier with an explain method, such as "
                        f"ckdlearn.CKDNetClassifier, or a Pipeline ending in one; got "
                        f"{type(final).__name__}, which has no explain method.")
    if hasattr(final, "fit"):
        check_is_fitted(final)
    return final, X


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


def _check_network_images(images):
    """``(n, C, H, W)`` float32, through the project's image validator."""
    shape = tuple(np.shape(images))
    if len(shape) != 4:
        raise ValueError(f"images must be a 4-D array (n, channels, height, width); got shape "
                         f"{shape}. Use CKDNetClassifier.to_images(X) to shape flat rows.")
    if shape[0] == 0:  # nothing to explain is not an error here
        return np.zeros(shape, dtype=np.float32)
    return np.ascontiguousarray(check_images(images, name="images"), dtype=np.float32)


def _check_class_indices(class_indices, n_images):
    if class_indices is None:
        return None
    indices = np.asarray(class_indices)
    if indices.shape != (n_images,):
        raise ValueError(f"class_indices must be None or one class index per image, shape "
                         f"({n_images},); got shape {indices.shape}.")
    if indices.size and indices.dtype.kind not in "iu":
        raise ValueError(f"class_indices must be integers (output positions); got dtype "
                         f"{indices.dtype}. Map labels to positions first, e.g. with "
                         "np.searchsorted(classes, labels).")
    if indices.size and indices.min() < 0:
        raise ValueError(f"class_indices must be non-negative; got {int(indices.min())}.")
    return indices.astype(np.int64)


def _check_class_range(class_indices, n_outputs, error=None):
    if class_indices is not None and class_indices.size and class_indices.max() >= n_outputs:
        bad = sorted(set(class_indices[class_indices >= n_outputs].tolist()))
        raise ValueError(f"class_indices holds {bad}, but the network has only {n_outputs} "
                         f"outputs; expected indices in [0, {n_outputs - 1}].") from error


def _resolve_layer(module, layer):
    named, network = dict(module.named_modules()), type(module).__name__
    layer = getattr(module, "cam_layer", None) if layer is None else layer
    if layer is None:
        convolutions = [m for m in named.values() if isinstance(m, nn.Conv2d)]
        if not convolutions:
            raise ValueError(f"{network} has no cam_layer attribute and no torch.nn.Conv2d layer; "
                             "pass layer= the name of the layer to explain. "
                             f"Layers: {_some_layer_names(named)}.")
        return convolutions[-1]
    if isinstance(layer, str):
        if not layer or layer not in named:
            raise ValueError(f"Unknown layer {layer!r}: {network} has no submodule of that name. "
                             f"Valid names include {_some_layer_names(named)}; see "
                             "dict(module.named_modules()) for all.")
        return named[layer]
    if layer is module or not any(layer is m for m in named.values()):
        raise ValueError(f"layer must be a submodule of the network; the given "
                         f"{type(layer).__name__} is not one of {network}'s submodules "
                         f"({_some_layer_names(named)}, ...).")
    return layer


def _some_layer_names(named, limit=12):
    shallow = [name for name in named if name and name.count(".") <= 1]
    names = ", ".join(repr(name) for name in shallow[:limit])
    return names + (", ..." if len(shallow) > limit else "")


def _module_device(module, fallback):
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    return torch.device(fallback) if tensor is None else tensor.device
