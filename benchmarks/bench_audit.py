"""Time the leakage audit on a CT-KIDNEY-sized problem.

Compares 3,879 images of 128x128 (the size of the development subset)
with themselves, as ``audit_leakage(X, X)``, and a 5-fold ``audit_cv``.
Synthetic images are used, so the script needs no data; pass ``--real``
to time the real slices as well when the data folder is present.

    python benchmarks/bench_audit.py [--n-images 3879] [--size 128] [--real]
"""

import argparse
import os
import re
from pathlib import Path

import numpy as np

from ckdlearn.model_selection import audit_cv, audit_leakage

from common import SHARED_DATA, best_of, random_slices

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=3879)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--real", action="store_true", help="also time the real slices")
    args = parser.parse_args()

    X, _ = random_slices(args.n_images, args.size)
    print(f"{args.n_images} synthetic images of {args.size}x{args.size}, float32")
    if hasattr(os, "getloadavg"):  # other processes inflate wall times
        print(f"  load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
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
