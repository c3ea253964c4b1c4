"""Tests of ckdlearn.model_selection.infer_scan_groups."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold

from ckdlearn.model_selection import (
    ScanGroupingWarning,
    audit_cv,
    audit_leakage,
    infer_scan_groups,
)

from helpers import SHARED_ROOT, requires_shared_data, skip_message


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


def sharp_series(seed, n_slices, size=32, drift=0.002):
    """A synthetic series of small bright blobs: structure at the scale of
    the thumbnails' pixels, so that a shift of a few pixels matters."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size] / size
    image = np.zeros((size, size))
    for _ in range(8):
        centre = rng.uniform(0.15, 0.85, 2)
        width = rng.uniform(0.03, 0.08)
        image += rng.uniform(0.3, 1.0) * np.exp(
            -((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * width**2)
        )
    image = 0.05 + 0.8 * image / image.max()
    return np.stack([np.clip(image + drift * i, 0, 1) for i in range(n_slices)]).astype(
        np.float32
    )


def shifted(image, dy, dx):
    """Copy of a (H, W) image moved by (dy, dx) pixels, edge pixels repeated
    (as the leakage audit shifts)."""
    pad = max(abs(dy), abs(dx))
    padded = np.pad(image, pad, mode="edge")
    height, width = image.shape
    return padded[pad - dy : pad - dy + height, pad - dx : pad - dx + width]


def restructured(series, amount=0.26, seed=1):
    """A low-contrast copy of ``series`` and that copy with another smooth
    pattern added: a change of ``amount`` 0.26 moves the 16x16 thumbnails
    by a mean absolute difference of about 0.025 (between the two cut
    thresholds), yet it changes the anatomy, not just the brightness, so
    the leakage audit does not call the two near duplicates."""
    pattern = smooth_series(seed, 1, size=series.shape[-1], drift=0)[0]
    base = (0.3 + 0.2 * series).astype(np.float32)
    return base, (base + amount * (pattern - pattern.mean())).astype(np.float32)


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
    first, second = restructured(smooth_series(0, 3, drift=0))
    images = np.concatenate([first, second])
    consecutive = infer_scan_groups(images, names("Tumor", [1, 2, 3, 4, 5, 6]))
    with_gap = infer_scan_groups(images, names("Tumor", [1, 2, 3, 40, 41, 42]))
    assert consecutive.tolist() == [0] * 6
    assert with_gap.tolist() == [0, 0, 0, 1, 1, 1]


def test_thresholds_are_parameters():
    images = np.concatenate(restructured(smooth_series(0, 3, drift=0)))
    filenames = names("Tumor", range(1, 7))
    assert len(set(infer_scan_groups(images, filenames))) == 1
    assert len(set(infer_scan_groups(images, filenames, change_threshold=0.02))) == 2


def test_near_duplicate_series_far_apart_in_numbering_are_merged():
    rng = np.random.default_rng(0)
    series_a = smooth_series(0, 4)
    series_b = smooth_series(1, 4)
    # Slices 100-103 repeat series a with slight noise: the same anatomy
    # under other numbers.
    copy = np.clip(series_a + rng.normal(0, 0.01, series_a.shape), 0, 1)
    images = np.concatenate([series_a, series_b, copy]).astype(np.float32)
    filenames = names("Cyst", [1, 2, 3, 4, 50, 51, 52, 53, 100, 101, 102, 103])
    groups = infer_scan_groups(images, filenames)
    assert groups.tolist() == [0] * 4 + [1] * 4 + [0] * 4
    # The noise lowers the thumbnails' correlation below 1: with a zero
    # threshold only identical thumbnails would merge.
    unmerged = infer_scan_groups(images, filenames, near_threshold=0)
    assert unmerged.tolist() == [0] * 4 + [1] * 4 + [2] * 4


@pytest.mark.parametrize("folder", ["Cyst", "Stone"])
def test_planted_near_duplicate_slice_joins_its_series(folder):
    # One slice of series a exported again, with noise, as file 900 of the
    # same folder or of another one: the audit calls it a near duplicate
    # (distance about 0.11), so it must not form a series of its own. (Its
    # thumbnail differs from the original's by a mean absolute 0.015, more
    # than the 0.01 the merge once used: it was left alone, and leaked.)
    rng = np.random.default_rng(1)
    series_a, series_b = smooth_series(0, 6), smooth_series(1, 6)
    planted = np.clip(series_a[2] + rng.normal(0, 0.04, series_a[2].shape), 0, 1)
    images = np.concatenate([series_a, series_b, planted[None]]).astype(np.float32)
    filenames = names("Cyst", range(1, 13)) + names(folder, [900])
    report = audit_leakage(images[:12].reshape(12, -1), images[12:].reshape(1, -1))
    assert report.n_near >= 1
    groups = infer_scan_groups(images, filenames)
    assert groups.tolist() == [0] * 6 + [1] * 6 + [0]


def test_merge_follows_the_audits_shift_tolerance():
    # A copy shifted by 2 px is a near duplicate only when the audit's
    # shift search reaches 2 px.
    images = np.concatenate([sharp_series(0, 4), sharp_series(1, 4)])
    shifted_copy = shifted(images[1], 0, 2)[None]
    images = np.concatenate([images, shifted_copy])
    filenames = names("Cyst", [1, 2, 3, 4, 20, 21, 22, 23, 700])
    flat = images.reshape(len(images), -1)
    for max_shift in (0, 2):
        near = audit_leakage(flat[:8], flat[8:], max_shift=max_shift).n_near > 0
        groups = infer_scan_groups(images, filenames, max_shift=max_shift)
        assert (groups[8] == groups[1]) == near
    assert infer_scan_groups(images, filenames, max_shift=2)[8] == 0
    assert infer_scan_groups(images, filenames, max_shift=0)[8] == 2


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"near_threshold": 0.05}, {"near_threshold": 0.4}, {"max_shift": 0}, {"max_shift": 2}],
)
def test_groups_never_leak_by_the_audits_definition(kwargs):
    # Many short series, copies of slices (noisy, brighter, shifted) under
    # far-away numbers and in other folders: whatever the audit flags
    # between two slices stays inside one group, for the same settings.
    rng = np.random.default_rng(2)
    series = [sharp_series(seed, int(rng.integers(2, 6))) for seed in range(12)]
    images = list(np.concatenate(series))
    filenames = []
    for index, one in enumerate(series):
        filenames += names(["Cyst", "Tumor"][index % 2], range(10 * index, 10 * index + len(one)))
    for k, source in enumerate(rng.choice(len(images), 8, replace=False)):
        copy = images[source]
        copy = [
            np.clip(copy + rng.normal(0, 0.02, copy.shape), 0, 1),
            np.clip(copy * 0.9 + 0.05, 0, 1),
            shifted(copy, 1, 0),
            copy,
        ][k % 4]
        images.append(copy.astype(np.float32))
        filenames += names(["Cyst", "Tumor", "Stone"][k % 3], [500 + 7 * k])
    images = np.stack(images)
    groups = infer_scan_groups(images, filenames, **kwargs)
    report = audit_leakage(images, images, **kwargs)
    pairs = np.concatenate([report.exact_pairs, report.near_pairs])
    assert len(pairs) > len(images)
    assert np.all(groups[pairs[:, 0]] == groups[pairs[:, 1]])
    for train, test in GroupKFold(n_splits=3).split(images, groups=groups):
        assert not audit_leakage(images[train], images[test], **kwargs).has_leakage


def test_ids_are_unique_across_classes_and_numbered_by_first_appearance():
    images = np.concatenate([smooth_series(0, 3), smooth_series(1, 3), smooth_series(2, 3)])
    filenames = names("Normal", [1, 2, 3]) + names("Cyst", [1, 2, 3]) + names("Stone", [1, 2, 3])
    groups = infer_scan_groups(images, filenames)
    assert groups.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_same_numbers_in_different_folders_are_different_sequences():
    images = np.concatenate([smooth_series(0, 3), smooth_series(5, 3)])
    filenames = names("Cyst", [1, 2, 3]) + names("Tumor", [1, 2, 3])
    groups = infer_scan_groups(images, filenames, near_threshold=0)
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
    # The order by name is a guess, and the grouping says so.
    with pytest.warns(ScanGroupingWarning, match="4 file name.s. carry no slice number"):
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
        # near_threshold and max_shift: the checks and messages of audit_leakage.
        (np.zeros((2, 8, 8)), ["a/1.png", "a/2.png"], {"near_threshold": np.nan}, r"in the range \[0.0, 2.0\]"),
        (np.zeros((2, 8, 8)), ["a/1.png", "a/2.png"], {"near_threshold": 2.5}, "near_threshold"),
        (np.zeros((2, 8, 8)), ["a/1.png", "a/2.png"], {"near_threshold": "0.1"}, "near_threshold"),
        (np.zeros((2, 8, 8)), ["a/1.png", "a/2.png"], {"max_shift": -1}, r"'max_shift' parameter .* must be an int in the range \[0, inf\)"),
        (np.zeros((2, 8, 8)), ["a/1.png", "a/2.png"], {"max_shift": 1.5}, "max_shift"),
        (np.zeros((2, 8, 8)), ["a/1.png", "a/2.png"], {"max_shift": True}, "max_shift"),
        (np.zeros((0, 8, 8)), [], {"max_shift": -1}, "max_shift"),
        (np.zeros((2, 8, 8)), ["a/1.png", "a/2.png"], {"thumbnail_size": 0}, "thumbnail_size"),
        (np.zeros((2, 8, 8)), ["a/1.png", "a/2.png"], {"thumbnail_size": 2.5}, "thumbnail_size"),
    ],
)
def test_invalid_input_raises_a_clear_error(images, filenames, kwargs, match):
    with pytest.raises(ValueError, match=match):
        infer_scan_groups(images, filenames, **kwargs)


def test_shipped_sample_groups_are_reproduced():
    from ckdlearn.datasets import load_ct_kidney_sample

    # The sample's groups were inferred on the full data. From the sample
    # alone (runs of up to 10 slices per series) the same series are found,
    # except where a run is cut in two: never two series in one.
    sample = load_ct_kidney_sample()
    groups = infer_scan_groups(sample.images, sample.filenames)
    for group in np.unique(groups):
        assert len(np.unique(sample.groups[groups == group])) == 1
    assert len(np.unique(groups)) - len(np.unique(sample.groups)) <= 1


# --- On the real shared data ------------------------------------------------


@pytest.fixture(scope="module")
def real_dataset():
    if SHARED_ROOT is None:
        pytest.skip(skip_message())
    from ckdlearn.datasets import load_ct_kidney

    return load_ct_kidney(SHARED_ROOT, image_size=32, domain="raw", verbose=False)


def group_of(dataset, filename):
    return dataset.groups[dataset.filenames.tolist().index(filename)]


@pytest.mark.slow
@requires_shared_data
def test_series_found_per_class_on_real_data(real_dataset):
    groups, target = real_dataset.groups, real_dataset.target
    per_class = {
        name: len(np.unique(groups[target == label]))
        for label, name in enumerate(real_dataset.target_names)
    }
    # Recorded in infer_scan_groups' Notes and benchmarks/RESULTS_loading.md.
    assert per_class == {"Cyst": 28, "Normal": 16, "Stone": 27, "Tumor": 10}
    # No series mixes classes.
    for group in np.unique(groups):
        assert len(np.unique(target[groups == group])) == 1


@pytest.mark.slow
@requires_shared_data
def test_near_duplicates_far_apart_in_the_numbering_share_a_group(real_dataset):
    # Copies of the same anatomy under distant numbers (see the Notes);
    # Stone (290)-(320) and (463)-(500) leaked across folds when the merge
    # used its own, stricter criterion.
    for first, second in [(290, 463), (320, 500), (34, 242)]:
        assert group_of(real_dataset, f"Stone/Stone- ({first}).jpg") == group_of(
            real_dataset, f"Stone/Stone- ({second}).jpg"
        )


@pytest.mark.slow
@requires_shared_data
def test_grouped_cv_leaks_nothing_by_the_audits_definition(real_dataset):
    reports = audit_cv(
        real_dataset.data,
        real_dataset.target,
        real_dataset.groups,
        cv=StratifiedGroupKFold(n_splits=5),
    )
    assert [report.n_leaked_test for report in reports] == [0] * 5


@pytest.mark.slow
@requires_shared_data
def test_slice_level_split_leaks_by_the_audits_definition(real_dataset):
    # The check above has teeth: a random slice-level split leaks.
    split = next(KFold(n_splits=5, shuffle=True, random_state=0).split(real_dataset.data))
    (report,) = audit_cv(real_dataset.data, cv=[split])
    assert report.leaked_fraction > 0.5


@pytest.mark.slow
@requires_shared_data
@pytest.mark.parametrize("image_size", [16, 100])
def test_groups_do_not_depend_on_image_size(real_dataset, image_size):
    from ckdlearn.datasets import load_ct_kidney

    other = load_ct_kidney(SHARED_ROOT, image_size=image_size, classes=["Stone"], domain="raw",
                           verbose=False)
    stone = real_dataset.target_names.tolist().index("Stone")
    assert same_partition(real_dataset.groups[real_dataset.target == stone], other.groups)


# --- when the inferred grouping cannot be trusted ------------------------------------


def test_whole_numbered_series_are_reliable_and_silent():
    images = np.concatenate([smooth_series(seed, 12) for seed in range(4)])
    filenames = names("Cyst", range(1, 49))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        groups, diagnostics = infer_scan_groups(images, filenames, return_diagnostics=True)
    assert len(np.unique(groups)) == 4
    assert diagnostics["reliable"] and diagnostics["reasons"] == []
    assert diagnostics["source"] == "inferred" and diagnostics["n_groups"] == 4
    assert diagnostics["median_slices_per_group"] == 12 and diagnostics["median_number_step"] == 1


def test_every_8th_slice_warns_and_says_why():
    # Subsampled scans: the 120 slices taken every 8th became 93
    # "series" of the real data's 81, silently.
    images = np.concatenate([smooth_series(seed, 40) for seed in range(3)])
    filenames = np.array(names("Cyst", range(1, 121)))
    every_8th = np.arange(0, 120, 8)
    with pytest.warns(ScanGroupingWarning, match=r"typically 8 apart.*Pass the true groups"):
        groups, diagnostics = infer_scan_groups(
            images[every_8th], filenames[every_8th], return_diagnostics=True
        )
    assert not diagnostics["reliable"]
    assert diagnostics["median_number_step"] == 8
    assert len(diagnostics["reasons"]) >= 1
    assert diagnostics["n_groups"] == len(np.unique(groups))


def test_unrelated_files_do_not_silently_become_one_scan():
    # 5 slices of 5 unrelated scans in one folder.
    images = np.concatenate([smooth_series(seed, 1) for seed in range(5)])
    for filenames in (names("upload", range(1, 6)), [f"upload/{c}.png" for c in "vwxyz"]):
        with pytest.warns(ScanGroupingWarning, match="median series holds 1 slice"):
            groups, diagnostics = infer_scan_groups(images, filenames, return_diagnostics=True)
        assert len(np.unique(groups)) == 5
        assert not diagnostics["reliable"]


def test_series_mixing_image_sizes_are_flagged():
    images = np.concatenate([smooth_series(0, 6)])
    sizes = [(512, 512)] * 3 + [(256, 256)] * 3
    with pytest.warns(ScanGroupingWarning, match="1 series mix slices of different image sizes"):
        _, diagnostics = infer_scan_groups(
            images, names("Cyst", range(1, 7)), image_sizes=sizes, return_diagnostics=True
        )
    assert diagnostics["n_image_sizes"] == 2 and not diagnostics["reliable"]



def test_grouping_warnings_point_at_the_users_line(tmp_path):
    # Whichever public function leads there (and through scikit-learn's
    # validate_params wrapper), the warning names the caller's file.
    from PIL import Image

    from ckdlearn.datasets import load_ct_kidney

    rng = np.random.default_rng(0)
    for name in ["Cyst", "Normal"]:
        (tmp_path / name).mkdir()
        for number in range(1, 40, 7):  # sparse numbers: unreliable groups
            Image.fromarray((rng.random((20, 20)) * 255).astype(np.uint8)).save(
                tmp_path / name / f"{name}- ({number}).png")
    with pytest.warns(ScanGroupingWarning) as through_loader:
        load_ct_kidney(tmp_path, image_size=16)
    with pytest.warns(ScanGroupingWarning) as directly:
        infer_scan_groups(rng.random((6, 8, 8)), [f"a{9 * i}.png" for i in range(6)])
    for record in [*through_loader, *directly]:
        if issubclass(record.category, ScanGroupingWarning):
            assert record.filename == __file__, record.filename
