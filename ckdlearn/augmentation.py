"""Training-time augmentation for axial CT slices.

:class:`CTAugment` perturbs a whole batch on the device it lives on, with
fresh random parameters per image: small rotations, shifts and zooms (a
patient lies a little differently on each scan), left-right flips (the two
kidneys mirror each other), and window / contrast / gamma / noise jitter
(scanners and export windows differ). It runs inside
:class:`~ckdlearn.CKDNetClassifier`'s training step only, never at predict
time, so it also applies to synthetic images SMOTE added upstream in a
pipeline.
"""

import math

import torch
from torch.nn import functional as F

__all__ = ["CTAugment"]


class CTAugment:
    """Random geometric and intensity perturbations of CT slice batches.

    Parameters
    ----------
    rotation : float, default=20.0
        Largest rotation, in degrees, either way.
    translation : float, default=0.1
        Largest shift, as a fraction of the image size, along each axis.
    scale : tuple of float, default=(0.8, 1.2)
        Range of the zoom factor.
    hflip : float, default=0.5
        Probability of a left-right flip.
    contrast : float, default=0.4
        Largest relative change of contrast (around the image mean).
    brightness : float, default=0.1
        Largest additive change of intensity.
    gamma : float, default=0.4
        Largest change of the log gamma exponent; applied only to batches
        whose intensities lie in [0, 1].
    noise : float, default=0.04
        Standard deviation of added Gaussian noise.
    crop : float or None, default=2/3
        Train on a random window of this share of each side (2/3: a 64 px
        window of a 96 px slice), in the same resampling as the other
        geometric changes; its centre moves up to half the free margin from
        the slice's. Objects keep their size, so a network trained on
        windows predicts on whole slices (ckdlearn's are fully
        convolutional). None or 1 keeps the whole slice.

    Notes
    -----
    The default ranges generalised best to unseen scan series among those
    measured (:ref:`accuracy`); half of them fitted the
    training series better and new ones worse. Training on windows of
    larger slices sees the resolution of the slice at the cost of the
    window, and varies which part of the body the network relies on.

    Random numbers come from torch's global generator, which
    :class:`~ckdlearn.CKDNetClassifier` seeds from its ``random_state``,
    so augmented training is reproducible.

    Geometric transforms need an image: along a dimension of size 1 (the
    one-row images the classifier builds from tabular features) no shift,
    zoom or rotation is applied.

    Examples
    --------
    >>> import torch
    >>> from ckdlearn.augmentation import CTAugment
    >>> _ = torch.manual_seed(0)
    >>> batch = torch.rand(8, 1, 32, 32)
    >>> out = CTAugment()(batch)
    >>> out.shape, out.dtype
    (torch.Size([8, 1, 21, 21]), torch.float32)
    >>> CTAugment(crop=None)(batch).shape
    torch.Size([8, 1, 32, 32])
    """

    def __init__(
        self,
        rotation=20.0,
        translation=0.1,
        scale=(0.8, 1.2),
        hflip=0.5,
        contrast=0.4,
        brightness=0.1,
        gamma=0.4,
        noise=0.04,
        crop=2 / 3,
    ):
        self.rotation = rotation
        self.translation = translation
        self.scale = scale
        self.hflip = hflip
        self.contrast = contrast
        self.brightness = brightness
        self.gamma = gamma
        self.noise = noise
        self.crop = crop

    def __repr__(self):
        params = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({params})"

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def __call__(self, images):
        """Return an augmented copy of ``images`` (n, C, H, W)."""
        images = self._geometric(images)
        return self._intensity(images)

    def _uniform(self, n, low, high, like):
        return torch.empty(n, device=like.device, dtype=like.dtype).uniform_(low, high)

    def _geometric(self, images):
        n, _, height, width = images.shape
        if height < 2 or width < 2:
            return images
        if self.hflip:
            flip = torch.rand(n, device=images.device) < self.hflip
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        angle = self._uniform(n, -self.rotation, self.rotation, images) * (math.pi / 180)
        zoom = self._uniform(n, *self.scale, images)
        shift_x = self._uniform(n, -self.translation, self.translation, images) * 2
        shift_y = self._uniform(n, -self.translation, self.translation, images) * 2
        out_height, out_width = (
            max(2, round(side * self.crop)) if self.crop and side >= 4 else side
            for side in (height, width)
        )
        # The window's share of each side; its centre moves up to half the
        # free margin (in [-1, 1] coordinates the margin is 1 - share).
        sy, sx = out_height / height, out_width / width
        if (sy, sx) != (1, 1):
            shift_x = shift_x + self._uniform(n, -0.5, 0.5, images) * (1 - sx)
            shift_y = shift_y + self._uniform(n, -0.5, 0.5, images) * (1 - sy)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # affine_grid maps output to input coordinates in [-1, 1]; dividing by
        # the zoom enlarges the content when zoom > 1.
        theta = torch.stack(
            [torch.stack([cos * sx, -sin * sy, shift_x], 1),
             torch.stack([sin * sx, cos * sy, shift_y], 1)], 1
        )
        grid = F.affine_grid(
            theta, [n, images.shape[1], out_height, out_width], align_corners=False
        )
        # Background of a CT slice is air, the darkest value: pad with each
        # image's minimum rather than zero, which may be bright for
        # standardised inputs.
        floor = images.amin(dim=(1, 2, 3), keepdim=True)
        warped = F.grid_sample(images - floor, grid, padding_mode="zeros", align_corners=False)
        return warped + floor

    def _intensity(self, images):
        n = images.shape[0]
        view = (n, 1, 1, 1)
        # Gamma is only defined for intensities in [0, 1]; it goes first,
        # before contrast and noise push values out of that range.
        if self.gamma and bool(images.min() >= 0) and bool(images.max() <= 1):
            exponent = torch.exp(self._uniform(n, -self.gamma, self.gamma, images)).view(view)
            images = images.clamp_min(1e-6) ** exponent
        if self.contrast:
            factor = self._uniform(n, 1 - self.contrast, 1 + self.contrast, images).view(view)
            mean = images.mean(dim=(1, 2, 3), keepdim=True)
            images = (images - mean) * factor + mean
        if self.brightness:
            images = images + self._uniform(n, -self.brightness, self.brightness, images).view(view)
        if self.noise:
            images = images + torch.randn_like(images) * self.noise
        return images
