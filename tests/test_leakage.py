"""Tests for the leakage audit (ckdlearn.model_selection._leakage)."""

import json
import re

import numpy as np
import pytest
from scipy import sparse
from sklearn.model_selection import GroupKFold, KFold

from ckdlearn.model_selection import LeakageReport, audit_cv, audit_leakage
from ckdlearn._fingerprints import Fingerprints, duplicate_pairs, duplicate_pairs_within

from helpers import REAL_DATA, skip_message


def smooth_images(n_images, size=64, seed=0):
    """Images made of a few Gaussian blobs: structure at every scale, like
    anatomy, rather than pixel noise (which has no thumbnail-scale shape)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size] / size
    images = np.zeros((n_images, size, size))
    for image in images:
        for _ in range(6):
            centre = rng.uniform(0.15, 0.85, 2)
            width = rng.uniform(0.05, 0.2)
            image += rng.uniform(0.3, 1.0) * np.exp(
                -((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * width**2)
            )
    images /= images.max(axis=(1, 2), keepdims=True)
    return (0.05 + 0.9 * images).astype(np.float32)


def shifted(image, dy, dx):
    """Copy of a (H, W) image moved by (dy, dx) pixels, edge pixels repeated."""
    padded = np.pad(image, 2, mode="edge")
    height, width = image.shape
    return padded[2 - dy : 2 - dy + height, 2 - dx : 2 - dx + width]


def flat(images):
    return images.reshape(len(images), -1)


# --------------------------------------------------------------------------
# Exact and near duplicates


def test_exact_duplicates_found_with_their_indices():
    images = smooth_images(12)
    X_train = flat(images[:8])
    X_test = flat(np.stack([images[8], images[3], images[9], images[7], images[3]]))

    report = audit_leakage(X_train, X_test)

    assert isinstance(report, LeakageReport)
    np.testing.assert_array_equal(report.exact_pairs, [[3, 1], [7, 3], [3, 4]])
    assert report.n_exact == 3
    assert report.n_near == 0, "exact pairs must not be repeated as near pairs"
    np.testing.assert_array_equal(report.leaked_test_indices, [1, 3, 4])
    assert report.leaked_fraction == pytest.approx(3 / 5)
    assert report.has_leakage


def test_exact_match_is_on_float32_values():
    images = flat(smooth_images(4))
    as_float64 = images.astype(np.float64)
    report = audit_leakage(images, as_float64)
    assert report.n_exact == 4

    zeros = np.zeros((1, 64), dtype=np.float32)
    report = audit_leakage(zeros, -zeros)  # -0.0 equals 0.0
    assert report.n_exact == 1


def test_uint8_images_are_audited_like_floats():
    images = smooth_images(6)
    as_uint8 = np.round(images * 255).astype(np.uint8)
    noisy = np.clip(as_uint8[:3].astype(int) + 3, 0, 255).astype(np.uint8)
    report = audit_leakage(flat(as_uint8), flat(np.concatenate([as_uint8[4:], noisy])))
    np.testing.assert_array_equal(report.exact_pairs, [[4, 0], [5, 1]])
    np.testing.assert_array_equal(report.near_pairs, [[0, 2], [1, 3], [2, 4]])


def test_uint8_and_bool_images_with_shifts():
    images = smooth_images(6)
    as_uint8 = np.round(images * 255).astype(np.uint8)
    moved = np.stack([shifted(image, 1, -1) for image in as_uint8[:3]])
    report = audit_leakage(as_uint8, moved)
    np.testing.assert_array_equal(report.near_pairs, [[0, 0], [1, 1], [2, 2]])
    as_float = audit_leakage(as_uint8 / 255.0, moved / 255.0)
    # Distances near 0 come from float32 correlations close to 1.
    np.testing.assert_allclose(report.near_distances, as_float.near_distances, atol=1e-3)

    masks = images > 0.5
    report = audit_leakage(masks, np.stack([shifted(mask, 1, 0) for mask in masks[:2]]))
    np.testing.assert_array_equal(report.near_pairs, [[0, 0], [1, 1]])


NEAR_COPIES = {
    "gaussian noise 0.02": lambda image, rng: image + rng.normal(0, 0.02, image.shape),
    "gaussian noise 0.05": lambda image, rng: image + rng.normal(0, 0.05, image.shape),
    "shift right 1 px": lambda image, rng: shifted(image, 0, 1),
    "shift up 1 px": lambda image, rng: shifted(image, -1, 0),
    "shift diagonal 1 px": lambda image, rng: shifted(image, 1, -1),
    "brighter by 0.05": lambda image, rng: image + 0.05,
    "contrast 0.9": lambda image, rng: 0.9 * image,
    "gamma 1.2": lambda image, rng: image**1.2,
    "shift, noise and brightness": lambda image, rng: shifted(image, 1, 1)
    + rng.normal(0, 0.02, image.shape)
    + 0.03,
}


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("change", list(NEAR_COPIES))
def test_near_duplicates_found(change, size):
    rng = np.random.default_rng(1)
    images = smooth_images(10, size=size)
    copies = np.stack([np.clip(NEAR_COPIES[change](image, rng), 0, 1) for image in images[:3]])
    X_test = flat(np.concatenate([copies, images[6:]]).astype(np.float32))

    report = audit_leakage(flat(images[:6]), X_test)

    assert report.n_exact == 0
    np.testing.assert_array_equal(report.near_pairs, [[0, 0], [1, 1], [2, 2]])
    assert np.all(report.near_distances <= report.near_threshold)
    np.testing.assert_array_equal(report.leaked_test_indices, [0, 1, 2])


def test_distinct_images_are_not_flagged():
    images = smooth_images(120, seed=3)
    report = audit_leakage(flat(images[:80]), flat(images[80:]))
    assert report.n_exact == 0
    assert report.n_near == 0
    assert report.leaked_fraction == 0.0
    assert not report.has_leakage


def test_random_noise_images_are_not_flagged():
    rng = np.random.default_rng(0)
    report = audit_leakage(rng.random((50, 1024)), rng.random((50, 1024)))
    assert (report.n_exact, report.n_near) == (0, 0)


def test_max_shift_sets_the_tolerated_offset():
    images = smooth_images(4)
    moved = np.stack([shifted(image, 2, 2) for image in images])
    assert audit_leakage(flat(images), flat(moved), max_shift=2).n_near == 4
    assert audit_leakage(flat(images), flat(moved), max_shift=0).n_near == 0


@pytest.mark.bitwise
def test_threshold_zero_keeps_only_identical_thumbnails():
    images = smooth_images(5)
    noisy = images + np.random.default_rng(0).normal(0, 0.02, images.shape)
    report = audit_leakage(flat(images), flat(noisy.astype(np.float32)), near_threshold=0.0)
    assert report.n_near == 0


def test_constant_images_match_only_exactly():
    black = np.zeros((2, 256), dtype=np.float32)
    grey = np.full((1, 256), 0.5, dtype=np.float32)
    report = audit_leakage(black[:1], np.concatenate([black[1:], grey]))
    np.testing.assert_array_equal(report.exact_pairs, [[0, 0]])
    assert report.n_near == 0


# --------------------------------------------------------------------------
# The shared pair search (ckdlearn._fingerprints), also used by infer_scan_groups


def duplicate_rich_images(size=64):
    """Images with every kind of pair: near copies (noise, shifts, brightness,
    pairs near the threshold), exact copies of structured and of constant
    images, and unrelated images."""
    rng = np.random.default_rng(7)
    images = list(smooth_images(40, size=size, seed=11))
    for k, source in enumerate(rng.choice(40, 60)):
        change = list(NEAR_COPIES.values())[k % len(NEAR_COPIES)]
        noise = rng.uniform(0.01, 0.12)  # some copies near the threshold
        copy = change(images[source], rng) + rng.normal(0, noise, (size, size))
        images.append(np.clip(copy, 0, 1))
    images += [images[3], images[3], np.zeros((size, size)), np.zeros((size, size))]
    images += [np.full((size, size), 0.5)]
    return np.stack(images).astype(np.float32)[:, None]


def pair_set(pairs):
    return set(map(tuple, np.asarray(pairs).tolist()))


def self_audit_pairs(images, **kwargs):
    """Unordered off-diagonal pairs that audit_leakage(X, X) flags in either
    direction: exact and near."""
    report = audit_leakage(images, images, **kwargs)
    found = []
    for pairs in (report.exact_pairs, report.near_pairs):
        found.append({(min(i, j), max(i, j)) for i, j in pair_set(pairs) if i != j})
    return found


def within(images, **kwargs):
    settings = {"max_shift": 1, "thumbnail_size": 16, **kwargs}
    threshold = settings.pop("near_threshold", 0.15)
    fingerprints = Fingerprints(images, **settings, shifted=False)
    return duplicate_pairs_within(fingerprints, near_threshold=threshold)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"max_shift": 0}, {"max_shift": 2}, {"near_threshold": 0.4}, {"thumbnail_size": 8}],
)
def test_pairs_within_one_set_are_the_self_audits(kwargs):
    images = duplicate_rich_images()
    exact_expected, near_expected = self_audit_pairs(images, **kwargs)
    exact, near, distances = within(images, **kwargs)

    assert pair_set(exact) == exact_expected and len(exact_expected) >= 2
    assert pair_set(near) == near_expected and len(near_expected) > 50
    assert np.all(exact[:, 0] < exact[:, 1]) and np.all(near[:, 0] < near[:, 1])
    assert len(near) == len(pair_set(near))
    assert np.array_equal(near, near[np.lexsort((near[:, 1], near[:, 0]))])
    assert np.all(distances <= kwargs.get("near_threshold", 0.15))


def test_a_pair_has_one_distance_in_every_search():
    """Within one set, between two sets and in any fold, a pair's distance is
    the same to the last bit: it is computed from the two thumbnails alone."""
    images = duplicate_rich_images()
    _, near, distances = within(images)
    whole = dict(zip(map(tuple, near.tolist()), distances))
    rng = np.random.default_rng(0)
    fingerprints = Fingerprints(images, max_shift=1, thumbnail_size=16)
    for _ in range(3):
        order = rng.permutation(len(images))
        train, test = order[:60], order[60:]
        _, pairs, found = duplicate_pairs(
            fingerprints.take(train), fingerprints.take(test), near_threshold=0.15
        )
        both = audit_leakage(images[train], images[test])
        np.testing.assert_array_equal(pairs, both.near_pairs)
        np.testing.assert_array_equal(found, both.near_distances)
        for (i, j), distance in zip(pairs.tolist(), found):
            i, j = train[i], test[j]
            # The within-set distance is the smaller of the two directions.
            assert whole[(min(i, j), max(i, j))] <= distance


@pytest.mark.bitwise
def test_identical_thumbnails_are_at_distance_zero():
    """Different pixels, equal block means: distance exactly 0, on any CPU."""
    rng = np.random.default_rng(0)
    images = np.round(smooth_images(6) * 128) / 128  # sums are exact in float64
    moved = images.copy()
    # Within each 4x4 block (64 px -> 16x16 thumbnails), move some intensity
    # from one pixel to its neighbour: every block mean stays the same.
    rows, cols = rng.integers(0, 16, 40) * 4, rng.integers(0, 16, 40) * 4
    moved[:, rows, cols] += 1 / 128
    moved[:, rows + 1, cols] -= 1 / 128
    report = audit_leakage(images, moved, max_shift=0)
    assert report.n_exact == 0
    np.testing.assert_array_equal(report.near_pairs, [[k, k] for k in range(6)])
    np.testing.assert_array_equal(report.near_distances, 0.0)
    exact_copy = audit_leakage(images[:3], images[:3].copy())
    assert exact_copy.n_exact == 3 and exact_copy.n_near == 0


def test_pairs_between_two_sets_are_the_audits():
    images = duplicate_rich_images()
    train, test = images[::2], images[1::2]
    report = audit_leakage(train, test)
    exact, near, distances = duplicate_pairs(
        Fingerprints(train, max_shift=1, thumbnail_size=16, shifted=False),
        Fingerprints(test, max_shift=1, thumbnail_size=16),
    )
    np.testing.assert_array_equal(exact, report.exact_pairs)
    np.testing.assert_array_equal(near, report.near_pairs)
    np.testing.assert_array_equal(distances, report.near_distances)
    assert report.n_near > 10


def test_a_larger_threshold_finds_a_superset():
    images = duplicate_rich_images()
    _, near, distances = within(images)
    threshold = float(np.sort(distances)[len(distances) // 2])
    strict = within(images, near_threshold=threshold)
    expected = {pair for pair, d in zip(map(tuple, near.tolist()), distances) if d <= threshold}
    assert pair_set(strict[1]) == expected
    assert pair_set(strict[1]) < pair_set(near)


# --------------------------------------------------------------------------
# Input layouts and safety


def test_input_layouts_give_the_same_report():
    images = smooth_images(8, size=32)
    X_test = np.stack([images[1], shifted(images[2], 1, 0), images[7]])
    expected = audit_leakage(flat(images[:6]), flat(X_test))
    assert (expected.n_exact, expected.n_near) == (1, 1)
    for X_train, X_test_layout in [
        (images[:6], X_test),  # (n, H, W)
        (images[:6, None], X_test[:, None]),  # (n, 1, H, W)
        (flat(images[:6]).tolist(), flat(X_test).tolist()),  # nested lists
    ]:
        report = audit_leakage(X_train, X_test_layout)
        np.testing.assert_array_equal(report.exact_pairs, expected.exact_pairs)
        np.testing.assert_array_equal(report.near_pairs, expected.near_pairs)


def test_non_square_images_with_image_shape():
    images = smooth_images(6, size=48)[:, :24, :]  # 24x48
    X = flat(images)
    report = audit_leakage(X[:4], X[[2, 5]], image_shape=(24, 48))
    np.testing.assert_array_equal(report.exact_pairs, [[2, 0]])


def test_multichannel_images():
    images = smooth_images(5, size=16)
    rgb = np.repeat(images[:, None], 3, axis=1)  # (n, 3, H, W)
    report = audit_leakage(rgb[:3], rgb[[1, 4]])
    np.testing.assert_array_equal(report.exact_pairs, [[1, 0]])
    flattened = audit_leakage(flat(rgb[:3]), flat(rgb[[1, 4]]), image_shape=(3, 16, 16))
    np.testing.assert_array_equal(flattened.exact_pairs, [[1, 0]])


def test_inputs_are_not_modified():
    images = smooth_images(10)
    X_train, X_test = flat(images[:6]), flat(images[4:])
    X_train[0, 0] = -0.0  # the canonical cast turns -0.0 into 0.0: on a copy
    train_before, test_before = X_train.copy(), X_test.copy()
    X_train.flags.writeable = False
    X_test.flags.writeable = False

    audit_leakage(X_train, X_test)
    audit_cv(np.concatenate([X_train, X_test]), cv=3)

    np.testing.assert_array_equal(X_train, train_before)
    assert np.signbit(X_train[0, 0]), "-0.0 must stay -0.0 in the caller's array"
    np.testing.assert_array_equal(X_test, test_before)


# --------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "X_train, X_test, kwargs, message",
    [
        (np.zeros((3, 64)), np.zeros((3, 256)), {}, r"X_train holds images of .* but X_test"),
        (np.zeros((3, 8, 8)), np.zeros((3, 8, 9)), {}, r"same way; resize"),
        (np.zeros((0, 64)), np.zeros((3, 64)), {}, r"X_train is empty"),
        (np.zeros((3, 64)), np.zeros((0, 64)), {}, r"X_test is empty"),
        (np.zeros(64), np.zeros((3, 64)), {}, r"got a 1-D array.*X_train\[np.newaxis\]"),
        (np.zeros((3, 50)), np.zeros((3, 50)), {}, r"50 features .* not a square.*image_shape"),
        (np.zeros((3, 64)), np.zeros((3, 64)), {"image_shape": (4, 8)}, r"holds 32 values per image"),
        (np.zeros((3, 8, 8)), np.zeros((3, 8, 8)), {"image_shape": (4, 16)}, r"image_shape"),
        (np.zeros((3, 64)), np.zeros((3, 64)), {"image_shape": (8,)}, r"image_shape must be"),
        (np.zeros((3, 64)), np.zeros((3, 64)), {"image_shape": "8x8"}, r"'image_shape' parameter of audit_leakage must be"),
        (np.zeros((3, 64)), np.zeros((3, 64)), {"near_threshold": -0.1}, r"near_threshold"),
        (np.zeros((3, 64)), np.zeros((3, 64)), {"near_threshold": 3}, r"near_threshold"),
        (np.zeros((3, 64)), np.zeros((3, 64)), {"max_shift": -1}, r"max_shift"),
        (np.zeros((3, 64)), np.zeros((3, 64)), {"max_shift": 1.5}, r"max_shift"),
        (np.zeros((3, 64)), np.zeros((3, 64)), {"thumbnail_size": 1}, r"thumbnail_size"),
    ],
)
def test_invalid_input_raises_a_clear_error(X_train, X_test, kwargs, message):
    with pytest.raises(ValueError, match=message):
        audit_leakage(X_train, X_test, **kwargs)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected_with_their_index(bad_value):
    X_test = np.zeros((4, 64))
    X_test[2, 5] = bad_value
    with pytest.raises(ValueError, match=r"X_test contains NaN or infinity \(image index 2\)"):
        audit_leakage(np.ones((2, 64)), X_test)


def test_sparse_and_non_numeric_input_are_rejected():
    with pytest.raises(TypeError, match="sparse.*toarray"):
        audit_leakage(sparse.csr_matrix(np.eye(4, 16)), np.zeros((2, 16)))
    with pytest.raises(ValueError, match="must hold numbers.*could not convert string"):
        audit_leakage(np.array([["a"] * 16]), np.zeros((2, 16)))
    with pytest.raises(TypeError, match="must hold numbers"):
        audit_leakage(np.array([[{"a": 1}] * 16], dtype=object), np.zeros((2, 16)))


# --------------------------------------------------------------------------
# The report object


def test_report_text_html_and_dict():
    images = smooth_images(6)
    X_test = flat(np.stack([images[0], np.clip(images[1] + 0.03, 0, 1), images[5]]))
    report = audit_leakage(flat(images[:4]), X_test)

    text = str(report)
    assert "2 of 3 test images (66.7%)" in text
    assert "exact duplicates: 1 pairs" in text
    assert "near duplicates:  1 pairs" in text
    assert "groups" in text, "the text should say how to fix the split"
    assert repr(report).startswith("LeakageReport(n_train=4, n_test=3, n_exact=1, n_near=1")

    html = report._repr_html_()
    assert html.startswith("<div>") and "<table>" in html and "LeakageReport" in html

    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["n_exact"] == 1 and as_dict["n_near"] == 1
    assert as_dict["exact_pairs"] == [[0, 0]]
    assert as_dict["near_pairs"] == [[1, 1]]
    assert as_dict["near_threshold"] == report.near_threshold


def test_report_without_leakage_says_so():
    images = smooth_images(4)
    report = audit_leakage(flat(images[:2]), flat(images[2:]))
    assert str(report).startswith("LeakageReport: no exact or near duplicates")
    assert "<table>" not in report._repr_html_()


# --------------------------------------------------------------------------
# audit_cv


def series_data(n_series=8, slices_per_series=4, size=32):
    """Scan series of near-identical slices (small noise), interleaved."""
    rng = np.random.default_rng(0)
    anatomy = smooth_images(n_series, size=size, seed=5)
    slices = anatomy[:, None] + rng.normal(0, 0.01, (n_series, slices_per_series, size, size))
    order = rng.permutation(n_series * slices_per_series)
    X = np.clip(slices, 0, 1).reshape(n_series * slices_per_series, -1)[order]
    groups = np.repeat(np.arange(n_series), slices_per_series)[order]
    y = groups % 2
    return X.astype(np.float32), y, groups


def test_audit_cv_finds_split_series_and_clears_grouped_folds():
    X, y, groups = series_data()
    slice_level = audit_cv(X, cv=KFold(4, shuffle=True, random_state=0))
    assert len(slice_level) == 4
    assert all(report.leaked_fraction > 0.5 for report in slice_level)

    grouped = audit_cv(X, y, groups, cv=4)  # StratifiedGroupKFold
    assert [report.has_leakage for report in grouped] == [False] * 4
    grouped_explicit = audit_cv(X, groups=groups, cv=GroupKFold(4))
    assert not any(report.has_leakage for report in grouped_explicit)


def test_audit_cv_pairs_are_rows_of_X():
    X, _, groups = series_data()
    splits = list(KFold(4, shuffle=True, random_state=0).split(X))
    for (train, test), report in zip(splits, audit_cv(X, cv=splits)):
        assert report.n_train == len(train) and report.n_test == len(test)
        assert np.isin(report.near_pairs[:, 0], train).all()
        assert np.isin(report.near_pairs[:, 1], test).all()
        assert (groups[report.near_pairs[:, 0]] == groups[report.near_pairs[:, 1]]).all()


def test_audit_cv_rejects_misaligned_groups():
    X, y, groups = series_data()
    with pytest.raises(ValueError, match="groups has 31 entries but X has 32 images"):
        audit_cv(X, y, groups[:-1])


# --------------------------------------------------------------------------
# Real CT slices


def _number(path):
    return int(re.search(r"\((\d+)\)", path.name).group(1))


@pytest.fixture(scope="module")
def real_slices():
    """The 75 lowest- and 40 highest-numbered slices of each class, 64 px."""
    if REAL_DATA is None or not REAL_DATA.is_dir():
        pytest.skip(skip_message())
    from PIL import Image

    def load(paths):
        return np.stack(
            [
                np.asarray(Image.open(path).convert("L").resize((64, 64), Image.BILINEAR))
                for path in paths
            ]
        ).astype(np.float32).reshape(len(paths), -1) / 255.0

    first, last = {}, {}
    for label in ("Cyst", "Normal", "Stone", "Tumor"):
        paths = sorted((REAL_DATA / label).glob("*.jpg"), key=_number)
        first[label], last[label] = load(paths[:75]), load(paths[-40:])
    return first, last


def test_real_random_slice_split_leaks(real_slices):
    first, _ = real_slices
    X = np.concatenate(list(first.values()))
    order = np.random.default_rng(0).permutation(len(X))
    cut = int(0.8 * len(X))
    report = audit_leakage(X[order[:cut]], X[order[cut:]])
    # Neighbouring slices of a series land on both sides of a random split.
    assert report.n_near > 100
    assert report.leaked_fraction > 0.8


@pytest.mark.parametrize(
    "train_label, test_label", [("Cyst", "Normal"), ("Normal", "Tumor"), ("Tumor", "Stone")]
)
def test_real_distinct_series_do_not_match(real_slices, train_label, test_label):
    first, last = real_slices
    report = audit_leakage(first[train_label], last[test_label])
    assert (report.n_exact, report.n_near) == (0, 0)


def test_real_planted_duplicates_are_found(real_slices):
    first, last = real_slices
    rng = np.random.default_rng(0)
    originals = first["Cyst"][::15].reshape(-1, 64, 64)  # 5 slices, far apart
    planted = np.stack(
        [
            originals[0],
            np.clip(originals[1] + rng.normal(0, 0.03, (64, 64)), 0, 1),
            shifted(originals[2], 1, 0),
            np.clip(originals[3] + 0.05, 0, 1),
            np.clip(shifted(originals[4], 0, -1) * 0.95 + 0.02, 0, 1),
        ]
    ).astype(np.float32)
    X_test = np.concatenate([flat(planted), last["Normal"]])
    report = audit_leakage(first["Cyst"], X_test)
    np.testing.assert_array_equal(report.exact_pairs, [[0, 0]])
    # Each planted copy matches its original (and maybe its adjacent slices).
    near = {tuple(pair) for pair in report.near_pairs}
    assert {(15, 1), (30, 2), (45, 3), (60, 4)} <= near
    np.testing.assert_array_equal(report.leaked_test_indices, [0, 1, 2, 3, 4])
