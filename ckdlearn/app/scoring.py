"""A saved model's scores on a labelled folder, beside trivial baselines.

A score means little alone: on the CT KIDNEY data always answering
"Normal" is right for about 40 % of slices, and far more on small samples.
Every score table therefore shows what a constant answer (the majority
class) and a guess at the class frequencies (stratified chance) reach on
the same slices.
"""

import numpy as np
from sklearn.utils import Bunch

from ..metrics import label_scores  # noqa: F401  (also offered here, its former home)
from .inputs import as_model, load_labelled
from .progress import silent
from .recipe import final_classifier

__all__ = ["BASELINES", "baseline_predictions", "evaluate_model", "label_scores"]

#: The trivial baselines, as :class:`sklearn.dummy.DummyClassifier` strategies.
BASELINES = {"majority class": "most_frequent", "stratified chance": "stratified"}


def baseline_predictions(y_train, n_predictions, random_state=0):
    """What each trivial baseline fitted on ``y_train`` answers ``n_predictions`` times.

    Returns
    -------
    predictions : dict of str to ndarray
        One entry per :data:`BASELINES` name.

    Examples
    --------
    >>> from ckdlearn.app import baseline_predictions
    >>> baseline_predictions(["Normal", "Normal", "Cyst"], 2)["majority class"].tolist()
    ['Normal', 'Normal']
    """
    from sklearn.dummy import DummyClassifier

    y_train = np.asarray(y_train)
    return {
        name: DummyClassifier(strategy=strategy, random_state=random_state)
        .fit(np.zeros((len(y_train), 1)), y_train)
        .predict(np.zeros((n_predictions, 1)))
        for name, strategy in BASELINES.items()
    }


def evaluate_model(model, data, *, on_error="raise", progress=silent, groups=None,
                   input_domain="raw"):
    """Score a model (or a model file's path) on a labelled folder, beside the baselines.

    The folder may lack some of the model's classes (they are listed in
    ``missing_classes``); a class folder the model does not know is an
    error. The baselines are fitted on the folder's own labels: the best a
    constant answer could do on these slices. Returns a Bunch of
    ``n_images``, ``accuracy``, ``macro_f1``, ``classes`` (the model's,
    the order of every matrix), ``per_class`` (class to ``precision``,
    ``recall``, ``f1`` and ``support``), the slice-level confusion
    ``matrix`` (rows true, columns predicted), ``baselines`` (name to the
    same two scores), ``series`` (``n_series``, ``accuracy``, ``macro_f1``
    of one answer per scan series, the series confusion ``matrix`` and its
    ``classes``), ``scan_groups`` (where the series came from and whether
    the inferred ones can be trusted: the dataset's ``groups_diagnostics``;
    ``groups``, a CSV of ``filename,group`` rows, gives them),
    ``selective`` (``auroc`` of the uncertainty for wrong slices,
    ``accuracy_at_80``), ``missing_classes`` and ``report``
    (scikit-learn's ``classification_report``).
    """
    from sklearn.metrics import classification_report

    model = as_model(model)
    classifier = final_classifier(model)
    classes = [str(c) for c in classifier.classes_]
    dataset = load_labelled(data, classifier.image_shape_[-1], on_error, progress, groups=groups,
                            domain=classifier.domain, input_domain=input_domain)
    found = [str(name) for name in dataset.target_names]
    unknown = [name for name in found if name not in classes]
    if unknown:
        raise ValueError(
            f"{data} holds the class folder(s) {unknown}, which the model does not know; "
            f"it was trained on {classes}. Remove or rename those folders."
        )
    missing = [name for name in classes if name not in found]
    if missing:
        progress(f"note: {data} holds no {', '.join(missing)} images; scoring the classes present.")
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from ..metrics import accuracy_at_coverage, risk_coverage_curve
    from ..pipeline import final_step_input

    y = np.asarray(found)[dataset.target]
    classifier, Xt = final_step_input(model, dataset.data)
    predictions = np.asarray(classifier.predict(Xt)).astype(str)
    unsure = classifier.predict_uncertainty(Xt)
    scans = classifier.predict_series(Xt, dataset.groups)
    scan_truth = np.array([y[dataset.groups == scan][0] for scan in scans.series])
    scan_labels = np.asarray(scans.label).astype(str)
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predictions, labels=classes, zero_division=0
    )
    return Bunch(
        n_images=int(len(y)),
        **label_scores(y, predictions),
        classes=classes,
        per_class={
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for name, p, r, f, n in zip(classes, precision, recall, f1, support)
        },
        matrix=confusion_matrix(y, predictions, labels=classes).tolist(),
        series=Bunch(
            n_series=int(len(scans.series)), **label_scores(scan_truth, scan_labels),
            classes=classes,
            matrix=confusion_matrix(scan_truth, scan_labels, labels=classes).tolist(),
        ),
        scan_groups=dataset.groups_diagnostics,
        selective=Bunch(
            auroc=risk_coverage_curve(y, predictions, unsure).auroc,
            accuracy_at_80=accuracy_at_coverage(y, predictions, unsure, coverage=0.8),
        ),
        baselines={
            name: label_scores(y, guess)
            for name, guess in baseline_predictions(y, len(y)).items()
        },
        missing_classes=missing,
        report=classification_report(y, predictions, digits=3, zero_division=0),
    )
