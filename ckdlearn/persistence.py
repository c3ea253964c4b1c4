"""Model files that load without running code from the file.

:func:`save` writes a fitted :class:`~ckdlearn.CKDNetClassifier`, or a
scikit-learn / imbalanced-learn pipeline ending in one, to a ``.ckdl`` file;
:func:`load` rebuilds it, ready to predict and explain. `skops
<https://skops.readthedocs.io>`_ holds the estimator, `safetensors
<https://huggingface.co/docs/safetensors>`_ the weights; this module adds an
allow-list of types and a declared spec of the classifier.

**Format 2** is a ZIP archive of ``model.json`` (``"format":
"ckdlearn-model"``, ``"format_version": 2``, the writer's ``"versions"``), a
skops archive (``schema.json``, ``<n>.npy``) and ``weights.safetensors``
(``module_.state_dict()``). In the skops part the classifier is a dict of
its ``params`` (``get_params(deep=False)``, skorch's routed ``module__*``,
``optimizer__*``, ``callbacks__*`` included), ``fitted`` attributes (the
public ones ``fit`` set, not skorch's torch objects) and ``history`` (epoch
records). Samplers keep their parameters only (they act in ``fit`` alone);
the optimizer state is not saved. The same model gives the same bytes.
Format 1 files (ckdlearn 0.1.0.dev0 before skops) do not load.

**Security.** :func:`load` never unpickles. Before skops builds anything,
every type or function ``schema.json`` names must be in
:func:`supported_classes` (ckdlearn's own; scikit-learn / imbalanced-learn
pipelines, samplers and simple scalers; torch optimizers, losses and
schedulers; skorch's standard callbacks), and skops checks it again, so a
file naming ``os.system`` runs nothing. Weights must fit the rebuilt network
and be finite. Files are not signed: an edited file can change predictions,
not make :func:`load` run code. Custom classes need :mod:`pickle` or :mod:`joblib`.
"""

import io
import json
import os
import re
import warnings
import zipfile
import zlib
from collections import deque
from copy import copy
from functools import lru_cache
from importlib import import_module
from pathlib import Path

import numpy as np
import skops.io
import torch
from safetensors.torch import load as read_safetensors
from safetensors.torch import save as write_safetensors
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.history import History

from .utils.files import atomic_write_bytes, check_outputs
from ._version import __version__, library_versions
from .estimator import CKDNetClassifier

__all__ = ["ModelFileError", "atomic_write_bytes", "load", "save", "supported_classes"]

FORMAT, FORMAT_VERSION = "ckdlearn-model", 2
HEADER, SCHEMA, WEIGHTS = "model.json", "schema.json", "weights.safetensors"
_MAX_UNPACKED_BYTES = 256 * 2**20  # a compressed member unpacking to more is a bomb
_PICKLE_HINT = ("To keep a model with custom classes, save it with pickle or joblib instead, "
                "and load such files only from sources you trust (unpickling runs code).")


class ModelFileError(ValueError):
    """A file is not a valid ckdlearn model file, or a model cannot be written to one.

    Raised by :func:`load` for foreign, damaged, tampered or incompatible files
    (nothing from them has run), and by :func:`save` for models it cannot write.
    """


def _failing(prefix):
    def fail(message):
        raise ModelFileError(f"{prefix}{message}")
    return fail


_ALLOWED = {  # module: names; builtins.print is skorch callbacks' ``sink``
    "ckdlearn": "CKDNetClassifier", "ckdlearn.nets": "CKDNet PaperCNN",
    "ckdlearn.pipeline": "Pipeline",
    "ckdlearn.augmentation": "CTAugment", "ckdlearn.loaders": "batch_loader",
    "ckdlearn.callbacks": "CosineAnnealing SeriesEarlyStopping",
    # Where files written before the move name them: still trusted, still importable.
    "ckdlearn.estimator": "CosineAnnealing batch_loader",
    "ckdlearn.over_sampling": "LeanSMOTE", "sklearn.pipeline": "Pipeline",
    "imblearn.pipeline": "Pipeline", "sklearn.neighbors": "NearestNeighbors",
    "torch": "device", "torch.nn": "CrossEntropyLoss NLLLoss", "torch.utils.data": "DataLoader",
    "skorch.dataset": "Dataset ValidSplit", "builtins": "print",
    "imblearn.over_sampling": "ADASYN BorderlineSMOTE KMeansSMOTE RandomOverSampler SMOTE "
                              "SMOTEN SMOTENC SVMSMOTE",
    "imblearn.under_sampling": "AllKNN ClusterCentroids CondensedNearestNeighbour NearMiss "
                               "EditedNearestNeighbours InstanceHardnessThreshold TomekLinks "
                               "NeighbourhoodCleaningRule OneSidedSelection RandomUnderSampler "
                               "RepeatedEditedNearestNeighbours",
    "imblearn.combine": "SMOTEENN SMOTETomek",
    "sklearn.preprocessing": "Binarizer FunctionTransformer MaxAbsScaler MinMaxScaler "
                             "Normalizer RobustScaler StandardScaler",
    "torch.optim": "Adagrad Adam AdamW NAdam RAdam RMSprop SGD",
    "torch.optim.lr_scheduler": "CosineAnnealingLR CosineAnnealingWarmRestarts CyclicLR "
                                "ExponentialLR MultiStepLR OneCycleLR ReduceLROnPlateau StepLR",
    "skorch.callbacks": "BatchScoring EarlyStopping EpochScoring EpochTimer LRScheduler "
                        "GradientNormClipping PassthroughScoring ProgressBar WarmRestartLR",
}


@lru_cache(maxsize=None)
def _allow_list():
    """``{public name: object}`` for the names the installed libraries have."""
    found = {f"{module}.{name}": getattr(import_module(module), name, None)
             for module, names in _ALLOWED.items() for name in names.split()}
    return {name: obj for name, obj in found.items() if obj is not None}


@lru_cache(maxsize=None)
def _trusted():
    """The names skops writes for the allowed types, containers, arrays and scalars:
    not the classifier, which skops never builds (skorch's ``__setstate__`` unpickles)."""
    basics = [dict, list, tuple, str, int, float, bool, np.ndarray]
    basics += [np.dtype(code).type for code in "?bhilqBHILQefdU"]  # numpy scalars
    allowed = {name: obj for name, obj in _allow_list().items() if obj is not CKDNetClassifier}
    # By where each object is defined (what skops writes now), and by the
    # allowed import paths, which older files may have written for it.
    return frozenset([f"{obj.__module__}.{obj.__name__}" for obj in basics + list(allowed.values())]
                     + list(allowed))


def supported_classes():
    """Names of the classes and functions a model file may contain.

    :func:`load` rebuilds nothing else; :func:`save` refuses anything else.

    Returns
    -------
    names : list of str
        Dotted names, sorted.

    Examples
    --------
    >>> from ckdlearn.persistence import supported_classes
    >>> "imblearn.over_sampling.SMOTE" in supported_classes(), "os.system" in supported_classes()
    (True, False)
    """
    return sorted(_allow_list())


def _json_objects(tree):
    """Every JSON object in ``tree``, in a fixed order."""
    pending = deque([tree])  # popleft: a list's pop(0) made this quadratic (4 s per model)
    while pending:
        node = pending.popleft()
        if isinstance(node, dict):
            yield node
        if isinstance(node, (dict, list)):
            pending.extend(node.values() if isinstance(node, dict) else node)


def _untrusted(schema):
    """The type names outside the allow-list in a skops schema: every JSON object
    naming a ``__module__`` or ``__class__``, so that no skops node slips through."""
    names = {f"{node.get('__module__')}.{node.get('__class__')}"
             for node in _json_objects(schema) if {"__module__", "__class__"} & set(node)}
    return sorted(names - _trusted())


def _map_steps(estimator, function):
    """``function`` applied to each step of (nested) pipelines, or to ``estimator``."""
    if isinstance(estimator, Pipeline):  # imbalanced-learn's Pipeline is one too
        mapped = copy(estimator)
        mapped.steps = [(name, _map_steps(step, function)) for name, step in estimator.steps]
        return mapped
    return function(estimator)


def _without_functions(step, fail):
    """``step``, unless it is a FunctionTransformer running functions."""
    names = [name for name in ("func", "inverse_func", "feature_names_out")
             if callable(getattr(step, name, None))]
    if isinstance(step, FunctionTransformer) and names:
        fail(f"a FunctionTransformer with {' and '.join(names)} set runs an arbitrary function, "
             f"which a model file does not store (FunctionTransformer() does). {_PICKLE_HINT}")
    return step


def _check_finite(tensors, fail):
    bad = [name for name, tensor in tensors.items()
           if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        fail(f"the network weights {bad[:5]} hold NaN or infinite values, so the model "
             "predicts nonsense; train it again (a lower learning rate usually helps).")


_fail_save = _failing("Cannot save the model: ")


def _check_saveable(estimator):
    """The one CKDNetClassifier in ``estimator``, which must be fitted."""
    steps = []
    _map_steps(estimator, steps.append)
    classifiers = [step for step in steps if type(step) is CKDNetClassifier]
    if len(classifiers) != 1 or not isinstance(estimator, (Pipeline, CKDNetClassifier)):
        search = hasattr(estimator, "best_estimator_") or hasattr(estimator, "param_grid")
        got = ", ".join(f"{type(s).__module__}.{type(s).__qualname__}" for s in steps)
        raise ModelFileError(f"ckdlearn.save writes a fitted CKDNetClassifier or a Pipeline "
                             f"ending in one; got {got}." + " For a search such as GridSearchCV, "
                             "save search.best_estimator_." * search + f" {_PICKLE_HINT}")
    check_is_fitted(estimator)
    return classifiers[0]


def _writable(step):
    """``step`` as skops should write it: the classifier as its spec (plain data)."""
    if hasattr(step, "fit_resample"):
        return clone(step)  # a sampler's fitted state is its training data
    if type(step) is not CKDNetClassifier:
        return _without_functions(step, _fail_save)
    if isinstance(step.module, torch.nn.Module):
        _fail_save(f"its module is a {type(step.module).__name__} instance. Pass the network "
                   "class and its settings as parameters, e.g. CKDNetClassifier(module="
                   f"CKDNet, module__width=16), so that it can be rebuilt. {_PICKLE_HINT}")
    # skorch's torch objects and bookkeeping, which initialize() rebuilds
    skorch_names = {f"{name}_" for name in (*step._modules, *step._criteria, *step._optimizers)}
    skorch_names |= {"callbacks_", "history_", "initialized_", "virtual_params_"}
    skorch_names |= {name for name in dir(NeuralNet) if name.endswith("_")}
    fitted = {name: value for name, value in vars(step).items() if name.endswith("_")
              and not name.startswith("_") and name not in skorch_names}
    params = clone(step).get_params(deep=False)  # callbacks without their fitted state
    if isinstance(params.get("initial_weights"), os.PathLike):
        params["initial_weights"] = os.fspath(params["initial_weights"])  # plain data
    return {"params": params, "fitted": fitted, "history": [dict(row) for row in step.history_]}


def _skops_members(tree):
    """skops's archive of ``tree`` as members, ids and array names numbered in order."""
    try:
        data = skops.io.dumps(tree)
    except Exception as error:  # skops raises TypeError and its own subclasses
        _fail_save(f"{error} {_PICKLE_HINT}")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema, ids, members = json.loads(archive.read(SCHEMA)), {}, {}
        for node in _json_objects(schema):
            if "__id__" in node:  # id(obj) in skops; 0 would read as "no id"
                node["__id__"] = ids.setdefault(node["__id__"], len(ids) + 1)
            if isinstance(node.get("file"), str):
                name = f"{len(members)}{Path(node['file']).suffix}"
                members[name], node["file"] = archive.read(node["file"]), name
    untrusted = _untrusted(schema)
    if untrusted:
        _fail_save(f"it holds {', '.join(untrusted)}, which ckdlearn.load would not rebuild (it "
                   "rebuilds supported_classes() only, so that loading runs no code from a file)"
                   f"; for a network, use ckdlearn's with module__* parameters. {_PICKLE_HINT}")
    return {SCHEMA: json.dumps(schema, indent=1).encode(), **members}


def save(estimator, path, *, overwrite=False):
    """Write a fitted classifier or pipeline to a model file.

    The write is atomic: the file appears complete or not at all, and an
    existing file is replaced only when asked. The format is described in
    :mod:`ckdlearn.persistence`; :func:`load` reads it without unpickling.

    Parameters
    ----------
    estimator : CKDNetClassifier or Pipeline
        A fitted :class:`~ckdlearn.CKDNetClassifier`, or a fitted scikit-learn
        / imbalanced-learn ``Pipeline`` of :func:`supported_classes` ending in one.
    path : str or path-like
        Where to write, in an existing folder; ``.ckdl`` is the suggested suffix.
    overwrite : bool, default=False
        Replace an existing file at ``path`` (else ``FileExistsError``).

    Returns
    -------
    path : pathlib.Path
        The file written.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    ModelFileError
        If it holds a class or callable that :func:`load` would not rebuild
        (use :mod:`pickle` or :mod:`joblib`), or weights that are not finite.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from ckdlearn import CKDNetClassifier, load, save
    >>> X = np.random.RandomState(0).rand(20, 8 * 8).astype(np.float32)
    >>> clf = CKDNetClassifier(max_epochs=1, module__width=2, module__depth=1, augment=None,
    ...                        random_state=0).fit(X, np.repeat(["Cyst", "Normal"], 10))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = save(clf, Path(folder) / "model.ckdl")
    ...     loaded = load(path)
    >>> path.name, np.array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    ('model.ckdl', True)
    """
    path = check_outputs([path], overwrite=overwrite)[0]
    clf = _check_saveable(estimator)
    # Copies: safetensors refuses tensors that share storage.
    tensors = {name: tensor.detach().to("cpu", copy=True).contiguous()
               for name, tensor in clf.module_.state_dict().items()}
    _check_finite(tensors, _fail_save)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": library_versions()}
    members = {HEADER: json.dumps(header, indent=1),
               **_skops_members(_map_steps(estimator, _writable)),
               WEIGHTS: write_safetensors(tensors)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # same model, same bytes
            info.compress_type = zipfile.ZIP_STORED if name == WEIGHTS else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return atomic_write_bytes(path, buffer.getvalue(), overwrite=overwrite)


def _read_members(path, fail):
    """The file's bytes and ``{member name: bytes}``."""
    try:
        data = Path(os.fspath(path)).read_bytes()  # FileNotFoundError names the path
    except IsADirectoryError:
        fail("is a folder; a ckdlearn model file is a single file written by ckdlearn.save.")
    if not data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        pickled = len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5
        fail("not a ckdlearn model file (" + (
            "the file is empty" if not data else "it looks like a pickle" if pickled
            else f"not a ZIP archive: it starts {data[:8]!r}") + "); ckdlearn.load never "
            "unpickles. Load pickles, with pickle or joblib, only from sources you trust.")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            bombs = [info.filename for info in archive.infolist()
                     if info.compress_type != zipfile.ZIP_STORED
                     and info.file_size > _MAX_UNPACKED_BYTES]
            members = {} if bombs else {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
            OSError, ValueError) as error:  # structures zipfile cannot follow
        fail(f"the model file is damaged or truncated ({error}). Save the model again, or "
             "copy the file again if it was transferred.")
    if bombs:
        fail(f"{bombs[0]!r} would unpack to more than {_MAX_UNPACKED_BYTES} bytes, far more "
             "than a model needs; refusing to read it.")
    if HEADER not in members:
        torch_file = any(name.endswith("data.pkl") for name in members)
        fail("not a ckdlearn model file (" + (
            "it looks like a torch.save file, which holds a pickle" if torch_file
            else f"the ZIP archive lacks {HEADER}") + "); ckdlearn.load never unpickles.")
    return data, members


def _json(members, name, fail):
    try:
        return json.loads(members[name])
    except (ValueError, RecursionError) as error:  # also UnicodeDecodeError
        fail(f"{name} is not valid JSON ({error}); the file is damaged.")


def _check_header(path, members, fail):
    header = _json(members, HEADER, fail)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        fail(f'not a ckdlearn model file ({HEADER} lacks "format": "{FORMAT}").')
    versions, version = header.get("versions"), header.get("format_version")
    written = str(versions.get("ckdlearn")) if isinstance(versions, dict) else "unknown"
    if version == 1 or type(version) is int and version > FORMAT_VERSION:
        fail(f"written in model file format {version} by ckdlearn {written}; this ckdlearn "
             f"({__version__}) reads format {FORMAT_VERSION}. " + (
                 f"Load it with the ckdlearn {written} that wrote it, or train the model again "
                 "and save it with this ckdlearn." if version == 1 else "Upgrade ckdlearn."))
    if version != FORMAT_VERSION or type(version) is not int:
        fail(f"invalid format_version {version!r}.")
    missing = [name for name in (SCHEMA, WEIGHTS) if name not in members]
    if missing:
        fail(f"the model file lacks {' and '.join(missing)}; it is damaged.")
    if written.split(".")[:2] != __version__.split(".")[:2]:
        warnings.warn(f"{path} was written by ckdlearn {written}; this is ckdlearn "
                      f"{__version__}. Models usually load across versions, but check its "
                      "predictions, or save it again with this version.", stacklevel=3)


def _rebuild(spec, tensors, device, fail):
    """A fitted CKDNetClassifier from its spec and weights."""
    if not (isinstance(spec, dict) and set(spec) == {"params", "fitted", "history"}
            and isinstance(spec["params"], dict) and isinstance(spec["fitted"], dict)):
        fail("the classifier's entry is not a {params, fitted, history} record.")
    params = dict(spec["params"], **({} if device is None else {"device": device}))
    # Files written before ckdlearn had input domains hold models trained on raw slices.
    params.setdefault("domain", "raw")
    # The weights come from the file: the model it was fine-tuned from need not exist here.
    initial_weights = params.pop("initial_weights", None)
    if str(params.get("device")).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"The model was saved to run on device={params['device']!r}, but "
                           "CUDA is not available here. Load it with ckdlearn.load(path, "
                           "device='cpu') (or device='auto').")
    try:
        clf = CKDNetClassifier(**params)
        for name, value in spec["fitted"].items():
            if not re.fullmatch(r"[A-Za-z]\w*(?<!_)_", name):
                raise ValueError(f"{name!r} is not a fitted attribute name")
            setattr(clf, name, value)
        # initialize() draws initial weights from torch's global generator,
        # which loading a model leaves as it was.
        with torch.random.fork_rng(devices=[]):
            clf.initialize()
        clf.initial_weights = initial_weights
        if not all(isinstance(row, dict) for row in spec["history"]):
            raise ValueError("the history holds something other than epoch records")
    except Exception as error:  # whatever the file's values make the classes raise
        fail(f"could not rebuild CKDNetClassifier from its parameters ({error}).")
    try:
        clf.module_.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        fail(f"the weights do not fit the network rebuilt from the saved parameters "
             f"({type(clf.module_).__name__}): the file was written by a different network, "
             f"or edited ({error}).")
    clf.module_.eval()
    clf.history_ = History(spec["history"])
    return clf


def load(path, *, device=None):
    """Read a model file written by :func:`save`.

    Checks every type the file names against :func:`supported_classes`,
    rebuilds the estimator with skops and the classifier from its spec,
    loads the weights and puts the network in evaluation mode.

    Parameters
    ----------
    path : str or path-like
        The model file.
    device : str, torch.device or None, default=None
        Where the network runs: None keeps the saved ``device`` (``"auto"``
        by default: CUDA when available); ``"cpu"``, ``"cuda:0"`` ... override it.

    Returns
    -------
    estimator : CKDNetClassifier or Pipeline
        Fitted, predicting exactly as the saved one did, with a fresh optimizer.

    Raises
    ------
    ModelFileError
        If the file is not a model file (a pickle, say), is damaged, names a
        type outside the allow-list, is in another format (1, or newer), or
        holds weights that do not fit the network or are not finite. A
        UserWarning says when another minor version of ckdlearn wrote it.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from ckdlearn import CKDNetClassifier, load, save
    >>> X = np.random.RandomState(0).rand(20, 8 * 8).astype(np.float32)
    >>> clf = CKDNetClassifier(max_epochs=1, module__width=2, module__depth=1, augment=None,
    ...                        random_state=0).fit(X, np.repeat([3, 7], 10))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     loaded = load(save(clf, Path(folder) / "model.ckdl"), device="cpu")
    >>> loaded.classes_, loaded.get_params()["device"]
    (array([3, 7]), 'cpu')
    """
    fail = _failing(f"{path}: ")
    data, members = _read_members(path, fail)
    _check_header(path, members, fail)
    untrusted = _untrusted(_json(members, SCHEMA, fail))
    if untrusted:
        fail(f"refusing to rebuild {untrusted[0]!r}: it is not one of the classes ckdlearn.load "
             "rebuilds (see ckdlearn.persistence.supported_classes()); nothing from the file "
             f"was run. {_PICKLE_HINT}")
    try:
        tensors = read_safetensors(members[WEIGHTS])
    except Exception as error:  # safetensors raises its own SafetensorError
        fail(f"{WEIGHTS} is not a valid safetensors file ({error}); the file is damaged.")
    _check_finite(tensors, fail)
    try:
        tree = skops.io.loads(data, trusted=sorted(_trusted()))
    except Exception as error:  # skops's KeyError, TypeError ... for a malformed schema
        fail(f"could not rebuild the estimator from {SCHEMA} ({type(error).__name__}: "
             f"{error}); the file is damaged or was edited.")
    if not isinstance(tree, (dict, Pipeline)):
        fail(f"it holds a {type(tree).__name__}, neither a classifier nor a pipeline.")
    return _map_steps(tree, lambda step: _rebuild(step, tensors, device, fail)
                      if isinstance(step, dict) else _without_functions(step, fail))
