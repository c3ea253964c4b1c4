"""Figure of ``ckdlearn reproduce-paper`` results for the docs.

Reads the JSON that ``ckdlearn reproduce-paper --json FILE`` writes and
draws accuracy, macro-F1 and per-class recall of each protocol side by
side, with the leakage audit of protocol 1's split in the title.

Run from the repository root::

    ckdlearn reproduce-paper --data ../shared/data/ct-kidney \\
        --json benchmarks/results/paper-protocols.json
    python benchmarks/plot_paper_protocols.py benchmarks/results/paper-protocols.json \\
        docs/_static/paper-protocols.png
"""

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LABELS = {
    "1": "1. paper: SMOTE on all,\nrandom slice split, PaperCNN",
    "2": "2. PaperCNN, SMOTE in pipeline,\nscan-series folds",
    "3": "3. CKDNetClassifier default,\nscan-series folds",
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="JSON written by reproduce-paper --json")
    parser.add_argument("figure", help="PNG to write")
    args = parser.parse_args(argv)
    results = json.loads(open(args.results).read())
    protocols = results["protocols"]
    classes = list(next(iter(protocols.values()))["recall"])
    metrics = ["accuracy", "macro-F1"] + [f"recall\n{name}" for name in classes]

    fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
    width = 0.8 / len(protocols)
    x = np.arange(len(metrics))
    for offset, (key, figures) in enumerate(sorted(protocols.items())):
        values = [figures["accuracy"], figures["macro_f1"], *figures["recall"].values()]
        bars = ax.bar(x + (offset - (len(protocols) - 1) / 2) * width, values, width,
                      label=LABELS.get(key, key))
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(x, metrics)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("score on the test images")
    ax.axhline(1 / len(classes), color="grey", lw=0.8, ls=":", label="chance accuracy")
    audit = results["audit"]
    ax.set_title(
        f"Protocol 1's test split: {audit['leaked_fraction']:.1%} of {audit['n_test']:,} test "
        f"images have a near duplicate in training ({audit['n_near']:,} pairs)",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.savefig(args.figure, dpi=120)
    print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
