"""Grouped cross-validation one fold at a time, each fold's answers saved as it ends.

``accuracy.py`` scores a recipe in one call; on the complete development
data (``ct-kidney-full``, 8,743 slices) a fold of the default recipe takes
about half an hour on one core, so this script runs the folds it is given
(two processes, one thread each, use both cores), writes each fold's
out-of-fold probabilities to ``results/folds-<name>/fold-<k>.npz`` the
moment it ends, and pools whatever folds exist with ``--summarize``.

The pooled summary also reports the calibration of a temperature fitted
*across* folds: each fold's temperature is fitted on the other folds'
out-of-fold answers (series none of those models trained on), so the ECE
it reports is still measured on answers the temperature never saw. The
temperature fitted on all folds is the one a model trained on all the data
would carry (``tools/train_reference.py`` reads it from the summary).

Run from the repository root::

    python benchmarks/accuracy_folds.py --name default-full --only 0 2 4 &
    python benchmarks/accuracy_folds.py --name default-full --only 1 3 &
    wait; python benchmarks/accuracy_folds.py --name default-full --summarize
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tools"))

from recipes import RECIPES, build_recipe, data_root  # noqa: E402


def fold_path(name, fold):
    return HERE / "results" / f"folds-{name}" / f"fold-{fold}.npz"


def run_fold(args, data, y, fold, train, test):
    import torch

    torch.set_num_threads(args.threads)
    estimator = build_recipe(args.recipe, seed=args.seed)
    started = time.perf_counter()
    estimator.fit(data.data[train], y[train])
    fit_seconds = time.perf_counter() - started
    proba = estimator.predict_proba(data.data[test])
    out = fold_path(args.name, fold)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out, test=test, proba=proba.astype(np.float32), classes=estimator.classes_,
        fit_seconds=fit_seconds,
    )
    macro = f1_score(y[test], estimator.classes_[proba.argmax(1)], average="macro")
    print(f"fold {fold}: macro-F1 {macro:.3f}, fit {fit_seconds / 60:.1f} min -> {out}", flush=True)


def fit_temperature(log_proba, y_index):
    """Temperature minimising the log loss of ``log_proba / T`` (T in e^-3 .. e^3)."""
    rows = np.arange(len(y_index))

    def loss(log_t):
        return -log_softmax(log_proba / np.exp(log_t), axis=1)[rows, y_index].mean()

    return float(np.exp(minimize_scalar(loss, bounds=(-3, 3), method="bounded").x))


def scores(y_true, proba, classes):
    from ckdlearn.metrics import expected_calibration_error

    y_pred = classes[proba.argmax(1)]
    return {
        "macro_f1": float(f1_score(y_true, y_pred, average="macro")),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "recall": dict(zip(classes.tolist(), recall_score(y_true, y_pred, average=None,
                                                          labels=classes).round(4).tolist())),
        "ece": float(expected_calibration_error(y_true, proba, labels=classes)),
    }


def summarize(args, data, y, splits):
    folds = []
    for fold in range(len(splits)):
        path = fold_path(args.name, fold)
        if path.exists():
            with np.load(path, allow_pickle=False) as saved:
                folds.append({key: saved[key] for key in saved.files} | {"fold": fold})
    if not folds:
        raise SystemExit(f"no fold of {args.name!r} has finished yet")
    classes = folds[0]["classes"]
    test = np.concatenate([f["test"] for f in folds])
    proba = np.concatenate([f["proba"] for f in folds])
    fold_of = np.concatenate([np.full(len(f["test"]), f["fold"]) for f in folds])
    y_true = y[test]
    y_index = np.searchsorted(classes, y_true)
    log_proba = np.log(np.clip(proba, 1e-12, None))

    # Cross-fitted temperature: each fold's from the other folds' answers;
    # with one fold done, each half of its scan groups' from the other half.
    parts = fold_of
    if len(folds) == 1:
        parts = np.zeros(len(test), dtype=int)
        halves = GroupKFold(2).split(test, groups=data.groups[test])
        parts[next(halves)[1]] = 1
    calibrated = np.empty_like(proba)
    temperatures = {}
    for part in np.unique(parts):
        here = parts == part
        temperatures[int(part)] = fit_temperature(log_proba[~here], y_index[~here])
        calibrated[here] = np.exp(log_softmax(log_proba[here] / temperatures[int(part)], axis=1))
    summary = {
        "name": args.name,
        "recipe": args.recipe,
        "recipe_params": RECIPES[args.recipe]["describe"],
        "data": str(args.data),
        "folds_done": [int(f["fold"]) for f in folds],
        "n_slices_scored": int(len(test)),
        "n_groups_scored": int(len(np.unique(data.groups[test]))),
        "fit_minutes_per_fold": [round(float(f["fit_seconds"]) / 60, 1) for f in folds],
        "pooled": scores(y_true, proba, classes),
        "pooled_cross_fitted_temperature": scores(y_true, calibrated, classes),
        "cross_fitted_temperatures": temperatures,
        "temperature_all_folds": fit_temperature(log_proba, y_index),
        "per_fold": {int(f["fold"]): scores(y[f["test"]], f["proba"], classes) for f in folds},
        "confusion_matrix": confusion_matrix(y_true, classes[proba.argmax(1)],
                                             labels=classes).tolist(),
        "classes": classes.tolist(),
    }
    out = HERE / "results" / f"accuracy-{args.name}.json"
    out.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="label of this run (folder of its folds)")
    parser.add_argument("--recipe", default="default", choices=sorted(RECIPES))
    parser.add_argument("--data", default=None,
                        help="dataset folder; default: ct-kidney-full under CKDLEARN_DATA "
                             "or ../shared/data")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only", type=int, nargs="*", default=None, help="folds to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--summarize", action="store_true")
    args = parser.parse_args(argv)
    args.data = args.data or str(data_root("ct-kidney-full"))
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from ckdlearn.datasets import load_ct_kidney

    recipe = RECIPES[args.recipe]
    data = load_ct_kidney(args.data, input_domain="clahe", **recipe["load"])
    y = np.asarray(data.target_names)[data.target]
    cv = StratifiedGroupKFold(args.folds, shuffle=True, random_state=args.seed)
    splits = list(cv.split(data.data, y, data.groups))
    if args.summarize:
        summarize(args, data, y, splits)
        return 0
    for fold in args.only if args.only is not None else range(args.folds):
        train, test = splits[fold]
        print(f"fold {fold}: {len(train)} training slices, {len(test)} test slices "
              f"({len(np.unique(data.groups[test]))} scan groups)", flush=True)
        run_fold(args, data, y, fold, train, test)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
