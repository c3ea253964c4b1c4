"""The reference model that ships with ckdlearn."""

import json
from importlib import resources

__all__ = ["load_pretrained", "reference_model_info"]

REFERENCE_FILE = "reference_model.ckdl"
REFERENCE_RECORD = "reference_model.json"


def _resource(name):
    return resources.files("ckdlearn.datasets") / "data" / name


def load_pretrained(*, device=None):
    """Load the reference model: a fitted classifier of CT slices, ready to use.

    A :class:`~ckdlearn.CKDNetClassifier` trained with the default recipe
    (SMOTE + CKDNet, 96 x 96 px, 20 epochs) on the development part of
    the complete CT KIDNEY DATASET in its CLAHE domain, less the scan
    groups of the shipped sample, which it never saw. Its probabilities are
    tempered by a temperature fitted on the recipe's out-of-fold answers
    in grouped cross-validation (calibration error on the sample's unseen
    scans 0.086 instead of 0.167). The model card (data, protocol, grouped
    cross-validation figures, calibration, intended use and limits) is in
    the documentation; :func:`reference_model_info` returns how it was
    trained.

    It is a fitted scikit-learn estimator like any other: ``predict``,
    ``predict_proba``, ``explain``, ``predict_series``,
    ``predict_uncertainty``; and ``CKDNetClassifier(initial_weights="reference")``
    fine-tunes from it. It is a research model, **not a medical device**.

    Parameters
    ----------
    device : str or None, default=None
        Where to put the network: ``None`` for the model's own ``"auto"``
        (CUDA when available), or any torch device string.

    Returns
    -------
    model : CKDNetClassifier
        The fitted reference model. Its input is 96 x 96 slices in the
        ``"clahe"`` domain (``model.domain``): load your slices with
        ``ckdlearn.datasets.read_images(paths, domain="clahe")``, which
        equalises raw slices at full resolution first.

    See Also
    --------
    ckdlearn.load : Load any model file.

    Examples
    --------
    >>> from ckdlearn import load_pretrained
    >>> from ckdlearn.datasets import load_ct_kidney_sample
    >>> model = load_pretrained()
    >>> model.classes_.tolist(), model.domain, model.image_shape_
    (['Cyst', 'Normal', 'Stone', 'Tumor'], 'clahe', (1, 96, 96))
    >>> sample = load_ct_kidney_sample(image_size=96)   # scans the model never saw
    >>> model.predict(sample.data[:3]).shape
    (3,)
    """
    from ..persistence import load

    with resources.as_file(_resource(REFERENCE_FILE)) as path:
        return load(path, device=device)


def reference_model_info():
    """How the reference model was trained: recipe, seed, data, time, calibration.

    Returns
    -------
    info : dict
        The record ``tools/train_reference.py`` wrote beside the model.

    Examples
    --------
    >>> from ckdlearn.datasets import reference_model_info
    >>> info = reference_model_info()
    >>> info["seed"], info["recipe"]
    (0, 'default')
    """
    return json.loads(_resource(REFERENCE_RECORD).read_text(encoding="utf-8"))
