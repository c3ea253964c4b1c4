"""Explanations of fitted estimators: a classifier, a pipeline or a search.

:func:`explain` finds the classifier that explains (the pipeline's last
step, a search's best estimator) and the input it sees, and calls its
``explain`` method.
"""

from sklearn.utils.validation import check_is_fitted

from ..pipeline import final_step_input

__all__ = ["explain"]


def explain(estimator, X, *, method="gradcam", target=None, layer=None, batch_size=None,
            return_scores=False):
    """Explain the predictions of a fitted classifier, or of a pipeline ending in one.

    For a pipeline, ``X`` is what its ``predict`` takes: it goes through
    ``pipeline[:-1].transform`` (samplers such as SMOTE act during ``fit``
    only and are skipped, as at predict time), then the last step's
    ``explain`` makes the heatmaps. Anything else must have an ``explain``
    method itself, as :class:`~ckdlearn.CKDNetClassifier` does.

    Parameters
    ----------
    estimator : estimator or Pipeline
        A fitted :class:`~ckdlearn.CKDNetClassifier` (or any fitted object
        with the same ``explain`` method), a fitted ``Pipeline`` whose last
        step is one, or a fitted search (e.g. ``GridSearchCV``) whose
        ``best_estimator_`` is either.
    X : array-like
        The input the pipeline (or estimator) predicts on.
    method : str, default="gradcam"
        A key of :data:`CAM_METHODS`.
    target : label, array-like of labels or None, default=None
        The class to explain, in the classifier's own labels: None explains
        each image's predicted class; one label explains that class for
        every image; an array gives one label per image.
    layer : str, torch.nn.Module or None, default=None
        The network layer to explain, see :func:`compute_heatmaps`.
    batch_size : int or None, default=None
        Images per pass; the classifier's ``batch_size`` when None.
    return_scores : bool, default=False
        Also return :func:`faithfulness_scores` (``"confidence_drop"``).

    Returns
    -------
    heatmaps : ndarray of shape (n, H, W), dtype float32
        Values in [0, 1] at the resolution the network sees.
    scores : ndarray of shape (n,), dtype float32
        Only when ``return_scores=True``; higher is more faithful.

    Raises
    ------
    TypeError
        If the estimator (or the pipeline's last step) has no ``explain``
        method, or a step before it can neither transform nor resample.
    sklearn.exceptions.NotFittedError
        If the classifier is not fitted.
    ValueError
        For an unknown method, layer or target label, or malformed ``X``.

    See Also
    --------
    compute_heatmaps : The engine, on a network and image batch.
    faithfulness_scores : The scores ``return_scores=True`` adds.
    randomisation_test : Sanity checks of the methods.

    Examples
    --------
    >>> import numpy as np
    >>> from imblearn.over_sampling import SMOTE
    >>> from imblearn.pipeline import make_pipeline
    >>> import ckdlearn
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(30, 16 * 16).astype(np.float32)
    >>> y = np.array(["Cyst"] * 20 + ["Stone"] * 10)
    >>> X[y == "Stone", :64] += 1.0
    >>> pipe = make_pipeline(
    ...     SMOTE(k_neighbors=2, random_state=0),
    ...     ckdlearn.CKDNetClassifier(max_epochs=2, module__width=4, module__depth=2,
    ...                               augment=None, random_state=0),
    ... ).fit(X, y)
    >>> ckdlearn.explain(pipe, X[:3], target="Stone").shape
    (3, 16, 16)
    """
    explainer, Xt = explainer_and_input(estimator, X)
    return explainer.explain(Xt, method=method, target=target, layer=layer,
                             batch_size=batch_size, return_scores=return_scores)


def explainer_and_input(estimator, X):
    """The object whose ``explain`` to call, and the input it should get."""
    if not hasattr(estimator, "explain") and hasattr(estimator, "best_estimator_"):
        estimator = estimator.best_estimator_
    final = estimator
    steps = getattr(estimator, "steps", None)
    if steps is not None and not hasattr(estimator, "explain"):
        if not steps:
            raise TypeError("explain got a Pipeline with no steps; expected one ending in a classifier.")
        name, last = steps[-1]
        if not hasattr(last, "explain") and not hasattr(last, "steps"):
            raise TypeError(f"explain needs a Pipeline whose last step has an explain method, such as "
                            f"ckdlearn.CKDNetClassifier; its last step {name!r} is "
                            f"{repr(last) if isinstance(last, str) else type(last).__name__}.")
        final, X = final_step_input(estimator, X)
    if not hasattr(final, "explain"):
        raise TypeError(f"explain needs a fitted classifier with an explain method, such as "
                        f"ckdlearn.CKDNetClassifier, or a Pipeline ending in one; got "
                        f"{type(final).__name__}, which has no explain method.")
    if hasattr(final, "fit"):
        check_is_fitted(final)
    return final, X
