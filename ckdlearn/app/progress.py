"""Training progress on stderr: a bar on a terminal, one plain line per epoch otherwise.

stdout stays for results, so ``ckdlearn train ... > log`` and pipes get
no colour codes or epoch tables mixed into what they read.
"""

import sys
import time

from skorch.callbacks import Callback

__all__ = ["EpochProgress", "silent"]


def silent(message):
    """The default ``progress`` of the workflows: say nothing."""


def _duration(seconds):
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class _Stages:
    """Which of several successive fits is running, shared by every clone.

    Cross-validation clones the estimator, and with it the callback, for
    each fold; a copy of this object is the object itself, so all the
    clones count the fits on one counter.
    """

    def __init__(self, names):
        self.names = list(names)
        self.started = 0  # fits begun so far
        self.clock = None  # when the first fit began
        self.epochs_done = 0
        self.epochs_per_fit = None

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):  # pickled (a saved model's callbacks): start afresh
        return (type(self), (self.names,))

    def begin(self):
        self.started += 1
        if self.clock is None:
            self.clock = time.perf_counter()
        index = min(self.started, len(self.names)) - 1
        return self.names[index] if self.names else None


class EpochProgress(Callback):
    """Report each epoch: which fit, which epoch of how many, losses, time.

    On a terminal a tqdm bar counts the epochs and shows the last figures;
    elsewhere (a log file, a pipe, a notebook) each epoch is one line such
    as ``fold 2 of 3: epoch 4 of 12: train loss 0.812, valid loss 0.901,
    valid acc 0.640; 0:42 elapsed, about 1:30 left``. The validation
    figures appear when the network validates (its ``validation``).

    Parameters
    ----------
    description : str, default="training"
        What is trained, when ``stages`` is None.
    stages : sequence of str or None, default=None
        The names of successive fits of clones of one estimator, e.g.
        ``["fold 1 of 3", "fold 2 of 3", "fold 3 of 3", "final model"]``
        for cross-validation followed by a final fit. The time left is
        then estimated for all of them, assuming every fit runs as many
        epochs as the first.
    """

    def __init__(self, description="training", stages=None):
        self.description = description
        self.stages = stages if stages is None or isinstance(stages, _Stages) else _Stages(stages)

    def on_train_begin(self, net, **kwargs):
        from tqdm import tqdm

        self.name_ = self.description
        if self.stages is not None:
            self.name_ = self.stages.begin() or self.description
        self.started_ = time.perf_counter()
        self.first_epoch_ = None
        on_terminal = bool(getattr(sys.stderr, "isatty", lambda: False)())
        self.bar_ = tqdm(
            total=net.max_epochs, desc=self.name_, unit="epoch",
            file=sys.stderr, leave=False, disable=not on_terminal,
        )

    def _timing(self, net, epoch):
        """Elapsed time and the estimated time left, as text."""
        done_here = epoch - self.first_epoch_ + 1
        now = time.perf_counter()
        left_here = net.max_epochs - done_here
        stages = self.stages
        if stages is None or not stages.names:
            elapsed = now - self.started_
            left = elapsed / done_here * left_here
        else:
            # Over all the fits: the time per epoch so far, times the epochs to come.
            stages.epochs_per_fit = stages.epochs_per_fit or net.max_epochs
            stages.epochs_done += 1
            elapsed = now - stages.clock
            fits_after = max(len(stages.names) - stages.started, 0)
            left = elapsed / stages.epochs_done * (left_here + fits_after * stages.epochs_per_fit)
        return f"{_duration(elapsed)} elapsed, about {_duration(left)} left"

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        epoch = row["epoch"]
        if self.first_epoch_ is None:  # a resumed run's history starts later
            self.first_epoch_ = epoch
        total = self.first_epoch_ - 1 + net.max_epochs
        figures = ", ".join(
            f"{key.replace('_', ' ')} {row[key]:.3f}"
            for key in ("train_loss", "valid_loss", "valid_acc") if key in row
        )
        timing = self._timing(net, epoch)
        if self.bar_.disable:
            print(f"{self.name_}: epoch {epoch} of {total}: {figures}; {timing}",
                  file=sys.stderr, flush=True)
        else:
            self.bar_.set_postfix_str(f"{figures}; {timing}", refresh=False)
            self.bar_.update()

    def on_train_end(self, net, **kwargs):
        self.bar_.close()
        self.bar_ = None  # a fitted model holds no open stream
