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
import time
from pathlib import Path

import numpy as np

from ckdlearn.model_selection import audit_cv, audit_leakage

DATA_DIR = (
    Path(__file__).resolve().parents[2]
    / "shared" / "data" / "ct-kidney" / "CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone"
)


def synthetic_images(n_images, size, seed=0):
    """Random images in [0, 1], float32, flattened as ckdlearn passes them."""
    rng = np.random.default_rng(seed)
    return rng.random((n_images, size * size), dtype=np.float32)


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


def best_of(repeats, function):
    """Best wall and CPU time of a few runs: the least disturbed by other
    processes. CPU time adds up all threads (BLAS uses several)."""
    wall_times, cpu_times, result = [], [], None
    for _ in range(repeats):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        result = function()
        wall_times.append(time.perf_counter() - wall_start)
        cpu_times.append(time.process_time() - cpu_start)
    return f"{min(wall_times):.2f} s wall, {min(cpu_times):.2f} s CPU", result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=3879)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--real", action="store_true", help="also time the real slices")
    args = parser.parse_args()

    X = synthetic_images(args.n_images, args.size)
    print(f"{args.n_images} synthetic images of {args.size}x{args.size}, float32")
    if hasattr(os, "getloadavg"):  # other processes inflate wall times
        print(f"  load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for max_shift in (1, 0):
        seconds, report = best_of(
            args.repeats, lambda: audit_leakage(X, X, max_shift=max_shift)
        )
        print(
            f"  audit_leakage(X, X, max_shift={max_shift}): {seconds} "
            f"(n_exact={report.n_exact}, n_near={report.n_near})"
        )
    seconds, reports = best_of(args.repeats, lambda: audit_cv(X, cv=5))
    print(f"  audit_cv(X, cv=5): {seconds}")

    if args.real:
        if not DATA_DIR.is_dir():
            print(f"  real data not found at {DATA_DIR}; skipped")
            return
        X_real = real_images(args.size)
        seconds, report = best_of(args.repeats, lambda: audit_leakage(X_real, X_real))
        print(
            f"{len(X_real)} real slices of {args.size}x{args.size}: "
            f"audit_leakage(X, X): {seconds} (n_exact={report.n_exact}, "
            f"n_near={report.n_near})"
        )


if __name__ == "__main__":
    main()
