"""Throughput of CKDNetClassifier.explain against pytorch-grad-cam called directly.

Both sides explain the same images with the same fitted network, layer and
batch size, and must give the same heatmaps; the script checks that before
it reports a ratio. "direct" is pytorch-grad-cam as its README uses it: one
CAM object as a context manager, ``cam(input_tensor=batch, targets=None)``
per batch. "ckdlearn" is ``clf.explain(X, method=..., batch_size=...)`` on
the flat rows a pipeline would hold, so it includes input validation and
the network bookkeeping (eval mode, frozen weights, restore).

Run from the repository root::

    python benchmarks/bench_explain.py                  # the reported setting
    python benchmarks/bench_explain.py --n-images 64 --repeats 2   # quicker

and append the printed Markdown to ``benchmarks/RESULTS_explain.md`` with
``--append``.
"""

import argparse
import platform
import sys
from datetime import date
from pathlib import Path

import numpy as np
import torch

from ckdlearn import CKDNetClassifier
from ckdlearn.explanation import CAM_METHODS

from common import best_of

RESULTS = Path(__file__).with_name("RESULTS_explain.md")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--width", type=int, default=32, help="CKDNet width")
    parser.add_argument("--depth", type=int, default=4, help="CKDNet depth")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument(
        "--methods", default="gradcam",
        help="comma-separated keys of ckdlearn.explanation.CAM_METHODS",
    )
    parser.add_argument("--append", action="store_true", help=f"append the table to {RESULTS.name}")
    return parser.parse_args(argv)


def fitted_classifier(args):
    rng = np.random.RandomState(0)
    X = rng.rand(64, args.size * args.size).astype(np.float32)
    y = np.repeat(["Cyst", "Normal", "Stone", "Tumor"], 16)
    clf = CKDNetClassifier(
        module__width=args.width, module__depth=args.depth, max_epochs=1,
        batch_size=args.batch_size, augment=None, random_state=0, device="cpu",
    )
    return clf.fit(X, y)


def direct(module, images, method, batch_size):
    """pytorch-grad-cam on its own, as its README shows."""
    layer = dict(module.named_modules())[module.cam_layer]
    heatmaps = []
    with CAM_METHODS[method](model=module, target_layers=[layer]) as cam:
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start : start + batch_size])
            heatmaps.append(cam(input_tensor=batch, targets=None))
    return np.concatenate(heatmaps)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    clf = fitted_classifier(args)
    module = clf.module_
    X = np.random.RandomState(1).rand(args.n_images, args.size * args.size).astype(np.float32)
    images = clf.to_images(X)

    rows = []
    for method in methods:
        # Warm-up: first-call allocations and lazy imports count for neither side.
        clf.explain(X[: args.batch_size], method=method, batch_size=args.batch_size)
        direct(module, images[: args.batch_size], method, args.batch_size)
        # Alternate the two sides so that load from other processes hits both.
        ours, theirs = [], []
        for _ in range(args.repeats):
            t, _, ours_maps = best_of(
                lambda: clf.explain(X, method=method, batch_size=args.batch_size), 1, warm_up=False
            )
            ours.append(t)
            t, _, direct_maps = best_of(
                lambda: direct(module, images, method, args.batch_size), 1, warm_up=False
            )
            theirs.append(t)
        np.testing.assert_allclose(ours_maps, direct_maps, rtol=0, atol=1e-5)
        t_ours, t_direct = min(ours), min(theirs)
        rows.append(
            (method, args.n_images / t_ours, args.n_images / t_direct, t_direct / t_ours)
        )

    given = sys.argv[1:] if argv is None else list(argv)
    command = "python benchmarks/bench_explain.py " + " ".join(
        arg for arg in given if arg != "--append"
    )
    lines = [
        f"## {date.today().isoformat()}: {args.n_images} images of {args.size}x{args.size}, "
        f"CKDNet(width={args.width}, depth={args.depth}), batch {args.batch_size}, "
        f"{args.threads} torch threads, best of {args.repeats}",
        "",
        f"`{command.strip()}` (torch {torch.__version__}, Python "
        f"{platform.python_version()}, {platform.machine()})",
        "",
        "| method | ckdlearn (images/s) | direct pytorch-grad-cam (images/s) | ratio ckdlearn/direct |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {m} | {ours:.1f} | {theirs:.1f} | {ratio:.2f} |" for m, ours, theirs, ratio in rows]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.append:
        with RESULTS.open("a") as handle:
            handle.write("\n" + report)
    return rows


if __name__ == "__main__":
    main()
