"""The default callbacks of :class:`~ckdlearn.CKDNetClassifier`, and its interrupt.

:class:`CosineAnnealing` is the learning-rate schedule (the callback
``"lr_scheduler"``) and :class:`SeriesEarlyStopping` the early stopping on
held-out scan series (``"early_stopping"``); the classifier builds both in
its ``_default_callbacks``, as skorch builds its own, so they are tuned
with ``callbacks__lr_scheduler__*`` and ``callbacks__early_stopping__*``
parameters, or turned off by setting them to None.

:func:`interrupts_propagate` carries a Ctrl-C out of skorch's training
loop as :class:`~ckdlearn.exceptions.TrainingInterrupted`, where skorch
would otherwise end ``fit`` quietly with a half-trained network.
"""

from contextlib import contextmanager

from skorch.callbacks import EarlyStopping, LRScheduler
from torch.optim.lr_scheduler import CosineAnnealingLR

from .exceptions import TrainingInterrupted

__all__ = ["CosineAnnealing", "SeriesEarlyStopping", "interrupts_propagate"]


class CosineAnnealing(LRScheduler):
    """Cosine learning-rate decay over the whole run: skorch's ``LRScheduler``.

    The default schedule of :class:`~ckdlearn.CKDNetClassifier`, as its
    ``"lr_scheduler"`` callback: :class:`torch.optim.lr_scheduler.CosineAnnealingLR`
    stepped once per epoch, whose length defaults to the net's
    ``max_epochs``. It resumes from the net's history, so a run continued
    from a checkpoint follows the same curve.

    Parameters
    ----------
    eta_min : float, default=0.0
        Learning rate reached at the end.
    T_max : int or None, default=None
        Epochs of the whole decay; None uses the net's ``max_epochs``.

    Examples
    --------
    >>> from ckdlearn import CKDNetClassifier
    >>> dict(CKDNetClassifier().get_default_callbacks())["lr_scheduler"]
    <ckdlearn.callbacks.CosineAnnealing object at ...>
    >>> clf = CKDNetClassifier(callbacks__lr_scheduler__eta_min=1e-5)
    """

    def __init__(self, eta_min=0.0, T_max=None):
        super().__init__(policy=CosineAnnealingLR, eta_min=eta_min, T_max=T_max)

    def on_train_begin(self, net, **kwargs):
        # Built at the first epoch instead, once callbacks such as
        # LoadInitState have restored the history and the optimizer.
        self.lr_scheduler_ = None

    def on_epoch_begin(self, net, **kwargs):
        if self.lr_scheduler_ is None:
            # A net trained on after loading has a new optimizer: the
            # schedule continues from its learning rate.
            for group in net.optimizer_.param_groups:
                group.setdefault("initial_lr", group["lr"])
            self.lr_scheduler_ = CosineAnnealingLR(
                net.optimizer_,
                T_max=net.max_epochs if self.T_max is None else self.T_max,
                eta_min=self.eta_min,
                # Epochs already stepped: the history holds this epoch's row too.
                last_epoch=len(net.history) - 2,
            )


class SeriesEarlyStopping(EarlyStopping):
    """skorch's ``EarlyStopping(load_best=True)``, on only while validation series are held out.

    The ``"early_stopping"`` callback of :class:`~ckdlearn.CKDNetClassifier`,
    which builds it with ``patience`` set to its ``early_stopping``
    parameter; ``callbacks__early_stopping__patience`` (or any other
    ``callbacks__early_stopping__*`` parameter) overrides that. In runs
    without held-out series (``validation=None`` and no
    ``validation_data``) it does nothing.

    Parameters
    ----------
    monitor : str, default="valid_loss"
    patience : int or None, default=5
        Epochs without improvement before training stops; None never
        stops early, but still restores the best epoch.
    threshold : float, default=1e-4
    threshold_mode : {"rel", "abs"}, default="rel"
    lower_is_better : bool, default=True
    sink : callable, default=print
        Where the stop and restore messages go (only when the net is verbose).
    load_best : bool, default=True
        Restore the weights of the best epoch when training ends.

    Examples
    --------
    >>> from ckdlearn import CKDNetClassifier
    >>> clf = CKDNetClassifier(validation=0.2, callbacks__early_stopping__patience=2)
    >>> dict(clf.get_default_callbacks())["early_stopping"].patience
    5
    >>> dict(clf.initialize_callbacks().callbacks_)["early_stopping"].patience
    2
    """

    def __init__(self, monitor="valid_loss", patience=5, threshold=1e-4, threshold_mode="rel",
                 lower_is_better=True, sink=print, load_best=True):
        super().__init__(monitor=monitor, patience=patience, threshold=threshold,
                         threshold_mode=threshold_mode, lower_is_better=lower_is_better,
                         sink=sink, load_best=load_best)

    def on_train_begin(self, net, **kwargs):
        # The classifier holds its validation series for the length of one
        # training run; with none held out there is no valid_loss to watch.
        self.active_ = getattr(net, "_validation_data", None) is not None
        if self.active_:
            super().on_train_begin(net, **kwargs)

    def on_epoch_end(self, net, **kwargs):
        if self.active_:
            super().on_epoch_end(net, **kwargs)

    def on_train_end(self, net, **kwargs):
        if self.active_:
            super().on_train_end(net, **kwargs)


@contextmanager
def interrupts_propagate(net, epochs=None):
    """Raise :class:`~ckdlearn.exceptions.TrainingInterrupted` for a Ctrl-C inside a net's fit loop.

    A ``KeyboardInterrupt`` raised after an epoch has ended (its history
    row has a ``"dur"``) is a callback stopping training on purpose, and
    passes through for skorch to handle.

    Parameters
    ----------
    net : skorch.NeuralNet
        The net whose ``fit_loop`` runs inside.
    epochs : int or None, default=None
        The epochs of this run, for the message; None reads ``net.max_epochs``.
    """
    try:
        yield
    except KeyboardInterrupt:
        if len(net.history) and "dur" in net.history[-1]:
            raise  # a callback (EarlyStopping) ended training after an epoch
        raise TrainingInterrupted(
            f"training of {type(net).__name__} interrupted during epoch "
            f"{len(net.history)} of {epochs or net.max_epochs}"
        ) from None
