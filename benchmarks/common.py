"""What the benchmark scripts share: timers, peak memory, synthetic slices.

Imported by the scripts in this folder (run them from the repository root,
``python benchmarks/<script>.py``), not part of the ckdlearn package.
"""

import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# The folder of datasets: $CKDLEARN_DATA, else the repository's ../shared/data.
DATA_HOME = HERE.parents[1] / "shared" / "data"


def data_folder(name="ct-kidney"):
    """A dataset's folder under $CKDLEARN_DATA (or ../shared/data), for --data defaults."""
    from ckdlearn.datasets import local_data_folder

    return local_data_folder(name, default=DATA_HOME) or DATA_HOME / name


SHARED_DATA = data_folder()
# Slices per class in the 12,446-slice full CT KIDNEY DATASET, for data of
# the real class ratio.
CLASS_COUNTS = {"Cyst": 3709, "Normal": 5077, "Stone": 1377, "Tumor": 2283}


def best_of(function, repeats, *, warm_up=True):
    """Best wall and CPU seconds of ``repeats`` runs, and the last result.

    The best run is the one other processes disturbed least; CPU time adds
    up all threads. One untimed run first warms caches and lazy imports.
    """
    if warm_up:
        function()
    wall, cpu, result = [], [], None
    for _ in range(repeats):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        result = function()
        wall.append(time.perf_counter() - wall_start)
        cpu.append(time.process_time() - cpu_start)
    return min(wall), min(cpu), result


def interleaved_best_of(sides, repeats):
    """Each callable's best seconds, timed in alternating rounds (A B, B A, ...).

    Alternating keeps load from other processes from hitting one side more
    than the other; every side runs once untimed first.
    """
    for function in sides.values():
        function()
    best = dict.fromkeys(sides, float("inf"))
    order = list(sides.items())
    for round_index in range(repeats):
        for name, function in order if round_index % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def peak_rss_bytes():
    """The process's peak resident set size so far (``ru_maxrss``), in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # KiB on Linux


def random_slices(n, image_size, *, seed=0, real_ratio=False, n_classes=4):
    """``n`` random float32 "slices", flattened as ckdlearn takes them, and labels.

    Labels cycle through ``n_classes`` integers, or with ``real_ratio``
    follow the dataset's class ratio (as class names).
    """
    X = np.random.default_rng(seed).random((n, image_size * image_size), dtype=np.float32)
    if not real_ratio:
        return X, np.arange(n) % n_classes
    counts = np.array(list(CLASS_COUNTS.values()), dtype=float)
    per_class = np.floor(counts / counts.sum() * n).astype(int)
    per_class[np.argmax(counts)] += n - per_class.sum()
    return X, np.repeat(np.array(list(CLASS_COUNTS)), per_class)
