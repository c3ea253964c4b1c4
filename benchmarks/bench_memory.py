"""Peak memory of a SMOTE + CKDNetClassifier pipeline fit against the number of slices.

For each n (default 1,000 ... 12,500 slices of 128 x 128 px, synthetic,
in the real class ratio Cyst:Normal:Stone:Tumor = 3709:5077:1377:2283) a
fresh subprocess creates the data, records its baseline, then fits
``make_pipeline(<sampler>, CKDNetClassifier(max_epochs=1, tiny net))`` and
reports:

- **resampled**: bytes of the float32 matrix SMOTE hands the network
  (every class brought up to the majority class), and **model**: bytes
  of the network's parameters and buffers;
- **peak RSS**: growth of the process's peak resident set
  (``ru_maxrss``) over the baseline taken after imports, a warm-up fit on
  100 slices (which maps the kernels' code pages and starts thread pools,
  ~300 MB whatever n is) and data creation;
- **traced peak**: the ``tracemalloc`` peak over the fit (NumPy registers
  its buffers with tracemalloc; torch's own allocations are not traced).

The ratio column is peak RSS / (resampled + model); target <= 1.5, and the
curve should be linear in n.

Two samplers are compared:

``imblearn``
    ``imblearn.over_sampling.SMOTE`` as it is. Its ``_fit_resample``
    keeps a copy of X and every class's new rows in a list and then
    ``np.vstack``\\ s them (two resampled matrices alive at once), and
    builds each class's new rows in float64 (its random steps are float64)
    with four temporaries the size of that block.
``lean``
    :class:`ckdlearn.over_sampling.LeanSMOTE`, a drop-in subclass with bit-identical output
    (checked at start-up): one preallocated output matrix, X copied into it
    once, new rows written in chunks of 256. The lever is chunking into a
    preallocated output; it does not change dtype, sampling strategy or
    results.

Usage::

    python benchmarks/bench_memory.py [--sizes 1000 2500 5000 7500 10000 12500]
                                      [--samplers imblearn lean]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc

import numpy as np
from imblearn.over_sampling import SMOTE

from ckdlearn.over_sampling import LeanSMOTE

from common import CLASS_COUNTS, peak_rss_bytes, random_slices

def worker(n, sampler_name, image_size, width):
    from imblearn.pipeline import make_pipeline

    from ckdlearn import CKDNetClassifier

    def pipeline():
        sampler = {"imblearn": SMOTE, "lean": LeanSMOTE}[sampler_name](random_state=0)
        net = CKDNetClassifier(
            max_epochs=1, module__width=width, module__depth=2, augment=None, random_state=0
        )
        return make_pipeline(sampler, net), net

    # Warm-up on 100 slices: the first fit maps code pages of the torch,
    # oneDNN and BLAS kernels it touches and starts thread pools (~300 MB of
    # RSS whatever n is); that is the libraries' cost, not the data's.
    warm_X, warm_y = random_slices(100, image_size, seed=1, real_ratio=True)
    pipeline()[0].fit(warm_X, warm_y)
    del warm_X, warm_y
    X, y = random_slices(n, image_size, real_ratio=True)
    pipe, net = pipeline()
    _, counts = np.unique(y, return_counts=True)
    resampled_bytes = len(counts) * counts.max() * X.shape[1] * X.itemsize

    baseline = peak_rss_bytes()
    tracemalloc.start()
    start = time.perf_counter()
    pipe.fit(X, y)
    seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth = peak_rss_bytes() - baseline
    model_bytes = sum(t.nbytes for t in net.module_.state_dict().values())
    return {
        "n": n,
        "sampler": sampler_name,
        "input_bytes": X.nbytes,
        "resampled_bytes": int(resampled_bytes),
        "model_bytes": int(model_bytes),
        "rss_peak_growth_bytes": rss_growth,
        "traced_peak_bytes": traced_peak,
        "seconds": seconds,
    }


def check_lean_smote_matches():
    X, y = random_slices(600, 16, real_ratio=True)
    for random_state in (0, np.random.RandomState(3)):
        state_copy = None if isinstance(random_state, int) else np.random.RandomState(3)
        expected = SMOTE(random_state=random_state if state_copy is None else state_copy).fit_resample(X, y)
        found = LeanSMOTE(random_state=random_state, chunk_size=7).fit_resample(X, y)
        np.testing.assert_array_equal(found[0], expected[0])
        np.testing.assert_array_equal(found[1], expected[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2500, 5000, 7500, 10000, 12500])
    parser.add_argument("--samplers", nargs="+", choices=["imblearn", "lean"], default=["imblearn", "lean"])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--width", type=int, default=1, help="CKDNet width (tiny: the memory of interest is data + SMOTE)")
    parser.add_argument("--worker", nargs=2, metavar=("N", "SAMPLER"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    if args.worker:
        n, sampler = int(args.worker[0]), args.worker[1]
        print(json.dumps(worker(n, sampler, args.image_size, args.width)))
        return

    check_lean_smote_matches()
    print(
        f"# SMOTE + CKDNetClassifier(width={args.width}, depth=2, max_epochs=1) pipeline fit, "
        f"{args.image_size}x{args.image_size} px float32, class ratio "
        + ":".join(str(c) for c in CLASS_COUNTS.values())
    )
    print(
        f"# Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}; each row a fresh subprocess"
    )
    print("# command: python benchmarks/bench_memory.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print("# LeanSMOTE output checked bit-identical to imblearn's SMOTE\n")
    print(
        "| sampler | n | input (MB) | resampled (MB) | model (MB) | peak RSS growth (MB) | "
        "traced peak (MB) | peak RSS / (resampled + model) | fit (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    results = []
    for sampler in args.samplers:
        for n in args.sizes:
            command = [
                sys.executable, os.path.abspath(__file__), "--worker", str(n), sampler,
                "--image-size", str(args.image_size), "--width", str(args.width),
            ]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            row = json.loads(output.strip().splitlines()[-1])
            results.append(row)
            mb = 1e6
            print(
                f"| {sampler} | {n} | {row['input_bytes'] / mb:.0f} | {row['resampled_bytes'] / mb:.0f} | "
                f"{row['model_bytes'] / mb:.2f} | {row['rss_peak_growth_bytes'] / mb:.0f} | "
                f"{row['traced_peak_bytes'] / mb:.0f} | "
                f"{row['rss_peak_growth_bytes'] / (row['resampled_bytes'] + row['model_bytes']):.2f} | "
                f"{row['seconds']:.1f} |",
                flush=True,
            )
    for sampler in args.samplers:
        rows = [r for r in results if r["sampler"] == sampler]
        if len(rows) >= 2:
            n = np.array([r["n"] for r in rows], dtype=float)
            peak = np.array([r["rss_peak_growth_bytes"] for r in rows], dtype=float)
            slope, intercept = np.polyfit(n, peak, 1)
            residual = np.max(np.abs(peak - (slope * n + intercept))) / peak.max()
            print(
                f"\n{sampler}: peak RSS growth ~ {slope / 1e3:.1f} kB per slice + {intercept / 1e6:.0f} MB "
                f"(largest deviation from the line: {100 * residual:.1f}% of the largest peak)"
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
