"""Accuracy on scan series the model never saw: the honest measure.

StratifiedGroupKFold over the inferred scan series of the real CT KIDNEY
data, resampling (when any) inside the pipeline, so every test slice comes
from a series absent from its fold's training data. Reports per-fold and
pooled accuracy, macro-F1, per-class recall and ECE, and the wall time.

Run from the repository root::

    python benchmarks/accuracy.py --name default
    python benchmarks/accuracy.py --name w16-64px --image-size 64 --width 16 --epochs 20

Each run appends a row to ``benchmarks/ACCURACY.md`` (with ``--record``) and
writes its full figures to ``benchmarks/results/accuracy-<name>.json``.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from imblearn.over_sampling import SMOTE
from sklearn.metrics import accuracy_score, f1_score, recall_score
from sklearn.model_selection import StratifiedGroupKFold

from ckdlearn import CKDNetClassifier
from ckdlearn.augmentation import CTAugment
from ckdlearn.explanation import compute_heatmaps, faithfulness_scores
from ckdlearn.datasets import load_ct_kidney
from ckdlearn.estimator import UNCERTAINTY_METHODS
from ckdlearn.metrics import accuracy_at_coverage, expected_calibration_error, risk_coverage_curve
from ckdlearn.model_selection import evaluate
from ckdlearn.pipeline import final_step_input
from ckdlearn.pipeline import make_pipeline as ckdlearn_pipeline

HERE = Path(__file__).resolve().parent
from common import SHARED_DATA  # noqa: E402

DEFAULT_DATA = SHARED_DATA  # $CKDLEARN_DATA/ct-kidney, else ../shared/data/ct-kidney


def mild_augment():
    """CTAugment with its first defaults: half today's ranges."""
    return CTAugment(rotation=10.0, translation=0.06, scale=(0.9, 1.1),
                     contrast=0.2, brightness=0.05, gamma=0.2, noise=0.02, crop=None)


def faithfulness_summary(model, X, y, random_state=0):
    """Deletion faithfulness of Grad-CAM, against a random map, on held-out slices.

    Grad-CAM of the predicted class for every slice, scored with
    ``confidence_drop`` (the predicted class's probability lost when the
    20% most relevant pixels are imputed away) and ``decision_flip`` (the
    share of predictions that removal changes, which does not depend on
    the network's confidence). The same scores for a random map on the
    same network and images are the reference.
    """
    images = model.to_images(X)
    predicted = model.predict_proba(X).argmax(1)
    heatmaps, _ = compute_heatmaps(model.module_, images, predicted)
    rng = np.random.RandomState(random_state)
    random_maps = rng.rand(*heatmaps.shape).astype(np.float32)

    def score(maps, metric):
        return faithfulness_scores(model.module_, images, predicted, maps, metric=metric)

    gradcam, random = score(heatmaps, "confidence_drop"), score(random_maps, "confidence_drop")
    y = np.asarray(y)
    return {
        "gradcam_confidence_drop": float(gradcam.mean()),
        "random_map_confidence_drop": float(random.mean()),
        "gradcam_over_random": float(gradcam.mean() - random.mean()),
        "gradcam_beats_random_share": float(np.mean(gradcam > random)),
        "gradcam_decision_flip": float(score(heatmaps, "decision_flip").mean()),
        "random_map_decision_flip": float(score(random_maps, "decision_flip").mean()),
        "per_class_gradcam": {str(c): float(gradcam[y == c].mean()) for c in np.unique(y)},
        "heatmaps": heatmaps,
        "scores": gradcam,
        "predicted": model.classes_[predicted],
    }


def hflip(X, image_size):
    """Left-right mirror of flattened square images."""
    return X.reshape(len(X), image_size, image_size)[:, :, ::-1].reshape(len(X), -1)


def extra_figures(result, X, y, args):
    """Flip test-time augmentation and Grad-CAM faithfulness, per fold and pooled."""
    extra = {}
    if args.tta:
        proba = np.empty_like(result.y_proba)
        position = np.empty(len(X), dtype=int)
        position[result.indices] = np.arange(len(result.indices))
        for (_, test), estimator in zip(result.splits, result.estimators):
            both = estimator.predict_proba(X[test]) + estimator.predict_proba(hflip(X[test], args.image_size))
            proba[position[test]] = both / 2
        y_true = result.y_true
        y_pred = result.classes[proba.argmax(1)]
        extra["tta_hflip"] = {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro")),
            "recall": recall_score(y_true, y_pred, average=None, labels=result.classes).tolist(),
            "ece": float(expected_calibration_error(y_true, proba, labels=result.classes)),
        }
        print("flip TTA:", extra["tta_hflip"], flush=True)
    if args.faithfulness:
        folds = []
        for (_, test), estimator in zip(result.splits, result.estimators):
            model = estimator[-1] if hasattr(estimator, "steps") else estimator
            summary = faithfulness_summary(model, X[test], y[test])
            folds.append({k: v for k, v in summary.items()
                          if k not in ("heatmaps", "scores", "predicted")})
        extra["faithfulness"] = {
            "folds": folds,
            # Mean over folds of every summary figure (not the per-class dicts).
            **{key: float(np.mean([f[key] for f in folds]))
               for key, value in folds[0].items() if isinstance(value, float)},
        }
        print("faithfulness:", {k: v for k, v in extra["faithfulness"].items() if k != "folds"},
              flush=True)
    return extra


def per_series(result, groups):
    """Share of each held-out scan series' slices classified correctly."""
    y_true = result.y_true
    correct = result.y_pred == y_true
    series = groups[result.indices]
    rows = []
    for group in np.unique(series):
        mask = series == group
        predicted, counts = np.unique(result.y_pred[mask], return_counts=True)
        rows.append({
            "series": group.item() if hasattr(group, "item") else group,
            "class": str(y_true[mask][0]),
            "fold": int(result.fold[mask][0]),
            "n_slices": int(mask.sum()),
            "accuracy": float(correct[mask].mean()),
            "most_predicted": str(predicted[counts.argmax()]),
        })
    return rows


def build(args):
    params = dict(random_state=args.seed, precision=args.precision)
    for name in ("max_epochs", "lr", "batch_size"):
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    if args.width is not None:
        params["module__width"] = args.width
    if args.depth is not None:
        params["module__depth"] = args.depth
    if args.dropout is not None:
        params["module__dropout"] = args.dropout
    if args.standardize:
        params["module__standardize"] = True
    if args.augment == "none":
        params["augment"] = None
    elif args.augment == "mild":
        params["augment"] = mild_augment()
    if args.label_smoothing is not None:
        params["label_smoothing"] = args.label_smoothing
    if args.mixup is not None:
        params["mixup"] = args.mixup
    if args.weight_decay is not None:
        params["optimizer__weight_decay"] = args.weight_decay
    if args.method == "class-weight":
        params["class_weight"] = "balanced"
    if args.pool is not None:
        params["module__pool"] = args.pool
    if args.crop is not None:
        params["augment"] = CTAugment(crop=args.crop or None)
    if args.validation is not None:
        params["validation"] = args.validation
    classifier = CKDNetClassifier(**params)
    if args.method == "smote":
        # ckdlearn's pipeline: validation series (if any) are held out before SMOTE.
        return ckdlearn_pipeline(SMOTE(random_state=args.seed), classifier)
    return classifier


def uncertainty_figures(result, X, y, groups):
    """AUROC for wrong predictions and accuracy at 80% coverage, per uncertainty score."""
    figures = {}
    for method in UNCERTAINTY_METHODS:
        slices, series_true, series_pred, series_unsure = [], [], [], []
        for (_, test), fitted in zip(result.splits, result.estimators):
            final, Xt = final_step_input(fitted, X[test])
            slices.append(final.predict_uncertainty(Xt, method=method))
            answer = final.predict_series(Xt, groups[test], uncertainty=method)
            series_true += [y[test][groups[test] == g][0] for g in answer.series]
            series_pred.append(answer.label)
            series_unsure.append(answer.uncertainty)
        unsure = np.concatenate(slices)
        figures[method] = {
            "slices": {"auroc_wrong": risk_coverage_curve(result.y_true, result.y_pred, unsure).auroc,
                       "accuracy_at_80": accuracy_at_coverage(result.y_true, result.y_pred, unsure)},
            "series": {
                "auroc_wrong": risk_coverage_curve(series_true, np.concatenate(series_pred),
                                                   np.concatenate(series_unsure)).auroc,
                "accuracy_at_80": accuracy_at_coverage(series_true, np.concatenate(series_pred),
                                                       np.concatenate(series_unsure)),
            },
        }
    print("uncertainty:", json.dumps(figures, indent=1), flush=True)
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="label of this configuration")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--image-size", type=int, default=None,
                        help="default: load_ct_kidney's (the default recipe's) size")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--method", choices=["smote", "class-weight", "none"], default="smote")
    parser.add_argument("--max-epochs", dest="max_epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--depth", type=int, default=None)
    parser.add_argument("--augment", choices=["default", "mild", "none"], default="default",
                        help="CTAugment() (default), half its ranges (mild), or none")
    parser.add_argument("--dropout", type=float, default=None)
    parser.add_argument("--standardize", action="store_true",
                        help="CKDNet(standardize=True): per-image standardisation")
    parser.add_argument("--label-smoothing", type=float, default=None)
    parser.add_argument("--mixup", type=float, default=None)
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--precision", default="32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--tta", action="store_true",
                        help="also score the mean of predictions on each slice and its mirror")
    parser.add_argument("--faithfulness", action="store_true",
                        help="also score Grad-CAM's deletion faithfulness on every fold")
    parser.add_argument("--pool", choices=["avgmax", "avg", "max"], default=None)
    parser.add_argument("--crop", type=float, default=None,
                        help="CTAugment(crop=...): share of each side trained on; 0 for none")
    parser.add_argument("--validation", type=float, default=None,
                        help="CKDNetClassifier(validation=...): share of series held out in fit")
    parser.add_argument("--trust", action="store_true",
                        help="also score each uncertainty method (slices and scan series)")
    parser.add_argument("--record", action="store_true", help="append a row to ACCURACY.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    data = load_ct_kidney(args.data, **({} if args.image_size is None else {"image_size": args.image_size}))
    args.image_size = data.images.shape[-1]
    y = np.asarray(data.target_names)[data.target]
    estimator = build(args)
    cv = StratifiedGroupKFold(args.folds, shuffle=True, random_state=args.seed)
    keep = args.tta or args.faithfulness or args.trust
    result = evaluate(estimator, data.data, y, groups=data.groups, cv=cv, audit=True,
                      return_estimator=keep, verbose=2)
    print(result, flush=True)
    extra = extra_figures(result, data.data, y, args) if keep else {}
    if args.trust:
        extra["uncertainty"] = uncertainty_figures(result, data.data, y, np.asarray(data.groups))
    seconds = time.perf_counter() - started
    print(f"wall time {seconds:.0f} s")

    summary = {
        "name": args.name,
        "settings": {k: v for k, v in vars(args).items() if k not in ("record", "data")},
        "estimator": repr(estimator),
        "seconds": seconds,
        "fit_seconds_per_fold": result.fit_time.tolist(),
        **result.to_dict(),
        **extra,
        "per_series": per_series(result, np.asarray(data.groups)),
    }
    out = HERE / "results" / f"accuracy-{args.name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str))
    if args.record:
        recall = " / ".join(f"{r:.2f}" for r in result.recall)
        row = (
            f"| {args.name} | {result.pooled_scores['macro_f1']:.3f} | "
            f"{result.pooled_scores['accuracy']:.3f} | {recall} | "
            f"{result.pooled_scores.get('ece', float('nan')):.3f} | "
            f"{np.mean(result.fit_time) / 60:.1f} | "
            f"`python benchmarks/accuracy.py {' '.join(argv or sys.argv[1:])}` |\n"
        )
        table = HERE / "ACCURACY.md"
        with table.open("a") as handle:
            handle.write(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
