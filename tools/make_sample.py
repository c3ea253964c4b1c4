"""Rebuild the CT KIDNEY sample shipped in ckdlearn/datasets/data.

The sample is the held-out part of the reference model's data: ``--per-class``
scan groups of each class of the complete development data
(``ct-kidney-full``, CLAHE domain, groups as found by infer_scan_groups),
drawn with a fixed seed among the groups of typical size, each cut to a run
of at most ``--per-series`` consecutive slices from its middle.
``tools/train_reference.py`` leaves every slice of these groups out, so the
demo scores the reference model on scans it never saw. Slices are stored as
uint8 at ``--image-size`` pixels in a compressed .npz, with their domain.

Usage (from the repository root)::

    python tools/make_sample.py                    # uses ../shared/data/ct-kidney-full
    python tools/make_sample.py --root PATH --check # verify the shipped file

The selection and the arrays are deterministic; the .npz bytes differ
between runs only by zip timestamps. ``--check`` compares the arrays of
the shipped file with a fresh build and exits non-zero on a difference.
"""

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from ckdlearn.datasets import load_ct_kidney

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "ct-kidney-full"
DEFAULT_OUTPUT = REPO / "ckdlearn" / "datasets" / "data" / "ct_kidney_sample.npz"


def select_groups(groups, target, *, per_class, seed=0, smallest=10, largest=130):
    """``per_class`` scan groups of each class, drawn among those of typical size."""
    rng = np.random.RandomState(seed)
    chosen = []
    for label in np.unique(target):
        ids, sizes = np.unique(groups[target == label], return_counts=True)
        typical = ids[(sizes >= smallest) & (sizes <= largest)]
        chosen.extend(sorted(rng.choice(typical, size=per_class, replace=False).tolist()))
    return np.asarray(chosen)


def select_slices(groups, *, per_series, among=None):
    """Indices of at most ``per_series`` consecutive middle slices of each series."""
    chosen = []
    for group in np.unique(groups) if among is None else among:
        rows = np.flatnonzero(groups == group)
        start = max(0, (len(rows) - per_series) // 2)
        chosen.extend(rows[start : start + per_series])
    return np.sort(np.asarray(chosen))


def build(root, *, image_size, per_series, per_class):
    dataset = load_ct_kidney(root, image_size=image_size, input_domain="clahe", verbose=False)
    # One series must not hold two classes, or "whole series per class"
    # would be ill-defined.
    for group in np.unique(dataset.groups):
        assert len(np.unique(dataset.target[dataset.groups == group])) == 1
    held_out = select_groups(dataset.groups, dataset.target, per_class=per_class)
    keep = select_slices(dataset.groups, per_series=per_series, among=held_out)
    # Renumber series 0, 1, ... in order of first appearance.
    _, first, inverse = np.unique(dataset.groups[keep], return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return {
        "images": np.rint(dataset.images[keep] * 255).astype(np.uint8),
        "target": dataset.target[keep].astype(np.int8),
        "target_names": np.asarray(dataset.target_names, dtype=str),
        "filenames": np.asarray(dataset.filenames[keep], dtype=str),
        "groups": rank[inverse].astype(np.int16),
        "domain": np.asarray("clahe"),
    }


def digest(arrays):
    sha = hashlib.sha256()
    for name in sorted(arrays):
        sha.update(name.encode())
        sha.update(np.ascontiguousarray(arrays[name]).tobytes())
    return sha.hexdigest()[:16]


def summary(arrays):
    lines = []
    for label, name in enumerate(arrays["target_names"]):
        in_class = arrays["target"] == label
        series = np.unique(arrays["groups"][in_class])
        lines.append(f"  {name:<7} {in_class.sum():4d} slices in {len(series)} series")
    lines.append(f"  total   {len(arrays['target']):4d} slices, arrays sha256 {digest(arrays)}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="CT KIDNEY DATASET folder")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument(
        "--per-series", type=int, default=30, help="consecutive slices kept of each series, at most"
    )
    parser.add_argument("--per-class", type=int, default=4, help="scan groups held out per class")
    parser.add_argument(
        "--check", action="store_true", help="compare with --output instead of writing it"
    )
    args = parser.parse_args(argv)

    arrays = build(args.root, image_size=args.image_size, per_series=args.per_series,
                   per_class=args.per_class)
    print(summary(arrays))
    if args.check:
        with np.load(args.output, allow_pickle=False) as shipped:
            same = set(shipped.files) == set(arrays) and all(
                np.array_equal(shipped[name], arrays[name]) for name in arrays
            )
        print(f"{args.output}: {'identical' if same else 'DIFFERENT'}")
        return 0 if same else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **arrays)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
