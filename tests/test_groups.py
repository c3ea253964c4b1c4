"""Tests of ckdlearn.model_selection.infer_scan_groups."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import KFold, StratifiedGroupKFold

from ckdlearn.model_selection import infer_scan_groups
from ckdlearn.model_selection._groups import _near_duplicate_pairs

SHARED_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct-kidney"
requires_shared_data = pytest.mark.skipif(
    not SHARED_ROOT.is_dir(), reason=f"shared CT KIDNEY data not found at {SHARED_ROOT}"
)

# Two slices are near-duplicates when their 16x16 area-averaged thumbnails
# differ by at most this mean absolute difference on the [0, 1] scale. On the
# shared data, neighbouring slices of one series differ by at most 0.0095
# and slices of different series at a cut by at least 0.02: a pair this
# close is as alike as two neighbours of one scan.
NEAR_DUPLICATE = 0.01


def smooth_series(seed, n_slices, size=32, drift=0.002):
    """A synthetic series: one smooth image drifting slowly slice to slice."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.1, 0.9, (4, 4))
    yy, xx = np.mgrid[0 : 3 : size * 1j, 0 : 3 : size * 1j]
    # Bilinear upsampling of a random 4x4 grid: a smooth, distinctive image.
    y0, x0 = yy.astype(int).clip(0, 2), xx.astype(int).clip(0, 2)
    fy, fx = yy - y0, xx - x0
    image = (
        base[y0, x0] * (1 - fy) * (1 - fx)
        + base[y0 + 1, x0] * fy * (1 - fx)
        + base[y0, x0 + 1] * (1 - fy) * fx
        + base[y0 + 1, x0 + 1] * fy * fx
    )
    return np.stack([np.clip(image + drift * i, 0, 1) for i in range(n_slices)]).astype(
        np.float32
    )


def names(folder, numbers, template="{folder}- ({number}).jpg"):
    return [f"{folder}/" + template.format(folder=folder, number=n) for n in numbers]


def same_partition(a, b):
    return adjusted_rand_score(a, b) == 1.0


def test_consecutive_similar_slices_form_one_series():
    images = smooth_series(0, 6)
    groups = infer_scan_groups(images, names("Cyst", range(1, 7)))
    assert groups.tolist() == [0] * 6
    assert groups.dtype == np.int64


def test_abrupt_change_starts_a_series_even_with_consecutive_numbers():
    images = np.concatenate([smooth_series(0, 4), smooth_series(1, 4)])
    groups = infer_scan_groups(images, names("Cyst", range(1, 9)))
    assert groups.tolist() == [0] * 4 + [1] * 4


def test_numbering_gap_with_similar_images_stays_one_series():
    # Files 4..6 were deleted inside the series: the images still match.
    images = smooth_series(0, 6)
    groups = infer_scan_groups(images, names("Stone", [1, 2, 3, 7, 8, 9]))
    assert groups.tolist() == [0] * 6


def test_numbering_gap_needs_less_change_than_consecutive_numbers():
    # A change between gap_change_threshold and change_threshold cuts only
    # where numbers are missing.
    first = smooth_series(0, 3, drift=0)
    second = np.clip(first + 0.025, 0, 1)
    images = np.concatenate([first, second])
    consecutive = infer_scan_groups(images, names("Tumor", [1, 2, 3, 4, 5, 6]))
    with_gap = infer_scan_groups(images, names("Tumor", [1, 2, 3, 40, 41, 42]))
    assert consecutive.tolist() == [0] * 6
    assert with_gap.tolist() == [0, 0, 0, 1, 1, 1]


def test_thresholds_are_parameters():
    images = np.concatenate([smooth_series(0, 3, drift=0), smooth_series(0, 3, drift=0) + 0.025])
    filenames = names("Tumor", range(1, 7))
    assert len(set(infer_scan_groups(images, filenames))) == 1
    assert len(set(infer_scan_groups(images, filenames, change_threshold=0.02))) == 2


def test_near_duplicate_series_far_apart_in_numbering_are_merged():
    series_a = smooth_series(0, 4)
    series_b = smooth_series(1, 4)
    # Slices 100-103 repeat series a (up to noise): the same anatomy under
    # other numbers.
    images = np.concatenate([series_a, series_b, series_a + 0.003])
    filenames = names("Cyst", [1, 2, 3, 4, 50, 51, 52, 53, 100, 101, 102, 103])
    groups = infer_scan_groups(images, filenames)
    assert groups.tolist() == [0] * 4 + [1] * 4 + [0] * 4
    unmerged = infer_scan_groups(images, filenames, duplicate_threshold=0)
    assert len(set(unmerged)) == 3


def test_ids_are_unique_across_classes_and_numbered_by_first_appearance():
    images = np.concatenate([smooth_series(0, 3), smooth_series(1, 3), smooth_series(2, 3)])
    filenames = names("Normal", [1, 2, 3]) + names("Cyst", [1, 2, 3]) + names("Stone", [1, 2, 3])
    groups = infer_scan_groups(images, filenames)
    assert groups.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_same_numbers_in_different_folders_are_different_sequences():
    images = np.concatenate([smooth_series(0, 3), smooth_series(5, 3)])
    filenames = names("Cyst", [1, 2, 3]) + names("Tumor", [1, 2, 3])
    groups = infer_scan_groups(images, filenames, duplicate_threshold=0)
    assert len(set(groups[:3])) == 1 and len(set(groups[3:])) == 1
    assert groups[0] != groups[3]


def test_order_of_input_does_not_change_the_partition():
    images = np.concatenate([smooth_series(s, 5) for s in range(4)])
    filenames = names("Cyst", range(1, 11)) + names("Stone", [1, 2, 3, 9, 10, 11, 12, 13, 14, 15])
    groups = infer_scan_groups(images, filenames)
    permutation = np.random.default_rng(0).permutation(len(filenames))
    shuffled = infer_scan_groups(images[permutation], [filenames[i] for i in permutation])
    assert same_partition(groups[permutation], shuffled)


def test_flat_uint8_and_float_inputs_agree():
    images = np.concatenate([smooth_series(0, 4), smooth_series(1, 4)])
    filenames = names("Cyst", range(1, 9))
    as_float = infer_scan_groups(images, filenames)
    as_flat = infer_scan_groups(images.reshape(8, -1), filenames)
    as_uint8 = infer_scan_groups(np.rint(images * 255).astype(np.uint8), filenames)
    assert as_float.tolist() == as_flat.tolist() == as_uint8.tolist()


@pytest.mark.parametrize("size", [5, 20, 33, 100])
def test_image_sizes_that_are_not_multiples_of_the_thumbnail(size):
    images = np.concatenate([smooth_series(0, 3, size=size), smooth_series(1, 3, size=size)])
    groups = infer_scan_groups(images, names("Cyst", range(1, 7)))
    assert groups.tolist() == [0, 0, 0, 1, 1, 1]


def test_files_without_numbers_are_ordered_by_name():
    images = np.concatenate([smooth_series(0, 2), smooth_series(1, 2)])
    filenames = ["scan/a.png", "scan/b.png", "scan/c.png", "scan/d.png"]
    assert infer_scan_groups(images, filenames).tolist() == [0, 0, 1, 1]


def test_empty_input():
    groups = infer_scan_groups(np.zeros((0, 8, 8)), [])
    assert groups.shape == (0,) and groups.dtype == np.int64


@pytest.mark.parametrize(
    "images, filenames, kwargs, match",
    [
        (np.zeros((3, 8, 8)), ["a/1.png", "a/2.png"], {}, "3 slices but filenames has 2"),
        (np.zeros((2, 10)), ["a/1.png", "a/2.png"], {}, "not a square number"),
        (np.zeros((2, 4, 4, 3)), ["a/1.png", "a/2.png"], {}, "shape"),
        (np.zeros(4), ["a/1.png"] * 4, {}, "shape"),
        (np.zeros((2, 8, 8)), ["a/1.png", "a/2.png"], {"change_threshold": -1}, "change"),
        (np.zeros((2, 8, 8)), ["a/1.png", "a/2.png"], {"duplicate_threshold": np.nan}, "dupl"),
        (np.zeros((2, 8, 8)), ["a/1.png", "a/2.png"], {"thumbnail_size": 0}, "thumbnail_size"),
        (np.zeros((2, 8, 8)), ["a/1.png", "a/2.png"], {"thumbnail_size": 2.5}, "thumbnail_size"),
    ],
)
def test_invalid_input_raises_a_clear_error(images, filenames, kwargs, match):
    with pytest.raises(ValueError, match=match):
        infer_scan_groups(images, filenames, **kwargs)


@pytest.mark.parametrize("seed", range(3))
def test_pruned_near_duplicate_search_is_exact(seed):
    rng = np.random.default_rng(seed)
    # Clusters of close thumbnails plus noise, so pairs lie on both sides of
    # the threshold and across the search's blocks.
    centres = rng.uniform(0, 1, (40, 16, 16)).astype(np.float32)
    thumbnails = centres[rng.integers(0, 40, 700)]
    noise = rng.uniform(0.002, 0.014, (len(thumbnails), 1, 1))
    thumbnails = np.clip(thumbnails + noise * rng.standard_normal(thumbnails.shape), 0, 1)
    thumbnails = thumbnails.astype(np.float32)
    threshold = 0.01
    found = set()
    for rows, cols in _near_duplicate_pairs(thumbnails, threshold):
        found |= {(min(i, j), max(i, j)) for i, j in zip(rows.tolist(), cols.tolist())}
    flat = thumbnails.reshape(len(thumbnails), -1)
    expected = set()
    for i in range(len(flat)):
        distance = np.abs(flat[i + 1 :] - flat[i]).mean(axis=1)
        expected |= {(i, i + 1 + j) for j in np.flatnonzero(distance <= threshold).tolist()}
    assert len(expected) > 100
    assert found == expected


def test_shipped_sample_groups_are_reproduced():
    from ckdlearn.datasets import load_ct_kidney_sample

    # The sample's groups were inferred on the full data; its whole series
    # are found again from the sample alone.
    sample = load_ct_kidney_sample()
    groups = infer_scan_groups(sample.images, sample.filenames)
    assert same_partition(groups, sample.groups)


# --- On the real shared data ------------------------------------------------


@pytest.fixture(scope="module")
def real_dataset():
    if not SHARED_ROOT.is_dir():
        pytest.skip(f"shared CT KIDNEY data not found at {SHARED_ROOT}")
    from ckdlearn.datasets import load_ct_kidney

    return load_ct_kidney(SHARED_ROOT, image_size=32, verbose=False)


def thumbnails_16(images):
    """16x16 block means of (n, 32, 32) images, written independently of the library."""
    n_slices, size, _ = images.shape
    block = size // 16
    return images.reshape(n_slices, 16, block, 16, block).mean(axis=(2, 4)).reshape(n_slices, -1)


def near_duplicate_pairs_brute_force(images, threshold=NEAR_DUPLICATE, chunk=256):
    """All pairs (i < j) with 16x16 mean absolute difference <= threshold.

    Every pair is screened with two lower bounds of the mean absolute
    difference: the difference of the thumbnails' means, and (on [0, 1]
    data, where |d| >= d**2) the mean squared difference, from one matrix
    product. The survivors are checked exactly.
    """
    thumbs = thumbnails_16(images).astype(np.float32)
    squares = (thumbs**2).sum(axis=1)
    means = thumbs.mean(axis=1)
    n_pixels = thumbs.shape[1]
    first, second = [], []
    for start in range(0, len(thumbs), chunk):
        block = thumbs[start : start + chunk]
        square_sums = squares[start : start + chunk, None] + squares[None, :]
        mean_square = (square_sums - 2 * block @ thumbs.T) / n_pixels
        # The tolerance covers float32 rounding of the expanded square.
        candidate = (mean_square <= threshold + 1e-4) & (
            np.abs(means[start : start + chunk, None] - means[None, :]) <= threshold + 1e-6
        )
        rows, cols = np.nonzero(candidate)
        rows += start
        keep = cols > rows
        rows, cols = rows[keep], cols[keep]
        exact = np.abs(thumbs[rows] - thumbs[cols]).mean(axis=1) <= threshold
        first.append(rows[exact])
        second.append(cols[exact])
    return np.concatenate(first), np.concatenate(second)


@pytest.fixture(scope="module")
def real_near_duplicates(real_dataset):
    return near_duplicate_pairs_brute_force(real_dataset.images)


@requires_shared_data
def test_series_found_per_class_on_real_data(real_dataset):
    groups, target = real_dataset.groups, real_dataset.target
    per_class = {
        name: len(np.unique(groups[target == label]))
        for label, name in enumerate(real_dataset.target_names)
    }
    # Recorded in infer_scan_groups' Notes and benchmarks/RESULTS_loading.md.
    assert per_class == {"Cyst": 28, "Normal": 16, "Stone": 28, "Tumor": 10}
    # No series mixes classes.
    for group in np.unique(groups):
        assert len(np.unique(target[groups == group])) == 1


@requires_shared_data
def test_grouped_cv_keeps_near_duplicates_on_one_side(real_dataset, real_near_duplicates):
    first, second = real_near_duplicates
    # Most near-duplicate pairs are neighbours in a series; some lie in
    # series far apart in the numbering, which the grouping had to merge.
    assert len(first) > 10_000
    cv = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    for train, test in cv.split(real_dataset.data, real_dataset.target, real_dataset.groups):
        in_test = np.zeros(len(real_dataset.target), dtype=bool)
        in_test[test] = True
        assert not np.any(in_test[first] != in_test[second])


@requires_shared_data
def test_slice_level_split_leaks_near_duplicates(real_dataset, real_near_duplicates):
    # The check above has teeth: a random slice-level split leaks.
    first, second = real_near_duplicates
    train, test = next(KFold(n_splits=5, shuffle=True, random_state=0).split(real_dataset.data))
    in_test = np.zeros(len(real_dataset.target), dtype=bool)
    in_test[test] = True
    assert np.sum(in_test[first] != in_test[second]) > 1_000


@requires_shared_data
@pytest.mark.parametrize("image_size", [16, 100])
def test_groups_do_not_depend_on_image_size(real_dataset, image_size):
    from ckdlearn.datasets import load_ct_kidney

    other = load_ct_kidney(SHARED_ROOT, image_size=image_size, classes=["Stone"], verbose=False)
    stone = real_dataset.target_names.tolist().index("Stone")
    assert same_partition(real_dataset.groups[real_dataset.target == stone], other.groups)
