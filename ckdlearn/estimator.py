"""CKDNetClassifier: a skorch CNN that behaves like a scikit-learn classifier.

The estimator takes the flat ``(n, H*W)`` matrices that samplers such as
SMOTE need and returns labels in the user's own vocabulary. Everything it
adds to skorch goes through skorch's own hooks: ``get_dataset`` shapes the
input into image batches (:func:`ckdlearn.utils.input_checks.as_image_batch`),
``initialize_module`` fills in what the data determines, ``train_step_single``
augments (:mod:`ckdlearn._training_steps`), ``infer`` sets the precision, and the default iterator and
callbacks are skorch parameters (:func:`ckdlearn.loaders.batch_loader`,
:mod:`ckdlearn.callbacks`). Input handling, uncertainty and explanations
are mixed in from their own modules (:mod:`ckdlearn._input`,
:mod:`ckdlearn._uncertainty`, :mod:`ckdlearn.explanation`), and the
weights ``initial_weights`` names are copied in by :mod:`ckdlearn._fine_tuning`.

``CosineAnnealing`` and ``batch_loader`` are still importable from here,
where they lived before.
"""

import inspect
import numbers
import os
from contextlib import contextmanager

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import EpochScoring
from skorch.dataset import Dataset
from skorch.utils import to_numpy
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._fine_tuning import load_initial_weights
from ._input import ImageInputMixin
from ._uncertainty import UNCERTAINTY_METHODS, UncertaintyMixin  # noqa: F401  (its old home)
from .augmentation import CTAugment
from .callbacks import CosineAnnealing, SeriesEarlyStopping, interrupts_propagate
from .exceptions import TrainingInterrupted
from .explanation import ExplainMixin
from .loaders import batch_loader
from .nets import CKDNet
from .preprocessing import DOMAINS
from ._training_steps import TrainingStepsMixin
from .utils._param_validation import Interval, Options, StrOptions, validate_parameter_constraints
from .utils.input_checks import IntegerInterval, as_image_batch, resolve_image_shape

__all__ = ["CKDNetClassifier", "CosineAnnealing", "as_image_batch", "batch_loader", "resolve_image_shape"]

_PRECISIONS = {"32": None, "bf16": torch.bfloat16}
# Training images whose features ``predict_uncertainty(method="knn")``
# compares against (a random sample).
_KNN_REFERENCE = 1024


def _encoded_accuracy(net, X, y):
    """Accuracy of ``net`` on ``X`` against class indices ``y``."""
    y_true = net.classes_[np.asarray(to_numpy(y) if torch.is_tensor(y) else y, dtype=np.int64)]
    return float(np.mean(net.predict(X) == y_true))


def _resolve_device(setting):
    if isinstance(setting, str) and setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


class CKDNetClassifier(ImageInputMixin, TrainingStepsMixin, UncertaintyMixin, ExplainMixin,
                       NeuralNetClassifier):
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
    domain : {"clahe", "raw"}, default="clahe"
        The input domain of the images the model learns from and answers
        on (:mod:`ckdlearn.preprocessing`): slices contrast-equalised as the
        complete CT KIDNEY DATASET is (what :func:`~ckdlearn.datasets.load_ct_kidney`
        returns by default), or as exported. Recorded in the model file:
        the command line and :func:`~ckdlearn.datasets.read_images`
        (``domain=model.domain``) bring files into it. Images that look
        unlike the training images' domain get a warning at predict time.
    initial_weights : "reference", path-like or None, default=None
        Start training from these weights instead of a random
        initialisation (fine-tuning): ``"reference"`` for the reference
        model that ships with ckdlearn (:func:`ckdlearn.load_pretrained`),
        or the path of a model file written by :func:`ckdlearn.save`. Every
        weight whose name and shape match is loaded; a classification
        layer for another set of classes starts anew. The model must share
        this one's network and ``domain``. Pair it with a smaller ``lr``
        (e.g. 1e-4) and fewer epochs.
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
        (the ``"early_stopping"`` callback,
        :class:`~ckdlearn.callbacks.SeriesEarlyStopping`). None trains
        ``max_epochs`` and still restores the best epoch.
        ``callbacks__early_stopping__patience`` overrides it.
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
        learning-rate schedule named ``"lr_scheduler"``
        (:class:`~ckdlearn.callbacks.CosineAnnealing`; tune with
        ``callbacks__lr_scheduler__...`` or disable with
        ``callbacks__lr_scheduler=None``) and ``"early_stopping"``
        (:class:`~ckdlearn.callbacks.SeriesEarlyStopping`).
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
    domain_profile_ : dict
        5th, 50th and 95th percentiles of the training images' mean
        intensity and detail (mean absolute difference of neighbouring
        pixels), which the domain check compares new images against.
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
    whole (:func:`~ckdlearn.loaders.batch_loader`), and a shuffled last batch of a single
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
        "domain": [StrOptions(set(DOMAINS))],
        "initial_weights": [StrOptions({"reference"}), str, os.PathLike, None],
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
        domain="clahe",
        initial_weights=None,
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
        self.domain = domain
        self.initial_weights = initial_weights

    # -- parameters ---------------------------------------------------------

    # skorch has no hook that resolves a device name: it reads ``self.device``
    # wherever it moves tensors (its own methods, its scoring callbacks,
    # ``__setstate__``, ``load_params``), so "auto" is resolved on read, and
    # fitting leaves the parameter as set (scikit-learn's rule; resolving it
    # in ``initialize`` would pin a model file to the machine that wrote it).
    @property
    def device(self):
        return _resolve_device(self.__dict__.get("device", "auto"))

    @device.setter
    def device(self, value):
        self.__dict__["device"] = value

    def get_params(self, deep=True, **kwargs):
        # scikit-learn reads each parameter through getattr, which the
        # property above resolves; and skorch counts every attribute not
        # ending in "_" as a parameter, its own ``_params_to_validate`` and
        # ``fit``'s ``_validation_data`` too, which are bookkeeping.
        params = super().get_params(deep=deep, **kwargs)
        return {**{name: value for name, value in params.items() if not name.startswith("_")},
                "device": self.__dict__["device"]}

    def set_params(self, **params):
        # skorch initialises callbacks as soon as ``callbacks`` is set; before
        # fit there is nothing to initialise, and scikit-learn expects
        # set_params to store values without validating them.
        if not self.initialized_ and "callbacks" in params:
            self.callbacks = params.pop("callbacks")
        return super().set_params(**params)

    def __setstate__(self, state):
        # skorch's ``__setstate__`` maps the stored tensors onto
        # ``torch.device(state["device"])``, which cannot parse "auto".
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
        # Built from the net's own parameter each time the callbacks are
        # initialised; ``callbacks__early_stopping__patience`` overrides it.
        callbacks.append(("early_stopping", SeriesEarlyStopping(patience=self.early_stopping)))
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
            Training images; see :func:`~ckdlearn.utils.input_checks.as_image_batch`
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
        except TrainingInterrupted as interruption:
            raise KeyboardInterrupt(str(interruption)) from None
        return self

    def _validate_parameters(self):
        validate_parameter_constraints(
            self._parameter_constraints, self.get_params(deep=False), caller_name=type(self).__name__
        )
        self._check_label_smoothing()

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

    def initialize_module(self):
        kwargs = self.get_params_for("module")
        if not isinstance(self.module, torch.nn.Module):
            kwargs = {**self._data_module_kwargs(), **kwargs}
        self.module_ = self.initialized_instance(self.module, kwargs)
        if self.initial_weights is not None:
            load_initial_weights(self)
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
        with interrupts_propagate(self, epochs):
            return super().fit_loop(X, y, epochs=epochs, **fit_params)

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
