"""Safe model files: save a fitted model, load it without pickle.

:func:`save` writes a fitted :class:`~ckdlearn.CKDNetClassifier`, or a
scikit-learn / imbalanced-learn pipeline around one, to a single file;
:func:`load` rebuilds it, ready to predict and explain, without running
code from the file. The suggested suffix is ``.ckdl``.

File format (``format_version`` 1)
----------------------------------
A model file is a ZIP archive (any unzip tool lists it) with two members,
read straight from the archive into memory, never extracted to disk:

``model.json`` (deflated)
    UTF-8 JSON with ``"format": "ckdlearn-model"``, ``"format_version": 1``,
    ``"versions"`` (ckdlearn, python, numpy, torch, scikit-learn,
    imbalanced-learn, skorch and safetensors of the writer) and
    ``"estimator"``, a tree of nodes
    ``{"__estimator__": "<allowed name>", "params": {...}, ...}``:

    * ``params`` holds the constructor parameters, ``get_params(deep=False)``,
      including skorch's routed ``module__*``, ``optimizer__*``,
      ``callbacks__*`` ... and a pipeline's ``steps`` (nested nodes);
    * a classifier node adds ``fitted`` (``classes_``, ``image_shape_``,
      ``n_features_in_``, ``class_weight_``), ``history`` (skorch's
      per-epoch record), ``preprocessing`` (the input layouts and the
      scaling rule of :func:`~ckdlearn.estimator.as_image_batch`: uint8
      divided by 255, other dtypes cast to float32 unchanged) and
      ``weights``, the name prefix of its tensors;
    * a scikit-learn transformer node adds ``fitted``, its public fitted
      attributes (``mean_``, ``scale_`` ... of a ``StandardScaler``).

    Values are JSON numbers, strings, booleans, null and lists; anything
    else is a tagged object: ``{"__tuple__": [...]}``,
    ``{"__dict__": {...}}`` (string keys) or ``{"__items__": [[key, value],
    ...]}``, ``{"__class__": "torch.optim.AdamW"}``,
    ``{"__function__": "builtins.print"}``, ``{"__scalar__": "<f4",
    "value": 0.5}``, ``{"__float__": "nan"}``, ``{"__device__": "cuda:0"}``,
    ``{"__ndarray__": {"dtype": "<U6", "shape": [3], "data": [...]}}``
    (numeric arrays of more than 4096 values name a tensor,
    ``"tensor": "array0"``, instead of listing ``"data"``) and
    ``{"__tensor__": <ndarray>}`` for a torch tensor.

``weights.safetensors`` (stored)
    A `safetensors <https://huggingface.co/docs/safetensors>`_ file: the
    first classifier's ``module_.state_dict()`` as ``net0/<name>``, a
    second one's as ``net1/<name>``, and large arrays as ``array0``, ...

Security model
--------------
:func:`load` never unpickles and never imports a name read from the file.
Every class or function a file names is looked up in a fixed allow-list
(:func:`supported_classes`): ckdlearn's classifier, networks, augmentation
and learning-rate schedule; scikit-learn and imbalanced-learn pipelines;
imbalanced-learn samplers and scikit-learn scalers with plain parameters;
torch optimizers, losses and schedulers; skorch's standard callbacks. A
name outside the list is refused before anything is built, so a file
edited to name ``os.system`` or ``builtins.eval`` runs nothing. The only
code that runs is those classes' own constructors, given JSON values, and
safetensors' tensor reader. A pickle (or joblib or ``torch.save`` file)
given the model's name is recognised and refused without being opened
as a pickle.

The file is not signed: whoever can edit it can change the weights and
hence the predictions. Trust a model file as much as its source for what
it predicts; it cannot make :func:`load` run code.

What a file holds, and what it does not
---------------------------------------
* The optimizer state is not saved: a loaded model is for prediction and
  explanation. With ``warm_start=True`` its ``fit`` continues from the
  saved weights with a fresh optimizer.
* Samplers (SMOTE and the like) act only inside ``fit``; their parameters
  are kept, their fitted state is not (a pipeline's ``predict`` skips them).
* Of scikit-learn transformers, ``StandardScaler``, ``MinMaxScaler``,
  ``MaxAbsScaler``, ``RobustScaler``, ``Normalizer``, ``Binarizer`` and
  ``FunctionTransformer`` without functions are supported, with their
  fitted state.
* Custom networks, callables and other classes cannot be written; save
  such models with :mod:`pickle` or :mod:`joblib` (and load those only
  from sources you trust).
"""

import errno
import io
import json
import math
import os
import re
import warnings
import zipfile
import zlib
from functools import lru_cache

import numpy as np
import torch
from safetensors.torch import load as _read_safetensors
from safetensors.torch import save as _write_safetensors
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from ._files import atomic_write_bytes, check_outputs
from ._version import __version__, library_versions
from .augmentation import CTAugment
from .estimator import CKDNetClassifier, CosineAnnealing, as_image_batch
from .nets import CKDNet, PaperCNN

__all__ = ["ModelFileError", "atomic_write_bytes", "load", "save", "supported_classes"]

FORMAT = "ckdlearn-model"
FORMAT_VERSION = 1
MODEL_MEMBER = "model.json"
WEIGHTS_MEMBER = "weights.safetensors"

# Numeric arrays up to this many values are listed in model.json, where a
# reader can see them; larger ones go to the safetensors member.
_INLINE_ARRAY_LIMIT = 4096
# model.json of a real model is kilobytes to a few megabytes (the training
# history); a larger one is not a ckdlearn file, or a decompression bomb.
_MAX_JSON_BYTES = 64 * 2**20

_PICKLE_HINT = (
    "To keep a model with custom classes, save it with pickle or joblib "
    "instead, and load such files only from sources you trust (unpickling "
    "runs code)."
)


class ModelFileError(ValueError):
    """A file is not a valid ckdlearn model file, or a model cannot be written to one.

    Raised by :func:`load` for foreign, damaged, tampered or incompatible
    files, and by :func:`save` for models holding classes or values that
    :func:`load` would not rebuild. Nothing from a refused file has been
    executed.

    Examples
    --------
    >>> from ckdlearn.persistence import ModelFileError
    >>> issubclass(ModelFileError, ValueError)
    True
    """


# --- the allow-list -------------------------------------------------------------

# Instances of these kinds are rebuilt from their parameters (read with
# get_params, or for "attributes" from the instance's __dict__); everything
# else in the list may only appear as a parameter value (a class or a function).
_INSTANCE_KINDS = ("classifier", "pipeline", "transformer", "parameters", "attributes")

# Parameters of CKDNetClassifier whose classes must come from one family.
_CLASSIFIER_ROLES = {
    "module": "network",
    "criterion": "criterion",
    "optimizer": "optimizer",
    "iterator_train": "data",
    "iterator_valid": "data",
    "dataset": "data",
}

_CLASSIFIER_FITTED = ("classes_", "image_shape_", "n_features_in_", "class_weight_")

_SAMPLERS = {
    "imblearn.over_sampling": [
        "ADASYN", "BorderlineSMOTE", "KMeansSMOTE", "RandomOverSampler", "SMOTE",
        "SMOTEN", "SMOTENC", "SVMSMOTE",
    ],
    "imblearn.under_sampling": [
        "AllKNN", "ClusterCentroids", "CondensedNearestNeighbour",
        "EditedNearestNeighbours", "InstanceHardnessThreshold", "NearMiss",
        "NeighbourhoodCleaningRule", "OneSidedSelection", "RandomUnderSampler",
        "RepeatedEditedNearestNeighbours", "TomekLinks",
    ],
    "imblearn.combine": ["SMOTEENN", "SMOTETomek"],
}
_TRANSFORMERS = [
    "Binarizer", "FunctionTransformer", "MaxAbsScaler", "MinMaxScaler",
    "Normalizer", "RobustScaler", "StandardScaler",
]
_OPTIMIZERS = ["Adagrad", "Adam", "AdamW", "NAdam", "RAdam", "RMSprop", "SGD"]
_SCHEDULERS = [
    "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "CyclicLR", "ExponentialLR",
    "MultiStepLR", "OneCycleLR", "ReduceLROnPlateau", "StepLR",
]
_CALLBACKS = [
    "BatchScoring", "EarlyStopping", "EpochScoring", "EpochTimer",
    "GradientNormClipping", "LRScheduler", "PassthroughScoring", "ProgressBar",
]


@lru_cache(maxsize=None)
def _allow_list():
    """``{name: (object, kind)}``, built on first use (it imports imblearn)."""
    import imblearn.combine
    import imblearn.over_sampling
    import imblearn.pipeline
    import imblearn.under_sampling
    import sklearn.neighbors
    import sklearn.pipeline
    import sklearn.preprocessing
    import skorch.callbacks
    import skorch.dataset
    import torch.optim.lr_scheduler
    import torch.utils.data

    from .over_sampling import LeanSMOTE

    modules = {
        "imblearn.over_sampling": imblearn.over_sampling,
        "imblearn.under_sampling": imblearn.under_sampling,
        "imblearn.combine": imblearn.combine,
    }
    entries = {
        "ckdlearn.CKDNetClassifier": (CKDNetClassifier, "classifier"),
        "ckdlearn.nets.CKDNet": (CKDNet, "network"),
        "ckdlearn.nets.PaperCNN": (PaperCNN, "network"),
        "ckdlearn.augmentation.CTAugment": (CTAugment, "attributes"),
        "ckdlearn.estimator.CosineAnnealing": (CosineAnnealing, "parameters"),
        "ckdlearn.over_sampling.LeanSMOTE": (LeanSMOTE, "parameters"),
        "imblearn.pipeline.Pipeline": (imblearn.pipeline.Pipeline, "pipeline"),
        "sklearn.pipeline.Pipeline": (sklearn.pipeline.Pipeline, "pipeline"),
        "sklearn.neighbors.NearestNeighbors": (sklearn.neighbors.NearestNeighbors, "parameters"),
        "torch.nn.CrossEntropyLoss": (torch.nn.CrossEntropyLoss, "criterion"),
        "torch.nn.NLLLoss": (torch.nn.NLLLoss, "criterion"),
        "torch.utils.data.DataLoader": (torch.utils.data.DataLoader, "data"),
        "skorch.dataset.Dataset": (skorch.dataset.Dataset, "data"),
        "skorch.dataset.ValidSplit": (skorch.dataset.ValidSplit, "attributes"),
        "skorch.callbacks.WarmRestartLR": (skorch.callbacks.WarmRestartLR, "scheduler"),
        # skorch's callbacks print through ``sink=print`` by default.
        "builtins.print": (print, "function"),
    }
    for module_name, names in _SAMPLERS.items():
        for name in names:
            if hasattr(modules[module_name], name):
                sampler = getattr(modules[module_name], name)
                entries[f"{module_name}.{name}"] = (sampler, "parameters")
    tables = [
        (sklearn.preprocessing, "sklearn.preprocessing", _TRANSFORMERS, "transformer"),
        (torch.optim, "torch.optim", _OPTIMIZERS, "optimizer"),
        (torch.optim.lr_scheduler, "torch.optim.lr_scheduler", _SCHEDULERS, "scheduler"),
        (skorch.callbacks, "skorch.callbacks", _CALLBACKS, "parameters"),
    ]
    for module, prefix, names, kind in tables:
        for name in names:
            if hasattr(module, name):
                entries[f"{prefix}.{name}"] = (getattr(module, name), kind)
    return entries


@lru_cache(maxsize=None)
def _names_by_object():
    return {obj: (name, kind) for name, (obj, kind) in _allow_list().items()}


def supported_classes():
    """Names of the classes and functions a model file may contain.

    :func:`load` rebuilds nothing else, and :func:`save` refuses models
    holding anything else.

    Returns
    -------
    names : list of str
        Dotted names, sorted.

    Examples
    --------
    >>> from ckdlearn.persistence import supported_classes
    >>> "imblearn.over_sampling.SMOTE" in supported_classes()
    True
    >>> "builtins.eval" in supported_classes()
    False
    """
    return sorted(_allow_list())


def _lookup(obj):
    """``(name, kind)`` of an allowed class or function, else None."""
    try:
        return _names_by_object().get(obj)
    except TypeError:  # unhashable
        return None


def _qualified_name(obj):
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls.__name__)}"


# --- writing --------------------------------------------------------------------


class _Writer:
    """Turns an estimator tree into JSON values and a dict of tensors."""

    def __init__(self):
        self.tensors = {}
        self._n_nets = 0
        self._n_arrays = 0

    def fail(self, where, message):
        raise ModelFileError(f"Cannot save {where}: {message}")

    def refuse(self, obj, where):
        if isinstance(obj, type):
            what = f"class {_qualified_name(obj)}"
        elif callable(obj) and hasattr(obj, "__qualname__"):
            what = f"function {getattr(obj, '__module__', '?')}.{obj.__qualname__}"
        else:
            what = f"a {_qualified_name(obj)} object"
        if isinstance(obj, torch.nn.Module) or (
            isinstance(obj, type) and issubclass(obj, torch.nn.Module)
        ):
            hint = (
                " A model file stores the networks ckdlearn ships (CKDNet, PaperCNN); "
                "configure those with module__* parameters, or"
            )
        else:
            hint = ""
        self.fail(
            where,
            f"it holds {what}, which ckdlearn.load would not rebuild (it only "
            "rebuilds known ckdlearn, imbalanced-learn, scikit-learn, skorch and "
            "torch classes, see ckdlearn.persistence.supported_classes(), so that "
            f"loading never runs code from a file).{hint} {_PICKLE_HINT}",
        )

    # values -------------------------------------------------------------------

    def value(self, obj, where):
        if obj is None or obj is True or obj is False or type(obj) is str:
            return obj
        if isinstance(obj, np.generic):
            return self.scalar(obj, where)
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return _float(float(obj))
        if isinstance(obj, np.ndarray):
            return {"__ndarray__": self.array(obj, where)}
        if isinstance(obj, torch.Tensor):
            if obj.dtype == torch.bfloat16:
                obj = obj.float()
            return {"__tensor__": self.array(obj.detach().cpu().numpy(), where)}
        if isinstance(obj, torch.device):
            return {"__device__": str(obj)}
        if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
            return {"__tuple__": [self.value(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [self.value(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if isinstance(obj, dict):
            if all(type(key) is str for key in obj):
                return {"__dict__": {k: self.value(v, f"{where}[{k!r}]") for k, v in obj.items()}}
            return {
                "__items__": [
                    [self.value(k, f"{where} (a key)"), self.value(v, f"{where}[{k!r}]")]
                    for k, v in obj.items()
                ]
            }
        found = _lookup(obj)
        if found is not None:
            name, kind = found
            if isinstance(obj, type):
                return {"__class__": name}
            return {"__function__": name}
        found = _lookup(type(obj))
        if found is not None and found[1] in _INSTANCE_KINDS:
            return self.estimator(obj, where)
        self.refuse(obj, where)

    def scalar(self, obj, where):
        if obj.dtype.kind not in "biufU":
            self.refuse(obj, where)
        return {"__scalar__": obj.dtype.str, "value": self.value(obj.item(), where)}

    def array(self, array, where):
        kind = array.dtype.kind
        spec = {"dtype": array.dtype.str, "shape": list(array.shape)}
        if kind in "biuf":
            native = array.astype(array.dtype.newbyteorder("="), copy=False)
            if array.size > _INLINE_ARRAY_LIMIT and native.dtype in _TENSOR_DTYPES:
                name = f"array{self._n_arrays}"
                self._n_arrays += 1
                self.tensors[name] = torch.from_numpy(np.array(native, order="C", copy=True))
                return {**spec, "tensor": name}
            values = native.ravel().tolist()
            if kind == "f" and not np.isfinite(native).all():
                values = [_float(v) for v in values]
            return {**spec, "data": values}
        if kind == "U":
            return {**spec, "data": array.ravel().tolist()}
        if kind == "O":
            values = array.ravel().tolist()
            for value in values:
                if not (value is None or isinstance(value, (bool, int, float, str, np.generic))):
                    self.fail(
                        where,
                        f"it holds an object array with a {_qualified_name(value)} "
                        "element; model files store arrays of numbers, strings and "
                        f"booleans only. {_PICKLE_HINT}",
                    )
            return {**spec, "data": [self.value(v, where) for v in values]}
        self.fail(where, f"it holds an array of dtype {array.dtype}; model files cannot store it.")

    # estimators ---------------------------------------------------------------

    def estimator(self, obj, where):
        name, kind = _lookup(type(obj))
        if kind == "classifier":
            return self.classifier(obj, name, where)
        node = {"__estimator__": name}
        if kind == "attributes":
            params = dict(vars(obj))
        else:
            params = obj.get_params(deep=False)
        if name == "sklearn.preprocessing.FunctionTransformer":
            _check_function_transformer(params, lambda message: self.fail(where, message))
        if kind == "pipeline" and isinstance(params.get("steps"), list):
            # Name steps in messages by their names rather than positions.
            steps = params.pop("steps")
            node["params"] = {"steps": [self.step(step, where) for step in steps]}
            node["params"].update(self.params(params, where))
        else:
            node["params"] = self.params(params, where)
        if kind == "transformer":
            node["fitted"] = self.transformer_state(obj, where)
        return node

    def step(self, step, where):
        if isinstance(step, tuple) and len(step) == 2 and isinstance(step[0], str):
            return {"__tuple__": [step[0], self.value(step[1], f"{where}[{step[0]!r}]")]}
        return self.value(step, f"{where}.steps")

    def params(self, params, where):
        encoded = {}
        for key, value in params.items():
            if type(key) is not str:
                self.fail(where, f"parameter name {key!r} is not a string.")
            encoded[key] = self.value(value, f"{where}.{key}")
        return encoded

    def transformer_state(self, obj, where):
        state = vars(obj)
        fresh = vars(clone(obj))
        extra = [k for k in state if k not in fresh]
        private = [k for k in extra if not _FITTED_NAME.fullmatch(k)]
        if private:
            self.fail(
                where,
                f"its fitted state includes {private}, which model files do not "
                f"store (only public fitted attributes of simple transformers). {_PICKLE_HINT}",
            )
        return {k: self.value(state[k], f"{where}.{k}") for k in extra}

    def classifier(self, clf, name, where):
        check_is_fitted(clf)
        label = f"{where} (CKDNetClassifier)" if where != "CKDNetClassifier" else where
        params = clf.get_params(deep=False)
        if isinstance(params["module"], torch.nn.Module):
            self.fail(
                label,
                f"its module is a {type(params['module']).__name__} instance. Pass the "
                "network class and its settings as parameters, e.g. "
                "CKDNetClassifier(module=CKDNet, module__width=16), so that it can "
                f"be rebuilt from them. {_PICKLE_HINT}",
            )
        if type(clf.module_) is not params["module"] and not params.get("compile"):
            self.fail(
                label,
                f"module_ is a {type(clf.module_).__name__}, not the configured "
                f"{getattr(params['module'], '__name__', params['module'])}. {_PICKLE_HINT}",
            )
        node = {
            "__estimator__": name,
            "params": self.params(params, label),
            "fitted": {k: self.value(getattr(clf, k), f"{label}.{k}") for k in _CLASSIFIER_FITTED},
            "history": self.history(clf, label),
            "preprocessing": {
                "layouts": ["(n, C*H*W)", "(n, H, W)", "(n, C, H, W)"],
                "image_shape": list(clf.image_shape_),
                "dtype": "float32",
                **_scaling_rule(),
            },
        }
        prefix = f"net{self._n_nets}"
        self._n_nets += 1
        for key, tensor in clf.module_.state_dict().items():
            # A copy of each: safetensors refuses tensors sharing storage.
            self.tensors[f"{prefix}/{key}"] = tensor.detach().to("cpu", copy=True).contiguous()
        node["weights"] = prefix
        return node

    def history(self, clf, where):
        history = getattr(clf, "history_", None)
        if history is None:
            return None
        try:
            return self.value([dict(row) for row in history], f"{where}.history_")
        except ModelFileError as error:
            warnings.warn(
                f"The training history is not saved: {error}", UserWarning, stacklevel=4
            )
            return None


_TENSOR_DTYPES = {
    np.dtype(name)
    for name in ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32",
                 "float64")
}
_FITTED_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*_")
_PARAM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _float(value):
    if math.isfinite(value):
        return value
    return {"__float__": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def _check_function_transformer(params, fail):
    names = ("func", "inverse_func", "feature_names_out")
    functions = [name for name in names if callable(params.get(name))]
    if functions:
        fail(
            f"a FunctionTransformer with {' and '.join(functions)} set runs an "
            "arbitrary function, which a model file does not store (only "
            "FunctionTransformer() without functions is supported). "
            + _PICKLE_HINT
        )


def _scaling_rule():
    """How :func:`as_image_batch` scales uint8 and float input today."""
    uint8 = as_image_batch(np.array([[255]], dtype=np.uint8))
    floats = as_image_batch(np.array([[2.0]]))
    return {"uint8_scale": float(uint8.item()) / 255, "float_scale": float(floats.item()) / 2}


def _check_saveable(estimator):
    found = _lookup(type(estimator))
    if found is None or found[1] not in ("classifier", "pipeline"):
        if hasattr(estimator, "best_estimator_") or hasattr(estimator, "param_grid"):
            hint = " For a search such as GridSearchCV, save search.best_estimator_."
        else:
            hint = ""
        raise ModelFileError(
            "ckdlearn.save writes a fitted CKDNetClassifier or a scikit-learn / "
            "imbalanced-learn Pipeline holding one; got a "
            f"{_qualified_name(estimator)}.{hint} {_PICKLE_HINT}"
        )
    check_is_fitted(estimator)


def save(estimator, path, *, overwrite=False):
    """Write a fitted classifier or pipeline to a model file.

    The file is a ZIP archive of ``model.json`` (parameters, labels, image
    shape, preprocessing rule, library versions) and
    ``weights.safetensors`` (the network weights); see
    :mod:`ckdlearn.persistence` for the format. :func:`load` reads it back
    without unpickling. The write is atomic: the file appears complete
    or not at all, and an existing file is only replaced when asked.

    Parameters
    ----------
    estimator : CKDNetClassifier or Pipeline
        A fitted :class:`~ckdlearn.CKDNetClassifier`, or a fitted
        scikit-learn or imbalanced-learn ``Pipeline`` of supported steps
        (samplers, simple scalers, the classifier); see
        :func:`supported_classes`.
    path : str or path-like
        Where to write; ``.ckdl`` is the suggested suffix. The folder must
        exist.
    overwrite : bool, default=False
        Replace an existing file at ``path``.

    Returns
    -------
    path : pathlib.Path
        The file written.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    ModelFileError
        If the estimator holds a class (a custom network, a custom
        callback, any callable) or a value that :func:`load` would not
        rebuild. Use :mod:`pickle` or :mod:`joblib` for such models.

    See Also
    --------
    load : read a model file.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from pathlib import Path
    >>> from ckdlearn import CKDNetClassifier
    >>> from ckdlearn.persistence import load, save
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(20, 8 * 8).astype(np.float32)
    >>> y = np.repeat(["Cyst", "Normal"], 10)
    >>> clf = CKDNetClassifier(max_epochs=1, module__width=2, module__depth=1,
    ...                        augment=None, random_state=0).fit(X, y)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = save(clf, Path(folder) / "model.ckdl")
    ...     print(path.name)
    ...     loaded = load(path)
    model.ckdl
    >>> np.array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    True
    """
    path = check_outputs([path], overwrite=overwrite)[0]
    _check_saveable(estimator)
    writer = _Writer()
    tree = writer.value(estimator, type(estimator).__name__)
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": library_versions(),
        "estimator": tree,
    }
    model_json = (_format_json(document) + "\n").encode("utf-8")
    weights = _write_safetensors(writer.tensors, metadata={"format": "pt"})

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(_member(MODEL_MEMBER, zipfile.ZIP_DEFLATED), model_json)
        archive.writestr(_member(WEIGHTS_MEMBER, zipfile.ZIP_STORED), weights)
    return atomic_write_bytes(path, buffer.getvalue(), overwrite=overwrite)


def _format_json(value, indent=0):
    """Indented JSON, with arrays and short objects on one line each."""
    compact = json.dumps(value, allow_nan=False)
    if len(compact) <= 72 or not isinstance(value, (dict, list)):
        return compact
    if isinstance(value, dict):
        pad = " " * (indent + 1)
        items = [f"{pad}{json.dumps(k)}: {_format_json(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if any(isinstance(v, (dict, list)) for v in value):
        pad = " " * (indent + 1)
        items = [f"{pad}{_format_json(v, indent + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    return compact


def _member(name, compression):
    # A fixed timestamp: the same model gives the same bytes.
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    return info


# --- reading --------------------------------------------------------------------

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_COMPRESSED_MAGICS = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bz2",
    b"\xfd7zXZ\x00": "xz",
    b"\x04\x22\x4d\x18": "lz4",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"x\x01": "zlib",
    b"x\x9c": "zlib",
    b"x\xda": "zlib",
}


def _describe_foreign(path, head):
    if not head:
        return f"{path}: not a ckdlearn model file (the file is empty)."
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return (
            f"{path}: not a ckdlearn model file (it looks like a pickle); "
            "ckdlearn.load never unpickles. If you trust where it came from, "
            "load it with pickle or joblib; otherwise do not open it."
        )
    for magic, name in _COMPRESSED_MAGICS.items():
        if head.startswith(magic):
            return (
                f"{path}: not a ckdlearn model file (it is {name}-compressed, "
                "perhaps a compressed joblib pickle); ckdlearn.load never unpickles."
            )
    return (
        f"{path}: not a ckdlearn model file (a model file is a ZIP archive "
        f"holding {MODEL_MEMBER} and {WEIGHTS_MEMBER}; this file starts with "
        f"{head[:8]!r}). Write model files with ckdlearn.save."
    )


def _read_members(path):
    """The bytes of ``model.json`` and ``weights.safetensors``."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT, f"No ckdlearn model file at {os.fspath(path)!r}", os.fspath(path)
        ) from None
    except IsADirectoryError:
        raise ModelFileError(
            f"{path}: is a folder; a ckdlearn model file is a single file written by ckdlearn.save."
        ) from None
    with handle:
        head = handle.read(8)
        if not head.startswith(_ZIP_MAGICS):
            raise ModelFileError(_describe_foreign(path, head))
        handle.seek(0)
        damaged = None
        try:
            with zipfile.ZipFile(handle) as archive:
                infos = {}
                for info in archive.infolist():
                    if info.filename in infos:
                        raise ModelFileError(
                            f"{path}: the archive holds two members named "
                            f"{info.filename!r}; it was not written by ckdlearn.save."
                        )
                    infos[info.filename] = info
                missing = [m for m in (MODEL_MEMBER, WEIGHTS_MEMBER) if m not in infos]
                if missing:
                    if any(name.endswith("data.pkl") for name in infos):
                        kind = "it looks like a torch.save file, which holds a pickle"
                    else:
                        kind = f"the ZIP archive lacks {' and '.join(missing)}"
                    raise ModelFileError(
                        f"{path}: not a ckdlearn model file ({kind}); ckdlearn.load "
                        "never unpickles. Write model files with ckdlearn.save."
                    )
                if infos[MODEL_MEMBER].file_size > _MAX_JSON_BYTES:
                    raise ModelFileError(
                        f"{path}: {MODEL_MEMBER} would unpack to "
                        f"{infos[MODEL_MEMBER].file_size} bytes, far more than a model "
                        "description needs; refusing to read it."
                    )
                model_json = archive.read(MODEL_MEMBER)
                weights = archive.read(WEIGHTS_MEMBER)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as err:
            # RuntimeError: an encrypted member; NotImplementedError: an
            # unknown compression method.
            damaged = err
        except OSError as err:
            if err.errno != errno.EINVAL:  # a seek before the start: a bad offset
                raise
            damaged = err
    if damaged is not None:
        raise ModelFileError(
            f"{path}: the model file is damaged or truncated ({damaged}). "
            "Save the model again, or copy the file again if it was transferred."
        ) from damaged
    return model_json, weights


def _reject_duplicates(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise ModelFileError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name):
    raise ModelFileError(f"non-standard JSON constant {name}")


def _parse_document(path, model_json):
    try:
        document = json.loads(
            model_json.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, ModelFileError, RecursionError) as error:
        raise ModelFileError(
            f"{path}: {MODEL_MEMBER} is not valid JSON ({error}); the file is damaged "
            "or was not written by ckdlearn.save."
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ModelFileError(
            f"{path}: not a ckdlearn model file ({MODEL_MEMBER} lacks "
            f'"format": "{FORMAT}").'
        )
    version = document.get("format_version")
    if type(version) is not int or version < 1:
        raise ModelFileError(f"{path}: invalid format_version {version!r}.")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: written in model file format {version} by ckdlearn "
            f"{_writer_version(document)}; this ckdlearn ({__version__}) reads format "
            f"{FORMAT_VERSION} and older. Upgrade ckdlearn to load it."
        )
    if not isinstance(document.get("versions"), dict) or "estimator" not in document:
        raise ModelFileError(f"{path}: {MODEL_MEMBER} lacks its versions or estimator entry.")
    _warn_on_version_change(path, _writer_version(document))
    return document


def _writer_version(document):
    versions = document.get("versions")
    written = versions.get("ckdlearn") if isinstance(versions, dict) else None
    return written if isinstance(written, str) else "unknown"


def _major_minor(version):
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else None


def _warn_on_version_change(path, written):
    if _major_minor(written) != _major_minor(__version__):
        warnings.warn(
            f"{path} was written by ckdlearn {written}; this is ckdlearn "
            f"{__version__}. Models usually load across versions, but check "
            "its predictions, or save it again with this version.",
            UserWarning,
            stacklevel=4,
        )


class _Reader:
    """Rebuilds an estimator tree from JSON values and tensors."""

    def __init__(self, path, tensors, device):
        self.path = path
        self.tensors = tensors
        self.device = device
        self.used = set()

    def fail(self, where, message):
        raise ModelFileError(f"{self.path}: {message} (at {where} in {MODEL_MEMBER})")

    def resolve(self, name, where, kinds=None):
        entry = _allow_list().get(name) if isinstance(name, str) else None
        if entry is None:
            self.fail(
                where,
                f"refusing to rebuild {name!r}: it is not one of the classes "
                "ckdlearn.load rebuilds (see ckdlearn.persistence.supported_classes()); "
                "nothing from the file was run. A model with custom classes cannot be "
                f"stored in a model file. {_PICKLE_HINT}",
            )
        if kinds is not None and entry[1] not in kinds:
            self.fail(where, f"{name!r} cannot be used here (expected a {' or '.join(kinds)}).")
        return entry

    def value(self, data, where):
        if data is None or isinstance(data, (bool, int, float, str)):
            return data
        if isinstance(data, list):
            return [self.value(v, f"{where}[{i}]") for i, v in enumerate(data)]
        if not isinstance(data, dict):
            self.fail(where, f"unexpected JSON value {data!r}")
        tags = [key for key in data if key.startswith("__")]
        if len(tags) != 1:
            self.fail(where, f"an object with keys {sorted(data)} is not a tagged value")
        tag = tags[0]
        if tag == "__estimator__":
            return self.estimator(data, where)
        self.keys(data, {tag, "value"} if tag == "__scalar__" else {tag}, where)
        content = data[tag]
        if tag == "__tuple__":
            items = self.list(content, where)
            return tuple(self.value(v, f"{where}[{i}]") for i, v in enumerate(items))
        if tag == "__dict__":
            if not isinstance(content, dict):
                self.fail(where, "__dict__ must hold an object")
            return {k: self.value(v, f"{where}[{k!r}]") for k, v in content.items()}
        if tag == "__items__":
            items = {}
            for pair in self.list(content, where):
                if not isinstance(pair, list) or len(pair) != 2:
                    self.fail(where, "__items__ must hold [key, value] pairs")
                key = self.value(pair[0], where)
                try:
                    items[key] = self.value(pair[1], f"{where}[{key!r}]")
                except TypeError:
                    self.fail(where, f"unusable dictionary key {key!r}")
            return items
        if tag == "__class__":
            obj, kind = self.resolve(content, where)
            if not isinstance(obj, type):
                self.fail(where, f"{content!r} is not a class")
            return obj
        if tag == "__function__":
            return self.resolve(content, where, kinds=("function",))[0]
        if tag == "__float__":
            if content not in ("nan", "inf", "-inf"):
                self.fail(where, f"unknown float {content!r}")
            return float(content)
        if tag == "__scalar__":
            dtype = self.dtype(content, "biufU", where)
            raw = self.value(data["value"], where)
            if not isinstance(raw, (bool, int, float, str)):
                self.fail(where, "a scalar must hold a number, string or boolean")
            try:
                return dtype.type(raw)
            except (TypeError, ValueError, OverflowError):
                self.fail(where, f"{raw!r} is not a valid {dtype}")
        if tag == "__ndarray__":
            return self.array(content, where)
        if tag == "__tensor__":
            array = self.array(content, where)
            if array.dtype.kind not in "biuf":
                self.fail(where, f"a tensor cannot have dtype {array.dtype}")
            return torch.from_numpy(np.array(array, copy=True))
        if tag == "__device__":
            try:
                return torch.device(content)
            except (TypeError, RuntimeError):
                self.fail(where, f"invalid device {content!r}")
        self.fail(where, f"unknown tag {tag!r}")

    def keys(self, data, allowed, where):
        if not isinstance(data, dict):
            self.fail(where, "expected a JSON object")
        unknown = set(data) - set(allowed)
        missing = set(allowed) - set(data)
        if unknown or missing:
            self.fail(where, f"unexpected keys {sorted(unknown)} / missing keys {sorted(missing)}")

    def list(self, data, where):
        if not isinstance(data, list):
            self.fail(where, "expected a JSON list")
        return data

    def dtype(self, text, kinds, where):
        try:
            dtype = np.dtype(text) if isinstance(text, str) else None
        except (TypeError, ValueError):
            dtype = None
        if dtype is None or dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype:
            self.fail(where, f"unsupported dtype {text!r}")
        return dtype

    def array(self, spec, where):
        has_tensor = isinstance(spec, dict) and "tensor" in spec
        self.keys(spec, {"dtype", "shape", "tensor" if has_tensor else "data"}, where)
        dtype = self.dtype(spec["dtype"], "biufUO", where)
        shape = spec["shape"]
        if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)):
            self.fail(where, f"invalid shape {shape!r}")
        size = math.prod(shape)
        if has_tensor:
            name = spec["tensor"]
            tensor = self.tensors.get(name) if isinstance(name, str) else None
            if tensor is None or name in self.used or not name.startswith("array"):
                self.fail(where, f"the array tensor {name!r} is missing from {WEIGHTS_MEMBER}")
            self.used.add(name)
            array = tensor.numpy()
            if array.dtype != dtype.newbyteorder("=") or list(array.shape) != shape:
                self.fail(where, f"tensor {name!r} does not have the recorded dtype and shape")
            return array.astype(dtype, copy=True)
        values = [self.value(v, where) for v in self.list(spec["data"], where)]
        if len(values) != size:
            self.fail(where, f"{len(values)} values for an array of shape {tuple(shape)}")
        if dtype.kind == "O":
            array = np.empty(size, dtype=object)
            for index, item in enumerate(values):
                if not (item is None or isinstance(item, (bool, int, float, str, np.generic))):
                    self.fail(where, "object arrays hold numbers, strings and booleans only")
                array[index] = item
            return array.reshape(shape)
        expected = str if dtype.kind == "U" else (bool, int, float)
        if not all(isinstance(v, expected) for v in values):
            self.fail(where, f"values do not match dtype {dtype}")
        try:
            return np.array(values, dtype=dtype).reshape(shape)
        except (TypeError, ValueError, OverflowError) as error:
            self.fail(where, f"values do not fit dtype {dtype} ({error})")

    def params(self, data, where):
        if not isinstance(data, dict):
            self.fail(where, "params must be a JSON object")
        params = {}
        for key, value in data.items():
            if not _PARAM_NAME.fullmatch(key) or key.endswith("_"):
                self.fail(where, f"invalid parameter name {key!r}")
            params[key] = self.value(value, f"{where}.{key}")
        return params

    def construct(self, cls, params, where):
        try:
            return cls(**params)
        except (TypeError, ValueError) as error:
            self.fail(where, f"could not rebuild {cls.__name__} from its parameters ({error})")

    def estimator(self, node, where):
        name = node.get("__estimator__")
        cls, kind = self.resolve(name, where, kinds=_INSTANCE_KINDS)
        if kind == "classifier":
            allowed = {"__estimator__", "params", "fitted", "history", "preprocessing", "weights"}
        elif kind == "transformer":
            allowed = {"__estimator__", "params", "fitted"}
        else:
            allowed = {"__estimator__", "params"}
        self.keys(node, allowed, where)
        where = f"{where} ({name.rsplit('.', 1)[-1]})"
        params = self.params(node["params"], f"{where}.params")
        if kind == "classifier":
            return self.classifier(node, params, where)
        if name == "sklearn.preprocessing.FunctionTransformer":
            _check_function_transformer(params, lambda message: self.fail(where, message))
        if kind == "pipeline":
            self.check_steps(params.get("steps"), where)
        obj = self.construct(cls, params, where)
        if kind == "transformer":
            fitted = node["fitted"]
            if not isinstance(fitted, dict):
                self.fail(where, "fitted must be a JSON object")
            for key, value in fitted.items():
                if not _FITTED_NAME.fullmatch(key) or key.endswith("__") or hasattr(cls, key):
                    self.fail(where, f"invalid fitted attribute name {key!r}")
                setattr(obj, key, self.value(value, f"{where}.fitted.{key}"))
        return obj

    def check_steps(self, steps, where):
        valid = isinstance(steps, list) and steps and all(
            isinstance(step, tuple)
            and len(step) == 2
            and isinstance(step[0], str)
            and (
                step[1] is None
                or (isinstance(step[1], str) and step[1] == "passthrough")
                or (hasattr(step[1], "fit") and not isinstance(step[1], type))
            )
            for step in steps
        )
        if not valid:
            self.fail(where, "a pipeline's steps must be (name, estimator) pairs")

    def classifier(self, node, params, where):
        for param, role in _CLASSIFIER_ROLES.items():
            if param in params and _lookup(params[param]) is not None:
                if _lookup(params[param])[1] != role:
                    self.fail(f"{where}.params.{param}", f"{param} must be a {role} class")
            elif param in params:
                self.fail(f"{where}.params.{param}", f"{param} must be a {role} class")
        if self.device is not None:
            params["device"] = self.device
        _check_device_available(params.get("device", "auto"))
        clf = self.construct(CKDNetClassifier, params, where)

        fitted = node["fitted"]
        self.keys(fitted, set(_CLASSIFIER_FITTED), f"{where}.fitted")
        values = {k: self.value(fitted[k], f"{where}.fitted.{k}") for k in _CLASSIFIER_FITTED}
        classes, shape = values["classes_"], values["image_shape_"]
        if not (isinstance(classes, np.ndarray) and classes.ndim == 1 and len(classes) >= 2):
            self.fail(where, "classes_ must be an array of at least two labels")
        if not (
            isinstance(shape, tuple)
            and len(shape) == 3
            and all(type(d) is int and d >= 1 for d in shape)
            and values["n_features_in_"] == math.prod(shape)
        ):
            self.fail(where, "image_shape_ and n_features_in_ are inconsistent")
        weights = values["class_weight_"]
        if weights is not None and not (
            isinstance(weights, np.ndarray) and weights.shape == classes.shape
        ):
            self.fail(where, "class_weight_ must be None or one weight per class")
        for key, value in values.items():
            setattr(clf, key, value)

        # initialize() draws initial weights from torch's global generator,
        # which loading a model should leave as it was.
        with torch.random.fork_rng(devices=[]):
            try:
                clf.initialize()
            except (TypeError, ValueError) as error:
                self.fail(where, f"could not rebuild the network from its parameters ({error})")
        self.load_weights(clf, node["weights"], where)
        clf.module_.eval()

        history = self.value(node["history"], f"{where}.history")
        if history is not None:
            from skorch.history import History

            if not (isinstance(history, list) and all(isinstance(r, dict) for r in history)):
                self.fail(where, "history must be a list of records")
            clf.history_ = History(history)
        self.check_preprocessing(node["preprocessing"], where)
        return clf

    def load_weights(self, clf, prefix, where):
        if not isinstance(prefix, str) or not prefix.startswith("net"):
            self.fail(where, f"invalid weights prefix {prefix!r}")
        start = f"{prefix}/"
        found = {k[len(start):]: v for k, v in self.tensors.items() if k.startswith(start)}
        if any(f"{start}{k}" in self.used for k in found):
            self.fail(where, f"the weights {prefix!r} are claimed twice")
        expected = clf.module_.state_dict()
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        mismatched = [
            f"{k}: file {tuple(found[k].shape)}, network {tuple(expected[k].shape)}"
            for k in sorted(set(found) & set(expected))
            if found[k].shape != expected[k].shape
        ]
        if missing or unexpected or mismatched:
            details = "; ".join(
                part
                for part in (
                    f"missing tensors {_shorten(missing)}" if missing else "",
                    f"unexpected tensors {_shorten(unexpected)}" if unexpected else "",
                    f"different shapes {_shorten(mismatched)}" if mismatched else "",
                )
                if part
            )
            self.fail(
                where,
                "the weights do not fit the network rebuilt from the saved parameters "
                f"({type(clf.module_).__name__}): the file was written by a different "
                f"network, or edited ({details})",
            )
        clf.module_.load_state_dict(found, strict=True)
        self.used.update(f"{start}{k}" for k in found)

    def check_preprocessing(self, recorded, where):
        if not isinstance(recorded, dict):
            self.fail(where, "preprocessing must be a JSON object")
        current = _scaling_rule()
        changed = [
            f"{key} {recorded.get(key)!r} then, {value!r} now"
            for key, value in current.items()
            if not (
                isinstance(recorded.get(key), float) and math.isclose(recorded[key], value)
            )
        ]
        if changed:
            warnings.warn(
                f"{self.path}: this ckdlearn scales input images differently from the "
                f"one that trained the model ({'; '.join(changed)}); scale images the "
                "way the model was trained before predicting.",
                UserWarning,
                stacklevel=4,
            )


def _check_device_available(device):
    if isinstance(device, str) and device == "auto":
        return
    try:
        kind = torch.device(device).type
    except (TypeError, RuntimeError):
        return  # skorch reports an invalid device itself
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"The model was saved to run on device={device!r}, but CUDA is not "
            "available here. Load it with ckdlearn.load(path, device='cpu') (or "
            "device='auto')."
        )


def _shorten(items, limit=5):
    shown = ", ".join(items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}] ({len(items)})"


def load(path, *, device=None):
    """Read a model file written by :func:`save`.

    Rebuilds the classifier (or pipeline) from the allow-listed classes
    the file names, sets its fitted attributes, loads the network weights
    and puts the network in evaluation mode. No code is read from the
    file: pickles are recognised and refused, and names outside
    :func:`supported_classes` are refused before anything is built.

    Parameters
    ----------
    path : str or path-like
        The model file.
    device : str, torch.device or None, default=None
        Where the networks run: None keeps the saved ``device`` parameter
        (``"auto"`` by default: CUDA when available); ``"cpu"``,
        ``"cuda:0"`` ... override it.

    Returns
    -------
    estimator : CKDNetClassifier or Pipeline
        Fitted, predicting exactly as the saved one did. The optimizer
        starts fresh (its state is not saved).

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ModelFileError
        If the file is not a ckdlearn model file (e.g. a pickle), is
        damaged or truncated, names a class outside the allow-list, was
        written in a newer format, or holds weights that do not fit the
        network its parameters describe.

    Warns
    -----
    UserWarning
        If the file was written by another major or minor version of
        ckdlearn, or that version scaled input images differently.

    See Also
    --------
    save : write a model file.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from pathlib import Path
    >>> from ckdlearn import CKDNetClassifier
    >>> from ckdlearn.persistence import load, save
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(20, 8 * 8).astype(np.float32)
    >>> y = np.repeat([3, 7], 10)
    >>> clf = CKDNetClassifier(max_epochs=1, module__width=2, module__depth=1,
    ...                        augment=None, random_state=0).fit(X, y)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = save(clf, Path(folder) / "model.ckdl")
    ...     loaded = load(Path(folder) / "model.ckdl", device="cpu")
    >>> loaded.classes_, loaded.get_params()["device"]
    (array([3, 7]), 'cpu')
    >>> np.array_equal(loaded.predict(X), clf.predict(X))
    True
    """
    model_json, weights = _read_members(path)
    document = _parse_document(path, model_json)
    try:
        tensors = _read_safetensors(weights)
    except Exception as error:  # safetensors raises its own SafetensorError
        raise ModelFileError(
            f"{path}: {WEIGHTS_MEMBER} is not a valid safetensors file ({error}); "
            "the model file is damaged."
        ) from None
    reader = _Reader(path, tensors, device)
    tree = document["estimator"]
    if not (isinstance(tree, dict) and isinstance(tree.get("__estimator__"), str)):
        reader.fail("estimator", "the estimator entry is not an estimator")
    reader.resolve(tree["__estimator__"], "estimator", kinds=("classifier", "pipeline"))
    estimator = reader.value(tree, "estimator")
    unused = sorted(set(tensors) - reader.used)
    if unused:
        reader.fail(
            "estimator", f"{WEIGHTS_MEMBER} holds tensors no estimator uses: {_shorten(unused)}"
        )
    return estimator
