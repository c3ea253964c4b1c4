"""Convolutional networks for CT slices.

Two modules live here:

* :class:`CKDNet`, the default network of :class:`~ckdlearn.CKDNetClassifier`:
  BatchNorm convolution blocks whose width and depth are parameters, and a
  global pooling head, so one network serves any image size, from a
  one-pixel-high "image" of tabular features to 512 x 512 slices.
* :class:`PaperCNN`, the small network of the paper ckdlearn started from,
  kept for reproducing its protocol.

Both take ``(n, C, H, W)`` float tensors and return class logits. They
accept ``in_channels``, ``n_classes`` and ``image_shape`` keyword
arguments, which :class:`~ckdlearn.CKDNetClassifier` fills in from the
training data, and name the layer Grad-CAM should look at in
``cam_layer``.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CKDNet", "PaperCNN", "count_parameters"]


class _HalveSpatial(nn.Module):
    """2x2 max pooling that leaves a dimension of size 1 alone.

    A plain ``MaxPool2d(2)`` fails on an image one pixel high; skipping
    the pooling along such a dimension lets the same network take flat
    tabular rows (see :class:`~ckdlearn.CKDNetClassifier`).
    """

    def forward(self, x):
        height, width = x.shape[-2:]
        kernel = (2 if height >= 2 else 1, 2 if width >= 2 else 1)
        if kernel == (1, 1):
            return x
        return F.max_pool2d(x, kernel_size=kernel, stride=kernel, ceil_mode=True)


# Not torchvision's BasicBlock: it is always residual (``residual=False``
# is a documented CKDNet setting) and names its projection "downsample",
# which would rename the weights in every model file written so far.
class _ConvBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and ReLU, optionally residual."""

    def __init__(self, in_channels, out_channels, residual):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = None
        if residual:
            self.shortcut = (
                nn.Identity()
                if in_channels == out_channels
                else nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, bias=False),
                    nn.BatchNorm2d(out_channels),
                )
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


class CKDNet(nn.Module):
    """BatchNorm CNN for CT slices of any size.

    ``depth`` blocks of two 3x3 convolutions, each followed by 2x2 max
    pooling except the last; channel width doubles per block (capped at
    ``8 * width``). Global pooling and a linear layer give the logits, so
    the network works for any input height and width (and trains on
    windows of the slices it predicts on).

    Parameters
    ----------
    in_channels : int, default=1
        Channels of the input images (1 for greyscale CT).
    n_classes : int, default=4
        Number of output logits.
    width : int, default=16
        Channels of the first block.
    depth : int, default=4
        Number of convolution blocks.
    dropout : float, default=0.2
        Dropout probability before the final linear layer.
    residual : bool, default=True
        Add identity (or 1x1 projection) shortcuts around each block.
    image_shape : tuple of int or None, default=None
        Accepted for interface compatibility; the network does not need it.
    standardize : bool, default=False
        Standardise each image (zero mean, unit variance per channel)
        before the first block, so that series exported with different
        intensity windows reach the convolutions alike. "Images" one
        pixel high or wide (tabular rows) are left as they are. Off by
        default: a finding that shifts an image's mean or spread (a bright
        stone, a large cyst) then changes every standardised pixel, which
        lets the network use the whole image as evidence and makes
        Grad-CAM maps less local.
    pool : {"avgmax", "avg", "max"}, default="avgmax"
        Global pooling of the last feature maps: their mean, their maximum,
        or both side by side. The maximum keeps a small finding (a stone is
        a few pixels) that the mean over the whole slice dilutes; with both,
        macro-F1 on unseen scan series rose in every fold (see
        :ref:`accuracy`). Grad-CAM is exact (it equals CAM) for ``"avg"``;
        with the maximum, deletion scores still rank its maps well above
        random ones, but ``cam_mult`` (image times map) dims the finding
        the maximum reads and can rank them below.

    Attributes
    ----------
    cam_layer : str
        Name of the module Grad-CAM uses by default: the last
        convolution block, whose output still has spatial resolution.

    Examples
    --------
    >>> import torch
    >>> from ckdlearn.nets import CKDNet
    >>> net = CKDNet(n_classes=4, width=8, depth=3)
    >>> net(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 4])
    >>> net.cam_layer
    'features.2'
    """

    def __init__(
        self,
        in_channels=1,
        n_classes=4,
        width=16,
        depth=4,
        dropout=0.2,
        residual=True,
        image_shape=None,
        standardize=False,
        pool="avgmax",
    ):
        super().__init__()
        if pool not in ("avgmax", "avg", "max"):
            raise ValueError(f"CKDNet's pool must be 'avgmax', 'avg' or 'max'; got {pool!r}.")
        if depth < 1:
            raise ValueError(f"CKDNet needs depth >= 1, got depth={depth}.")
        if width < 1:
            raise ValueError(f"CKDNet needs width >= 1, got width={width}.")
        blocks = []
        channels = in_channels
        for index in range(depth):
            out_channels = min(width * 2**index, width * 8)
            blocks.append(
                nn.Sequential(
                    _ConvBlock(channels, out_channels, residual),
                    _HalveSpatial() if index < depth - 1 else nn.Identity(),
                )
            )
            channels = out_channels
        self.features = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.pool = pool
        self.classifier = nn.Linear(2 * channels if pool == "avgmax" else channels, n_classes)
        self.standardize = standardize
        self.cam_layer = f"features.{depth - 1}"

    def forward(self, x):
        if self.standardize and min(x.shape[-2:]) > 1:
            mean = x.mean(dim=(-2, -1), keepdim=True)
            std = x.std(dim=(-2, -1), keepdim=True, unbiased=False)
            x = (x - mean) / (std + 1e-5)
        x = self.features(x)
        pooled = [x.mean(dim=(-2, -1))] if self.pool != "max" else []
        if self.pool != "avg":
            pooled.append(x.amax(dim=(-2, -1)))
        return self.classifier(self.dropout(torch.cat(pooled, 1)))


class PaperCNN(nn.Module):
    """The seed paper's small CNN, for reproducing its protocol.

    Three valid-padded 3x3 convolutions with 28, 64 and 128 filters, each
    followed by ReLU and 2x2 max pooling, then a flatten and one dense
    layer. The paper's code fed 28 x 28 RGB images and trained with
    Adam at a learning rate of 1e-3.

    Parameters
    ----------
    in_channels : int, default=3
        Input channels (the paper used RGB copies of greyscale slices).
    n_classes : int, default=4
        Number of output logits.
    image_shape : tuple of int, default=(28, 28)
        ``(height, width)`` (or ``(channels, height, width)``) of the
        input; it fixes the size of the dense layer.

    Attributes
    ----------
    cam_layer : str
        The last convolution, Grad-CAM's default target.

    Examples
    --------
    >>> import torch
    >>> from ckdlearn.nets import PaperCNN
    >>> PaperCNN()(torch.zeros(5, 3, 28, 28)).shape
    torch.Size([5, 4])
    """

    def __init__(self, in_channels=3, n_classes=4, image_shape=(28, 28)):
        super().__init__()
        height, width = tuple(image_shape)[-2:]
        self.conv1 = nn.Conv2d(in_channels, 28, 3)
        self.conv2 = nn.Conv2d(28, 64, 3)
        self.conv3 = nn.Conv2d(64, 128, 3)
        for _ in range(3):
            height, width = (height - 2) // 2, (width - 2) // 2
        if height < 1 or width < 1:
            raise ValueError(
                "PaperCNN needs images of at least 22 x 22 pixels (three valid "
                f"3x3 convolutions and 2x2 poolings); got image_shape={image_shape}."
            )
        self.dense = nn.Linear(128 * height * width, n_classes)
        self.cam_layer = "conv3"

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        return self.dense(torch.flatten(x, 1))


def count_parameters(module):
    """Number of trainable parameters of a module.

    Parameters
    ----------
    module : torch.nn.Module
        Any module.

    Returns
    -------
    n_parameters : int
        Total number of elements of the parameters with ``requires_grad``.

    Examples
    --------
    >>> from ckdlearn.nets import PaperCNN, count_parameters
    >>> count_parameters(PaperCNN())
    91348
    """
    return int(sum(math.prod(p.shape) for p in module.parameters() if p.requires_grad))
