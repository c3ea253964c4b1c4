"""The default classifier for each way of handling class imbalance.

The command line builds what a Python user writes:
``ckdlearn.pipeline.make_pipeline(SMOTE(), CKDNetClassifier())``, with
ckdlearn's :class:`~ckdlearn.pipeline.Pipeline`, so that validation scan
series are held out before SMOTE. Light to import (the estimator is
imported when a pipeline is built), so the command line can offer
:data:`METHODS` without loading torch.
"""

__all__ = ["METHODS", "adapt_smote_neighbours", "build_pipeline", "final_classifier"]

#: Ways of handling class imbalance that ``build_pipeline`` offers.
METHODS = ("smote", "class-weight", "none")


def build_pipeline(
    method="smote",
    *,
    max_epochs=20,
    lr=1e-3,
    batch_size=32,
    width=16,
    random_state=0,
    validation=None,
    verbose=0,
    callbacks=None,
):
    """The default classifier with the chosen imbalance handling.

    Parameters
    ----------
    method : {"smote", "class-weight", "none"}, default="smote"
        ``"smote"`` puts SMOTE (as :class:`~ckdlearn.over_sampling.LeanSMOTE`,
        imbalanced-learn's algorithm in less memory) before the network in
        an imbalanced-learn pipeline; ``"class-weight"`` weights
        the loss by inverse class frequency; ``"none"`` does neither.
    max_epochs, lr, batch_size : int, float, int
        Passed to :class:`~ckdlearn.CKDNetClassifier`.
    width : int, default=16
        Channels of the first convolution block.
    random_state : int or None, default=0
        Seeds SMOTE and the network.
    validation : float, int or None, default=None
        Scan series the network holds out to stop early and calibrate on
        (see :class:`~ckdlearn.CKDNetClassifier`); fit the result with
        ``groups``. With SMOTE they are held out before resampling.
    verbose : int, default=0
        The network's verbosity.
    callbacks : list or None, default=None
        Extra skorch callbacks for the network.

    Returns
    -------
    estimator : ckdlearn.pipeline.Pipeline or CKDNetClassifier

    Examples
    --------
    >>> from ckdlearn.app import build_pipeline
    >>> pipe = build_pipeline("smote", validation=0.2)
    >>> type(pipe).__module__, pipe.steps[0]
    ('ckdlearn.pipeline', ('smote', LeanSMOTE(random_state=0)))
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
    from ..estimator import CKDNetClassifier

    classifier = CKDNetClassifier(
        max_epochs=max_epochs,
        lr=lr,
        batch_size=batch_size,
        module__width=width,
        class_weight="balanced" if method == "class-weight" else None,
        random_state=random_state,
        validation=validation,
        verbose=verbose,
        callbacks=callbacks,
    )
    if method != "smote":
        return classifier
    from ..over_sampling import LeanSMOTE
    from ..pipeline import Pipeline

    # Named "smote" (the algorithm) rather than make_pipeline's "leansmote".
    return Pipeline([("smote", LeanSMOTE(random_state=random_state)), ("ckdnetclassifier", classifier)])


def final_classifier(estimator):
    """The CKDNetClassifier at the end of a pipeline (or the estimator)."""
    return estimator[-1] if hasattr(estimator, "steps") else estimator


def adapt_smote_neighbours(estimator, y_train, progress=None):
    """Lower SMOTE's k_neighbors when the rarest class is too small for it.

    SMOTE needs ``k_neighbors + 1`` samples of each minority class; with
    fewer it fails deep inside imbalanced-learn. Small folders (and small
    cross-validation folds) are common here, so the pipeline adapts and
    says so instead.
    """
    if not hasattr(estimator, "steps"):
        return estimator
    sampler = estimator.steps[0][1]
    if not hasattr(sampler, "k_neighbors") or not isinstance(sampler.k_neighbors, int):
        return estimator
    import numpy as np

    labels, counts = np.unique(y_train, return_counts=True)
    smallest = int(counts.min())
    if smallest < 2:
        raise ValueError(
            f"SMOTE needs at least 2 images of every class; class {labels[counts.argmin()]!r} "
            f"has {smallest}. Add images, or use --method class-weight."
        )
    if sampler.k_neighbors >= smallest:
        if progress is not None:
            progress(
                f"note: the smallest class has {smallest} images; SMOTE uses "
                f"k_neighbors={smallest - 1} instead of {sampler.k_neighbors}."
            )
        sampler.set_params(k_neighbors=smallest - 1)
    return estimator
