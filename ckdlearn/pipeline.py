"""A resampling pipeline that holds validation scan series out before resampling.

imbalanced-learn's :class:`~imblearn.pipeline.Pipeline` resamples the whole
training set before its last step sees anything, so a validation split made
by the classifier would validate on SMOTE's synthetic images and train on
synthetic neighbours of its validation slices. This :class:`Pipeline` is
the same pipeline, except that ``fit(X, y, groups=...)`` with a final
:class:`~ckdlearn.CKDNetClassifier` whose ``validation`` is set first holds
whole scan series out, then fits the other steps (SMOTE included) on the
rest only, and hands the held-out real slices to the classifier.
"""

import numpy as np
from imblearn.pipeline import Pipeline as ImbPipeline

__all__ = ["Pipeline", "final_step_input", "make_pipeline"]


class Pipeline(ImbPipeline):
    """imbalanced-learn's pipeline, with validation series held out before resampling.

    Parameters
    ----------
    steps : list of (str, estimator) tuples
        As in :class:`imblearn.pipeline.Pipeline`; samplers act in ``fit``
        only.
    memory : None, str or object with the joblib.Memory interface, default=None
        As in imbalanced-learn.
    verbose : bool, default=False
        As in imbalanced-learn.

    Notes
    -----
    ``fit`` takes ``groups`` (one scan-series id per image). When the last
    step has a ``validation`` setting (see
    :meth:`ckdlearn.CKDNetClassifier.split_validation`), the series it
    picks are removed before any step is fitted; the fitted transformers
    (not the samplers) then transform them, and the last step gets them as
    ``validation_data``. Without ``groups`` or ``validation`` it behaves
    exactly as imbalanced-learn's pipeline. With scikit-learn's metadata
    routing enabled (``sklearn.set_config(enable_metadata_routing=True)``),
    ``GridSearchCV(...).fit(X, y, groups=groups)`` passes each training
    fold's groups on to ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> from imblearn.over_sampling import SMOTE
    >>> from ckdlearn import CKDNetClassifier
    >>> from ckdlearn.pipeline import make_pipeline
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(48, 8 * 8).astype(np.float32)
    >>> y = np.repeat(["Cyst", "Stone"], [32, 16])
    >>> groups = np.arange(48) // 4          # 12 scan series of 4 slices
    >>> pipe = make_pipeline(
    ...     SMOTE(k_neighbors=3, random_state=0),
    ...     CKDNetClassifier(max_epochs=2, module__width=4, module__depth=1, augment=None,
    ...                      validation=0.25, random_state=0),
    ... ).fit(X, y, groups=groups)
    >>> held_out = pipe[-1].validation_groups_
    >>> len(held_out), float(pipe[-1].temperature_) > 0
    (3, True)
    """

    # ``groups`` is metadata this pipeline consumes itself when routing is on.
    __metadata_request__fit = {"groups": True}

    def fit(self, X, y=None, groups=None, **params):
        """Fit the steps, holding validation series out first when asked.

        Parameters
        ----------
        X : array-like of shape (n, n_features)
        y : array-like of shape (n,)
        groups : array-like of shape (n,) or None, default=None
            Scan series of each image.
        **params : dict
            Step parameters, as in :meth:`imblearn.pipeline.Pipeline.fit`.

        Returns
        -------
        self : Pipeline
        """
        final = self._final_estimator
        if groups is None or getattr(final, "validation", None) is None:
            return super().fit(X, y, **params)
        X, y = np.asarray(X), np.asarray(y)
        train, valid = final.split_validation(y, groups)
        head = self[:-1]
        if any(hasattr(step, "fit_resample") for _, step in head.steps) and not hasattr(
            head.steps[-1][1], "fit_resample"
        ):
            raise ValueError(
                "With validation, a sampler must be the last step before the classifier "
                "(transformers may come before it)."
            )
        if len(head.steps) == 0:
            Xt, yt = X[train], y[train]
        elif hasattr(head.steps[-1][1], "fit_resample"):
            Xt, yt = head.fit_resample(X[train], y[train])
        else:
            Xt, yt = head.fit_transform(X[train], y[train]), y[train]
        X_valid = final_step_input(head.steps + [("final", final)], X[valid])[1]
        final_name = self.steps[-1][0]
        unknown = [name for name in params if not name.startswith(f"{final_name}__")]
        if unknown:
            raise ValueError(
                f"With validation, fit passes parameters to the last step only "
                f"({final_name}__*); got {sorted(unknown)}."
            )
        final_params = {name.split("__", 1)[1]: value for name, value in params.items()}
        groups_valid = np.asarray(groups)[valid]
        final.fit(Xt, yt, validation_data=(X_valid, y[valid], groups_valid), **final_params)
        return self

    def get_metadata_routing(self):
        return super().get_metadata_routing().add_self_request(self)


def make_pipeline(*steps, memory=None, verbose=False):
    """Build a :class:`Pipeline` from estimators, naming each step after its class.

    As :func:`imblearn.pipeline.make_pipeline`, with validation series held
    out before resampling.

    Parameters
    ----------
    *steps : estimators
    memory : None, str or object with the joblib.Memory interface, default=None
    verbose : bool, default=False

    Returns
    -------
    pipeline : Pipeline

    Examples
    --------
    >>> from imblearn.over_sampling import SMOTE
    >>> from ckdlearn import CKDNetClassifier
    >>> from ckdlearn.pipeline import make_pipeline
    >>> make_pipeline(SMOTE(), CKDNetClassifier(validation=0.2)).steps[0][0]
    'smote'
    """
    from imblearn.pipeline import make_pipeline as imblearn_make_pipeline

    return Pipeline(imblearn_make_pipeline(*steps).steps, memory=memory, verbose=verbose)


def final_step_input(estimator, X):
    """The last step of a fitted pipeline, and ``X`` as that step receives it.

    ``X`` goes through every transforming step; samplers (which act in
    ``fit`` only) and ``"passthrough"`` steps are skipped, as a pipeline's
    ``predict`` does. An estimator that is not a pipeline comes back with
    ``X`` unchanged; a search (``GridSearchCV``) gives its
    ``best_estimator_``'s.

    Parameters
    ----------
    estimator : estimator, Pipeline or fitted search
    X : array-like

    Returns
    -------
    final : estimator
    Xt : array-like

    Raises
    ------
    TypeError
        If a step before the last can neither transform nor resample.

    Examples
    --------
    >>> import numpy as np
    >>> from imblearn.over_sampling import SMOTE
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn.linear_model import LogisticRegression
    >>> from ckdlearn.pipeline import final_step_input, make_pipeline
    >>> X, y = np.arange(20.0).reshape(10, 2), [0] * 6 + [1] * 4
    >>> pipe = make_pipeline(StandardScaler(), SMOTE(k_neighbors=2), LogisticRegression()).fit(X, y)
    >>> final, Xt = final_step_input(pipe, X)
    >>> type(final).__name__, bool(abs(Xt.mean()) < 1e-9)
    ('LogisticRegression', True)
    """
    if not hasattr(estimator, "steps") and hasattr(estimator, "best_estimator_"):
        estimator = estimator.best_estimator_
    steps = getattr(estimator, "steps", None)
    if not steps:
        return estimator, X
    # Not ``pipe[:-1].transform``: imbalanced-learn skips samplers there too, but
    # offers ``transform`` only when the step before the classifier has one,
    # and SMOTE usually is that step (AttributeError), so the steps are walked.
    for name, step in steps[:-1]:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        if hasattr(step, "fit_resample"):
            continue
        if not hasattr(step, "transform"):
            raise TypeError(
                f"Pipeline step {name!r} ({type(step).__name__}) has neither transform "
                "nor fit_resample, so X cannot be passed through it."
            )
        X = step.transform(X)
    return final_step_input(steps[-1][1], X)
