"""Trust beyond a score, measured on unseen scan series (issue 16).

5-fold ``StratifiedGroupKFold`` by inferred scan series of the real CT
KIDNEY slices, the default pipeline with series held out for validation
inside ``fit`` (``ckdlearn.pipeline.make_pipeline``). Reports:

* slice-level and series-level (one answer per held-out scan) macro-F1;
* for each uncertainty score, the ROC AUC of telling wrong predictions
  from right ones, and the accuracy on the 80% the model is surest of,
  for slices and for series.

Run from the repository root (about 25 minutes on one core at 64 px)::

    python benchmarks/trust.py --image-size 64 --threads 1

Writes ``benchmarks/results/trust-<size>px.json``.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from imblearn.over_sampling import SMOTE
from sklearn.model_selection import StratifiedGroupKFold

from ckdlearn import CKDNetClassifier
from ckdlearn.datasets import load_ct_kidney
from ckdlearn.metrics import accuracy_at_coverage, risk_coverage_curve
from ckdlearn.model_selection import evaluate
from ckdlearn.pipeline import final_step_input, make_pipeline

HERE = Path(__file__).resolve().parent
from common import SHARED_DATA  # noqa: E402

DEFAULT_DATA = SHARED_DATA  # $CKDLEARN_DATA/ct-kidney, else ../shared/data/ct-kidney
METHODS = ("entropy", "margin", "knn")


def summary(y_true, y_pred, uncertainty):
    curve = risk_coverage_curve(y_true, y_pred, uncertainty)
    return {
        "auroc_wrong": curve.auroc,
        "accuracy_at_80": accuracy_at_coverage(y_true, y_pred, uncertainty, coverage=0.8),
        "aurc": curve.aurc,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", default="bf16")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = load_ct_kidney(args.data, image_size=args.image_size)
    y, groups = data.target_names[data.target], data.groups
    pipe = make_pipeline(
        SMOTE(random_state=0),
        CKDNetClassifier(random_state=0, precision=args.precision, validation=0.2),
    )
    cv = StratifiedGroupKFold(5, shuffle=True, random_state=0)
    result = evaluate(pipe, data.data, y, groups=groups, cv=cv, return_estimator=True)
    print(result, flush=True)

    figures = {"slices": {}, "series": {}}
    for method in METHODS:
        slices = np.concatenate([
            final_step_input(fitted, data.data[test])[0].predict_uncertainty(
                final_step_input(fitted, data.data[test])[1], method=method)
            for fitted, (_, test) in zip(result.estimators, result.splits)
        ])
        figures["slices"][method] = summary(result.y_true, result.y_pred, slices)
        series_scores = []
        for fitted, (_, test) in zip(result.estimators, result.splits):
            final, Xt = final_step_input(fitted, data.data[test])
            series_scores.append(final.predict_series(Xt, groups[test], uncertainty=method))
        series_true = np.concatenate([
            [y[test][groups[test] == g][0] for g in answer.series]
            for (_, test), answer in zip(result.splits, series_scores)
        ])
        series_pred = np.concatenate([answer.label for answer in series_scores])
        series_unsure = np.concatenate([answer.uncertainty for answer in series_scores])
        figures["series"][method] = summary(series_true, series_pred, series_unsure)
    output = {
        "image_size": args.image_size,
        "slice_scores": result.pooled_scores,
        "slice_recall": dict(zip(result.classes.tolist(), result.recall.tolist())),
        "series_scores": result.series.scores,
        "n_series": int(len(result.series.ids)),
        "temperatures": [float(e[-1].temperature_) for e in result.estimators],
        "epochs": [len(e[-1].history_) for e in result.estimators],
        "uncertainty": figures,
        "minutes": (time.perf_counter() - started) / 60,
    }
    print(json.dumps(output, indent=2), flush=True)
    out = HERE / "results" / f"trust-{args.image_size}px.json"
    out.write_text(json.dumps(output, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
