"""Do the default recipe's Grad-CAM maps stay as faithful as the first default's?

Both recipes train on the same four fifths of the real CT KIDNEY data
(fold 1 of ``benchmarks/accuracy.py``'s ``StratifiedGroupKFold(5)`` by scan
series, SMOTE in the pipeline, bf16, 20 epochs) and explain the held-out
scan series: Grad-CAM of the predicted class for every test slice, scored
with ckdlearn's deletion faithfulness (``confidence_drop``: the drop of the
predicted class's probability when the 20% most relevant pixels are
imputed away). Faithfulness is in probability units, and label smoothing
caps confidence, so each recipe's score is also given against a random
heatmap's on the same network and images (the margin over random is what
compares across networks). Writes a grid of heatmaps per class for each
recipe.

Run from the repository root::

    python benchmarks/faithfulness_recipes.py [--data ../shared/data/ct-kidney] [--recipes 0 1 2]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from imblearn.pipeline import make_pipeline
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedGroupKFold

from ckdlearn import CKDNetClassifier
from ckdlearn.augmentation import CTAugment
from ckdlearn.datasets import load_ct_kidney
from ckdlearn.over_sampling import LeanSMOTE
from ckdlearn.plotting import plot_explanations

from accuracy import faithfulness_summary, mild_augment  # benchmarks/accuracy.py

HERE = Path(__file__).resolve().parent
# The earlier recipes trained on whole slices with an average-pooled head;
# the current default trains on windows of them with an average+max head.
_WHOLE_SLICES = dict(augment=CTAugment(crop=None), module__pool="avg")
RECIPES = {
    "first default (mild augmentation, no label smoothing)": dict(
        augment=mild_augment(), module__pool="avg", label_smoothing=0.0,
    ),
    "larger augmentation, label smoothing 0.1": dict(**_WHOLE_SLICES, label_smoothing=0.1),
    "larger augmentation, no label smoothing": dict(**_WHOLE_SLICES, label_smoothing=0.0),
    "larger augmentation, no label smoothing, mixup 0.2": dict(
        **_WHOLE_SLICES, label_smoothing=0.0, mixup=0.2
    ),
    "default: windows of the slices, mean + max pooling": dict(),
}


from common import SHARED_DATA  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_DATA))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--recipes", type=int, nargs="+", default=list(range(len(RECIPES))),
                        help="indices of the recipes to run (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = load_ct_kidney(args.data, image_size=args.image_size)
    y = np.asarray(data.target_names)[data.target]
    cv = StratifiedGroupKFold(5, shuffle=True, random_state=0)
    train, test = next(cv.split(data.data, y, data.groups))
    summary = {}
    for index, (name, params) in enumerate(RECIPES.items()):
        if index not in args.recipes:
            continue
        started = time.perf_counter()
        pipe = make_pipeline(
            LeanSMOTE(random_state=0),
            CKDNetClassifier(max_epochs=args.epochs, precision="bf16", random_state=0, **params),
        ).fit(data.data[train], y[train])
        model = pipe[-1]
        scores = faithfulness_summary(model, data.data[test], y[test])
        gradcam, heatmaps, y_pred = scores.pop("scores"), scores.pop("heatmaps"), scores.pop("predicted")
        key = f"{name}, {args.image_size} px"
        summary[key] = {
            "macro_f1_fold1": float(f1_score(y[test], y_pred, average="macro")),
            **scores,
            "seconds": time.perf_counter() - started,
        }
        print(name, json.dumps(summary[key], indent=1), flush=True)
        # Two correctly classified held-out slices per class, if there are any.
        picked = np.concatenate([
            np.flatnonzero((y[test] == c) & (y_pred == c))[:2] for c in data.target_names
        ])
        titles = [f"{y[test][p]} (correct)\nfaithfulness {gradcam[p]:.2f}" for p in picked]
        figure = plot_explanations(data.images[test][picked], heatmaps[picked],
                                   titles=titles, ncols=4)
        figure.suptitle(f"{name}: Grad-CAM on unseen scan series", y=1.04)
        figure.savefig(out / f"faithfulness-recipe-{index}-{args.image_size}px.png", dpi=80,
                       bbox_inches="tight")
    results = out / "faithfulness-recipes.json"
    previous = json.loads(results.read_text()) if results.exists() else {}
    results.write_text(json.dumps({**previous, **summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
