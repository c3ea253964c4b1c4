"""The HTML report of a cross-validated evaluation, section by section.

:func:`evaluation_report` cross-validates by scan series and builds a
:class:`~ckdlearn.app.html_report.Report`: the data, the scores beside trivial
baselines, calibration, Grad-CAM cases from different scan series with
what to look for in them, the leakage audit, and the configuration.
"""

import math
import time
from pathlib import Path

import numpy as np

from ..metrics import label_scores
from ..utils import library_versions
from ..utils.deprecation import renamed_keyword
from ..utils.files import check_outputs
from .html_report import Report
from .progress import silent
from .scoring import baseline_predictions

__all__ = [
    "ATTRIBUTION", "REPORT_FILES", "describe_sanity_check", "describe_verdict", "evaluation_report",
    "report_evaluation",
]

ATTRIBUTION = (
    "CT slices: CT KIDNEY DATASET (Islam M. N. et al., Scientific Reports "
    "12:11440, 2022), CC BY 4.0."
)

#: The files a report folder receives (and the only ones ``overwrite`` replaces).
REPORT_FILES = (
    "confusion_matrix.png", "reliability.png", "risk_coverage.png", "gradcam.png",
    "sanity_check.png", "report.html",
)

#: Column headers in words, for the scores ``evaluate`` computes.
SCORE_NAMES = {
    "accuracy": "accuracy", "macro_f1": "macro-F1", "roc_auc_ovr": "ROC AUC (one vs rest)",
    "ece": "ECE",
}
SCORE_DEFINITIONS = (
    "Macro-F1: the mean of the per-class F1 scores (each the harmonic mean of the class's "
    "precision and recall), every class weighing the same however rare. ECE (expected "
    "calibration error): the gap between the top-class probability and the accuracy, "
    "averaged over confidence bins weighted by their share of slices; 0 is perfectly "
    "calibrated. ROC AUC (one vs rest): how well the probabilities rank each class above "
    "the others, averaged over classes; 0.5 is chance."
)
#: Below this recall a class's slices are mostly missed.
WEAK_RECALL = 0.5
#: A sanity check passes when the mean rank correlation with the trained
#: map stays below this at every randomised stage (benchmarks/sanity_checks.py).
SANITY_PASS_BELOW = 0.5


@renamed_keyword("force", "overwrite")
def report_evaluation(estimator, dataset, out, *, overwrite=False, **options):
    """Cross-validate by scan series and write an HTML report with figures.

    Only :data:`REPORT_FILES` are written into ``out``, checked before the
    evaluation starts (``overwrite`` replaces them); ``options`` go to
    :func:`evaluation_report` (``cv`` is required). Returns the
    EvaluationResult and the path of ``report.html``.
    """
    check_outputs([Path(out) / name for name in REPORT_FILES], overwrite=overwrite)
    result, report = evaluation_report(estimator, dataset, **options)
    return result, report.write(out, overwrite=overwrite)


def evaluation_report(estimator, dataset, *, cv, title="ckdlearn evaluation", description=None,
                      config=None, cases_per_class=2, reference=None, progress=silent):
    """Cross-validate by scan series and build the report (not yet written).

    Parameters
    ----------
    estimator : unfitted pipeline or CKDNetClassifier
    dataset : Bunch
        ``data``, ``target``, ``target_names``, ``groups``, ``images``,
        ``filenames``.
    cv : int or splitter
        Folds; grouped by ``dataset.groups``.
    title : str
    description : str or None
        A paragraph shown under the title (e.g. what the data is and what
        the scores can say).
    config : dict or None
        Settings shown in the report.
    cases_per_class : int, default=2
        Correct and wrong cases per class in the Grad-CAM grid, each from
        a scan series no other shown case comes from.
    reference : (model, Bunch) or None
        A fitted model and data of scans it never trained on (its input
        size and domain): scored first, beside the same baselines, so the
        report compares it with the cross-validated recipe.
    progress : callable

    Returns
    -------
    result : EvaluationResult
    report : Report
        Write it with ``report.write(folder)``.
    """
    from ..model_selection import evaluate

    X, groups = dataset.data, dataset.groups
    y = np.asarray(dataset.target_names)[dataset.target]
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
    if reference is not None:
        progress("scoring the reference model on the sample's scans ...")
        _reference_section(report, *reference, cv_macro_f1=result.pooled_scores.get("macro_f1"))
    _data_section(report, dataset, y, groups)
    _scores_section(report, result, y, groups)
    _calibration_section(report, result)
    _trust_section(report, result)
    progress("explaining out-of-fold predictions with Grad-CAM ...")
    _explanation_section(report, result, dataset, cases_per_class)
    progress("checking the explanations against randomised networks ...")
    _sanity_section(report, result, dataset)
    _leakage_section(report, result)
    report.add_section("Configuration and versions")
    report.add_json({"config": config or {}, "versions": library_versions()})
    report.add_text(ATTRIBUTION, css_class="muted")
    return result, report


def _data_section(report, dataset, y, groups):
    report.add_section("Data")
    rows = []
    for label in np.asarray(dataset.target_names):
        mask = y == label
        rows.append([str(label), int(mask.sum()), int(len(np.unique(groups[mask])))])
    rows.append(["all", len(y), int(len(np.unique(groups)))])
    report.add_table(rows, header=["class", "slices", "scan series"])
    height, width = dataset.images.shape[1:3]
    diagnostics = dataset.get("groups_diagnostics") or {"source": {"inferred": len(y)},
                                                        "reliable": True}
    sources = ", ".join(f"{name} ({count} slices)" for name, count in diagnostics["source"].items())
    report.add_text(
        f"Images: {height}x{width} pixels, greyscale in [0, 1]. Folds keep each "
        f"scan series whole (StratifiedGroupKFold on the series; groups from: {sources}); "
        "SMOTE, when used, runs inside each training fold only."
    )
    if not diagnostics["reliable"]:
        report.add_text(
            "The inferred series may not keep each scan whole: "
            + "; ".join(diagnostics["reasons"])
            + ". Scores may be optimistic; give the true groups (--groups FILE).",
            css_class="note",
        )


def _headline(y_true, y_pred, groups, classes, baselines):
    """Scores beside the baselines, and the verdict derived from them; returns the scores."""
    from sklearn.metrics import confusion_matrix

    from ..metrics import grouped_bootstrap_interval

    scores = label_scores(y_true, y_pred)
    name, best = max(baselines.items(), key=lambda item: item[1]["macro_f1"])
    intervals = {}
    if len(np.unique(groups)) >= 2:
        intervals = {key: grouped_bootstrap_interval(y_true, y_pred, groups, metric=metric,
                                                     random_state=0)
                     for key, metric in (("macro_f1", "f1_macro"), ("accuracy", "accuracy"))}
    verdict = describe_verdict(
        confusion_matrix(y_true, y_pred, labels=classes), classes, macro_f1=scores["macro_f1"],
        accuracy=scores["accuracy"], baseline=(name, best["macro_f1"]), intervals=intervals,
    )
    return scores, verdict


def _reference_section(report, model, data, *, cv_macro_f1=None):
    """The shipped reference model on scans it never trained on, beside the baselines."""
    from sklearn.metrics import recall_score

    report.add_section("The reference model on scans it never saw")
    y = np.asarray(data.target_names)[data.target]
    predicted = model.predict(data.data)
    guesses = baseline_predictions(y, len(y))
    baselines = {name: label_scores(y, guess) for name, guess in guesses.items()}
    scores, verdict = _headline(y, predicted, data.groups, list(data.target_names), baselines)
    rows = [["reference model (ckdlearn.load_pretrained())", scores["accuracy"],
             scores["macro_f1"]]]
    rows += [[f"baseline: {name}", s["accuracy"], s["macro_f1"]] for name, s in baselines.items()]
    report.add_table(rows, header=["", "accuracy", "macro-F1"],
                     row_classes=[None] + ["baseline"] * len(baselines))
    recall = recall_score(y, predicted, labels=data.target_names, average=None, zero_division=0)
    report.add_table([[str(c), float(r)] for c, r in zip(data.target_names, recall)],
                     header=["class", "recall"])
    compared = ("" if cv_macro_f1 is None else
                f" The recipe trained from scratch on the sample itself scores macro-F1 "
                f"{cv_macro_f1:.3f} across its folds (below).")
    report.add_text(
        f"The model that ships with ckdlearn, trained on the complete dataset's development "
        f"part less these {len(np.unique(data.groups))} scan groups, so this is an honest "
        f"score on unseen scans ({len(y)} slices at {data.images.shape[-1]} px, "
        f"domain '{data.domain}'). The baselines answer from these slices' own class "
        f"frequencies. " + verdict + compared,
        css_class="note",
    )


def _cross_validated_baselines(result, y):
    """Each baseline's pooled scores, fitted on each fold's training labels."""
    guesses = {}
    for fold in np.unique(result.fold):
        tested = result.fold == fold
        training = np.setdiff1d(np.arange(len(y)), result.indices[tested])
        for name, guess in baseline_predictions(y[training], int(tested.sum())).items():
            guesses.setdefault(name, np.empty(len(result.y_true), dtype=object))[tested] = guess
    return {name: label_scores(result.y_true, guess) for name, guess in guesses.items()}


def describe_verdict(matrix, classes, *, macro_f1, accuracy, baseline, intervals=None,
                     normal="Normal"):
    """The verdict on out-of-fold predictions, derived from their numbers.

    Compares macro-F1 with the best baseline (by the lower end of its
    interval where there is one), names the weakest class by recall and
    the most dangerous confusion: the finding (any class but ``normal``)
    whose slices are most often called ``normal``, with its share.

    Parameters
    ----------
    matrix : array-like of shape (n_classes, n_classes)
        Confusion counts, rows the true classes, in the order of ``classes``.
    classes : sequence of str
    macro_f1, accuracy : float
        The pooled out-of-fold scores.
    baseline : (str, float)
        The best baseline's name and macro-F1.
    intervals : dict or None
        ``"macro_f1"`` and ``"accuracy"`` to
        :class:`~ckdlearn.metrics.BootstrapInterval` (by scan series).
    normal : str, default="Normal"
        The class that means "nothing found".

    Returns
    -------
    text : str

    Examples
    --------
    >>> from ckdlearn.app.reporting import describe_verdict
    >>> matrix = [[80, 10, 5, 5], [5, 90, 3, 2], [10, 10, 75, 5], [20, 54, 8, 18]]
    >>> text = describe_verdict(matrix, ["Cyst", "Normal", "Stone", "Tumor"],
    ...                         macro_f1=0.62, accuracy=0.66, baseline=("majority class", 0.15))
    >>> "Weakest class: Tumor (recall 0.18)" in text, "54% of Tumor slices" in text
    (True, True)
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    classes = [str(c) for c in classes]
    totals = matrix.sum(axis=1)
    present = totals > 0
    recall = np.divide(np.diag(matrix), totals, out=np.full(len(classes), np.nan), where=present)
    name, base_f1 = baseline
    intervals = intervals or {}

    def figure(key, value):
        interval = intervals.get(key)
        if interval is None:
            return f"{value:.3f}"
        return (f"{value:.3f} (95% interval {interval.low:.3f}-{interval.high:.3f}, "
                "resampling scan series)")

    f1_interval = intervals.get("macro_f1")
    beats = (f1_interval.low if f1_interval is not None else macro_f1 - 0.05) > base_f1
    text = (f"Macro-F1 {figure('macro_f1', macro_f1)} against {base_f1:.3f} for the best "
            f"baseline ({name}); accuracy {figure('accuracy', accuracy)}. ")
    weakest = int(np.nanargmin(recall)) if present.any() else None
    if not beats:
        text += ("No clear evidence that the model tells the classes apart on unseen scan "
                 "series: its macro-F1 is not clearly above the baseline's. ")
    elif weakest is not None and recall[weakest] < WEAK_RECALL:
        text += (f"Better than the baselines overall, but it misses most {classes[weakest]} "
                 f"slices: do not rely on it for {classes[weakest]}. ")
    else:
        text += (f"Better than the baselines, and no class mostly missed (every recall at least "
                 f"{WEAK_RECALL:.1f}). ")
    if weakest is not None:
        text += f"Weakest class: {classes[weakest]} (recall {recall[weakest]:.2f}). "
    if normal in classes:
        column = classes.index(normal)
        findings = [i for i in range(len(classes)) if i != column and present[i]]
        shares = {i: matrix[i, column] / totals[i] for i in findings}
        worst = max(shares, key=shares.get) if shares else None
        if worst is not None and shares[worst] > 0:
            text += (f"Most dangerous confusion: {shares[worst]:.0%} of {classes[worst]} slices "
                     f"({int(matrix[worst, column])} of {int(totals[worst])}) were called "
                     f"{normal}, a finding missed.")
        elif worst is not None:
            text += f"No {', '.join(classes[i] for i in findings)} slice was called {normal}."
    else:
        off = matrix / np.where(present, totals, 1)[:, None]
        np.fill_diagonal(off, 0)
        true, predicted = np.unravel_index(int(np.argmax(off)), off.shape)
        if off[true, predicted] > 0:
            text += (f"Largest confusion: {off[true, predicted]:.0%} of {classes[true]} slices "
                     f"were called {classes[predicted]}.")
    return text.strip()


def _scores_section(report, result, y, groups):
    report.add_section("Cross-validated scores")
    names = list(result.fold_scores)
    rows = [
        [f"fold {i + 1}"] + [float(result.fold_scores[n][i]) for n in names]
        for i in range(result.n_folds)
    ]
    rows.append(["mean"] + [float(np.nanmean(result.fold_scores[n])) for n in names])
    rows.append(["pooled"] + [float(result.pooled_scores.get(n, math.nan)) for n in names])
    baselines = _cross_validated_baselines(result, y)
    for name, scores in baselines.items():
        rows.append([f"baseline: {name}"] + [scores.get(n, "–") for n in names])
    report.add_table(
        rows, header=["", *(SCORE_NAMES.get(n, n) for n in names)],
        row_classes=[None] * (len(rows) - len(baselines)) + ["baseline"] * len(baselines),
    )
    report.add_text(SCORE_DEFINITIONS, css_class="muted")
    series = np.asarray(groups)[result.indices]
    scores, verdict = _headline(result.y_true, result.y_pred, series, result.classes, baselines)
    accuracy = scores["accuracy"]
    majority = baselines["majority class"]["accuracy"]
    if accuracy < majority:
        verdict += f" Its accuracy is below always answering the majority class ({majority:.3f})."
    report.add_text(
        "Baselines, fitted on each fold's training labels: the majority class "
        "always answers the most frequent class; stratified chance guesses at "
        "the class frequencies. A model that learned something beats both on "
        "macro-F1. " + verdict,
        css_class="note",
    )
    report.add_table(
        [[str(c), float(p), float(r)] for c, p, r in zip(result.classes, result.precision, result.recall)],
        header=["class", "precision", "recall"],
    )
    import matplotlib.pyplot as plt

    from ..plotting import plot_confusion_matrix

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
    from ..metrics import expected_calibration_error
    from ..plotting import plot_reliability_diagram

    report.add_section("Calibration")
    ece = expected_calibration_error(result.y_true, result.y_proba, labels=result.classes)
    figure = plot_reliability_diagram(result.y_true, result.y_proba, labels=result.classes)
    report.add_figure(
        figure, "reliability",
        caption=(
            f"Reliability of the top-class probability. ECE (expected calibration error) "
            f"{ece:.3f}: the gap between confidence and accuracy, averaged over the "
            "confidence bins weighted by their share of slices; 0 is perfectly calibrated."
        ),
    )


def _trust_section(report, result):
    """Scan-level answers and what declining the least certain ones buys."""
    if result.selective is None:
        return
    from ..plotting import plot_risk_coverage

    report.add_section("Scans, and knowing when not to answer")
    rows = [["slices", len(result.y_true), result.pooled_scores["accuracy"],
             result.pooled_scores["macro_f1"], result.selective.auroc,
             result.selective.accuracy_at_80]]
    curves = {"slices": result.selective}
    if result.series is not None:
        series = result.series
        rows.append(["scan series", len(series.ids), series.scores["accuracy"],
                     series.scores["macro_f1"], series.selective.auroc,
                     series.selective.accuracy_at_80])
        curves["scan series"] = series.selective
    report.add_table(rows, header=["answers for", "n", "accuracy", "macro-F1",
                                   "uncertainty AUROC", "accuracy at 80% coverage"])
    report.add_figure(
        plot_risk_coverage(curves), "risk_coverage",
        caption=(
            "Accuracy of the answers the model is surest of, against the share answered. "
            "A scan's answer combines its slices (mean log-probability); uncertainty is the "
            "entropy of the probabilities. AUROC: how well the uncertainty tells wrong "
            "answers from right ones (0.5 is no better than chance). AURC (in the legend): "
            "the area under the risk-coverage curve, the error rate averaged over every "
            "coverage; lower is better."
        ),
    )


def _sanity_section(report, result, dataset, n_images=12, methods=("gradcam", "gradcam++")):
    """Adebayo's cascading randomisation test on out-of-fold slices of one fold."""
    if result.estimators is None:
        return
    from ..explanation import randomisation_test
    from ..plotting import plot_randomisation_test

    report.add_section("Do the explanations depend on what the network learned?")
    rows = result.indices[result.fold == 0]
    rows = rows[np.linspace(0, len(rows) - 1, min(n_images, len(rows))).astype(int)]
    test = randomisation_test(result.estimators[0], dataset.data[rows], methods=methods)
    table = {method: [float(np.mean(stage)) for stage in test.spearman[method]] for method in methods}
    report.add_table([[method, *values] for method, values in table.items()],
                     header=["method", *(f"{stage} randomised" for stage in test.stages)])
    report.add_text(describe_layers(test.stages), css_class="muted")
    report.add_figure(
        plot_randomisation_test(test), "sanity_check",
        caption=(
            "Mean Spearman correlation between each method's map from the trained network "
            "and from copies whose layers are re-initialised from the top down (Adebayo et "
            "al., 2018), on held-out slices of the first fold. A map that depends on what "
            "the network learned falls towards 0 at once; one that stays high shows the "
            "image, not the model. " + describe_sanity_check(table, test.stages)
        ),
    )


def describe_layers(stages):
    """What each randomised stage is: 'features.3 = the last convolution block (4 of 4)'."""
    blocks = sorted(int(stage.split(".")[1]) for stage in stages
                    if stage.startswith("features.") and stage.split(".")[1].isdigit())
    n_blocks = max(blocks) + 1 if blocks else 0
    words = []
    for stage in stages:
        if stage == "classifier":
            words.append("classifier = the final linear layer, which turns features into class scores")
        elif stage in (f"features.{b}" for b in blocks):
            number = int(stage.split(".")[1]) + 1
            place = ("the last convolution block" if number == n_blocks else
                     "the first convolution block" if number == 1 else "a convolution block")
            words.append(f"{stage} = {place} ({number} of {n_blocks})")
        else:
            words.append(f"{stage} = the network's submodule of that name")
    return "Layers, randomised cumulatively from the top: " + "; ".join(words) + "."


def describe_sanity_check(table, stages, pass_below=SANITY_PASS_BELOW):
    """The sanity check's verdict, read off its table of mean correlations.

    A method passes when its mean Spearman correlation with the trained map
    stays below ``pass_below`` at every randomised stage
    (benchmarks/sanity_checks.py uses the same rule).

    Examples
    --------
    >>> from ckdlearn.app.reporting import describe_sanity_check
    >>> describe_sanity_check({"gradcam": [0.1, 0.05], "gradcam++": [0.9, 0.7]},
    ...                       ["classifier", "features.1"])
    'Pass (mean correlation below 0.5 at every stage): gradcam. Fail: gradcam++ (0.90 with classifier randomised).'
    """
    passed, failed = [], []
    for method, values in table.items():
        values = np.asarray(values, dtype=np.float64)
        if np.all(values < pass_below):
            passed.append(method)
        else:
            worst = int(np.nanargmax(values))
            failed.append(f"{method} ({values[worst]:.2f} with {stages[worst]} randomised)")
    parts = []
    if passed:
        parts.append(f"Pass (mean correlation below {pass_below:g} at every stage): {', '.join(passed)}.")
    if failed:
        parts.append(f"Fail: {', '.join(failed)}.")
    return " ".join(parts)


def _pick_cases(result, groups, per_class):
    """Up to ``per_class`` correct and wrong out-of-fold cases per class, each
    from a scan series no other picked case comes from: neighbouring slices
    of one series look alike and would show the same map twice."""
    picked, used_series = [], set()
    for label in result.classes:
        for correct in (True, False):
            mask = (result.y_true == label) & ((result.y_pred == label) == correct)
            chosen = 0
            for position in np.flatnonzero(mask):
                series = groups[result.indices[position]]
                if chosen < per_class and series not in used_series:
                    used_series.add(series)
                    picked.append(int(position))
                    chosen += 1
    return picked


def _explanation_section(report, result, dataset, cases_per_class):
    report.add_section("Grad-CAM explanations")
    X, groups, filenames = dataset.data, dataset.groups, dataset.filenames
    picked = _pick_cases(result, groups, cases_per_class)
    if not picked or result.estimators is None:
        report.add_text("No out-of-fold predictions to explain.")
        return
    from ..explanation import explain
    from ..plotting import plot_explanations

    heatmaps, scores, titles = [], [], []
    for position in picked:
        row = result.indices[position]
        fold_model = result.estimators[result.fold[position]]
        heatmap, score = explain(fold_model, X[row : row + 1], return_scores=True)
        heatmaps.append(heatmap[0])
        scores.append(float(score[0]))
        mark = "ok" if result.y_true[position] == result.y_pred[position] else "WRONG"
        titles.append(
            f"true {result.y_true[position]} | pred {result.y_pred[position]} ({mark})\n"
            f"series {groups[row]} | faithfulness {score[0]:.2f}"
        )
    shown = dataset.images[result.indices[picked]]
    report.add_text(
        "What to look for: warm colours should sit on a kidney and, for Cyst, "
        "Stone and Tumor, on the finding itself (a dark round cyst, a bright "
        "stone, a mass distorting the kidney's outline). Heat on the spine, "
        "the bowel, the body's outline or the image's corners means the network "
        "uses something other than the kidneys, a shortcut that will not hold "
        "on other scanners. Compare the correct and the wrong cases of a class, "
        "and trust a map more when its faithfulness is high. Heatmaps show "
        "where the network looked, not why.",
        css_class="note",
    )
    figure = plot_explanations(shown, np.stack(heatmaps), titles=titles, ncols=4)
    report.add_figure(
        figure, "gradcam",
        caption=(
            "Grad-CAM of the predicted class for correct and wrong out-of-fold "
            "cases per class, each from a different scan series and explained by "
            "the model that did not train on it. Faithfulness: drop in the "
            "predicted class's confidence when the most relevant pixels are "
            f"removed (higher = the heatmap matters more; mean {np.mean(scores):.3f}). " + ATTRIBUTION
        ),
    )
    rows = result.indices[picked]
    report.add_table(
        [[str(filenames[r]), int(groups[r]), str(t), str(p), s]
         for r, t, p, s in zip(rows, result.y_true[picked], result.y_pred[picked], scores)],
        header=["slice shown", "scan series", "true", "predicted", "faithfulness"],
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
