"""Running a network over images for an explanation, and leaving it as it was.

What every explanation shares: the constraints and checks of its inputs
(images, class indices), the device a network runs on, the names of its
layers for error messages, and :func:`network_untouched`, the context in
which a network is explained without being changed.
"""

import itertools
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..utils.input_checks import IntegerInterval, check_images

# Constraints shared by the functions that run a network over images.
NETWORK_PARAMETERS = {
    "module": [nn.Module],
    "images": ["array-like"],
    "class_indices": ["array-like", None],
    "batch_size": [IntegerInterval(1, None, closed="left")],
    "device": [str, torch.device],
}


@contextmanager
def network_untouched(module):
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


def check_network_images(images):
    """``(n, C, H, W)`` float32, through the project's image validator."""
    shape = tuple(np.shape(images))
    if len(shape) != 4:
        raise ValueError(f"images must be a 4-D array (n, channels, height, width); got shape "
                         f"{shape}. Use CKDNetClassifier.to_images(X) to shape flat rows.")
    if shape[0] == 0:  # nothing to explain is not an error here
        return np.zeros(shape, dtype=np.float32)
    return np.ascontiguousarray(check_images(images, name="images"), dtype=np.float32)


def check_class_indices(class_indices, n_images):
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


def check_class_range(class_indices, n_outputs, error=None):
    if class_indices is not None and class_indices.size and class_indices.max() >= n_outputs:
        bad = sorted(set(class_indices[class_indices >= n_outputs].tolist()))
        raise ValueError(f"class_indices holds {bad}, but the network has only {n_outputs} "
                         f"outputs; expected indices in [0, {n_outputs - 1}].") from error


def input_error(module, images, error):
    return ValueError(
        f"{type(module).__name__} cannot take images of shape {images.shape[1:]} "
        f"(channels, height, width): {error}. Pass images as the network was trained on them."
    )


def some_layer_names(named, limit=12):
    shallow = [name for name in named if name and name.count(".") <= 1]
    names = ", ".join(repr(name) for name in shallow[:limit])
    return names + (", ..." if len(shallow) > limit else "")


def module_device(module, fallback):
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    return torch.device(fallback) if tensor is None else tensor.device
