"""The seed paper's protocol next to ckdlearn's, on the same real data.

The paper ckdlearn started from reported 100% accuracy with a small CNN on
the CT KIDNEY DATASET. Its author's code resized every slice to 28 x 28
RGB, applied SMOTE to all images, split the result at random 80/20 and
trained :class:`~ckdlearn.nets.PaperCNN` with Adam (1e-3) for 20 epochs.
:func:`reproduce_paper` runs, side by side:

1. that protocol exactly;
2. the same network with ckdlearn's protocol: SMOTE inside the pipeline,
   ``StratifiedGroupKFold`` by scan series;
3. ckdlearn's default pipeline (SMOTE + :class:`~ckdlearn.CKDNetClassifier`)
   with ckdlearn's protocol;

and audits protocol 1's split for images shared between its two sides.
"""

import time

import numpy as np
import torch
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import make_pipeline
from sklearn.metrics import recall_score
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from .datasets import load_ct_kidney
from .estimator import CKDNetClassifier
from .metrics import label_scores
from .model_selection import audit_leakage, evaluate
from .nets import PaperCNN

__all__ = ["PaperReproduction", "paper_classifier", "reproduce_paper"]

PAPER_IMAGE_SHAPE = (3, 28, 28)


def paper_classifier(max_epochs=20, random_state=0):
    """The paper's network and training settings as a CKDNetClassifier.

    Parameters
    ----------
    max_epochs : int, default=20
        Training epochs (the paper trained for 20).
    random_state : int or None, default=0
        Seeds weight initialisation and shuffling.

    Returns
    -------
    classifier : CKDNetClassifier
        :class:`~ckdlearn.nets.PaperCNN` on 3 x 28 x 28 input, Adam at
        1e-3, batch size 32 (Keras' default), plain cross-entropy, no
        augmentation and no learning-rate schedule.

    Examples
    --------
    >>> from ckdlearn.paper import paper_classifier
    >>> paper_classifier().get_params()["image_shape"]
    (3, 28, 28)
    """
    return CKDNetClassifier(
        PaperCNN,
        image_shape=PAPER_IMAGE_SHAPE,
        optimizer=torch.optim.Adam,
        lr=1e-3,
        max_epochs=max_epochs,
        batch_size=32,
        augment=None,
        label_smoothing=0.0,
        callbacks__lr_scheduler=None,
        random_state=random_state,
    )


def as_paper_rgb(images):
    """Greyscale (n, 28, 28) slices as the flat RGB rows the paper used."""
    rgb = np.repeat(images[:, None], 3, axis=1)
    return np.ascontiguousarray(rgb.reshape(len(images), -1))


def _scores(y_true, y_pred, classes):
    return {
        **label_scores(y_true, y_pred),
        "recall": {
            str(c): float(r)
            for c, r in zip(classes, recall_score(y_true, y_pred, labels=classes, average=None, zero_division=0))
        },
    }


class PaperReproduction:
    """Figures of the three protocols, as returned by :func:`reproduce_paper`.

    Attributes
    ----------
    protocols : dict of str to dict
        For each protocol: ``accuracy``, ``macro_f1``, per-class
        ``recall``, ``seconds`` and a ``description``.
    audit : dict
        Protocol 1's train/test duplicate audit: ``n_train``, ``n_test``,
        ``n_exact``, ``n_near``, ``leaked_fraction``.
    settings : dict
        The settings used.
    """

    def __init__(self, protocols, audit, settings):
        self.protocols = protocols
        self.audit = audit
        self.settings = settings

    def to_dict(self):
        """All figures as plain Python types.

        Returns
        -------
        figures : dict
            ``protocols``, ``audit`` and ``settings``, ready for JSON.
        """
        return {"protocols": self.protocols, "audit": self.audit, "settings": self.settings}

    def __str__(self):
        lines = [f"{'protocol':<58s}{'accuracy':>9s}{'macro-F1':>9s}   recall per class"]
        for name, scores in self.protocols.items():
            recall = ", ".join(f"{c} {r:.2f}" for c, r in scores["recall"].items())
            lines.append(
                f"{name + ': ' + scores['description']:<58s}{scores['accuracy']:>9.3f}"
                f"{scores['macro_f1']:>9.3f}   {recall}"
            )
        audit = self.audit
        if audit is None:
            return "\n".join(lines)
        lines.append(
            f"Protocol 1's random split: {audit['leaked_fraction']:.1%} of its "
            f"{audit['n_test']} test images have an exact ({audit['n_exact']} pairs) "
            f"or near ({audit['n_near']} pairs) duplicate among its {audit['n_train']} "
            "training images."
        )
        return "\n".join(lines)


def reproduce_paper(
    root,
    *,
    max_epochs=20,
    n_splits=5,
    default_image_size=64,
    default_classifier=None,
    protocols=("1", "2", "3"),
    random_state=0,
    progress=None,
):
    """Run the paper's protocol and ckdlearn's side by side on real data.

    Parameters
    ----------
    root : str or Path
        The CT KIDNEY dataset folder (see
        :func:`~ckdlearn.datasets.load_ct_kidney`).
    max_epochs : int, default=20
        Epochs of the paper's network (protocols 1 and 2).
    n_splits : int, default=5
        Scan-series folds of protocols 2 and 3.
    default_image_size : int, default=64
        Image size of protocol 3.
    default_classifier : CKDNetClassifier or None, default=None
        The network of protocol 3; None means ``CKDNetClassifier(random_state=...)``.
    protocols : sequence of {"1", "2", "3"}, default=("1", "2", "3")
        Which protocols to run (protocol 1's audit comes with it).
    random_state : int, default=0
        Seeds SMOTE, the random split, the folds and the networks.
    progress : callable or None, default=None
        Receives a line per step.

    Returns
    -------
    result : PaperReproduction
        Accuracy, macro-F1 and per-class recall of each protocol, and the
        duplicate audit of protocol 1's split; ``print(result)`` shows a
        table.
    """
    unknown = set(protocols) - {"1", "2", "3"}
    if unknown:
        raise ValueError(f"protocols must be among '1', '2', '3'; got {sorted(unknown)}.")
    classifier = default_classifier or CKDNetClassifier(random_state=random_state)
    say = progress or (lambda message: None)
    cv = StratifiedGroupKFold(n_splits, shuffle=True, random_state=random_state)
    protocols_run = {}

    say(f"loading the data at {default_image_size} px and at 28 px (the paper's size) ...")
    data = load_ct_kidney(root, image_size=default_image_size)
    small = load_ct_kidney(root, image_size=28)
    # One set of scan-series groups for both sizes, so protocols 2 and 3
    # use identical folds.
    groups = data.groups
    classes = np.asarray(small.target_names)
    y = classes[small.target]
    X_rgb = as_paper_rgb(small.images)

    audit = None
    if "1" in protocols:
        protocols_run["1"], audit = _paper_protocol(X_rgb, y, classes, max_epochs, random_state, say)
    if "2" in protocols:
        say(f"protocol 2: PaperCNN, SMOTE in the pipeline, {n_splits} scan-series folds ...")
        protocols_run["2"] = _honest_protocol(
            "PaperCNN, ckdlearn protocol", paper_classifier(max_epochs, random_state),
            X_rgb, y, groups, classes, cv, random_state, say,
        )
    if "3" in protocols:
        say(f"protocol 3: default CKDNetClassifier at {default_image_size} px, same folds ...")
        protocols_run["3"] = _honest_protocol(
            "default CKDNetClassifier, ckdlearn protocol", classifier,
            data.data, y, groups, classes, cv, random_state, say,
        )
    settings = {
        "root": str(root),
        "max_epochs": max_epochs,
        "n_splits": n_splits,
        "default_image_size": default_image_size,
        "default_classifier": repr(classifier),
        "random_state": random_state,
        "n_images": int(len(y)),
    }
    return PaperReproduction(protocols_run, audit, settings)


def _paper_protocol(X_rgb, y, classes, max_epochs, random_state, say):
    say("protocol 1: SMOTE on all images, random 80/20 split, PaperCNN ...")
    started = time.perf_counter()
    X_resampled, y_resampled = SMOTE(random_state=random_state).fit_resample(X_rgb, y)
    X_train, X_test, y_train, y_test = train_test_split(
        X_resampled, y_resampled, test_size=0.2, random_state=random_state
    )
    model = paper_classifier(max_epochs, random_state).fit(X_train, y_train)
    scores = {
        "description": "paper (SMOTE first, random slice split)",
        **_scores(y_test, model.predict(X_test), classes),
        "seconds": time.perf_counter() - started,
    }
    say(f"  accuracy {scores['accuracy']:.3f}, macro-F1 {scores['macro_f1']:.3f}; auditing its split ...")
    report = audit_leakage(X_train, X_test, image_shape=PAPER_IMAGE_SHAPE)
    audit = {
        "n_train": int(report.n_train),
        "n_test": int(report.n_test),
        "n_exact": int(report.n_exact),
        "n_near": int(report.n_near),
        "leaked_fraction": float(report.leaked_fraction),
    }
    say(f"  {audit}")
    return scores, audit


def _honest_protocol(description, classifier, X, y, groups, classes, cv, random_state, say):
    """SMOTE inside the pipeline, folds of whole scan series."""
    started = time.perf_counter()
    pipe = make_pipeline(SMOTE(random_state=random_state), classifier)
    result = evaluate(pipe, X, y, groups=groups, cv=cv, audit=False)
    scores = {
        "description": description,
        **_scores(result.y_true, result.y_pred, classes),
        "seconds": time.perf_counter() - started,
    }
    say(f"  accuracy {scores['accuracy']:.3f}, macro-F1 {scores['macro_f1']:.3f}")
    return scores
