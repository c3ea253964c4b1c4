"""Sanity checks of the CAM methods (Adebayo et al., 2018) on real CT slices.

Trains the default pipeline, ``make_pipeline(SMOTE(random_state=0),
CKDNetClassifier(random_state=0, precision="bf16"))`` at 64 px, on the
training part of one ``StratifiedGroupKFold(5, shuffle=True,
random_state=0)`` fold of the shared CT KIDNEY data (grouped by inferred
scan series), then runs :func:`ckdlearn.explanation.randomisation_test` on
held-out slices of that fold:

* the cascading model-parameter randomisation (head, then each block
  below it), and
* the label randomisation (a clone trained on permuted labels).

For each CAM method it reports the mean Spearman rank correlation and
SSIM between the trained network's map and the randomised one, per stage,
beside the baseline (the correlation between the trained maps of two
different slices). ScoreCAM and AblationCAM need one forward pass per
channel of the explained layer and image, so they run on a subsample.

Run from the repository root (about 15 minutes on one thread)::

    python benchmarks/sanity_checks.py

It writes ``benchmarks/results/sanity-checks-64px.json``, a figure
``benchmarks/results/sanity-checks-64px.png`` and a markdown table
``benchmarks/results/sanity-checks-64px.md``.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import make_pipeline
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedGroupKFold

from ckdlearn import CKDNetClassifier
from ckdlearn.explanation import CAM_METHODS, randomisation_test
from ckdlearn.datasets import load_ct_kidney

HERE = Path(__file__).resolve().parent
from common import SHARED_DATA  # noqa: E402

DEFAULT_DATA = SHARED_DATA  # $CKDLEARN_DATA/ct-kidney, else ../shared/data/ct-kidney
SLOW_METHODS = ("scorecam", "ablationcam")
# A method passes a test when the mean rank correlation between its trained
# and randomised maps is below this at every stage.
PASS_BELOW = 0.5


def held_out_sample(y, test, size, rng):
    """Up to ``size`` held-out indices, the same number from each class where possible."""
    classes = np.unique(y[test])
    per_class = -(-size // len(classes))
    picked = [rng.permutation(test[y[test] == c])[:per_class] for c in classes]
    return np.sort(np.concatenate(picked))[:size]


def summarise(result, n_images):
    """Mean similarities per method and stage, JSON-ready."""
    rows = {}
    for method in result.methods:
        spearman, ssim = result.spearman[method], result.ssim[method]
        rows[method] = {
            "n_images": n_images[method],
            "spearman_mean": dict(zip(result.stages, spearman.mean(axis=1).round(4).tolist())),
            "spearman_median": dict(zip(result.stages, np.median(spearman, axis=1).round(4).tolist())),
            "ssim_mean": dict(zip(result.stages, ssim.mean(axis=1).round(4).tolist())),
            "baseline_spearman_mean": round(float(result.baseline[method].mean()), 4),
            "passes": bool(np.all(spearman.mean(axis=1) < PASS_BELOW)),
        }
    return rows


def markdown(results, meta):
    cascade, labels = results["cascading"], results["labels"]
    stages = list(next(iter(cascade.values()))["spearman_mean"])
    lines = [
        f"Mean Spearman rank correlation between the trained and the randomised "
        f"CAM, per held-out slice ({meta['n_images']} slices; "
        f"{meta['n_images_slow']} for {', '.join(SLOW_METHODS)}). Cascading: the "
        f"stage names the block re-initialised last (all above it are too). "
        f"Baseline: the trained maps of two different slices. Pass: below "
        f"{PASS_BELOW} at every stage. SSIM in brackets.",
        "",
        "| method | " + " | ".join(f"cascade: {s}" for s in stages)
        + " | labels | baseline | cascade passes | labels passes |",
        "|---|" + "---|" * (len(stages) + 4),
    ]
    for method in cascade:
        row = cascade[method]
        cells = [f"{row['spearman_mean'][s]:+.2f} ({row['ssim_mean'][s]:.2f})" for s in stages]
        label = labels[method]
        cells.append(f"{label['spearman_mean']['labels']:+.2f} ({label['ssim_mean']['labels']:.2f})")
        cells.append(f"{row['baseline_spearman_mean']:+.2f}")
        cells += ["yes" if row["passes"] else "**no**", "yes" if label["passes"] else "**no**"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--n-images", type=int, default=200)
    parser.add_argument("--n-images-slow", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="for a quick trial; the default pipeline's own when omitted")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    data = load_ct_kidney(args.data, image_size=args.image_size)
    X, y, groups = data.data, data.target_names[data.target], data.groups
    folds = StratifiedGroupKFold(5, shuffle=True, random_state=0).split(X, y, groups)
    train, test = list(folds)[args.fold]
    epochs = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
    pipe = make_pipeline(SMOTE(random_state=0),
                         CKDNetClassifier(random_state=0, precision="bf16", **epochs))
    fit_started = time.perf_counter()
    pipe.fit(X[train], y[train])
    fit_minutes = (time.perf_counter() - fit_started) / 60
    predicted = pipe.predict(X[test])
    print(f"fit {fit_minutes:.1f} min; held-out accuracy {accuracy_score(y[test], predicted):.3f}, "
          f"macro-F1 {f1_score(y[test], predicted, average='macro'):.3f}")

    rng = np.random.RandomState(0)
    explained = held_out_sample(y, test, args.n_images, rng)
    explained_slow = held_out_sample(y, test, args.n_images_slow, rng)
    fast = [m for m in CAM_METHODS if m not in SLOW_METHODS]
    n_images = {**{m: len(explained) for m in fast},
                **{m: len(explained_slow) for m in SLOW_METHODS}}
    results, raw, minutes = {}, {}, {}
    for test_name in ("cascading", "labels"):
        step_started = time.perf_counter()
        options = dict(test=test_name, random_state=0)
        if test_name == "labels":
            options.update(X_train=X[train], y_train=y[train])
        first = randomisation_test(pipe, X[explained], methods=fast, **options)
        if test_name == "labels":  # the slow methods explain the same clone
            options.update(shuffled_estimator=first.shuffled_estimator)
        second = randomisation_test(pipe, X[explained_slow], methods=list(SLOW_METHODS), **options)
        raw[test_name] = first
        results[test_name] = {**summarise(first, n_images), **summarise(second, n_images)}
        minutes[test_name] = (time.perf_counter() - step_started) / 60
        print(f"{test_name}: {minutes[test_name]:.1f} min")

    meta = {
        "image_size": args.image_size,
        "fold": args.fold,
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "test_series": int(len(np.unique(groups[test]))),
        "n_images": int(len(explained)),
        "n_images_slow": int(len(explained_slow)),
        "held_out_accuracy": round(float(accuracy_score(y[test], predicted)), 4),
        "held_out_macro_f1": round(float(f1_score(y[test], predicted, average="macro")), 4),
        "label_clone_train_accuracy": round(raw["labels"].train_accuracy, 4),
        "fit_minutes": round(fit_minutes, 2),
        "test_minutes": {k: round(v, 2) for k, v in minutes.items()},
        "total_minutes": round((time.perf_counter() - started) / 60, 2),
        "cpu_minutes": round(time.process_time() / 60, 2),
        "threads": args.threads,
        "max_epochs": pipe[-1].max_epochs,
        "pass_below": PASS_BELOW,
        "torch": torch.__version__,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"sanity-checks-{args.image_size}px"
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, **results}, indent=2) + "\n")
    table = markdown(results, meta)
    (out / f"{stem}.md").write_text(table)
    print(table)

    from ckdlearn.plotting import plot_randomisation_test

    # The slow methods ran on other slices; the figure shows the fast ones.
    figure = plot_randomisation_test(
        [raw["cascading"], raw["labels"]],
        methods=["gradcam", "gradcam++", "layercam", "eigencam", "eigengradcam", "fullgrad"],
        image_index=int(np.flatnonzero(y[explained] == "Stone")[0]),
    )
    figure.savefig(out / f"{stem}.png", dpi=110)
    print(f"wrote {out / stem}.json, .md and .png in {meta['total_minutes']:.1f} min")


if __name__ == "__main__":
    main()
