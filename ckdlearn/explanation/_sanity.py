"""Sanity checks: do the heatmaps depend on what the network learned?

The randomisation tests of Adebayo et al. (2018), each its own function:
the cascading model-parameter randomisation (:func:`_cascading_randomisation`)
and the data (label) randomisation (:func:`_label_randomisation`);
:func:`randomisation_test` runs one of them and compares its maps with the
trained network's by Spearman's rank correlation and SSIM.
"""

import copy

import numpy as np
import torch
from scipy.ndimage import uniform_filter
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.utils import Bunch, check_random_state
from torch import nn

from ..utils._param_validation import StrOptions, validate_params
from ..utils.input_checks import IntegerInterval
from ._cam import CAM_METHODS, compute_heatmaps
from ._explain import explainer_and_input
from ._network import some_layer_names

__all__ = ["randomisation_test"]


@validate_params(
    {
        "estimator": "no_validation",
        "X": ["array-like"],
        "test": [StrOptions({"cascading", "labels"})],
        "methods": [StrOptions(set(CAM_METHODS)), list, tuple],
        "X_train": ["array-like", None],
        "y_train": ["array-like", None],
        "fit_params": [dict, None],
        "shuffled_estimator": "no_validation",
        "stages": [list, tuple, None],
        "layer": [str, None],
        "batch_size": [IntegerInterval(1, None, closed="left"), None],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def randomisation_test(
    estimator,
    X,
    *,
    test="cascading",
    methods=("gradcam",),
    X_train=None,
    y_train=None,
    fit_params=None,
    shuffled_estimator=None,
    stages=None,
    layer=None,
    batch_size=None,
    random_state=0,
):
    """Do the heatmaps change when what the network learned is destroyed?

    The sanity checks of Adebayo et al. (2018, "Sanity checks for saliency
    maps"). A heatmap that explains a prediction must depend on the
    network's weights and on the labels they were learned from; a method
    whose maps barely change when both are randomised shows the image (its
    edges, its bright regions), not the model.

    * ``test="cascading"``, the model-parameter randomisation test: on a
      copy of the network, re-initialise the classifier head, then each
      block below it in turn (top-down, cumulatively), and compute the maps
      at each stage.
    * ``test="labels"``, the data randomisation test: train a clone of the
      estimator on ``X_train`` with ``y_train`` permuted at random, and
      compute its maps.

    Each stage's map of an image is compared with the trained network's
    map of the same image, for the same class (the one the trained network
    predicts), by Spearman's rank correlation and by SSIM. A method passes
    when the similarity is low: near the ``baseline``, the correlation
    between the trained maps of two *different* images.

    Parameters
    ----------
    estimator : estimator or Pipeline
        A fitted :class:`~ckdlearn.CKDNetClassifier`, a fitted pipeline
        ending in one, or a fitted search whose ``best_estimator_`` is
        either (as for :func:`explain`). It is not modified: the cascading
        test randomises a deep copy of its network, the label test a clone.
    X : array-like
        The images to explain, as the pipeline's ``predict`` takes them;
        held-out slices are the usual choice.
    test : {"cascading", "labels"}, default="cascading"
        Which randomisation, see above.
    methods : str or list of str, default=("gradcam",)
        Keys of :data:`CAM_METHODS`.
    X_train, y_train : array-like or None, default=None
        The training data for ``test="labels"`` (the clone is fitted on
        ``X_train`` and a permutation of ``y_train``); unused otherwise.
    fit_params : dict or None, default=None
        Extra arguments of the clone's ``fit``, e.g. ``{"groups": ...}``.
    shuffled_estimator : estimator or None, default=None
        For ``test="labels"``: a clone already trained on permuted labels,
        such as ``result.shuffled_estimator`` of an earlier call, to explain
        other images without training again. ``X_train`` and ``y_train``
        are then optional.
    stages : list of str or None, default=None
        For ``test="cascading"``: names of the submodules to re-initialise,
        top layer first, from ``dict(module_.named_modules())``. None uses
        the network's top-level children that hold parameters, expanding
        ``nn.Sequential`` containers one level, in reverse order of
        registration; for :class:`~ckdlearn.nets.CKDNet` that is
        ``["classifier", "features.3", ..., "features.0"]``.
    layer : str or None, default=None
        The layer the CAM methods explain, by name, see
        :func:`compute_heatmaps`.
    batch_size : int or None, default=None
        Images per pass; the classifier's ``batch_size`` when None.
    random_state : int, RandomState instance or None, default=0
        Seeds the re-initialisation of each stage (cascading) or the label
        permutation (labels); torch's global random state is not touched
        by the cascading test.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        With keys

        ``test`` : str
            The test run.
        ``stages`` : list of str
            The cascading stages in order (``stages[k]`` is the submodule
            re-initialised last at stage ``k``, all before it stay
            re-initialised), or ``["labels"]``.
        ``methods`` : list of str
            The CAM methods, in order.
        ``spearman``, ``ssim`` : dict of str to ndarray of shape (n_stages, n)
            Per method, the similarity of each image's map at each stage
            with its trained map. Spearman's rho is in [-1, 1]; a map that
            is constant has no ranking and scores 0. SSIM uses a 7 x 7
            uniform window on maps in [0, 1].
        ``baseline`` : dict of str to ndarray of shape (n,)
            Per method, Spearman's rho between the trained maps of image
            ``i`` and image ``i - 1``: what two unrelated maps share
            (their common shape, e.g. the body outline).
        ``trained_heatmaps`` : dict of str to ndarray of shape (n, H, W)
            Per method, the trained network's maps.
        ``heatmaps`` : dict of str to ndarray of shape (n_stages, n, H, W)
            Per method, the maps at each stage.
        ``classes`` : ndarray of shape (n,)
            The class index each map explains, in ``classes_`` order.
        ``images`` : ndarray of shape (n, C, H, W)
            The images as the network sees them.
        ``shuffled_estimator`` : estimator
            Only for ``test="labels"``: the clone trained on permuted labels.
        ``train_accuracy`` : float or None
            Only for ``test="labels"``: the clone's accuracy on the
            permuted training labels (how far it memorised them); None
            for a ``shuffled_estimator`` given without training data.

    Raises
    ------
    ValueError
        For an unknown test or method, a stage that is not a submodule or
        holds no parameters, ``test="labels"`` without training data, a
        clone that learned a different set of classes, or malformed input.
    TypeError
        If the estimator (or the pipeline's last step) has no ``explain``
        method.
    sklearn.exceptions.NotFittedError
        If the classifier is not fitted.

    See Also
    --------
    faithfulness_scores : Whether the network relies on what a map marks.
    ckdlearn.plotting.plot_randomisation_test : Draw the result.

    Notes
    -----
    Re-initialising a submodule calls ``reset_parameters()`` on it and on
    each of its submodules that has one, as a freshly built network draws
    its weights: convolution and linear weights are drawn anew and
    batch-norm layers return to unit scale, zero shift and fresh running
    statistics. Parameters of modules without ``reset_parameters`` keep
    their values.

    Quantus (``quantus.MPRT``, ``quantus.RandomLogit``) was considered and
    not used: it requires opencv-python, scikit-image and pandas for this
    one check; its cascade re-initialises every layer with
    ``reset_parameters`` one at a time (each convolution and batch-norm
    separately: about twenty CAM passes for a 4-block CKDNet instead of
    five) after seeding torch's *global* generator with the same seed at
    every layer; and ``RandomLogit`` is the random-class test of Sixt et
    al. (2020), not the label randomisation of Adebayo et al., which needs
    the estimator's own ``fit``. Captum has no randomisation test. What is
    used here is torch's own initialisers, scipy's ``rankdata`` and the
    CAM methods of pytorch-grad-cam.

    The label test trains the clone with the estimator's own settings
    (epochs, augmentation, resampling); Adebayo et al. trained until the
    random labels were memorised. ``train_accuracy`` says how far the
    clone got.

    Examples
    --------
    >>> import numpy as np
    >>> import ckdlearn
    >>> from ckdlearn.explanation import randomisation_test
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(40, 16 * 16).astype(np.float32)
    >>> y = np.repeat(["Cyst", "Stone"], 20)
    >>> X[y == "Stone", :64] += 1.0
    >>> clf = ckdlearn.CKDNetClassifier(max_epochs=3, module__width=4, module__depth=2,
    ...                                 augment=None, random_state=0).fit(X, y)
    >>> result = randomisation_test(clf, X[:6], methods=["gradcam", "eigencam"])
    >>> result.stages
    ['classifier', 'features.1', 'features.0']
    >>> result.spearman["gradcam"].shape
    (3, 6)
    >>> float(result.spearman["eigencam"][0].min())  # class-agnostic: ignores the head
    1.0
    >>> labels = randomisation_test(clf, X[:6], test="labels", X_train=X, y_train=y)
    >>> labels.stages, labels.ssim["gradcam"].shape
    (['labels'], (1, 6))
    """
    methods = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in methods if not isinstance(m, str) or m not in CAM_METHODS]
    if not methods or unknown:
        raise ValueError(
            f"methods must name at least one CAM method, from {sorted(CAM_METHODS)}; "
            f"got {unknown if unknown else methods!r}."
        )
    explainer, Xt = explainer_and_input(estimator, X)
    images = explainer.to_images(Xt)
    options = dict(layer=layer, batch_size=batch_size or explainer.batch_size,
                   device=explainer.device)
    trained, classes = {}, None
    for method in methods:  # the first method's pass finds the predicted classes
        trained[method], classes = compute_heatmaps(
            explainer.module_, images, classes, method=method, **options)
    rng = check_random_state(random_state)
    result = Bunch(test=test, methods=methods)
    if test == "cascading":
        result.update(_cascading_randomisation(
            explainer.module_, images, classes, methods, stages, rng, options))
    else:
        result.update(_label_randomisation(
            estimator, explainer, X, classes, methods, X_train, y_train, fit_params,
            shuffled_estimator, rng, options))
    randomised = result.pop("heatmaps")
    previous = np.roll(np.arange(len(images)), 1)
    result.update(
        trained_heatmaps=trained,
        heatmaps={method: np.stack(maps) for method, maps in randomised.items()},
        classes=classes,
        images=images,
    )
    result.spearman = {m: _rank_correlation(trained[m], result.heatmaps[m]) for m in methods}
    result.ssim = {m: _structural_similarity(trained[m], result.heatmaps[m]) for m in methods}
    result.baseline = {m: _rank_correlation(trained[m], trained[m][previous]) for m in methods}
    return result


def _cascading_randomisation(module, images, classes, methods, stages, rng, options):
    """The model-parameter randomisation test: maps of a copy of the network
    as its layers are re-initialised, top layer first, cumulatively.

    Returns ``{"stages": [...], "heatmaps": {method: [maps per stage]}}``.
    """
    stages = _cascade_stages(module, stages)
    network = copy.deepcopy(module)
    submodules = dict(network.named_modules())
    randomised = {method: [] for method in methods}
    for name in stages:
        _reinitialise(submodules[name], int(rng.randint(2**31 - 1)))
        for method in methods:
            maps, _ = compute_heatmaps(network, images, classes, method=method, **options)
            randomised[method].append(maps)
    return {"stages": stages, "heatmaps": randomised}


def _label_randomisation(estimator, explainer, X, classes, methods, X_train, y_train,
                         fit_params, shuffled_estimator, rng, options):
    """The data randomisation test: maps of a clone trained on permuted labels.

    Returns ``{"stages": ["labels"], "shuffled_estimator": ..., "train_accuracy":
    ..., "heatmaps": {method: [maps]}}``.
    """
    has_data = X_train is not None and y_train is not None
    if shuffled_estimator is None and not has_data:
        raise ValueError(
            "test='labels' trains a clone of the estimator on permuted labels: "
            "pass its training data as X_train= and y_train=."
        )
    shuffled = rng.permutation(np.asarray(y_train)) if has_data else None
    clone_ = shuffled_estimator
    if clone_ is None:
        base = getattr(estimator, "best_estimator_", estimator)
        base = estimator if hasattr(estimator, "explain") else base
        clone_ = clone(base).fit(X_train, shuffled, **(fit_params or {}))
    clone_explainer, clone_Xt = explainer_and_input(clone_, X)
    if not np.array_equal(clone_explainer.classes_, explainer.classes_):
        raise ValueError(
            f"The clone trained on y_train learned the classes "
            f"{list(clone_explainer.classes_)}, the estimator "
            f"{list(explainer.classes_)}; pass the training data of the estimator."
        )
    clone_images = clone_explainer.to_images(clone_Xt)
    randomised = {}
    for method in methods:
        maps, _ = compute_heatmaps(
            clone_explainer.module_, clone_images, classes, method=method, **options)
        randomised[method] = [maps]
    return {
        "stages": ["labels"],
        "shuffled_estimator": clone_,
        "train_accuracy": float(clone_.score(X_train, shuffled)) if has_data else None,
        "heatmaps": randomised,
    }


def _cascade_stages(module, stages):
    """Names of the submodules to re-initialise, top layer first."""
    named = dict(module.named_modules())
    if stages is None:
        stages = []
        for name, child in module.named_children():
            if isinstance(child, (nn.Sequential, nn.ModuleList)):
                stages += [f"{name}.{sub}" for sub, grandchild in child.named_children()
                           if any(True for _ in grandchild.parameters())]
            elif any(True for _ in child.parameters()):
                stages.append(name)
        stages = stages[::-1]
    bad = [name for name in stages if not isinstance(name, str) or name not in named
           or name == "" or not any(True for _ in named[name].parameters())]
    if bad or not stages:
        raise ValueError(
            f"stages must name submodules of {type(module).__name__} that hold "
            f"parameters, top layer first; got {bad if bad else list(stages)!r}. "
            f"Submodules include {some_layer_names(named)}."
        )
    return list(stages)


def _reinitialise(module, seed):
    """Draw a submodule's parameters afresh, seeded, torch's generators left as they were."""
    devices = sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for submodule in module.modules():
            if callable(getattr(submodule, "reset_parameters", None)):
                submodule.reset_parameters()


def _rank_correlation(reference, maps):
    """Spearman's rho per image: Pearson's r of the ranks, ties averaged."""
    # Not scipy.stats.spearmanr: it correlates every pair of rows (an n x n
    # matrix) and gives NaN and a warning for a constant map, which scores 0 here.
    reference = rankdata(reference.reshape(*reference.shape[:-2], -1), axis=-1)
    ranks = rankdata(maps.reshape(*maps.shape[:-2], -1), axis=-1)
    reference = reference - reference.mean(axis=-1, keepdims=True)
    ranks = ranks - ranks.mean(axis=-1, keepdims=True)
    products = (reference * ranks).sum(axis=-1)
    norms = np.sqrt((reference**2).sum(axis=-1) * (ranks**2).sum(axis=-1))
    rho = np.divide(products, norms, out=np.zeros_like(products), where=norms > 0)
    return np.clip(rho, -1, 1).astype(np.float32)


def _structural_similarity(reference, maps, window=7):
    """SSIM (Wang et al., 2004) per image, for values in [0, 1], uniform window."""
    # scikit-image's structural_similarity would add a dependency for these lines.
    x = np.broadcast_to(reference, maps.shape).astype(np.float64)
    y = maps.astype(np.float64)
    size = (1,) * (x.ndim - 2) + (window, window)

    def mean(values):
        return uniform_filter(values, size=size, mode="reflect")

    mean_x, mean_y = mean(x), mean(y)
    var_x, var_y = mean(x * x) - mean_x**2, mean(y * y) - mean_y**2
    covariance = mean(x * y) - mean_x * mean_y
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)) / (
        (mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim.mean(axis=(-2, -1)).astype(np.float32)
