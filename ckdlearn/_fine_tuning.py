"""Fine-tuning: the weights a :class:`~ckdlearn.CKDNetClassifier` starts from.

``CKDNetClassifier(initial_weights=...)`` names the reference model or a
model file; :func:`load_initial_weights` copies every weight whose name and
shape match into the newly built network, so that a classification layer
for another set of classes starts anew.
"""

__all__ = ["load_initial_weights"]


def load_initial_weights(estimator):
    """Copy matching weights of ``estimator.initial_weights`` into ``estimator.module_``.

    Raises a ValueError when the source is not a CKDNetClassifier, was
    trained in another domain, or holds another network (any layer but
    the classifier's does not match).
    """
    # Imported here: persistence and the estimator import this module's caller.
    from .estimator import CKDNetClassifier
    from .persistence import load

    if estimator.initial_weights == "reference":
        from .datasets import load_pretrained

        source = load_pretrained()
    else:
        source = load(estimator.initial_weights)
    name = type(estimator).__name__
    if not isinstance(source, CKDNetClassifier):
        raise ValueError(f"initial_weights must name a {name} model file; "
                         f"{estimator.initial_weights!r} holds a {type(source).__name__}.")
    if source.domain != estimator.domain:
        raise ValueError(
            f"initial_weights {estimator.initial_weights!r} was trained in the "
            f"{source.domain!r} domain, this model's domain is {estimator.domain!r}. "
            f"Pass domain={source.domain!r} and images in that domain."
        )
    own = estimator.module_.state_dict()
    loaded = {key: value for key, value in source.module_.state_dict().items()
              if key in own and own[key].shape == value.shape}
    missing = [key for key in own if key not in loaded]
    if any(not key.startswith("classifier.") for key in missing):
        raise ValueError(
            f"initial_weights {estimator.initial_weights!r} holds another network: "
            f"{', '.join(missing[:4])} do not match. Use the same module and "
            f"module__* settings as the model it came from."
        )
    estimator.module_.load_state_dict(loaded, strict=False)
