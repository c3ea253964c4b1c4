"""Do the default recipe's Grad-CAM maps stay as faithful as the first default's?

On the real CT sample shipped with ckdlearn (438 slices, 24 scan series,
64 px), each recipe is cross-validated with ``StratifiedGroupKFold(3)``
by scan series; every out-of-fold slice is explained (Grad-CAM of the
predicted class) by the fold model that did not train on it, and scored
with ckdlearn's deletion faithfulness (drop of the predicted class's
probability when the 20% most relevant pixels are removed). Writes a
figure of heatmaps per class for each recipe.

Run from the repository root::

    python benchmarks/faithfulness_recipes.py [--epochs 12] [--out benchmarks/results]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from imblearn.pipeline import make_pipeline
from sklearn.model_selection import StratifiedGroupKFold

from ckdlearn import CKDNetClassifier, explain
from ckdlearn.augmentation import CTAugment
from ckdlearn.datasets import load_ct_kidney_sample
from ckdlearn.model_selection import evaluate
from ckdlearn.over_sampling import LeanSMOTE
from ckdlearn.plotting import plot_explanations

RECIPES = {
    "first default (mild augmentation, no label smoothing)": dict(
        augment=CTAugment(rotation=10.0, translation=0.06, scale=(0.9, 1.1),
                          contrast=0.2, brightness=0.05, gamma=0.2, noise=0.02),
        label_smoothing=0.0,
    ),
    "default": {},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    sample = load_ct_kidney_sample(image_size=64)
    y = np.asarray(sample.target_names)[sample.target]
    cv = StratifiedGroupKFold(3, shuffle=True, random_state=0)
    summary = {}
    for index, (name, params) in enumerate(RECIPES.items()):
        started = time.perf_counter()
        pipe = make_pipeline(
            LeanSMOTE(random_state=0),
            CKDNetClassifier(max_epochs=args.epochs, random_state=0, **params),
        )
        result = evaluate(pipe, sample.data, y, groups=sample.groups, cv=cv,
                          return_estimator=True, audit=False)
        scores = np.empty(len(result.indices))
        for fold, model in enumerate(result.estimators):
            rows = result.fold == fold
            _, scores[rows] = explain(model, sample.data[result.indices[rows]], return_scores=True)
        summary[name] = {
            "macro_f1": result.pooled_scores["macro_f1"],
            "faithfulness_mean": float(scores.mean()),
            "faithfulness_per_class": {
                c: float(scores[result.y_true == c].mean()) for c in sample.target_names
            },
            "seconds": time.perf_counter() - started,
        }
        print(name, json.dumps(summary[name], indent=1), flush=True)
        # Two out-of-fold slices per class, each explained by its fold model.
        picked = [np.flatnonzero(result.y_true == c)[:: max(1, (result.y_true == c).sum() // 2)][:2]
                  for c in sample.target_names]
        picked = np.concatenate(picked)
        heatmaps = np.concatenate([
            explain(result.estimators[result.fold[p]], sample.data[result.indices[p]][None])
            for p in picked
        ])
        titles = [f"true {result.y_true[p]} | pred {result.y_pred[p]}\nfaithfulness {scores[p]:.2f}"
                  for p in picked]
        figure = plot_explanations(sample.images[result.indices[picked]], heatmaps,
                                   titles=titles, ncols=4)
        figure.suptitle(name)
        figure.savefig(out / f"faithfulness-recipe-{index}.png", dpi=90)
    (out / "faithfulness-recipes.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
