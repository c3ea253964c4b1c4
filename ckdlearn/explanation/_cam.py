"""The CAM engine: heatmaps of a network for a batch of images, on pytorch-grad-cam.

:func:`compute_heatmaps` runs one of :data:`CAM_METHODS` (pytorch-grad-cam's
classes) on a layer of the network, resolved from a name, a module or the
network's own ``cam_layer``, and releases every hook it registers, also
when it raises.
"""

import io
import warnings
from contextlib import contextmanager, redirect_stderr
from types import MappingProxyType

import numpy as np
import torch
import pytorch_grad_cam as grad_cam
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.utils.find_layers import replace_layer_recursive
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from ..utils._param_validation import StrOptions, validate_params
from ._network import (
    NETWORK_PARAMETERS,
    check_class_indices,
    check_class_range,
    check_network_images,
    input_error,
    module_device,
    network_untouched,
    some_layer_names,
)

__all__ = ["CAM_METHODS", "compute_heatmaps"]

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


@validate_params(
    {**NETWORK_PARAMETERS, "method": [StrOptions(set(CAM_METHODS))], "layer": [str, nn.Module, None]},
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
    >>> from ckdlearn.explanation import compute_heatmaps
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
    images = check_network_images(images)
    n_images = len(images)
    class_indices = check_class_indices(class_indices, n_images)
    target_layer = _resolve_layer(module, layer)
    run_device = module_device(module, device)
    heatmaps = np.zeros((n_images, *images.shape[2:]), dtype=np.float32)
    used = np.zeros(n_images, np.int64) if class_indices is None else class_indices
    if n_images == 0:
        return heatmaps, used

    with network_untouched(module), _quiet_progress_bars(cam_class):
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
                check_class_range(class_indices, cam.outputs.shape[-1], error)
            raise
        except RuntimeError as error:  # torch's words for input the network cannot take
            raise input_error(module, images, error) from None
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


@contextmanager
def _quiet_progress_bars(cam_class):
    """Hide the tqdm bar ScoreCAM and AblationCAM draw for every image.

    pytorch-grad-cam has no switch for it, and tqdm reads ``TQDM_DISABLE``
    only when it is first imported; the bar writes to ``sys.stderr`` as it
    is when the bar starts, so that is redirected for the CAM pass.
    Warnings raised meanwhile are kept and shown afterwards.
    """
    if cam_class not in (grad_cam.ScoreCAM, grad_cam.AblationCAM):
        yield
        return
    with warnings.catch_warnings(record=True) as caught:
        try:
            with redirect_stderr(io.StringIO()):
                yield
        finally:
            shown = list(caught)
    for warning in shown:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _resolve_layer(module, layer):
    named, network = dict(module.named_modules()), type(module).__name__
    layer = getattr(module, "cam_layer", None) if layer is None else layer
    if layer is None:
        convolutions = [m for m in named.values() if isinstance(m, nn.Conv2d)]
        if not convolutions:
            raise ValueError(f"{network} has no cam_layer attribute and no torch.nn.Conv2d layer; "
                             "pass layer= the name of the layer to explain. "
                             f"Layers: {some_layer_names(named)}.")
        return convolutions[-1]
    if isinstance(layer, str):
        if not layer or layer not in named:
            raise ValueError(f"Unknown layer {layer!r}: {network} has no submodule of that name. "
                             f"Valid names include {some_layer_names(named)}; see "
                             "dict(module.named_modules()) for all.")
        return named[layer]
    if layer is module or not any(layer is m for m in named.values()):
        raise ValueError(f"layer must be a submodule of the network; the given "
                         f"{type(layer).__name__} is not one of {network}'s submodules "
                         f"({some_layer_names(named)}, ...).")
    return layer
