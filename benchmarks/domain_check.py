"""How often the estimator's domain check catches slices of the other domain.

``CKDNetClassifier`` records the 5th-95th percentile band of its training
images' mean intensity and detail (``domain_profile_``) and warns when a
batch of at least 8 images has both medians outside it. This script
learns the band from half of the complete data's scan groups (CLAHE
domain) and counts, per scan series of 8 slices or more, how often the
warning fires on the other half (false alarms), on the raw development
subset (raw slices given to a CLAHE model: detections), and on the raw
subset brought into the CLAHE domain by ``load_ct_kidney`` (false alarms).
Then the same with a band learnt from raw slices.

Run from the repository root: ``python benchmarks/domain_check.py``.
"""

import numpy as np

import sys
from pathlib import Path

from ckdlearn._input import _domain_profile, _image_statistics
from ckdlearn.datasets import load_ct_kidney

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from recipes import data_root  # noqa: E402


def warned_share(profile, images, groups):
    """Share of series (>= 8 slices) on which the domain warning fires."""
    warned = []
    for series in np.unique(groups):
        in_series = groups == series
        if in_series.sum() < 8:
            continue
        medians = {k: np.median(v) for k, v in _image_statistics(images[in_series]).items()}
        warned.append(all(not profile[k][0] <= medians[k] <= profile[k][2] for k in medians))
    return f"{np.mean(warned):.0%} of {len(warned)} series"


def main():
    full = load_ct_kidney(data_root("ct-kidney-full"), input_domain="clahe", verbose=False)
    raw = load_ct_kidney(data_root("ct-kidney"), domain="raw", verbose=False)
    converted = load_ct_kidney(data_root("ct-kidney"), domain="clahe", verbose=False)
    half = full.groups % 2 == 0
    clahe_profile = _domain_profile(full.images[half])
    print("CLAHE model, held-out CLAHE series (false alarms):",
          warned_share(clahe_profile, full.images[~half], full.groups[~half]))
    print("CLAHE model, raw series (detections):",
          warned_share(clahe_profile, raw.images, raw.groups))
    print("CLAHE model, raw series equalised by the loader (false alarms):",
          warned_share(clahe_profile, converted.images, converted.groups))
    raw_half = raw.groups % 2 == 0
    raw_profile = _domain_profile(raw.images[raw_half])
    print("raw model, CLAHE series (detections):",
          warned_share(raw_profile, full.images, full.groups))
    print("raw model, held-out raw series (false alarms):",
          warned_share(raw_profile, raw.images[~raw_half], raw.groups[~raw_half]))


if __name__ == "__main__":
    main()
