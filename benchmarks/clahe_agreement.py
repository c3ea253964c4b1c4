"""Which CLAHE reproduces the dataset's processing: agreement and speed.

The complete CT KIDNEY DATASET survives as CLAHE (OpenCV ``createCLAHE``,
clip limit 4, 8 x 8 tiles) on the original slice, then a resize to 224 px
(``../shared/data/ct-kidney-full``). The raw development subset
(``../shared/data/ct-kidney``, 256 px) holds 3,879 of the same slices under
the same names. This script applies each candidate CLAHE to every raw slice,
resizes the result to 224 px (Lanczos) and measures the mean absolute
difference to the dataset's own copy in grey levels (0-255), and the time
per slice.

Run from the repository root::

    python benchmarks/clahe_agreement.py            # all 3,879 shared slices
    python benchmarks/clahe_agreement.py --limit 300

Writes ``results/clahe-agreement.json``.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
LAYOUT = "CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone"


def opencv(raw):
    import cv2

    return cv2.createCLAHE(clipLimit=4.0, tileGridSize=(8, 8)).apply(raw)


def kornia(raw):
    import kornia.enhance
    import torch

    image = torch.from_numpy(raw).float().div(255)[None, None]
    out = kornia.enhance.equalize_clahe(image, clip_limit=4.0, grid_size=(8, 8))
    return (out[0, 0].numpy() * 255).round().astype(np.uint8)


def skimage(raw):
    from skimage.exposure import equalize_adapthist

    # scikit-image's clip limit is a share of the tile's pixels; OpenCV's
    # limit of 4 is 4 / 256 of them (it is scaled by pixels per bin).
    out = equalize_adapthist(raw, kernel_size=(raw.shape[0] // 8, raw.shape[1] // 8),
                             clip_limit=4 / 256, nbins=256)
    return (out * 255).round().astype(np.uint8)


def ckdlearn(raw):
    from ckdlearn.preprocessing import clahe

    return clahe(raw)


def none(raw):
    return raw


METHODS = {"none": none, "opencv": opencv, "kornia": kornia, "skimage": skimage,
           "ckdlearn": ckdlearn}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = HERE.parents[1] / "shared" / "data"
    parser.add_argument("--raw", type=Path, default=shared / "ct-kidney" / LAYOUT)
    parser.add_argument("--clahe", type=Path, default=shared / "ct-kidney-full" / LAYOUT)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--methods", nargs="*", default=["none", "opencv", "kornia", "skimage"])
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    pairs = sorted((p, args.clahe / p.relative_to(args.raw)) for p in args.raw.glob("*/*.jpg"))
    pairs = [(raw, ref) for raw, ref in pairs if ref.exists()]
    if args.limit:
        pairs = pairs[:: max(1, len(pairs) // args.limit)][: args.limit]
    differences = {name: [] for name in args.methods}
    seconds = dict.fromkeys(args.methods, 0.0)
    for raw_path, ref_path in pairs:
        raw = np.asarray(Image.open(raw_path).convert("L"))
        reference = np.asarray(Image.open(ref_path).convert("L"), dtype=np.float32)
        for name in args.methods:
            started = time.perf_counter()
            out = METHODS[name](raw)
            seconds[name] += time.perf_counter() - started
            resized = np.asarray(Image.fromarray(out).resize(reference.shape[::-1], Image.LANCZOS),
                                 dtype=np.float32)
            differences[name].append(float(np.abs(resized - reference).mean()))
    summary = {"n_slices": len(pairs)}
    for name in args.methods:
        values = np.asarray(differences[name])
        summary[name] = {
            "mean_abs_difference_median": round(float(np.median(values)), 2),
            "mean_abs_difference_p95": round(float(np.percentile(values, 95)), 2),
            "mean_abs_difference_max": round(float(values.max()), 2),
            "ms_per_slice": round(1000 * seconds[name] / len(pairs), 2),
        }
        print(name, summary[name], flush=True)
    out = HERE / "results" / "clahe-agreement.json"
    out.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
