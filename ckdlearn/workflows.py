"""What the ``ckdlearn`` commands do, as plain Python functions.

Each function takes data and settings and returns results (or writes one
output), with no argument parsing or printing of its own beyond an
optional ``progress`` callable, so the command line, notebooks and tests
share one implementation.
"""

import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

from ._version import library_versions
from .datasets import load_ct_kidney, read_images
from .estimator import CKDNetClassifier
from .metrics import expected_calibration_error
from .model_selection import evaluate
from .persistence import save as save_model
from .plotting import plot_confusion_matrix, plot_explanations, plot_reliability_diagram
from .report import Report, prepare_output_path

__all__ = [
    "METHODS",
    "build_pipeline",
    "explain_images",
    "find_image_files",
    "predict_files",
    "report_evaluation",
    "train",
]

#: Ways of handling class imbalance that ``build_pipeline`` offers.
METHODS = ("smote", "class-weight", "none")

ATTRIBUTION = (
    "CT slices: CT KIDNEY DATASET (Islam M. N. et al., Scientific Reports "
    "12:11440, 2022), CC BY 4.0."
)

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"}


def _silent(message):
    """The default ``progress``: say nothing."""


def build_pipeline(
    method="smote",
    *,
    max_epochs=20,
    lr=1e-3,
    batch_size=32,
    width=16,
    random_state=0,
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
    verbose : int, default=0
        The network's verbosity.
    callbacks : list or None, default=None
        Extra skorch callbacks for the network.

    Returns
    -------
    estimator : imblearn Pipeline or CKDNetClassifier

    Examples
    --------
    >>> from ckdlearn.workflows import build_pipeline
    >>> build_pipeline("smote").steps[0]
    ('smote', LeanSMOTE(random_state=0))
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
    classifier = CKDNetClassifier(
        max_epochs=max_epochs,
        lr=lr,
        batch_size=batch_size,
        module__width=width,
        class_weight="balanced" if method == "class-weight" else None,
        random_state=random_state,
        verbose=verbose,
        callbacks=callbacks,
    )
    if method != "smote":
        return classifier
    from imblearn.pipeline import Pipeline

    from .over_sampling import LeanSMOTE

    # Named "smote" (the algorithm) rather than make_pipeline's "leansmote".
    return Pipeline([("smote", LeanSMOTE(random_state=random_state)), ("ckdnetclassifier", classifier)])


def final_classifier(estimator):
    """The CKDNetClassifier at the end of a pipeline (or the estimator)."""
    return estimator[-1] if hasattr(estimator, "steps") else estimator


def smallest_class_size(y):
    """Count of the rarest label."""
    return int(np.unique(y, return_counts=True)[1].min())


def adapt_smote_neighbours(estimator, y_train, progress=_silent):
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
    smallest = smallest_class_size(y_train)
    if smallest < 2:
        raise ValueError(
            "SMOTE needs at least 2 images of every class; the smallest class "
            f"here has {smallest}. Add images, or use --method class-weight."
        )
    if sampler.k_neighbors >= smallest:
        progress(
            f"note: the smallest class has {smallest} images; SMOTE uses "
            f"k_neighbors={smallest - 1} instead of {sampler.k_neighbors}."
        )
        sampler.set_params(k_neighbors=smallest - 1)
    return estimator


def find_image_files(paths):
    """Expand files and folders (searched recursively) into slice files.

    Parameters
    ----------
    paths : list of str or Path
        Image files and/or folders.

    Returns
    -------
    files : list of Path
        In a deterministic order: as given, folders sorted.

    Raises
    ------
    FileNotFoundError
        If a path does not exist or no image file is found.
    """
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not p.name.startswith(".")
                and (p.suffix.lower() in _IMAGE_SUFFIXES or p.suffix == "")
            )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"No such file or folder: {path}")
    if not files:
        raise FileNotFoundError(
            "No image files found in " + ", ".join(map(str, paths))
            + f" (looked for {', '.join(sorted(_IMAGE_SUFFIXES))})."
        )
    return files


def _count_resized(files, image_size):
    """How many (non-DICOM) files are not already ``image_size`` square."""
    from PIL import Image

    resized = 0
    for path in files:
        if path.suffix.lower() in {".dcm", ".dicom", ""}:
            continue
        try:
            with Image.open(path) as image:
                resized += image.size != (image_size, image_size)
        except OSError:
            continue  # read_images reports unreadable files properly
    return resized


def read_for_model(files, model, progress=_silent, on_error="raise"):
    """Read image files at the size the model was trained on."""
    classifier = final_classifier(model)
    channels, height, width = classifier.image_shape_
    if channels != 1 or height != width:
        raise ValueError(
            f"This model takes {channels}-channel {height}x{width} images; "
            "reading files is supported for greyscale square models only."
        )
    resized = _count_resized(files, height)
    if resized:
        progress(f"note: {resized} of {len(files)} images resized to {height}x{width} pixels.")
    images, skipped = read_images(
        files, image_size=height, on_error=on_error, return_skipped=True
    )
    skipped_paths = {path for path, _ in skipped}
    return images, [f for f in files if os.fspath(f) not in skipped_paths]


def predict_files(model, files, progress=_silent):
    """Label and class probabilities for each image file.

    Parameters
    ----------
    model : fitted CKDNetClassifier or pipeline
    files : list of Path
    progress : callable, default=silent

    Returns
    -------
    rows : list of dict
        ``file``, ``label`` and one probability per class.
    """
    images, files = read_for_model(files, model, progress)
    flat = images.reshape(len(images), -1)
    proba = model.predict_proba(flat)
    classes = final_classifier(model).classes_
    rows = []
    for path, p in zip(files, proba):
        row = {"file": str(path), "label": _plain(classes[int(np.argmax(p))])}
        row.update({str(c): round(float(v), 6) for c, v in zip(classes, p)})
        rows.append(row)
    return rows


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def explain_images(model, files, out, *, method="gradcam", target=None, force=False, progress=_silent):
    """Write one heatmap overlay PNG per image and a grid of them.

    Parameters
    ----------
    model : fitted CKDNetClassifier or pipeline
    files : list of Path
    out : str or Path
        Output folder (must not exist unless ``force``).
    method : str, default="gradcam"
    target : label or None, default=None
        Class to explain; None explains each prediction.
    force : bool, default=False
    progress : callable

    Returns
    -------
    written : list of Path
        The overlay files and ``grid.png``.
    """
    import tempfile

    import matplotlib.pyplot as plt

    from .cam import explain
    from .plotting import overlay_heatmap
    from .report import replace_directory

    out = prepare_output_path(out, force=force)
    images, files = read_for_model(files, model, progress)
    flat = images.reshape(len(images), -1)
    classifier = final_classifier(model)
    if target is not None:
        target = _coerce_label(target, classifier.classes_)
    heatmaps, scores = explain(model, flat, method=method, target=target, return_scores=True)
    predictions = model.predict(flat)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        names = []
        for index, (path, image, heatmap) in enumerate(zip(files, images, heatmaps)):
            name = f"{index:04d}_{Path(path).stem}_heatmap.png"
            plt.imsave(staging / name, overlay_heatmap(image, heatmap))
            names.append(name)
        shown = min(len(images), 16)
        titles = [
            f"{Path(f).name[:18]}\npred {p} | faith {s:.2f}"
            for f, p, s in zip(files[:shown], predictions[:shown], scores[:shown])
        ]
        figure = plot_explanations(images[:shown], heatmaps[:shown], titles=titles)
        figure.savefig(staging / "grid.png", dpi=110, bbox_inches="tight")
        plt.close(figure)
        replace_directory(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out / n for n in names] + [out / "grid.png"]


def _coerce_label(label, classes):
    """Match a label typed on the command line to the model's classes."""
    for cls in classes:
        if str(cls) == str(label):
            return cls
    raise ValueError(
        f"Unknown target {label!r}; the model's classes are {[str(c) for c in classes]}."
    )


def train(
    dataset,
    model_path,
    *,
    method="smote",
    max_epochs=20,
    lr=1e-3,
    batch_size=32,
    width=16,
    random_state=0,
    resume=False,
    force=False,
    progress=_silent,
    extra_callbacks=(),
):
    """Fit the default pipeline on a labelled dataset and save it.

    Training checkpoints after every epoch into ``<model_path>.checkpoint``;
    ``resume=True`` continues an interrupted run from there to the same
    final epoch count. The checkpoint folder is removed once the model
    file is written.

    Parameters
    ----------
    dataset : Bunch
        From :func:`ckdlearn.datasets.load_ct_kidney`.
    model_path : str or Path
        Where the model file goes (must not exist unless ``force``).
    method, max_epochs, lr, batch_size, width, random_state
        See :func:`build_pipeline`.
    resume : bool, default=False
        Continue from the checkpoint folder.
    force : bool, default=False
        Replace an existing model file.
    progress : callable
        Receives progress messages.
    extra_callbacks : sequence of skorch callbacks
        Added to the network's callbacks (tests use this to interrupt).

    Returns
    -------
    estimator : fitted pipeline or CKDNetClassifier

    Raises
    ------
    RuntimeError
        If training stopped early (e.g. interrupted); the checkpoint is kept
        for ``resume``.
    """
    import json

    from skorch.callbacks import Checkpoint, LoadInitState

    model_path = prepare_output_path(model_path, force=force)
    checkpoint_dir = Path(f"{model_path}.checkpoint")
    history_file = checkpoint_dir / "history.json"
    done = 0
    if resume:
        if not history_file.exists():
            raise FileNotFoundError(
                f"Nothing to resume: no checkpoint at {checkpoint_dir}. Run without --resume."
            )
        done = len(json.loads(history_file.read_text()))
        progress(f"resuming after epoch {done} of {max_epochs}")
    elif checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    remaining = max_epochs - done
    if remaining < 1:
        raise ValueError(
            f"The checkpoint already holds {done} epochs (configured: {max_epochs})."
        )
    checkpoint = Checkpoint(
        monitor=None, dirname=str(checkpoint_dir), f_criterion=None, load_best=False
    )
    callbacks = [("checkpoint", checkpoint), *extra_callbacks]
    if resume:
        callbacks.append(("resume", LoadInitState(checkpoint)))
    estimator = build_pipeline(
        method,
        max_epochs=remaining,
        lr=lr,
        batch_size=batch_size,
        width=width,
        random_state=random_state,
        verbose=1,
        callbacks=callbacks,
    )
    # The cosine schedule spans the whole run, also when resumed.
    final_classifier(estimator).set_params(callbacks__lr_scheduler__T_max=max_epochs)
    X, y = dataset.data, dataset.target_names[dataset.target]
    adapt_smote_neighbours(estimator, y, progress)
    estimator.fit(X, y)
    trained = len(final_classifier(estimator).history_)
    if trained < max_epochs:
        raise RuntimeError(
            f"Training stopped after epoch {trained} of {max_epochs}; the "
            f"checkpoint in {checkpoint_dir} is kept. Run again with --resume."
        )
    # The model file carries the configured epochs, not the resumed remainder.
    final_classifier(estimator).set_params(
        max_epochs=max_epochs, callbacks=None, verbose=0
    )
    save_model(estimator, model_path, overwrite=force)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return estimator


def _pick_cases(result, per_class):
    """Up to ``per_class`` correct and wrong out-of-fold cases per class."""
    picked = []
    for label in result.classes:
        for correct in (True, False):
            mask = (result.y_true == label) & ((result.y_pred == label) == correct)
            picked.extend(np.flatnonzero(mask)[:per_class].tolist())
    return picked


def report_evaluation(
    estimator,
    dataset,
    out,
    *,
    cv,
    title="ckdlearn evaluation",
    description=None,
    config=None,
    cases_per_class=2,
    force=False,
    progress=_silent,
):
    """Cross-validate by scan series and write an HTML report with figures.

    Parameters
    ----------
    estimator : unfitted pipeline or CKDNetClassifier
    dataset : Bunch
        ``data``, ``target``, ``target_names``, ``groups``, ``images``.
    out : str or Path
        Report folder (must not exist unless ``force``).
    cv : int or splitter
        Folds; grouped by ``dataset.groups``.
    title : str
    description : str or None
        A paragraph shown under the title (e.g. what the data is and what
        the scores can say).
    config : dict or None
        Settings shown in the report.
    cases_per_class : int, default=2
        Correct and wrong cases per class in the Grad-CAM grid.
    force : bool, default=False
    progress : callable

    Returns
    -------
    result : EvaluationResult
    report_path : Path
    """
    out = prepare_output_path(out, force=force)
    X = dataset.data
    y = np.asarray(dataset.target_names)[dataset.target]
    groups = dataset.groups
    progress(
        f"cross-validating on {len(X)} images, {len(np.unique(groups))} scan series, "
        f"{cv if isinstance(cv, int) else cv.get_n_splits()} folds ..."
    )
    started = time.perf_counter()
    result = evaluate(estimator, X, y, groups=groups, cv=cv, return_estimator=True)
    progress(f"cross-validation done in {time.perf_counter() - started:.0f} s")
    progress(str(result))

    report = Report(title)
    if description:
        report.add_text(description)
    _data_section(report, dataset, y, groups)
    _scores_section(report, result)
    _calibration_section(report, result)
    progress("explaining out-of-fold predictions with Grad-CAM ...")
    _explanation_section(report, result, X, dataset.images, cases_per_class)
    _leakage_section(report, result)
    report.add_section("Configuration and versions")
    report.add_json({"config": config or {}, "versions": library_versions()})
    report.add_text(ATTRIBUTION, css_class="muted")
    return result, report.write(out, force=force)


def _data_section(report, dataset, y, groups):
    report.add_section("Data")
    rows = []
    for label in np.asarray(dataset.target_names):
        mask = y == label
        rows.append([str(label), int(mask.sum()), int(len(np.unique(groups[mask])))])
    rows.append(["all", len(y), int(len(np.unique(groups)))])
    report.add_table(rows, header=["class", "slices", "scan series"])
    height, width = dataset.images.shape[1:3]
    report.add_text(
        f"Images: {height}x{width} pixels, greyscale in [0, 1]. Folds keep each "
        "scan series whole (StratifiedGroupKFold on the inferred series); SMOTE, "
        "when used, runs inside each training fold only."
    )


def _scores_section(report, result):
    report.add_section("Cross-validated scores")
    names = list(result.fold_scores)
    rows = [
        [f"fold {i + 1}"] + [float(result.fold_scores[n][i]) for n in names]
        for i in range(result.n_folds)
    ]
    rows.append(["mean"] + [float(np.nanmean(result.fold_scores[n])) for n in names])
    rows.append(["pooled"] + [float(result.pooled_scores.get(n, math.nan)) for n in names])
    report.add_table(rows, header=["", *names])
    report.add_table(
        [[str(c), float(p), float(r)] for c, p, r in zip(result.classes, result.precision, result.recall)],
        header=["class", "precision", "recall"],
    )
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    plot_confusion_matrix(result.y_true, result.y_pred, labels=result.classes, ax=axes[0], title="Counts")
    plot_confusion_matrix(
        result.y_true, result.y_pred, labels=result.classes, normalize="true",
        ax=axes[1], title="Share of each true class",
    )
    figure.tight_layout()
    report.add_figure(figure, "confusion_matrix", caption="Confusion matrix of the out-of-fold predictions.")


def _calibration_section(report, result):
    if result.y_proba is None:
        return
    report.add_section("Calibration")
    ece = expected_calibration_error(result.y_true, result.y_proba, labels=result.classes)
    figure = plot_reliability_diagram(result.y_true, result.y_proba, labels=result.classes)
    report.add_figure(
        figure, "reliability",
        caption=f"Reliability of the top-class probability (ECE {ece:.3f}; 0 is perfectly calibrated).",
    )


def _explanation_section(report, result, X, images, cases_per_class):
    report.add_section("Grad-CAM explanations")
    picked = _pick_cases(result, cases_per_class)
    if not picked or result.estimators is None:
        report.add_text("No out-of-fold predictions to explain.")
        return
    from .cam import explain

    heatmaps, scores, titles, shown = [], [], [], []
    for position in picked:
        row = result.indices[position]
        fold_model = result.estimators[result.fold[position]]
        heatmap, score = explain(fold_model, X[row : row + 1], return_scores=True)
        heatmaps.append(heatmap[0])
        scores.append(float(score[0]))
        shown.append(images[row])
        mark = "ok" if result.y_true[position] == result.y_pred[position] else "WRONG"
        titles.append(
            f"true {result.y_true[position]} | pred {result.y_pred[position]} ({mark})\n"
            f"faithfulness {score[0]:.2f}"
        )
    figure = plot_explanations(np.stack(shown), np.stack(heatmaps), titles=titles, ncols=4)
    report.add_figure(
        figure, "gradcam",
        caption=(
            "Grad-CAM of the predicted class for correct and wrong out-of-fold "
            "cases per class, each explained by the model that did not train on "
            "it. Faithfulness: drop in the predicted class's confidence when the "
            "most relevant pixels are removed (higher = the heatmap matters more). "
            + ATTRIBUTION
        ),
    )
    report.add_text(
        f"Mean faithfulness of the shown cases: {np.mean(scores):.3f}. Heatmaps "
        "show where the network looked, not why; read them with the confusion "
        "matrix, and distrust a model that looks outside the kidneys."
    )


def _leakage_section(report, result):
    report.add_section("Leakage audit")
    if result.leakage is None:
        report.add_text("Not audited.")
        return
    rows = [
        [f"fold {i + 1}", r.n_test, r.n_exact, r.n_near, f"{r.leaked_fraction:.1%}"]
        for i, r in enumerate(result.leakage)
    ]
    report.add_table(
        rows, header=["fold", "test images", "exact duplicates", "near duplicates", "test images leaked"]
    )
    report.add_text(
        "Exact and near-duplicate images shared between each fold's training and "
        "test sets. With scan series kept whole this should be (close to) zero; a "
        "random slice-level split of the same data leaks heavily."
    )


def load_labelled(data, image_size, on_error="raise", progress=_silent):
    """Load a labelled folder (CT KIDNEY layout, or class folders)."""
    progress(f"loading {data} at {image_size} px ...")
    dataset = load_ct_kidney(data, image_size=image_size, on_error=on_error)
    counts = ", ".join(
        f"{name} {int((dataset.target == i).sum())}" for i, name in enumerate(dataset.target_names)
    )
    progress(f"loaded {len(dataset.data)} images ({counts})")
    return dataset
