"""What happens in each training step of :class:`~ckdlearn.CKDNetClassifier`, and after the last.

:class:`TrainingStepsMixin` overrides skorch's ``train_step_single`` hook:
the batch is augmented, optionally blended with mixup, and checked for a
diverged loss. After training, the BatchNorm statistics are refreshed on
the whole training images with the final weights.
"""

import torch
from skorch.dataset import unpack_data
from skorch.utils import to_tensor
from torch.optim.swa_utils import update_bn

from .loaders import join_lone_batches

__all__ = ["TrainingStepsMixin"]


class TrainingStepsMixin:
    """Training steps and the BatchNorm refresh; mixed into CKDNetClassifier.

    It needs skorch's ``NeuralNet`` methods and the classifier's
    ``augment_``, ``mixup``, ``lr`` and ``get_dataset``.
    """

    def train_step_single(self, batch, **fit_params):
        Xi, yi = unpack_data(batch)
        if self.augment_ is not None:
            Xi = self.augment_(to_tensor(Xi, device=self.device))
        try:
            step = (
                self._mixup_step(Xi, yi, **fit_params) if self.mixup
                else super().train_step_single((Xi, yi), **fit_params)
            )
        except ValueError as error:
            # torch's words when BatchNorm meets one image on a 1 x 1 map;
            # batch_loader never leaves a lone batch, so batch_size=1 did it.
            if len(Xi) != 1 or "more than 1 value per channel" not in str(error):
                raise
            raise ValueError(
                f"batch_size={self.batch_size!r} trains on one image at a time, which the "
                "network's BatchNorm layers cannot normalise once a feature map is 1 x 1. "
                "Use batch_size=2 or more."
            ) from error
        if not torch.isfinite(step["loss"]):
            raise ValueError(
                f"Training diverged: the loss became {step['loss'].detach().item()} in epoch "
                f"{len(self.history)}. Lower the learning rate (lr={self.lr!r}), check "
                "the input for extreme values, or use precision='32'."
            )
        return step

    def _mixup_step(self, Xi, yi, **fit_params):
        """skorch's training step on a batch blended with a shuffled copy of itself."""
        self._set_training(True)
        Xi = to_tensor(Xi, device=self.device)
        yi = to_tensor(yi, device=self.device)
        # torch's generator, which random_state seeds, so fits stay reproducible.
        weight = float(torch.distributions.Beta(self.mixup, self.mixup).sample())
        partner = torch.randperm(len(Xi), device=Xi.device)
        mixed = weight * Xi + (1 - weight) * Xi[partner]
        y_pred = self.infer(mixed, **fit_params)
        loss = weight * self.get_loss(y_pred, yi, X=mixed, training=True) + (
            1 - weight
        ) * self.get_loss(y_pred, yi[partner], X=mixed, training=True)
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    def _refresh_batch_norm(self, X):
        """BatchNorm statistics of the final weights, on the whole training images.

        During training the running statistics trail weights that keep
        changing, and describe augmented windows rather than the whole,
        plain slices predicted on; one pass over the training images with
        the final weights (``torch.optim.swa_utils.update_bn``) replaces
        them with those the network will meet (networks without BatchNorm
        are left alone).
        """
        dataset = self.get_dataset(X)
        if len(dataset) < 2:
            return  # nothing to estimate from; update_bn would reset them to 0 and 1
        batches = self.get_iterator(dataset, training=False)
        with torch.no_grad():
            update_bn(
                join_lone_batches(to_tensor(Xb, device=self.device) for Xb, _ in batches),
                self.module_,
            )
