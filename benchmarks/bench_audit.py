"""Time the leakage audit on a CT-KIDNEY-sized problem.

Compares 3,879 images of 128x128 (the size of the development subset)
with themselves, as ``audit_leakage(X, X)``, and a 5-fold ``audit_cv``.
Synthetic images are used, so the script needs no data; pass ``--real``
to time the real slices as well when the data folder is present.
``--neighbors`` instead times the near-pair search alone against
scikit-learn's ``NearestNeighbors(radius=...).radius_neighbors`` on the
same float64 thumbnails (one query per shift, the same float64
refinement), on one thread, and checks that both find the same pairs.

    python benchmarks/bench_audit.py [--n-images 3879] [--size 128] [--real] [--neighbors]
"""

import argparse
import os
import re

import numpy as np

from threadpoolctl import threadpool_limits

from ckdlearn._fingerprints import DEFAULT_NEAR_THRESHOLD, Fingerprints, _SEARCH_SLACK, _blocks, _near_pairs
from ckdlearn.model_selection import audit_cv, audit_leakage

from common import SHARED_DATA, best_of, interleaved_best_of, random_slices

DATA_DIR = SHARED_DATA / "CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone"


def real_images(size):
    from PIL import Image

    paths = sorted(
        DATA_DIR.glob("*/*.jpg"),
        key=lambda path: (path.parent.name, int(re.search(r"\((\d+)\)", path.name).group(1))),
    )
    images = [
        np.asarray(Image.open(path).convert("L").resize((size, size), Image.BILINEAR))
        for path in paths
    ]
    return (np.stack(images).astype(np.float32) / 255.0).reshape(len(images), -1)


def timed(repeats, function):
    wall, cpu, result = best_of(function, repeats, warm_up=False)
    return f"{wall:.2f} s wall, {cpu:.2f} s CPU", result


def sklearn_near_pairs(train_thumbs, shifted, near_threshold):
    """The near-pair search on ``NearestNeighbors.radius_neighbors``, float64.

    Candidates within ``near_threshold`` (plus the same slack) at any shift,
    then the hand-written search's float64 refinement, so the two differ
    only in how candidates are found.
    """
    from sklearn.neighbors import NearestNeighbors

    usable = np.flatnonzero(train_thumbs.any(axis=1))
    anchor_ok = np.flatnonzero(shifted[len(shifted) // 2].any(axis=1))  # flat: matches nothing
    search = NearestNeighbors(radius=near_threshold + _SEARCH_SLACK)
    search.fit(train_thumbs[usable].astype(np.float64))
    keys = []
    for thumbs in shifted:
        found = search.radius_neighbors(thumbs[anchor_ok].astype(np.float64), return_distance=False)
        train = usable[np.concatenate(found).astype(np.int64)]
        test = np.repeat(anchor_ok, [len(row) for row in found])
        keys.append(train * shifted.shape[1] + test)
    keys = np.unique(np.concatenate(keys))
    i, j = keys // shifted.shape[1], keys % shifted.shape[1]
    difference = shifted[:, j].astype(np.float64) - train_thumbs[i]
    distance = np.sqrt(np.einsum("sij,sij->si", difference, difference)).min(axis=0)
    keep = distance <= near_threshold
    return np.column_stack([i[keep], j[keep]]), distance[keep]


def compare_neighbors(X, size, repeats, label):
    """Time the hand-written near-pair search against scikit-learn's, one thread."""
    images = X.reshape(len(X), 1, size, size)
    train = Fingerprints(images, max_shift=1, thumbnail_size=16, shifted=False)
    test = Fingerprints(images, max_shift=1, thumbnail_size=16)

    def hand_written():
        blocks = ((rows, test.shifted[:, rows]) for rows in _blocks(len(test), *test.shifted.shape[::2]))
        return _near_pairs(train.thumbnails, blocks, DEFAULT_NEAR_THRESHOLD)

    def scikit_learn():
        return sklearn_near_pairs(train.thumbnails, test.shifted, DEFAULT_NEAR_THRESHOLD)

    with threadpool_limits(limits=1):
        best = interleaved_best_of({"hand-written": hand_written, "scikit-learn": scikit_learn}, repeats)
        (ours, ours_d), (theirs, theirs_d) = hand_written(), scikit_learn()
    order = np.lexsort((theirs[:, 0], theirs[:, 1]))
    same = np.array_equal(ours, theirs[order]) and np.array_equal(ours_d, theirs_d[order])
    print(f"{label}: near-pair search, 1 thread, best of {repeats}: "
          f"hand-written {best['hand-written']:.3f} s, scikit-learn radius_neighbors "
          f"{best['scikit-learn']:.3f} s (ratio {best['scikit-learn'] / best['hand-written']:.1f}x); "
          f"{len(ours)} pairs, identical pairs and distances: {same}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=3879)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--real", action="store_true", help="also time the real slices")
    parser.add_argument("--neighbors", action="store_true",
                        help="time the near-pair search against scikit-learn's NearestNeighbors")
    args = parser.parse_args()

    X, _ = random_slices(args.n_images, args.size)
    print(f"{args.n_images} synthetic images of {args.size}x{args.size}, float32")
    if hasattr(os, "getloadavg"):  # other processes inflate wall times
        print(f"  load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.neighbors:
        compare_neighbors(X, args.size, args.repeats, "  synthetic")
        if args.real and DATA_DIR.is_dir():
            compare_neighbors(real_images(args.size), args.size, args.repeats, "  real slices")
        return
    for max_shift in (1, 0):
        seconds, report = timed(
            args.repeats, lambda: audit_leakage(X, X, max_shift=max_shift)
        )
        print(
            f"  audit_leakage(X, X, max_shift={max_shift}): {seconds} "
            f"(n_exact={report.n_exact}, n_near={report.n_near})"
        )
    seconds, reports = timed(args.repeats, lambda: audit_cv(X, cv=5))
    print(f"  audit_cv(X, cv=5): {seconds}")

    if args.real:
        if not DATA_DIR.is_dir():
            print(f"  real data not found at {DATA_DIR} (set CKDLEARN_DATA to the folder holding ct-kidney/); skipped")
            return
        X_real = real_images(args.size)
        seconds, report = timed(args.repeats, lambda: audit_leakage(X_real, X_real))
        print(
            f"{len(X_real)} real slices of {args.size}x{args.size}: "
            f"audit_leakage(X, X): {seconds} (n_exact={report.n_exact}, "
            f"n_near={report.n_near})"
        )


if __name__ == "__main__":
    main()
