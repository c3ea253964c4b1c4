"""Speed and memory of ``load_ct_kidney`` on the shared CT KIDNEY slices.

Measures, for the 3,879 development slices at 128 x 128 px:

- slices/s of the whole ``load_ct_kidney`` call (file listing, decoding,
  scan-series groups), of the decoding alone, and of the group inference;
- the same decoding without JPEG draft mode (full 256 px decode, then
  resize, then stack: the usual hand-written loader) as a baseline;
- peak memory: the output arrays' size, the tracemalloc peak of the call
  (NumPy registers its buffers with tracemalloc), and the growth of the
  process's peak resident set size (``ru_maxrss``) during the call.

Every measurement runs in a fresh subprocess, so the resident-set peak is
the call's own and the first run sees the page cache as the last left it.
Timings are the best of ``--repeats`` runs after one warm-up run.

    python benchmarks/bench_loading.py [--image-size 128] [--n-jobs 1 2] [--write]
    python benchmarks/bench_loading.py --validate-groups [--write]

``--write`` appends a dated section to ``benchmarks/RESULTS_loading.md``.
``--validate-groups`` instead checks the inferred scan-series groups: it
finds every pair of near-duplicate slices (16x16 thumbnails, mean absolute
difference <= 0.01) and counts those split across the folds of
``StratifiedGroupKFold(5)`` with the groups and of a slice-level ``KFold(5)``.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS_loading.md"

from common import SHARED_DATA as DEFAULT_ROOT, peak_rss_bytes  # noqa: E402  (after the path constants)


def worker_time(root, image_size, n_jobs, repeats):
    """Time the load, its decoding and its groups; also the no-draft baseline."""
    import numpy as np
    from PIL import Image

    from ckdlearn.datasets import load_ct_kidney, read_images
    from ckdlearn.model_selection import infer_scan_groups

    from common import best_of

    def fastest(function):  # after a warm-up: page cache, lazy imports, threads
        return best_of(function, repeats)[0]

    dataset = load_ct_kidney(root, image_size=image_size, n_jobs=n_jobs, verbose=False)
    paths = [os.path.join(dataset.root, name) for name in dataset.filenames]
    n_slices = len(paths)

    def naive():
        # Full-size decode, resize, then stack: two copies of the output.
        images = []
        for path in paths:
            with Image.open(path) as image:
                grey = image.convert("L")
                small = grey.resize((image_size, image_size), Image.Resampling.BILINEAR)
                images.append(np.asarray(small, dtype=np.float32) / 255)
        return np.stack(images)

    return {
        "n_slices": n_slices,
        "load_s": fastest(
            lambda: load_ct_kidney(root, image_size=image_size, n_jobs=n_jobs, verbose=False)
        ),
        "decode_s": fastest(lambda: read_images(paths, image_size, n_jobs=n_jobs)),
        "groups_s": fastest(lambda: infer_scan_groups(dataset.images, dataset.filenames)),
        "naive_decode_s": fastest(naive) if n_jobs == 1 else None,
    }


def worker_memory(root, image_size, n_jobs):
    """Peak memory of one load: arrays, tracemalloc peak, peak RSS growth."""
    from ckdlearn.datasets import load_ct_kidney

    rss_before = peak_rss_bytes()
    dataset = load_ct_kidney(root, image_size=image_size, n_jobs=n_jobs, verbose=False)
    rss_growth = peak_rss_bytes() - rss_before
    arrays = dataset.images.nbytes  # data is a view of images: counted once
    shared = dataset.data.base is dataset.images
    del dataset

    tracemalloc.start()
    dataset = load_ct_kidney(root, image_size=image_size, n_jobs=n_jobs, verbose=False)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "arrays_bytes": arrays,
        "data_is_view_of_images": shared,
        "traced_peak_bytes": traced_peak,
        "rss_peak_growth_bytes": rss_growth,
        "n_groups": int(dataset.groups.max()) + 1,
        "groups_per_class": {
            str(name): int(len(set(dataset.groups[dataset.target == label].tolist())))
            for label, name in enumerate(dataset.target_names)
        },
    }


def near_duplicate_pairs(images, threshold):
    """All pairs (i < j) of slices whose 16x16 block means differ by <= threshold.

    Exhaustive over pairs, screened exactly: on [0, 1] data the mean squared
    difference and the difference of means are both at most the mean
    absolute difference, so pairs failing either cannot qualify.
    """
    import numpy as np

    n_slices, size, _ = images.shape
    block = size // 16
    thumbs = images.reshape(n_slices, 16, block, 16, block).mean(axis=(2, 4))
    thumbs = thumbs.reshape(n_slices, -1).astype(np.float32)
    squares, means = (thumbs**2).sum(axis=1), thumbs.mean(axis=1)
    pairs = []
    for start in range(0, n_slices, 256):
        rows = slice(start, start + 256)
        mean_square = (squares[rows, None] + squares[None, :] - 2 * thumbs[rows] @ thumbs.T) / 256
        candidate = (mean_square <= threshold + 1e-4) & (
            np.abs(means[rows, None] - means[None, :]) <= threshold + 1e-6
        )
        first, second = np.nonzero(candidate)
        first += start
        upper = second > first
        first, second = first[upper], second[upper]
        close = np.abs(thumbs[first] - thumbs[second]).mean(axis=1) <= threshold
        pairs.append(np.stack([first[close], second[close]], axis=1))
    return np.concatenate(pairs)


def validate_groups(root, threshold=0.01):
    """Markdown section: near-duplicate pairs kept or split by each CV."""
    import numpy as np
    from sklearn.model_selection import KFold, StratifiedGroupKFold

    from ckdlearn.datasets import load_ct_kidney

    dataset = load_ct_kidney(root, image_size=32, verbose=False)
    pairs = near_duplicate_pairs(dataset.images, threshold)
    in_other_group = int(np.sum(dataset.groups[pairs[:, 0]] != dataset.groups[pairs[:, 1]]))

    def leaks(cv, groups):
        split_pairs, test_with_twin, n_test = 0, 0, 0
        for _, test in cv.split(dataset.data, dataset.target, groups):
            in_test = np.zeros(len(dataset.target), dtype=bool)
            in_test[test] = True
            across = in_test[pairs[:, 0]] != in_test[pairs[:, 1]]
            split_pairs += int(across.sum())
            ends = pairs[across]
            test_ends = np.where(in_test[ends[:, 0]], ends[:, 0], ends[:, 1])
            test_with_twin += len(np.unique(test_ends))
            n_test += len(test)
        return split_pairs, test_with_twin, n_test

    rows = []
    for name, cv, groups in [
        ("StratifiedGroupKFold(5) with `groups`",
         StratifiedGroupKFold(5, shuffle=True, random_state=0), dataset.groups),
        ("KFold(5, shuffle=True), slice level", KFold(5, shuffle=True, random_state=0), None),
    ]:
        split_pairs, with_twin, n_test = leaks(cv, groups)
        rows.append(
            f"| {name} | {split_pairs:,} | {with_twin:,} of {n_test:,} "
            f"({with_twin / n_test:.0%}) |"
        )
    sizes = np.bincount(dataset.groups)
    per_class = ", ".join(
        f"{name} {len(np.unique(dataset.groups[dataset.target == label]))}"
        for label, name in enumerate(dataset.target_names)
    )
    return "\n".join(
        [
            f"## {datetime.date.today().isoformat()}: scan-series groups on the "
            f"{len(dataset.target):,} shared slices",
            "",
            "`python benchmarks/bench_loading.py --validate-groups`",
            "",
            f"`infer_scan_groups` (default thresholds) finds {len(sizes)} series: "
            f"{per_class}; {sizes.min()} to {sizes.max()} slices each (median "
            f"{int(np.median(sizes))}). Near-duplicates: {len(pairs):,} pairs of slices "
            f"whose 16x16 thumbnails differ by at most {threshold} (mean absolute "
            f"difference on [0, 1], the largest step between neighbouring slices "
            f"of one series); {in_other_group} of them lie in different groups.",
            "",
            "| cross-validation (5 folds) | near-duplicate pairs split between "
            "train and test, summed over folds | test slices with a near-duplicate "
            "in train, summed over folds |",
            "|---|---:|---:|",
            *rows,
            "",
        ]
    )


def run_worker(kind, args, n_jobs):
    command = [
        sys.executable, __file__, "--worker", kind, "--root", str(args.root),
        "--image-size", str(args.image_size), "--repeats", str(args.repeats),
        "--n-jobs", str(n_jobs),
    ]
    completed = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def mib(n_bytes):
    return f"{n_bytes / 2**20:.1f}"


def report(args, rows):
    import numpy as np
    import PIL

    n_slices = rows[0]["time"]["n_slices"]
    lines = [
        f"## {datetime.date.today().isoformat()}: {n_slices:,} slices at "
        f"{args.image_size}x{args.image_size} px, best of {args.repeats}",
        "",
        f"`python benchmarks/bench_loading.py --image-size {args.image_size} "
        f"--n-jobs {' '.join(map(str, args.n_jobs))} --repeats {args.repeats}` "
        f"(Python {platform.python_version()}, Pillow {PIL.__version__}, NumPy "
        f"{np.__version__}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end)",
        "",
        "| n_jobs | load_ct_kidney (slices/s) | decoding only (slices/s) | groups (s) "
        "| arrays (MiB) | tracemalloc peak (MiB) | peak RSS growth (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        timing, memory = row["time"], row["memory"]
        lines.append(
            f"| {row['n_jobs']} | {n_slices / timing['load_s']:,.0f} "
            f"| {n_slices / timing['decode_s']:,.0f} | {timing['groups_s']:.2f} "
            f"| {mib(memory['arrays_bytes'])} | {mib(memory['traced_peak_bytes'])} "
            f"| {mib(memory['rss_peak_growth_bytes'])} |"
        )
    naive = rows[0]["time"]["naive_decode_s"]
    if naive:
        lines += [
            "",
            f"Baseline without JPEG draft mode (full decode, resize, `np.stack`; "
            f"n_jobs=1): {n_slices / naive:,.0f} slices/s, "
            f"{naive / rows[0]['time']['decode_s']:.1f}x slower than the decoding above.",
        ]
    memory = rows[0]["memory"]
    lines += [
        "",
        f"`data` is a view of `images`: {memory['data_is_view_of_images']}. "
        f"Scan series found: {memory['n_groups']} "
        f"({', '.join(f'{name} {count}' for name, count in memory['groups_per_class'].items())}).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--n-jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--write", action="store_true", help=f"append the results to {RESULTS.name}"
    )
    parser.add_argument(
        "--validate-groups", action="store_true", help="check the groups against near-duplicates"
    )
    parser.add_argument("--worker", choices=["time", "memory"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        n_jobs = args.n_jobs[0]
        if args.worker == "time":
            result = worker_time(args.root, args.image_size, n_jobs, args.repeats)
        else:
            result = worker_memory(args.root, args.image_size, n_jobs)
        print(json.dumps(result))
        return 0

    if not args.root.is_dir():
        sys.exit(f"CT KIDNEY data not found at {args.root}; pass --root.")
    if args.validate_groups:
        text = validate_groups(args.root)
        print(text)
        if args.write:
            with open(RESULTS, "a", encoding="utf-8") as handle:
                handle.write("\n" + text)
            print(f"appended to {RESULTS}")
        return 0
    rows = []
    for n_jobs in args.n_jobs:
        rows.append(
            {
                "n_jobs": n_jobs,
                "memory": run_worker("memory", args, n_jobs),
                "time": run_worker("time", args, n_jobs),
            }
        )
    text = report(args, rows)
    print(text)
    if args.write:
        with open(RESULTS, "a", encoding="utf-8") as handle:
            handle.write("\n" + text)
        print(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
