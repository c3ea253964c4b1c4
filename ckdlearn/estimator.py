"""CKDNetClassifier: a skorch CNN that behaves like a scikit-learn classifier.

The estimator takes the flat ``(n, H*W)`` matrices that samplers such as
SMOTE need and returns labels in the user's own vocabulary. Everything it
adds to skorch goes through skorch's own hooks: ``get_dataset`` shapes the
input into image batches (:func:`ckdlearn.validation.as_image_batch`),
``initialize_module`` fills in what the data determines, ``train_step_single``
augments, ``infer`` sets the precision, and the default iterator and
learning-rate schedule are skorch parameters (:func:`batch_loader`,
:class:`CosineAnnealing`).
"""

import inspect
import numbers
import warnings
from contextlib import contextmanager

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import EarlyStopping, EpochScoring, LRScheduler
from skorch.dataset import Dataset, unpack_data
from skorch.utils import is_dataset, to_numpy, to_tensor
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions, validate_parameter_constraints
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d
from torch.optim.lr_scheduler import CosineAnnealingLR
from torch.optim.swa_utils import update_bn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from .augmentation import CTAugment
from .cam import compute_heatmaps, faithfulness_scores
from .metrics import uncertainty_from_proba
from .nets import CKDNet
from .series import aggregate_series
from .validation import IntegerInterval, as_image_batch, resolve_image_shape

__all__ = ["CKDNetClassifier", "CosineAnnealing", "as_image_batch", "batch_loader", "resolve_image_shape"]

_PRECISIONS = {"32": None, "bf16": torch.bfloat16}
#: Uncertainty scores of :meth:`CKDNetClassifier.predict_uncertainty`.
UNCERTAINTY_METHODS = ("entropy", "margin", "knn")
# Training images whose features ``knn`` compares against (a random sample).
_KNN_REFERENCE = 1024
_KNN_NEIGHBOURS = 10
# Flat rows this wide that are not square are probably images given
# without their shape (tabular data has far fewer features).
_IMAGE_SIZED_FEATURES = 256


class CosineAnnealing(LRScheduler):
    """Cosine learning-rate decay over the whole run: skorch's ``LRScheduler``.

    The default schedule of :class:`CKDNetClassifier`, as its
    ``"lr_scheduler"`` callback: :class:`torch.optim.lr_scheduler.CosineAnnealingLR`
    stepped once per epoch, whose length defaults to the net's
    ``max_epochs``. skorch resumes it from the net's history, so a run
    continued from a checkpoint follows the same curve.

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
    <ckdlearn.estimator.CosineAnnealing object at ...>
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
            super().on_train_begin(net, **kwargs)

    def _get_scheduler(self, net, policy, **scheduler_kwargs):
        if scheduler_kwargs.get("T_max") is None:
            scheduler_kwargs["T_max"] = net.max_epochs
        # A net trained on after loading has a new optimizer: the schedule
        # continues from its learning rate.
        for group in net.optimizer_.param_groups:
            group.setdefault("initial_lr", group["lr"])
        # Epochs already stepped: the history holds this epoch's row too.
        scheduler_kwargs.setdefault("last_epoch", len(net.history) - 2)
        return super()._get_scheduler(net, policy, **scheduler_kwargs)


def batch_loader(dataset, batch_size, *, shuffle=False, drop_last=False, **kwargs):
    """A DataLoader that fetches each batch with one indexing of the dataset.

    PyTorch's default DataLoader indexes the dataset once per image and
    stacks the images again; skorch's in-memory datasets can return a whole
    batch for a list of indices, which is several times faster for small
    images. The default ``iterator_train`` and ``iterator_valid`` of
    :class:`CKDNetClassifier`. Randomness comes from torch's global
    generator, which the classifier seeds.

    Parameters
    ----------
    dataset : skorch.dataset.Dataset
    batch_size : int
    shuffle : bool, default=False
        Draw a new order every pass. Then a last batch of a single image is
        left out of that pass (BatchNorm cannot train on it).
    drop_last : bool, default=False
    **kwargs
        Other :class:`torch.utils.data.DataLoader` arguments
        (``num_workers``, ``pin_memory``, ...).

    Returns
    -------
    loader : torch.utils.data.DataLoader

    Examples
    --------
    >>> import numpy as np
    >>> from skorch.dataset import Dataset
    >>> from ckdlearn.estimator import batch_loader
    >>> data = Dataset(np.zeros((5, 1, 4, 4), dtype=np.float32), np.arange(5))
    >>> [len(y) for _, y in batch_loader(data, batch_size=2)]
    [2, 2, 1]
    >>> [len(y) for _, y in batch_loader(data, batch_size=2, shuffle=True)]
    [2, 2]
    """
    sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    drop_last = drop_last or (shuffle and len(dataset) > 1 and len(dataset) % batch_size == 1)
    return DataLoader(
        dataset, sampler=BatchSampler(sampler, batch_size, drop_last), batch_size=None, **kwargs
    )


def _encoded_accuracy(net, X, y):
    """Accuracy of ``net`` on ``X`` against class indices ``y``."""
    y_true = net.classes_[np.asarray(to_numpy(y) if torch.is_tensor(y) else y, dtype=np.int64)]
    return float(np.mean(net.predict(X) == y_true))


def _resolve_device(setting):
    if isinstance(setting, str) and setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def _say_nothing(*args, **kwargs):
    """The early-stopping message's sink when ``verbose=0``."""


class _SeriesEarlyStopping(EarlyStopping):
    """skorch's EarlyStopping(load_best=True), on only while validation series are held out.

    Its patience and verbosity are the net's ``early_stopping`` and
    ``verbose``, read when training starts.
    """

    def __init__(self):
        super().__init__(monitor="valid_loss", load_best=True)

    def on_train_begin(self, net, **kwargs):
        self.active_ = getattr(net, "_validation_data", None) is not None
        if self.active_:
            self.patience = net.max_epochs if net.early_stopping is None else net.early_stopping
            self.sink = print if net.verbose else _say_nothing
            super().on_train_begin(net, **kwargs)

    def on_epoch_end(self, net, **kwargs):
        if self.active_:
            super().on_epoch_end(net, **kwargs)

    def on_train_end(self, net, **kwargs):
        if self.active_:
            super().on_train_end(net, **kwargs)


class _Interrupted(Exception):
    """Raised through skorch's loop, which would swallow a KeyboardInterrupt."""


class CKDNetClassifier(NeuralNetClassifier):
    """CNN classifier for CT slices with the scikit-learn API.

    A :class:`skorch.NeuralNetClassifier` with defaults for CT slices and
    the input handling a resampling pipeline needs: it takes the flat
    matrices SMOTE produces, learns on image batches, predicts the
    original labels, and explains its predictions with Grad-CAM.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=CKDNet
        The network. When it is a class whose ``__init__`` accepts
        ``in_channels``, ``n_classes`` or ``image_shape``, those are filled
        in from the training data unless given as ``module__*``.
        Other network parameters are set with ``module__<name>``, e.g.
        ``module__width=16``, and can be tuned by ``GridSearchCV``.
    criterion : torch loss class, default=torch.nn.CrossEntropyLoss
        Loss on the network's logits; ``criterion__<name>`` arguments are
        passed through.
    optimizer : torch optimizer class, default=torch.optim.AdamW
        ``optimizer__weight_decay`` etc. are passed through.
    lr : float, default=1e-3
        Learning rate.
    max_epochs : int, default=20
        Passes over the training data (at least 1).
    batch_size : int, default=32
        Images per training and prediction batch.
    image_shape : tuple of int or None, default=None
        ``(height, width)`` or ``(channels, height, width)`` that flat
        rows were flattened from. When None, shaped (3-D / 4-D) input
        gives its own shape, a square feature count ``s*s`` is one
        ``s x s`` greyscale image, and any other count is read as an image
        one pixel high, so plain tabular data still works.
    augment : "ct", None or callable, default="ct"
        Training-time augmentation applied to every batch on the fly,
        never at predict time. ``"ct"`` uses :class:`~ckdlearn.augmentation.CTAugment`
        with its defaults; pass a configured ``CTAugment(...)`` or any
        callable mapping an ``(n, C, H, W)`` tensor to one of the same
        shape, or None to train on the images as given.
    class_weight : "balanced", dict or None, default=None
        Weights of the classes in the loss, as in scikit-learn. An
        alternative (or complement) to oversampling with SMOTE.
    label_smoothing : float, default=0.0
        Share of each target's probability spread over the other classes
        in the loss (Szegedy et al., 2016); passed to the criterion, which
        must accept ``label_smoothing`` unless this is 0. 0.1 keeps the
        network from growing over-confident on the training series: on
        unseen ones it cut the calibration error from 0.29 to 0.08 at the
        same macro-F1 within noise, but it also made Grad-CAM maps less
        faithful (removing what they mark changed 59% of decisions instead
        of 78%), so it is off by default (:ref:`accuracy`).
    mixup : float, default=0.0
        Mixup (Zhang et al., 2018): each training batch, after
        augmentation, is blended with a shuffled copy of itself with a
        weight drawn from ``Beta(mixup, mixup)``, and the loss is the same
        blend of the two labels' losses. 0 turns it off; 0.2 to 0.4 is
        the usual range. A regulariser against memorising the training
        series; like label smoothing it lowers confidence.
    classes : array-like or None, default=None
        All labels the model should know, when some may be missing from a
        training set (e.g. for ``partial_fit``). By default the labels
        seen in ``y``.
    precision : {"32", "bf16"}, default="32"
        Numeric precision of the forward pass: full float32, or bfloat16
        autocast (CPU or CUDA; weights and losses stay float32).
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling and augmentation, so that
        ``fit`` is reproducible on the CPU *with the same number of torch
        threads* (``torch.set_num_threads``): kernels on another number of
        threads sum in another order, and the rounding differences grow
        over training. torch's global random state is restored afterwards.
    device : str, default="auto"
        ``"auto"`` uses CUDA when available and the CPU otherwise; any
        torch device string is accepted.
    validation : float, int or None, default=None
        Hold out whole scan series inside ``fit`` to validate on: a share
        of the series (e.g. 0.2, stratified by class) or a number of folds
        (5 holds out one fifth). Needs ``groups`` in ``fit``. The held-out
        slices serve early stopping, best-epoch restore and temperature
        calibration, and never reach training. Inside a pipeline with a
        sampler use :func:`ckdlearn.pipeline.make_pipeline`, which holds the
        series out *before* resampling, so no synthetic image made from a
        validation slice is trained on (imbalanced-learn's pipeline would
        resample first). None trains on everything.
    early_stopping : int or None, default=5
        With ``validation``: stop when the validation loss has not improved
        for this many epochs, and restore the weights of the best epoch
        (skorch's ``EarlyStopping(load_best=True)``). None trains
        ``max_epochs`` and still restores the best epoch.
    calibrate : bool, default=True
        With ``validation``: fit a temperature on the held-out series'
        logits (temperature scaling, Guo et al., 2017, as scikit-learn's
        ``CalibratedClassifierCV(method="temperature")`` does), so that
        ``predict_proba`` is calibrated on series the network did not
        train on. Predictions and explanations do not change.
    train_split : callable or None, default=None
        skorch's own internal split, off by default: it splits slices at
        random (neighbouring slices of one series on both sides) and,
        inside a pipeline, validates on SMOTE's synthetic images. Use
        ``validation`` instead.
    verbose : int, default=0
        0 is silent; 1 prints skorch's per-epoch table. Add
        ``skorch.callbacks.ProgressBar()`` to ``callbacks`` for a batch
        progress bar.
    callbacks : list or None, default=None
        Extra skorch callbacks. The default callbacks include a cosine
        learning-rate schedule named ``"lr_scheduler"`` (tune with
        ``callbacks__lr_scheduler__...`` or disable with
        ``callbacks__lr_scheduler=None``).
    **kwargs
        Any other :class:`skorch.NeuralNet` parameter, including the
        ``module__*``, ``optimizer__*``, ``criterion__*``,
        ``iterator_train__*`` and ``callbacks__*`` families.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels, as given in ``y`` (ints or strings).
    image_shape_ : tuple of (int, int, int)
        ``(channels, height, width)`` of the training images.
    n_features_in_ : int
        Values per image (``channels * height * width``).
    class_weight_ : ndarray of shape (n_classes,) or None
        Weights used in the loss.
    temperature_ : float
        Temperature the logits are divided by in ``predict_proba``; 1.0
        without ``validation`` and ``calibrate``.
    validation_groups_ : ndarray or None
        The scan series held out for validation, or None.
    train_features_ : ndarray of shape (n_reference, n_features)
        Unit-length penultimate-layer features of up to 1,024 training
        images, the reference of ``predict_uncertainty(method="knn")``.
    intensity_range_ : tuple of (float, float)
        Smallest and largest pixel value of the training images, as the
        network saw them (``uint8`` divided by 255).
    module_ : torch.nn.Module
        The trained network.
    history_ : skorch.History
        Per-epoch training record.

    See Also
    --------
    ckdlearn.nets.CKDNet : the default network.
    ckdlearn.nets.PaperCNN : the seed paper's network.
    ckdlearn.explain : explanations for a fitted pipeline.

    Notes
    -----
    Training batches are reshuffled every epoch (skorch's own default keeps
    the data order, and CT data usually comes sorted by class);
    ``iterator_train__shuffle=False`` keeps the order. Batches are fetched
    whole (:func:`batch_loader`), and a shuffled last batch of a single
    image is left out of that epoch, since BatchNorm cannot normalise one
    value per channel.

    Training stops with a ``ValueError`` as soon as the loss is not finite
    (a learning rate far too high, say) instead of saving a broken model,
    and an interrupt (Ctrl-C) propagates as ``KeyboardInterrupt``: skorch
    itself would end ``fit`` quietly with a half-trained network. Callbacks
    that end training on purpose (skorch's ``EarlyStopping``) still do.

    The range of pixel values seen in training is kept
    (``intensity_range_``); input for prediction on another scale (0-255
    values for a model trained on [0, 1]) is refused with a message saying
    how to rescale it.

    Inside an imbalanced-learn pipeline the estimator sees SMOTE's output
    during ``fit`` only; ``predict`` and ``explain`` see real images. SMOTE
    interpolates between images, so give it float32 input (uint8
    differences wrap around).

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn import CKDNetClassifier
    >>> rng = np.random.RandomState(0)
    >>> stripes = (np.arange(16)[:, None] % 4 < 2) * np.ones((1, 16))
    >>> X = np.stack([stripes.ravel()] * 20 + [stripes.T.ravel()] * 20)
    >>> X = ((X + rng.rand(40, 256)) / 2).astype(np.float32)  # 40 noisy 16x16 images
    >>> y = np.repeat(["Cyst", "Normal"], 20)  # horizontal vs vertical stripes
    >>> clf = CKDNetClassifier(max_epochs=10, lr=3e-2, module__width=4, module__depth=2,
    ...                        augment=None, random_state=0).fit(X, y)
    >>> clf.classes_
    array(['Cyst', 'Normal'], dtype='<U6')
    >>> clf.predict(X[[0, 1, 20]])
    array(['Cyst', 'Cyst', 'Normal'], dtype='<U6')
    >>> clf.explain(X[:3]).shape
    (3, 16, 16)
    """

    _parameter_constraints = {
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_epochs": [IntegerInterval(1, None, closed="left")],
        "batch_size": [IntegerInterval(1, None, closed="left"), Options(numbers.Integral, {-1})],
        "image_shape": ["array-like", None],
        "augment": [StrOptions({"ct"}), callable, None],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "label_smoothing": [Interval(numbers.Real, 0, 1, closed="left")],
        "mixup": [Interval(numbers.Real, 0, None, closed="left")],
        "classes": ["array-like", None],
        "precision": [StrOptions(set(_PRECISIONS))],
        "random_state": ["random_state"],
        "validation": [Interval(numbers.Real, 0, 1, closed="neither"),
                       IntegerInterval(2, None, closed="left"), None],
        "early_stopping": [IntegerInterval(1, None, closed="left"), None],
        "calibrate": ["boolean"],
        "device": [str, torch.device],
        "verbose": [IntegerInterval(0, None, closed="left"), "boolean"],
    }

    def __init__(
        self,
        module=CKDNet,
        *,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.AdamW,
        lr=1e-3,
        max_epochs=20,
        batch_size=32,
        image_shape=None,
        augment="ct",
        class_weight=None,
        label_smoothing=0.0,
        mixup=0.0,
        classes=None,
        precision="32",
        random_state=None,
        validation=None,
        early_stopping=5,
        calibrate=True,
        device="auto",
        train_split=None,
        iterator_train=batch_loader,
        iterator_valid=batch_loader,
        verbose=0,
        callbacks=None,
        **kwargs,
    ):
        # skorch's DataLoader keeps the data order; CT data usually comes
        # sorted by class (folders, then SMOTE's synthetic rows).
        kwargs.setdefault("iterator_train__shuffle", True)
        super().__init__(
            module,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            iterator_train=iterator_train,
            iterator_valid=iterator_valid,
            classes=classes,
            verbose=verbose,
            device=device,
            callbacks=callbacks,
            **kwargs,
        )
        self.image_shape = image_shape
        self.augment = augment
        self.class_weight = class_weight
        self.label_smoothing = label_smoothing
        self.mixup = mixup
        self.precision = precision
        self.random_state = random_state
        self.validation = validation
        self.early_stopping = early_stopping
        self.calibrate = calibrate

    # -- parameters ---------------------------------------------------------

    # skorch reads ``self.device`` wherever it moves tensors, so "auto" is
    # resolved on read; the setting itself is stored where skorch and
    # scikit-learn look for parameters, and get_params reports it.
    @property
    def device(self):
        return _resolve_device(self.__dict__.get("device", "auto"))

    @device.setter
    def device(self, value):
        self.__dict__["device"] = value

    def get_params(self, deep=True, **kwargs):
        return {**super().get_params(deep=deep, **kwargs), "device": self.__dict__["device"]}

    def _get_param_names(self):
        # skorch takes every attribute not ending in "_" for a parameter;
        # its private bookkeeping (a leading "_") is not one.
        return [name for name in super()._get_param_names() if not name.startswith("_")]

    def set_params(self, **params):
        # skorch initialises callbacks as soon as ``callbacks`` is set; before
        # fit there is nothing to initialise, and scikit-learn expects
        # set_params to store values without validating them.
        if not self.initialized_ and "callbacks" in params:
            self.callbacks = params.pop("callbacks")
        return super().set_params(**params)

    def __setstate__(self, state):
        # skorch maps stored tensors onto ``state["device"]``, a real device.
        setting = state["device"]
        super().__setstate__({**state, "device": _resolve_device(setting)})
        self.device = setting

    @property
    def _default_callbacks(self):
        callbacks = []
        for name, callback in super()._default_callbacks:
            if name == "valid_acc":
                # skorch's "accuracy" compares ``predict`` (the user's
                # labels) with the split's targets, which are encoded here.
                callback = EpochScoring(
                    _encoded_accuracy, name="valid_acc", lower_is_better=False,
                    on_train=False, use_caching=True,
                )
            callbacks.append((name, callback))
        callbacks.insert(1, ("lr_scheduler", CosineAnnealing()))
        callbacks.append(("early_stopping", _SeriesEarlyStopping()))
        return callbacks

    def __sklearn_is_fitted__(self):
        return bool(self.initialized_) and hasattr(self, "image_shape_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.classifier_tags.multi_label = False
        return tags

    # -- training -----------------------------------------------------------

    def fit(self, X, y, groups=None, validation_data=None, **fit_params):
        """Train the network from scratch (unless ``warm_start=True``).

        Parameters
        ----------
        X : array-like of shape (n, H*W), (n, C*H*W), (n, H, W) or (n, C, H, W)
            Training images; see :func:`~ckdlearn.validation.as_image_batch`
            for dtypes.
        y : array-like of shape (n,)
            Labels, ints or strings.
        groups : array-like of shape (n,) or None, default=None
            Scan series of each image; with ``validation``, whole series
            are held out (see :meth:`split_validation`).
        validation_data : tuple (X_valid, y_valid[, groups_valid]) or None, default=None
            Held-out images to validate on instead of splitting ``X``, as
            :func:`ckdlearn.pipeline.make_pipeline` passes them.
        **fit_params : dict
            Passed to skorch's ``fit`` (e.g. extra module inputs).

        Returns
        -------
        self : CKDNetClassifier
            The fitted estimator.

        Raises
        ------
        ValueError
            For malformed ``X``, ``y`` or parameters, fewer than two
            classes, ``validation`` without ``groups``, or a loss that
            stops being finite.
        KeyboardInterrupt
            When training was interrupted.
        """
        self._validate_parameters()
        if self.warm_start and self.__sklearn_is_fitted__():
            return self._train(super().fit, X, y, **fit_params)
        if validation_data is None and self.validation is not None:
            if groups is None:
                raise ValueError(
                    f"validation={self.validation!r} holds out scan series, so fit needs "
                    "groups= (one series id per image). In a GridSearchCV, enable "
                    "scikit-learn's metadata routing so groups reach fit: "
                    "sklearn.set_config(enable_metadata_routing=True)."
                )
            train, valid = self.split_validation(y, groups)
            X_all = as_image_batch(X, self.image_shape, estimator_name=type(self).__name__)
            y_all = column_or_1d(y)
            groups_valid = np.asarray(groups)[valid]
            X, y = X_all[train], y_all[train]
            validation_data = (X_all[valid], y_all[valid], groups_valid)
        X, y = self._learn_data(X, y)
        self.validation_groups_ = None
        self.temperature_ = 1.0
        self._validation_data = None
        if validation_data is not None:
            X_valid, y_valid, *groups_valid = validation_data
            if groups_valid:
                self.validation_groups_ = np.unique(groups_valid[0])
            X_valid = as_image_batch(X_valid, expected_shape=self.image_shape_,
                                     estimator_name=type(self).__name__)
            self._validation_data = (X_valid, self._encode_labels(column_or_1d(y_valid)))
        try:
            self._train(super().fit, X, y, **fit_params)
            if self._validation_data is not None and self.calibrate:
                self.temperature_ = self._fit_temperature(*self._validation_data)
        finally:
            self._validation_data = None
        rows = check_random_state(self.random_state).permutation(len(X))[:_KNN_REFERENCE]
        with self._random_state_context():  # the DataLoader draws a seed
            self.train_features_ = self.transform_features(X[np.sort(rows)])
        return self

    def split_validation(self, y, groups):
        """Training and validation rows, whole scan series on each side.

        The split ``fit`` makes with ``validation``: the first fold of
        ``StratifiedGroupKFold(n_splits, shuffle=True)`` seeded by
        ``random_state``, where ``n_splits`` is ``round(1 / validation)``
        for a share, or ``validation`` itself for a number of folds.

        Parameters
        ----------
        y : array-like of shape (n,)
        groups : array-like of shape (n,)

        Returns
        -------
        train, valid : ndarray of int
            Row indices.

        Examples
        --------
        >>> import numpy as np
        >>> from ckdlearn import CKDNetClassifier
        >>> y = np.repeat(["Cyst", "Stone"], 10)
        >>> groups = np.repeat(np.arange(10), 2)
        >>> train, valid = CKDNetClassifier(validation=0.2, random_state=0).split_validation(y, groups)
        >>> sorted(set(groups[valid]) & set(groups[train]))
        []
        """
        y, groups = column_or_1d(y), column_or_1d(groups)
        if len(groups) != len(y):
            raise ValueError(
                f"groups has {len(groups)} entries but y has {len(y)}; give one scan-series "
                "id per image. (Behind a sampler, use ckdlearn.pipeline.make_pipeline, "
                "which holds series out before resampling.)"
            )
        n_splits = self.validation if self.validation >= 1 else max(2, round(1 / self.validation))
        seed = check_random_state(self.random_state).randint(2**31 - 1)
        splitter = StratifiedGroupKFold(int(n_splits), shuffle=True, random_state=seed)
        try:
            return next(splitter.split(np.zeros(len(y)), y, groups))
        except ValueError as error:
            raise ValueError(
                f"Cannot hold out 1/{n_splits} of the scan series for validation: {error}"
            ) from None

    def get_split_datasets(self, X, y=None, **fit_params):
        # ``fit`` sets ``_validation_data`` for the length of one training run.
        if getattr(self, "_validation_data", None) is None:
            return super().get_split_datasets(X, y, **fit_params)
        return self.get_dataset(X, y), Dataset(*self._validation_data)

    def _fit_temperature(self, X_valid, y_valid):
        """The temperature that minimises the validation log-loss."""
        logits = self.forward(X_valid, training=False).numpy().astype(np.float64)

        def log_loss(log_t):
            scaled = log_softmax(logits / np.exp(log_t), axis=1)
            return -scaled[np.arange(len(y_valid)), y_valid].mean()

        return float(np.exp(minimize_scalar(log_loss, bounds=(-3, 3), method="bounded").x))

    def evaluation_step(self, batch, training=False):
        logits = super().evaluation_step(batch, training=training)
        return logits if training else logits / getattr(self, "temperature_", 1.0)

    def partial_fit(self, X, y, classes=None, **fit_params):
        """Train for ``max_epochs`` more epochs, initialising if needed.

        Parameters
        ----------
        X : array-like
            Training images, as for :meth:`fit`.
        y : array-like of shape (n,)
            Labels.
        classes : array-like or None, default=None
            All labels, needed on the first call when ``y`` may not contain
            each of them (overrides the ``classes`` parameter).
        **fit_params : dict
            Passed to skorch.

        Returns
        -------
        self : CKDNetClassifier
            The estimator, trained for ``max_epochs`` more epochs.
        """
        self._validate_parameters()
        if not self.__sklearn_is_fitted__():
            X, y = self._learn_data(X, y, classes)
        return self._train(super().partial_fit, X, y, **fit_params)

    def _train(self, skorch_fit, X, y, **fit_params):
        try:
            with self._random_state_context():
                skorch_fit(X, y, **fit_params)
                self._refresh_batch_norm(X)
        except _Interrupted as interruption:
            raise KeyboardInterrupt(str(interruption)) from None
        return self

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
                self._without_lone_batches(to_tensor(Xb, device=self.device) for Xb, _ in batches),
                self.module_,
            )

    @staticmethod
    def _without_lone_batches(batches):
        """The batches, with each batch of one image joined to a neighbour.

        BatchNorm in training mode cannot normalise one image whose feature
        map has shrunk to 1 x 1 ("Expected more than 1 value per channel"):
        33 images in batches of 32 leave such a batch at the end.
        """
        ready = lone = None
        for batch in batches:
            if lone is not None:
                batch, lone = torch.cat([lone, batch]), None
            if len(batch) < 2:
                lone = batch
                continue
            if ready is not None:
                yield ready
            ready = batch
        if lone is not None and ready is not None:
            ready = torch.cat([ready, lone])
        if ready is not None:
            yield ready

    def _validate_parameters(self):
        validate_parameter_constraints(
            self._parameter_constraints, self.get_params(deep=False), caller_name=type(self).__name__
        )
        self._check_label_smoothing()

    def _learn_data(self, X, y, classes=None):
        """Validate the data; set what it determines."""
        name = type(self).__name__
        if y is None:
            raise ValueError(
                f"{name} requires y to be passed, but the target y is None. "
                "Pass one label per image."
            )
        images = as_image_batch(X, self.image_shape, estimator_name=name)
        if np.asarray(X).ndim == 2 and self.image_shape is None and images.shape[2] == 1 \
                and images.shape[3] >= _IMAGE_SIZED_FEATURES:
            warnings.warn(
                f"X has {images.shape[3]} features per row, which is not a square "
                "number, so each row is read as an image one pixel high. If the rows "
                "are flattened images, pass image_shape=(height, width).",
                UserWarning,
                stacklevel=3,
            )
        y = column_or_1d(y, warn=True)
        if len(y) != len(images):
            raise ValueError(
                f"X and y must have the same number of samples; got {len(images)} "
                f"images and {len(y)} labels."
            )
        check_classification_targets(y)
        labels = self.classes if classes is None else classes
        known = np.unique(y) if labels is None else np.asarray(labels)
        if len(known) < 2:
            raise ValueError(
                f"{name} needs at least 2 classes to learn from; y holds only "
                f"one class: {known.tolist()}."
            )
        self.classes_inferred_ = known
        self._encode_labels(y)  # refuses labels outside ``classes``
        self.image_shape_ = tuple(int(side) for side in images.shape[1:])
        self.n_features_in_ = int(np.prod(self.image_shape_))
        self.intensity_range_ = (float(images.min()), float(images.max()))
        self.class_weight_ = (
            None if self.class_weight is None
            else compute_class_weight(self.class_weight, classes=known, y=y)
        )
        return images, y

    @property
    def classes_(self):
        # The classes learnt in fit (skorch's property would return the
        # ``classes`` parameter even before fit, or instead of
        # ``partial_fit(classes=...)``).
        try:
            return self.classes_inferred_
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__} has no attribute 'classes_' before fit."
            ) from None

    def _check_label_smoothing(self):
        value = self.label_smoothing
        if not value or "label_smoothing" in self.get_params_for("criterion"):
            return
        criterion = self.criterion if isinstance(self.criterion, type) else type(self.criterion)
        try:
            accepts = "label_smoothing" in inspect.signature(criterion).parameters
        except (TypeError, ValueError):
            accepts = True
        if not accepts:
            raise ValueError(
                f"label_smoothing={value!r} needs a criterion that accepts it, such as "
                f"torch.nn.CrossEntropyLoss; {criterion.__name__} does not. Pass "
                "label_smoothing=0."
            )

    def _encode_labels(self, y):
        order = np.argsort(self.classes_, kind="stable")
        sorted_classes = self.classes_[order]
        positions = np.clip(np.searchsorted(sorted_classes, y), 0, len(sorted_classes) - 1)
        unknown = sorted_classes[positions] != y
        if unknown.any():
            raise ValueError(
                f"y contains labels {np.unique(y[unknown]).tolist()} that are not "
                f"among the classes {self.classes_.tolist()}."
            )
        return order[positions].astype(np.int64)

    @contextmanager
    def _random_state_context(self):
        if self.random_state is None:
            yield
            return
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        device = torch.device(self.device)
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            yield

    def check_data(self, X, y=None):
        # The data were validated and learnt from before initialisation
        # (the network's shape depends on them); skorch's own check would
        # infer the classes again from the encoded targets.
        pass

    def get_dataset(self, X, y=None):
        """skorch's dataset of the validated image batch and encoded labels."""
        if is_dataset(X):
            return super().get_dataset(X, y)
        check_is_fitted(self)
        images = as_image_batch(
            X, expected_shape=self.image_shape_, estimator_name=type(self).__name__
        )
        if y is None:
            self._check_intensity_scale(images)
        else:
            y = self._encode_labels(column_or_1d(y))
        return super().get_dataset(images, y)

    def _check_intensity_scale(self, images):
        low, high = self.intensity_range_
        span = high - low
        if not span:
            return
        lowest, highest = float(images.min()), float(images.max())
        if highest > high + span or lowest < low - span:
            raise ValueError(
                f"X holds values from {lowest:.4g} to {highest:.4g}, but "
                f"{type(self).__name__} was trained on values from {low:.4g} to "
                f"{high:.4g}: the images are on another scale. Scale them as the "
                "training images were (e.g. divide 0-255 values by 255, or pass "
                "uint8 arrays, which are divided by 255)."
            )

    def initialize_module(self):
        kwargs = self.get_params_for("module")
        if not isinstance(self.module, torch.nn.Module):
            kwargs = {**self._data_module_kwargs(), **kwargs}
        self.module_ = self.initialized_instance(self.module, kwargs)
        if self._uses_channels_last():
            # oneDNN (CPU) and cuDNN convolve fastest in the channels-last
            # (NHWC) layout; weights stored that way make every convolution
            # return NHWC activations, with no per-batch conversions. Only
            # float rounding changes (benchmarks/README.md).
            self.module_.to(memory_format=torch.channels_last)
        return self

    # Switch for the channels-last lever, for benchmarks and for modules
    # that are faster in the classic layout.
    _channels_last = True

    def _uses_channels_last(self):
        shape = getattr(self, "image_shape_", None)
        return (
            self._channels_last
            and shape is not None
            and min(shape[1:]) > 1  # one-pixel-high "images" gain nothing
            and any(parameter.dim() == 4 for parameter in self.module_.parameters())
        )

    def _data_module_kwargs(self):
        """Network arguments the training data determines."""
        if not hasattr(self, "image_shape_"):
            return {}
        known = {
            "in_channels": self.image_shape_[0],
            "n_classes": len(self.classes_),
            "image_shape": self.image_shape_[1:],
        }
        parameters = inspect.signature(self.module).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in parameters):
            return known
        return {k: v for k, v in known.items() if k in {p.name for p in parameters}}

    def initialize_criterion(self):
        kwargs = self.get_params_for("criterion")
        weights = getattr(self, "class_weight_", None)
        if weights is not None and "weight" not in kwargs:
            kwargs["weight"] = torch.as_tensor(weights, dtype=torch.float32)
        if self.label_smoothing and "label_smoothing" not in kwargs:
            kwargs["label_smoothing"] = self.label_smoothing
        self.criterion_ = self.initialized_instance(self.criterion, kwargs)
        return self

    def initialize(self):
        super().initialize()
        self.augment_ = CTAugment() if self.augment == "ct" else self.augment
        return self

    def infer(self, x, **fit_params):
        dtype = _PRECISIONS[self.precision]
        with torch.autocast(torch.device(self.device).type, dtype=dtype, enabled=dtype is not None):
            logits = super().infer(x, **fit_params)
        # Losses and softmax stay in float32 whatever the autocast precision.
        return logits.float()

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt:
            if len(self.history) and "dur" in self.history[-1]:
                raise  # a callback (EarlyStopping) ended training after an epoch
            raise _Interrupted(
                f"training of {type(self).__name__} interrupted during epoch "
                f"{len(self.history)} of {epochs or self.max_epochs}"
            ) from None

    def train_step_single(self, batch, **fit_params):
        Xi, yi = unpack_data(batch)
        if self.augment_ is not None:
            Xi = self.augment_(to_tensor(Xi, device=self.device))
        step = (
            self._mixup_step(Xi, yi, **fit_params) if self.mixup
            else super().train_step_single((Xi, yi), **fit_params)
        )
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

    # -- prediction ---------------------------------------------------------

    def predict_proba(self, X):
        """Class probabilities for each image.

        Parameters
        ----------
        X : array-like
            Images in any layout :meth:`fit` accepts, of the training size
            and intensity scale.

        Returns
        -------
        proba : ndarray of shape (n, n_classes), dtype float32
            Columns follow ``classes_``.
        """
        check_is_fitted(self)
        # No autograd bookkeeping at all; everything leaves as NumPy.
        with torch.inference_mode():
            return super().predict_proba(X)

    def predict(self, X):
        """Predicted label of each image.

        Parameters
        ----------
        X : array-like
            Images in any layout :meth:`fit` accepts, of the training size.

        Returns
        -------
        labels : ndarray of shape (n,)
            Values from ``classes_``.
        """
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    def transform_features(self, X):
        """The network's penultimate features of each image, scaled to unit length.

        The input of the network's last linear layer: what the classifier
        head sees.

        Parameters
        ----------
        X : array-like
            Images in any layout :meth:`fit` accepts, of the training size.

        Returns
        -------
        features : ndarray of shape (n, n_features), dtype float32
        """
        images = self.to_images(X)
        linear = [m for m in self.module_.modules() if isinstance(m, torch.nn.Linear)]
        if not linear:
            raise ValueError(
                f"{type(self.module_).__name__} has no torch.nn.Linear layer whose input "
                "could serve as features."
            )
        captured = []
        handle = linear[-1].register_forward_pre_hook(
            lambda module, args: captured.append(args[0].detach().float().cpu())
        )
        try:
            self.forward(images, training=False)
        finally:
            handle.remove()
        features = torch.cat(captured).flatten(1).numpy()
        return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)

    def predict_uncertainty(self, X, *, method="entropy"):
        """How unsure the model is about each image: higher is less sure.

        Parameters
        ----------
        X : array-like
            Images in any layout :meth:`fit` accepts, of the training size.
        method : {"entropy", "margin", "knn"}, default="entropy"
            ``"entropy"``: entropy of ``predict_proba``, divided by its
            largest value ``log(n_classes)`` (0 certain, 1 uniform);
            ``"margin"``: one minus the gap between the two largest
            probabilities; ``"knn"``: how far the image's features lie from
            the training images' (one minus the mean cosine similarity of
            its 10 nearest training features), which flags scans unlike any
            seen in training even when the softmax is confident.

        Returns
        -------
        uncertainty : ndarray of shape (n,), dtype float64
            In [0, 1] for ``"entropy"`` and ``"margin"``, [0, 2] for ``"knn"``.

        Examples
        --------
        >>> import numpy as np
        >>> from ckdlearn import CKDNetClassifier
        >>> X = np.random.RandomState(0).rand(20, 64).astype(np.float32)
        >>> clf = CKDNetClassifier(max_epochs=1, module__width=2, module__depth=1,
        ...                        augment=None, random_state=0).fit(X, [0, 1] * 10)
        >>> clf.predict_uncertainty(X[:3], method="knn").shape
        (3,)
        """
        if method not in UNCERTAINTY_METHODS:
            raise ValueError(
                f"method must be one of {list(UNCERTAINTY_METHODS)}; got {method!r}."
            )
        if method == "knn":
            similarity = self.transform_features(X) @ self.train_features_.T
            k = min(_KNN_NEIGHBOURS, similarity.shape[1])
            nearest = -np.partition(-similarity, k - 1, axis=1)[:, :k]
            return 1.0 - nearest.mean(axis=1).astype(np.float64)
        return uncertainty_from_proba(self.predict_proba(X), method)

    def predict_series(self, X, groups, *, method="mean_log", uncertainty="entropy"):
        """One answer per scan series, with how unsure it is.

        Parameters
        ----------
        X : array-like
            The slices, in any layout :meth:`fit` accepts.
        groups : array-like of shape (n,)
            Scan series of each slice.
        method : {"mean_log", "mean", "vote"}, default="mean_log"
            How slice probabilities combine, see
            :func:`ckdlearn.series.aggregate_series`.
        uncertainty : {"entropy", "margin", "knn"}, default="entropy"
            As in :meth:`predict_uncertainty`: of the series' combined
            probabilities, or for ``"knn"`` the mean over its slices.

        Returns
        -------
        result : Bunch
            ``series`` (sorted ids), ``label``, ``proba`` (n_series,
            n_classes), ``uncertainty`` and ``n_slices``.

        Examples
        --------
        >>> import numpy as np
        >>> from ckdlearn import CKDNetClassifier
        >>> X = np.random.RandomState(0).rand(20, 64).astype(np.float32)
        >>> clf = CKDNetClassifier(max_epochs=1, module__width=2, module__depth=1,
        ...                        augment=None, random_state=0).fit(X, [0, 1] * 10)
        >>> result = clf.predict_series(X, np.repeat(["scan-a", "scan-b"], 10))
        >>> result.series.tolist(), result.n_slices.tolist()
        (['scan-a', 'scan-b'], [10, 10])
        """
        proba = self.predict_proba(X)
        result = aggregate_series(proba, groups, method=method)
        result.label = self.classes_[result.proba.argmax(axis=1)]
        if uncertainty == "knn":
            slices = self.predict_uncertainty(X, method="knn")
            index = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
            result.uncertainty = np.bincount(index, weights=slices) / result.n_slices
        else:
            result.uncertainty = uncertainty_from_proba(result.proba, uncertainty)
        return result

    def to_images(self, X):
        """Validate ``X`` and return it as the network sees it.

        Parameters
        ----------
        X : array-like
            Images in any layout :meth:`fit` accepts, of the training size.

        Returns
        -------
        images : ndarray of shape (n, C, H, W), dtype float32
            Scaled as in training (uint8 divided by 255), C-contiguous.
        """
        check_is_fitted(self)
        images = as_image_batch(
            X, expected_shape=self.image_shape_, estimator_name=type(self).__name__
        )
        self._check_intensity_scale(images)
        return images

    def explain(
        self,
        X,
        *,
        method="gradcam",
        target=None,
        layer=None,
        batch_size=None,
        return_scores=False,
    ):
        """Class activation heatmaps for each image.

        Parameters
        ----------
        X : array-like
            Images in any layout :meth:`fit` accepts, of the training size.
        method : str, default="gradcam"
            One of :data:`ckdlearn.cam.CAM_METHODS`: ``"gradcam"``,
            ``"gradcam++"``, ``"hirescam"``, ``"xgradcam"``,
            ``"layercam"``, ``"eigencam"``, ``"scorecam"``, ...
        target : label, array-like of labels or None, default=None
            The class to explain: None explains each image's predicted
            class; one label explains that class for every image; an
            array gives one label per image.
        layer : str, torch.nn.Module or None, default=None
            The layer whose activations are weighted: a module name from
            ``module_.named_modules()`` or a module. By default the
            network's ``cam_layer`` attribute, else its last convolution.
        batch_size : int or None, default=None
            Images per forward/backward pass; defaults to ``batch_size``.
        return_scores : bool, default=False
            Also return a faithfulness score per image (see
            :func:`ckdlearn.cam.faithfulness_scores`).

        Returns
        -------
        heatmaps : ndarray of shape (n, H, W), dtype float32
            Values in [0, 1] at the input resolution.
        scores : ndarray of shape (n,), dtype float32
            Only when ``return_scores=True``.

        Raises
        ------
        ValueError
            For an unknown method, layer or target label, or malformed X.
        """
        images = self.to_images(X)
        class_indices = self._target_indices(target, len(images))
        kwargs = dict(
            method=method,
            layer=layer,
            batch_size=batch_size or self.batch_size,
            device=self.device,
        )
        heatmaps, class_indices = compute_heatmaps(
            self.module_, images, class_indices, **kwargs
        )
        if not return_scores:
            return heatmaps
        scores = faithfulness_scores(
            self.module_, images, class_indices, heatmaps,
            batch_size=kwargs["batch_size"], device=self.device,
        )
        return heatmaps, scores

    def _target_indices(self, target, n_images):
        """Class indices to explain: None means 'the predicted class'."""
        if target is None:
            return None
        targets = np.asarray(target)
        if targets.ndim == 0:
            targets = np.repeat(targets, n_images)
        elif targets.shape != (n_images,):
            raise ValueError(
                "target must be None, one label, or one label per image; got "
                f"{targets.shape[0] if targets.ndim == 1 else targets.shape} "
                f"targets for {n_images} images."
            )
        try:
            return self._encode_labels(targets)
        except (ValueError, TypeError):
            unknown = [t for t in np.unique(targets).tolist() if t not in self.classes_.tolist()]
            raise ValueError(
                f"Unknown target label(s) {unknown}; expected one of the "
                f"classes {self.classes_.tolist()}."
            ) from None
