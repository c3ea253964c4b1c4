"""Train the reference model that ships with ckdlearn (``ckdlearn.load_pretrained()``).

The recipe is the default one (``tools/recipes.py``: what ``ckdlearn train``
fits) on the complete development data (``ct-kidney-full``, CLAHE domain,
96 px), less every scan group the shipped sample was drawn from
(``tools/make_sample.py`` chose them first), so that the demo scores the
model on scans it never saw. Seeded; seeded runs repeat exactly only at
the same number of torch threads.

Calibration: ``--calibrate NAME`` sets the temperature that minimises the
log loss of the out-of-fold answers of the same recipe's grouped
cross-validation (``benchmarks/accuracy_folds.py --name NAME``), leaving
out the sample's scan groups so that the sample still scores the
calibration honestly. The model needs no held-out series of its own.
Cross-fitted across the first two folds (each fold's temperature from the
other's answers) this took the ECE from 0.133 to 0.038.

Run from the repository root::

    python tools/train_reference.py --threads 1     # 66 min on one core beside other work
    python tools/train_reference.py --calibrate default-full

Writes ``ckdlearn/datasets/data/reference_model.ckdl`` and, beside it,
``reference_model.json`` (recipe, seed, data, time, excluded groups).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from recipes import RECIPES, build_recipe, data_root  # noqa: E402

OUTPUT = REPO / "ckdlearn" / "datasets" / "data" / "reference_model.ckdl"


def training_rows(data, sample_filenames):
    """Rows of ``data`` outside every scan group that holds a sample slice."""
    in_sample = np.isin(data.filenames, sample_filenames)
    held_out = np.unique(data.groups[in_sample])
    return np.flatnonzero(~np.isin(data.groups, held_out)), held_out


def train(args):
    import torch

    from ckdlearn import save
    from ckdlearn.datasets import load_ct_kidney, load_ct_kidney_sample

    torch.set_num_threads(args.threads)
    recipe = RECIPES[args.recipe]
    data = load_ct_kidney(args.data, input_domain="clahe", **recipe["load"])
    sample = load_ct_kidney_sample()
    rows, held_out = training_rows(data, sample.filenames)
    y = np.asarray(data.target_names)[data.target]
    print(f"training on {len(rows)} of {len(y)} slices; {len(held_out)} scan groups held out "
          f"for the sample", flush=True)
    model = build_recipe(args.recipe, seed=args.seed)
    started = time.perf_counter()
    model.fit(data.data[rows], y[rows])
    seconds = time.perf_counter() - started
    classifier = model[-1]
    classifier.set_params(verbose=0)
    # The file holds the classifier: SMOTE only ever acts in fit.
    save(classifier, args.output, overwrite=True)
    record = {
        "recipe": args.recipe,
        "recipe_params": recipe["describe"],
        "seed": args.seed,
        "torch_threads": args.threads,
        "data": "ct-kidney-full (development part of the complete CT KIDNEY DATASET, CLAHE domain)",
        "n_training_slices": int(len(rows)),
        "n_training_groups": int(len(np.unique(data.groups[rows]))),
        "held_out_groups_for_sample": int(len(held_out)),
        "fit_seconds": round(seconds, 1),
        "temperature": classifier.temperature_,
        "torch": torch.__version__,
    }
    args.output.with_suffix(".json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))


def calibrate(args):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from accuracy_folds import fit_temperature, fold_path

    from ckdlearn import load, save
    from ckdlearn.datasets import load_ct_kidney, load_ct_kidney_sample

    data = load_ct_kidney(args.data, input_domain="clahe", verbose=False,
                          **RECIPES[args.recipe]["load"])
    _, held_out = training_rows(data, load_ct_kidney_sample().filenames)
    folds = sorted(fold_path(args.calibrate, 0).parent.glob("fold-*.npz"))
    log_proba, y_index = [], []
    for path in folds:
        with np.load(path, allow_pickle=False) as fold:
            keep = ~np.isin(data.groups[fold["test"]], held_out)
            log_proba.append(np.log(np.clip(fold["proba"][keep], 1e-12, None)))
            y = np.asarray(data.target_names)[data.target[fold["test"][keep]]]
            y_index.append(np.searchsorted(fold["classes"], y))
    model = load(args.output)
    model.temperature_ = fit_temperature(np.concatenate(log_proba), np.concatenate(y_index))
    save(model, args.output, overwrite=True)
    record_path = args.output.with_suffix(".json")
    record = json.loads(record_path.read_text())
    record["temperature"] = model.temperature_
    record["temperature_from"] = (
        f"out-of-fold answers of benchmarks/accuracy_folds.py --name {args.calibrate} "
        f"({', '.join(p.stem for p in folds)}), the sample's scan groups left out")
    record_path.write_text(json.dumps(record, indent=2))
    print(f"temperature {model.temperature_:.3f} written to {args.output}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="default", choices=sorted(RECIPES))
    parser.add_argument("--data", default=None, help="default: ct-kidney-full under "
                        "CKDLEARN_DATA or ../shared/data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--calibrate", default=None, metavar="NAME",
                        help="set the temperature from the folds of accuracy_folds.py --name NAME")
    args = parser.parse_args(argv)
    args.data = args.data or str(data_root("ct-kidney-full"))
    if args.calibrate:
        calibrate(args)
    else:
        train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
