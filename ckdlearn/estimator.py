"""CKDNetClassifier: a skorch CNN that behaves like a scikit-learn classifier.

The estimator takes the flat ``(n, H*W)`` matrices that samplers such as
SMOTE need, reshapes them into image batches for the network, and returns
labels in the user's own vocabulary. Input handling lives in
:func:`as_image_batch` so that explanations and model files shape images
exactly as training did.
"""

import inspect
import math
import numbers
from contextlib import contextmanager
from types import MappingProxyType

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, EpochScoring
from skorch.dataset import Dataset, unpack_data
from skorch.utils import is_dataset, to_numpy, to_tensor
from torch.utils.data import DataLoader, Subset
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

from .augmentation import CTAugment
from .cam import compute_heatmaps, faithfulness_scores
from .nets import CKDNet

__all__ = ["CKDNetClassifier", "CosineAnnealing", "as_image_batch", "resolve_image_shape"]

_PRECISIONS = {"32": None, "bf16": torch.bfloat16}

# The DataLoader keyword arguments the in-memory batch iterator reproduces;
# any other (num_workers, sampler, collate_fn, ...) goes to the DataLoader.
_SLICEABLE_ITERATOR_KWARGS = frozenset({"batch_size", "shuffle", "drop_last"})


class _ArrayDataset(Dataset):
    """skorch's Dataset over in-memory arrays, with zero-copy tensor views.

    It is a :class:`skorch.dataset.Dataset` in every respect (callbacks
    read ``X`` and ``y`` from it, a DataLoader can index it one sample at
    a time); :class:`_BatchIterator` slices whole batches from the tensor
    views instead.
    """

    def __init__(self, X, y=None):
        super().__init__(X, y)
        self.X_tensor = torch.from_numpy(X)
        self.y_tensor = None if y is None else torch.as_tensor(y)


class _BatchIterator:
    """The batches ``DataLoader(dataset, batch_size, shuffle, drop_last)``
    yields over an :class:`_ArrayDataset`, without per-sample Python.

    A DataLoader indexes the dataset once per image and stacks the images
    again (``default_collate``); here each batch is one slice (or, when
    shuffling, one ``index_select``) of the in-memory tensor. Every batch
    is a new tensor, as the DataLoader's are, so augmentations or modules
    that work in place never write into the caller's ``X``.

    Random numbers are drawn exactly as a DataLoader draws them, so a
    seeded ``fit`` trains on the same batches and draws the same
    augmentation and dropout whichever iterator runs: each pass takes one
    int64 from torch's global generator (the DataLoader's base seed) and,
    when shuffling, a second one that seeds the permutation (what
    ``RandomSampler`` does).
    """

    def __init__(self, dataset, batch_size, *, shuffle=False, drop_last=False, indices=None):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.indices = indices

    def _n_samples(self):
        return len(self.dataset) if self.indices is None else len(self.indices)

    def __len__(self):
        n_samples = self._n_samples()
        if self.drop_last:
            return n_samples // self.batch_size
        return -(-n_samples // self.batch_size)

    def __iter__(self):
        torch.empty((), dtype=torch.int64).random_()  # the DataLoader's base seed
        n_samples = self._n_samples()
        order = self.indices
        if self.shuffle:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            generator = torch.Generator()
            generator.manual_seed(seed)
            permutation = torch.randperm(n_samples, generator=generator)
            order = permutation if order is None else order[permutation]
        X, y = self.dataset.X_tensor, self.dataset.y_tensor
        for start in range(0, n_samples, self.batch_size):
            stop = min(start + self.batch_size, n_samples)
            if self.drop_last and stop - start < self.batch_size:
                return
            if order is None:
                Xb = X[start:stop].clone()
                yb = None if y is None else y[start:stop].clone()
            else:
                rows = order[start:stop]
                Xb = X.index_select(0, rows)
                yb = None if y is None else y.index_select(0, rows)
            if yb is None:
                # skorch's Dataset stands in a 0 for each missing target.
                yb = torch.zeros((stop - start, 1))
            yield Xb, yb


def _sliceable_source(dataset):
    """``(array_dataset, row_indices or None)`` when batches of ``dataset``
    can be sliced from memory, else None."""
    if type(dataset) is _ArrayDataset:
        return dataset, None
    if type(dataset) is Subset and type(dataset.dataset) is _ArrayDataset:
        indices = torch.as_tensor(np.asarray(dataset.indices, dtype=np.int64))
        return dataset.dataset, indices
    return None


def _encoded_accuracy(net, X, y):
    """Accuracy of ``net`` on ``X`` against class indices ``y``."""
    y_true = net.classes_[np.asarray(to_numpy(y) if torch.is_tensor(y) else y, dtype=np.int64)]
    return float(np.mean(net.predict(X) == y_true))


def _is_numeric_array(array):
    return isinstance(array, np.ndarray) and array.dtype.kind in "biuf"


def _has_spatial_convolutions(module):
    return any(parameter.dim() == 4 for parameter in module.parameters())


def resolve_image_shape(n_features, image_shape=None):
    """Return the ``(channels, height, width)`` that flat rows unfold into.

    Parameters
    ----------
    n_features : int
        Values per sample in the flat matrix.
    image_shape : tuple of int or None, default=None
        ``(height, width)`` or ``(channels, height, width)``. When None, a
        square feature count ``s*s`` is read as one ``s x s`` greyscale
        image and any other count as an image one pixel high (the layout
        tabular data, such as scikit-learn's estimator checks, gets).

    Returns
    -------
    image_shape : tuple of (int, int, int)
        ``(channels, height, width)`` whose product is ``n_features``.

    Raises
    ------
    ValueError
        If ``image_shape`` is malformed or its pixel count differs from
        ``n_features``.

    Examples
    --------
    >>> from ckdlearn.estimator import resolve_image_shape
    >>> resolve_image_shape(64 * 64)
    (1, 64, 64)
    >>> resolve_image_shape(3 * 28 * 28, image_shape=(3, 28, 28))
    (3, 28, 28)
    >>> resolve_image_shape(10)
    (1, 1, 10)
    """
    if image_shape is None:
        side = math.isqrt(n_features)
        if side * side == n_features:
            return (1, side, side)
        return (1, 1, n_features)
    shape = tuple(image_shape) if np.iterable(image_shape) else (image_shape,)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or not all(
        isinstance(dim, numbers.Integral) and dim >= 1 for dim in shape
    ):
        raise ValueError(
            "image_shape must be (height, width) or (channels, height, width) "
            f"with positive integers; got image_shape={image_shape!r}."
        )
    shape = tuple(int(dim) for dim in shape)
    if math.prod(shape) != n_features:
        raise ValueError(
            f"image_shape={image_shape!r} holds {math.prod(shape)} values per "
            f"image, but X has {n_features} features per sample. Pass the "
            "shape the rows were flattened from, e.g. image_shape=(128, 128) "
            "for X of shape (n, 16384)."
        )
    return shape


def as_image_batch(X, image_shape=None, *, expected_shape=None, estimator_name="CKDNetClassifier"):
    """Validate input and return it as a float32 ``(n, C, H, W)`` array.

    Accepted layouts: flat ``(n, C*H*W)``, ``(n, H, W)`` and
    ``(n, C, H, W)``, in any real dtype. ``uint8`` images are scaled to
    [0, 1]; every other dtype is cast to float32 unchanged (so float
    input is taken to be already scaled, e.g. [0, 1] as
    :func:`ckdlearn.datasets.load_ct_kidney` returns).

    Parameters
    ----------
    X : array-like
        Images in one of the layouts above.
    image_shape : tuple of int or None, default=None
        How flat rows unfold, see :func:`resolve_image_shape`. Ignored
        when ``expected_shape`` is given.
    expected_shape : tuple of (int, int, int) or None, default=None
        The ``(C, H, W)`` a fitted model was trained on; X must match it.
    estimator_name : str, default="CKDNetClassifier"
        Used in error messages.

    Returns
    -------
    images : ndarray of shape (n, C, H, W), dtype float32
        C-contiguous and writeable; a view of ``X`` when no cast or copy
        was needed.

    Raises
    ------
    ValueError
        For empty, 1-D, more than 4-D, complex, non-numeric or non-finite
        input, and for a shape that disagrees with ``image_shape`` or
        ``expected_shape``.

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn.estimator import as_image_batch
    >>> as_image_batch(np.zeros((5, 16 * 16), dtype=np.uint8)).shape
    (5, 1, 16, 16)
    >>> as_image_batch(np.full((2, 8, 8), 255, dtype=np.uint8)).max()
    np.float32(1.0)
    """
    if hasattr(X, "detach"):  # a torch tensor
        X = X.detach().cpu().numpy()
    X = check_array(
        X,
        accept_sparse=False,
        allow_nd=True,
        dtype="numeric",
        ensure_all_finite=True,
        ensure_min_samples=1,
        ensure_min_features=1,
        input_name="X",
    )
    if X.ndim > 4:
        raise ValueError(
            f"{estimator_name} expects images as (n, H*W), (n, H, W) or "
            f"(n, C, H, W); got an array with {X.ndim} dimensions, shape {X.shape}."
        )
    if 0 in X.shape[1:]:
        raise ValueError(
            f"{estimator_name} needs images with at least one pixel; got X of "
            f"shape {X.shape}."
        )
    if expected_shape is not None:
        _check_against_fitted_shape(X, expected_shape, estimator_name)
        shape = tuple(expected_shape)
    elif X.ndim == 2:
        shape = resolve_image_shape(X.shape[1], image_shape)
    else:
        shape = (1, *X.shape[1:]) if X.ndim == 3 else X.shape[1:]
        if image_shape is not None and resolve_image_shape(
            math.prod(shape), image_shape
        ) != tuple(shape):
            raise ValueError(
                f"X holds images of shape {X.shape[1:]}, which disagrees with "
                f"image_shape={image_shape!r}. Leave image_shape=None for "
                "shaped input, or pass flat rows."
            )
    scale = 1 / 255 if X.dtype == np.uint8 else None
    with np.errstate(over="ignore"):
        images = np.asarray(X, dtype=np.float32)
    if X.dtype.kind == "f" and X.dtype.itemsize > 4 and not np.isfinite(images).all():
        raise ValueError(
            f"X holds values beyond the float32 range (largest magnitude "
            f"{np.abs(X).max():.3g}; float32 holds up to 3.4e+38). "
            f"{estimator_name} computes in float32: rescale the images."
        )
    if scale is not None:
        images = images * np.float32(scale)
    images = images.reshape((X.shape[0], *shape))
    if not (images.flags.c_contiguous and images.flags.writeable):
        images = np.array(images, dtype=np.float32, order="C", copy=True)
    return images


def _check_against_fitted_shape(X, expected_shape, estimator_name):
    n_expected = math.prod(expected_shape)
    if X.ndim == 2:
        if X.shape[1] != n_expected:
            # The wording follows scikit-learn's so users (and its checks)
            # recognise it.
            raise ValueError(
                f"X has {X.shape[1]} features, but {estimator_name} is expecting "
                f"{n_expected} features as input (images of shape "
                f"{tuple(expected_shape)} flattened)."
            )
        return
    given = (1, *X.shape[1:]) if X.ndim == 3 else tuple(X.shape[1:])
    if given != tuple(expected_shape):
        raise ValueError(
            f"X holds images of shape {X.shape[1:]}, but {estimator_name} was "
            f"fitted on images of shape {tuple(expected_shape)} (channels, height, "
            "width). Resize the images to the training size first, e.g. with "
            "ckdlearn.datasets.read_images(..., image_size=...)."
        )


class _UnfittedDefault:
    """Class-level default of an attribute skorch expects on every net.

    Hidden while ``__init__`` runs, because skorch tells its own
    construction apart by the attribute's absence; an instance value, once
    ``initialize`` sets one, takes precedence.
    """

    def __init__(self, value):
        self.value = value

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is not None and "_constructing" in vars(instance):
            raise AttributeError(self.name)
        return self.value


class CosineAnnealing(Callback):
    """Cosine learning-rate decay from the initial rate to ``eta_min``.

    The default schedule of :class:`CKDNetClassifier`, as its
    ``"lr_scheduler"`` callback. The rate of each epoch is computed from
    the number of epochs in the net's history, so a run resumed from a
    checkpoint continues the same curve.

    Parameters
    ----------
    eta_min : float, default=0.0
        Learning rate reached at the last epoch.
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
        self.eta_min = eta_min
        self.T_max = T_max

    def on_epoch_begin(self, net, **kwargs):
        epoch = len(net.history) - 1  # skorch adds this epoch's row first
        total = self.T_max if self.T_max is not None else net.max_epochs
        progress = min(epoch / max(int(total), 1), 1.0)
        factor = 0.5 * (1 + math.cos(math.pi * progress))
        for group in net.optimizer_.param_groups:
            initial = group.setdefault("initial_lr", group["lr"])
            group["lr"] = self.eta_min + (initial - self.eta_min) * factor
        net.history.record("event_lr", net.optimizer_.param_groups[0]["lr"])


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
        Passes over the training data.
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
        of 78%), so it is off by default (``benchmarks/ACCURACY.md``).
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
        ``fit`` is reproducible on the CPU. torch's global random state is
        restored afterwards.
    device : str, default="auto"
        ``"auto"`` uses CUDA when available and the CPU otherwise; any
        torch device string is accepted.
    train_split : callable or None, default=None
        No internal validation split by default: inside a pipeline it
        would run after SMOTE and validate on synthetic images. Validate
        with an outer cross-validation split by scan series instead.
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
    ``iterator_train__shuffle=False`` keeps the order.

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
    >>> clf = CKDNetClassifier(max_epochs=5, lr=1e-2, module__width=4, module__depth=2,
    ...                        augment=None, random_state=0).fit(X, y)
    >>> clf.classes_
    array(['Cyst', 'Normal'], dtype='<U6')
    >>> clf.predict(X[[0, 1, 20]])
    array(['Cyst', 'Cyst', 'Normal'], dtype='<U6')
    >>> clf.explain(X[:3]).shape
    (3, 16, 16)
    """

    # skorch's NeuralNet.__init__ sets these three attributes on the
    # instance; scikit-learn requires __init__ to set parameters only, so
    # they are dropped there and these class-level defaults stand in until
    # ``initialize`` sets real ones.
    history_ = _UnfittedDefault(None)
    initialized_ = _UnfittedDefault(False)
    virtual_params_ = _UnfittedDefault(MappingProxyType({}))

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
        device="auto",
        train_split=None,
        verbose=0,
        callbacks=None,
        **kwargs,
    ):
        vars(self)["_constructing"] = True
        super().__init__(
            module,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
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
        for name in ("history_", "initialized_", "virtual_params_", "_constructing"):
            vars(self).pop(name, None)

    # -- parameters ---------------------------------------------------------

    # skorch reads ``self.device`` wherever it moves tensors, so "auto" is
    # resolved on read; the raw setting stays in ``__dict__`` (where skorch
    # and scikit-learn look for parameters) and get_params reports it.
    @property
    def device(self):
        setting = vars(self).get("device", "auto")
        if isinstance(setting, str) and setting == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return setting

    @device.setter
    def device(self, value):
        vars(self)["device"] = value

    def _get_param_names(self):
        # skorch treats every attribute not ending in "_" as a parameter;
        # its private bookkeeping (leading "_") is not one.
        return [name for name in super()._get_param_names() if not name.startswith("_")]

    def get_params(self, deep=True, **kwargs):
        params = super().get_params(deep=deep, **kwargs)
        params["device"] = vars(self).get("device", "auto")
        return params

    @property
    def classes_(self):
        try:
            return vars(self)["classes_"]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__} has no attribute 'classes_' before fit."
            ) from None

    @classes_.setter
    def classes_(self, value):
        vars(self)["classes_"] = value

    @property
    def _default_callbacks(self):
        callbacks = []
        for name, callback in super()._default_callbacks:
            if name == "valid_acc":
                # skorch's "accuracy" scorer compares ``predict`` (the user's
                # labels) with the split's targets, which are encoded here.
                callback = EpochScoring(
                    _encoded_accuracy, name="valid_acc", lower_is_better=False,
                    on_train=False, use_caching=True,
                )
            callbacks.append((name, callback))
        callbacks.insert(1, ("lr_scheduler", CosineAnnealing()))
        return callbacks

    def set_params(self, **params):
        # skorch initialises callbacks as soon as ``callbacks`` is set; before
        # fit there is nothing to initialise, and scikit-learn expects
        # set_params to store values without validating them.
        if not self.initialized_ and "callbacks" in params:
            vars(self)["callbacks"] = params.pop("callbacks")
        return super().set_params(**params)

    def __setstate__(self, state):
        # skorch maps stored tensors onto ``state["device"]``, which must
        # be a real device; "auto" is restored once loading is done.
        setting = state.get("device")
        if isinstance(setting, str) and setting == "auto":
            state["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        super().__setstate__(state)
        vars(self)["device"] = setting

    def __sklearn_is_fitted__(self):
        return bool(self.initialized_) and "classes_" in vars(self)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.classifier_tags.multi_label = False
        return tags

    # -- training -----------------------------------------------------------

    def fit(self, X, y, **fit_params):
        """Train the network from scratch (unless ``warm_start=True``).

        Parameters
        ----------
        X : array-like of shape (n, H*W), (n, C*H*W), (n, H, W) or (n, C, H, W)
            Training images; see :func:`as_image_batch` for dtypes.
        y : array-like of shape (n,)
            Labels, ints or strings.
        **fit_params : dict
            Passed to skorch's ``fit`` (e.g. extra module inputs).

        Returns
        -------
        self : CKDNetClassifier
            The fitted estimator.

        Raises
        ------
        ValueError
            For malformed ``X`` or ``y`` (see :func:`as_image_batch`), or
            fewer than two classes.
        """
        reset = not (self.warm_start and self.__sklearn_is_fitted__())
        return self._train(X, y, reset=reset, fit_params=fit_params)

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
        reset = not self.__sklearn_is_fitted__()
        return self._train(X, y, reset=reset, classes=classes, fit_params=fit_params)

    def _train(self, X, y, *, reset, fit_params, classes=None):
        """Validate, (re)initialise when ``reset``, and run skorch's loop."""
        images, targets = self._validate_training_data(X, y, reset=reset, classes=classes)
        with self._random_state_context():
            if reset:
                self.initialize()
            # NeuralNet.partial_fit: the training loop without skorch's
            # classifier-level input handling, which ours replaces.
            super(NeuralNetClassifier, self).partial_fit(images, targets, **fit_params)
        return self

    def _validate_training_data(self, X, y, *, reset, classes=None):
        name = type(self).__name__
        if y is None:
            raise ValueError(
                f"{name} requires y to be passed, but the target y is None. "
                "Pass one label per image."
            )
        if self.precision not in _PRECISIONS:
            raise ValueError(
                f"precision must be one of {sorted(_PRECISIONS)}; got {self.precision!r}."
            )
        self._check_label_smoothing()
        if not isinstance(self.mixup, numbers.Real) or not 0 <= self.mixup < np.inf:
            raise ValueError(f"mixup must be a finite number >= 0; got {self.mixup!r}.")
        if reset:
            images = as_image_batch(X, self.image_shape, estimator_name=name)
        else:
            images = as_image_batch(
                X, expected_shape=self.image_shape_, estimator_name=name
            )
        y = column_or_1d(y, warn=True)
        if len(y) != len(images):
            raise ValueError(
                f"X and y must have the same number of samples; got {len(images)} "
                f"images and {len(y)} labels."
            )
        check_classification_targets(y)
        if reset:
            labels = self.classes if classes is None else classes
            known = np.unique(y) if labels is None else np.asarray(labels)
            if len(known) < 2:
                raise ValueError(
                    f"{name} needs at least 2 classes to learn from; y holds only "
                    f"one class: {known.tolist()}."
                )
            self.classes_ = known
            self.image_shape_ = tuple(int(d) for d in images.shape[1:])
            self.n_features_in_ = math.prod(self.image_shape_)
            self.class_weight_ = (
                None
                if self.class_weight is None
                else compute_class_weight(self.class_weight, classes=known, y=y)
            )
        return images, self._encode_labels(y)

    def _check_label_smoothing(self):
        value = self.label_smoothing
        if not isinstance(value, numbers.Real) or not 0 <= value < 1:
            raise ValueError(f"label_smoothing must be a number in [0, 1); got {value!r}.")
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
        positions = np.searchsorted(sorted_classes, y)
        positions = np.clip(positions, 0, len(sorted_classes) - 1)
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
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

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

    # Private switch for the channels-last lever, for benchmarks and for
    # modules that are faster in the classic layout.
    _channels_last = True

    def _uses_channels_last(self):
        shape = vars(self).get("image_shape_")
        return (
            self._channels_last
            and shape is not None
            and min(shape[1:]) > 1  # one-pixel-high "images" gain nothing
            and _has_spatial_convolutions(self.module_)
        )

    def _data_module_kwargs(self):
        """Network arguments the training data determines."""
        if not self.__sklearn_is_fitted__() and "image_shape_" not in vars(self):
            return {}
        known = {
            "in_channels": self.image_shape_[0],
            "n_classes": len(self.classes_),
            "image_shape": self.image_shape_[1:],
        }
        signature = inspect.signature(self.module)
        if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            return known
        return {k: v for k, v in known.items() if k in signature.parameters}

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
        self.augment_ = self._resolve_augment()
        return self

    def _resolve_augment(self):
        if self.augment is None or self.augment is False:
            return None
        if isinstance(self.augment, str):
            if self.augment == "ct":
                return CTAugment()
            raise ValueError(
                f'augment must be "ct", None or a callable; got {self.augment!r}.'
            )
        if not callable(self.augment):
            raise ValueError(
                f'augment must be "ct", None or a callable; got {self.augment!r}.'
            )
        return self.augment

    def _autocast(self):
        dtype = _PRECISIONS[self.precision]
        device_type = torch.device(self.device).type
        if dtype is None:
            return torch.autocast(device_type, enabled=False)
        return torch.autocast(device_type, dtype=dtype)

    def infer(self, x, **fit_params):
        with self._autocast():
            logits = super().infer(x, **fit_params)
        # Losses and softmax stay in float32 whatever the autocast precision.
        return logits.float()

    def train_step_single(self, batch, **fit_params):
        if self.augment_ is not None:
            Xi, yi = unpack_data(batch)
            batch = (self.augment_(to_tensor(Xi, device=self.device)), yi)
        if not self.mixup:
            return super().train_step_single(batch, **fit_params)
        return self._mixup_step(batch, **fit_params)

    def _mixup_step(self, batch, **fit_params):
        """skorch's training step on a batch blended with a shuffled copy of itself."""
        self._set_training(True)
        Xi, yi = unpack_data(batch)
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

    def get_dataset(self, X, y=None):
        # In-memory arrays (what fit and predict pass after validation) get a
        # dataset whose batches can be sliced whole; anything else, and any
        # custom ``dataset``, goes the way skorch builds it.
        if (
            self.dataset is Dataset
            and not self.get_params_for("dataset")
            and _is_numeric_array(X)
            and X.flags.c_contiguous
            and X.flags.writeable
            and (y is None or _is_numeric_array(y))
        ):
            return _ArrayDataset(X, y)
        return super().get_dataset(X, y)

    def get_iterator(self, dataset, training=False):
        prefix = "iterator_train" if training else "iterator_valid"
        iterator = self.iterator_train if training else self.iterator_valid
        kwargs = self.get_params_for(prefix)
        # Prediction batches are ``batch_size`` too unless
        # ``iterator_valid__batch_size`` says otherwise: larger ones were
        # not reliably faster on the CPU, and slower on small images, whose
        # activations then no longer fit in cache (benchmarks/README.md).
        kwargs.setdefault("batch_size", self.batch_size)
        if training:
            # skorch's DataLoader default keeps the training order, and CT
            # data usually arrives sorted by class (folders, then SMOTE's
            # synthetic rows appended per class): unshuffled batches would
            # hold one class each. ``iterator_train__shuffle=False`` opts out.
            kwargs.setdefault("shuffle", True)
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        source = _sliceable_source(dataset)
        if (
            iterator is DataLoader
            and source is not None
            and set(kwargs) <= _SLICEABLE_ITERATOR_KWARGS
            and kwargs.get("shuffle") in (None, False, True)
        ):
            array_dataset, indices = source
            return _BatchIterator(
                array_dataset,
                kwargs["batch_size"],
                shuffle=kwargs.get("shuffle"),
                drop_last=kwargs.get("drop_last", False),
                indices=indices,
            )
        return iterator(dataset, **kwargs)

    # -- prediction ---------------------------------------------------------

    def _images_for_prediction(self, X):
        check_is_fitted(self)
        if is_dataset(X):
            # skorch's own scoring callbacks (e.g. with a train_split) pass
            # the validation Dataset it built from already-validated images.
            return X
        return as_image_batch(
            X, expected_shape=self.image_shape_, estimator_name=type(self).__name__
        )

    def predict_proba(self, X):
        """Class probabilities for each image.

        Parameters
        ----------
        X : array-like
            Images in any layout :meth:`fit` accepts, of the training size.

        Returns
        -------
        proba : ndarray of shape (n, n_classes), dtype float32
            Columns follow ``classes_``.
        """
        images = self._images_for_prediction(X)
        # inference_mode rather than skorch's no_grad: no autograd
        # bookkeeping (version counters, views) on any tensor; everything
        # computed here leaves as NumPy. Eval mode is set once here rather
        # than once per batch (walking every submodule), which cost ~6% of
        # prediction time for small images.
        self._set_training(False)
        vars(self)["_eval_mode_set"] = True
        try:
            with torch.inference_mode():
                return super().predict_proba(images)
        finally:
            vars(self).pop("_eval_mode_set", None)

    def evaluation_step(self, batch, training=False):
        if training or not vars(self).get("_eval_mode_set"):
            return super().evaluation_step(batch, training=training)
        Xi, _ = unpack_data(batch)
        return self.infer(Xi)

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
        return self._images_for_prediction(X)

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
        images = self._images_for_prediction(X)
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
