"""Training progress on stderr: a bar on a terminal, one plain line per epoch otherwise.

stdout stays for results, so ``ckdlearn train ... > log`` and pipes get
no colour codes or epoch tables mixed into what they read.
"""

import sys

from skorch.callbacks import Callback

__all__ = ["EpochProgress", "silent"]


def silent(message):
    """The default ``progress`` of the workflows: say nothing."""


class EpochProgress(Callback):
    """Report each epoch's losses on stderr.

    On a terminal a tqdm bar counts the epochs and shows the last losses;
    elsewhere (a log file, a pipe, a notebook) each epoch is one line such
    as ``training: epoch 3: train loss 0.812``.

    Parameters
    ----------
    description : str, default="training"
        What is trained, e.g. ``"fold 2"``.
    """

    def __init__(self, description="training"):
        self.description = description

    def on_train_begin(self, net, **kwargs):
        from tqdm import tqdm

        on_terminal = bool(getattr(sys.stderr, "isatty", lambda: False)())
        self.bar_ = tqdm(
            total=net.max_epochs, desc=self.description, unit="epoch",
            file=sys.stderr, leave=False, disable=not on_terminal,
        )

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        losses = ", ".join(
            f"{key.replace('_', ' ')} {row[key]:.3f}"
            for key in ("train_loss", "valid_loss", "valid_acc") if key in row
        )
        if self.bar_.disable:
            print(f"{self.description}: epoch {row['epoch']}: {losses}", file=sys.stderr, flush=True)
        else:
            self.bar_.set_postfix_str(losses, refresh=False)
            self.bar_.update()

    def on_train_end(self, net, **kwargs):
        self.bar_.close()
        self.bar_ = None  # a fitted model holds no open stream
