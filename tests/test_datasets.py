"""Tests of ckdlearn.datasets: the loaders, the shipped sample, the reader."""

import csv
import doctest
import os
import shutil
import sys
import tracemalloc
import types
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.model_selection import StratifiedGroupKFold

import ckdlearn.datasets
from ckdlearn.datasets import fetch_ct_kidney, load_ct_kidney_sample
from ckdlearn.datasets._fetch import KAGGLE_HANDLE


# These tests are about reading files faithfully, so they read slices in the
# domain the files hold; bringing them into the CLAHE domain is tested in
# test_preprocessing.py.
def read_images(*args, **kwargs):
    return ckdlearn.datasets.read_images(*args, **{"domain": "raw", **kwargs})


def load_ct_kidney(*args, **kwargs):
    return ckdlearn.datasets.load_ct_kidney(*args, **{"domain": "raw", **kwargs})

from helpers import DATASET_NAME, SHARED_ROOT, requires_shared_data, skip_message
CLASSES = ["Cyst", "Normal", "Stone", "Tumor"]
REAL_COUNTS = {"Cyst": 989, "Normal": 1622, "Stone": 476, "Tumor": 792}


# --- Helpers: small synthetic datasets written to tmp_path -------------------


def synthetic_slice(series, number, size=48):
    """A smooth JPEG-friendly image: fixed per series, drifting with number."""
    rng = np.random.default_rng(series)
    centre = rng.uniform(0.35, 0.65, 2) * size
    radius = rng.uniform(0.2, 0.35, 2) * size
    level = rng.uniform(0.4, 0.9)
    yy, xx = np.mgrid[:size, :size]
    inside = ((yy - centre[0]) / (radius[0] * (1 + 0.005 * number))) ** 2 + (
        (xx - centre[1]) / radius[1]
    ) ** 2 < 1
    return np.where(inside, level, 0.05).astype(np.float32)


def save_uint8(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.rint(pixels * 255).astype(np.uint8)).save(path, quality=95)


# Two series per class (numbers 1-3 and 10-12): 24 slices, 8 series.
DEFAULT_LAYOUT = {
    name: [(10 * label + 1, [1, 2, 3]), (10 * label + 2, [10, 11, 12])]
    for label, name in enumerate(CLASSES)
}


def write_dataset(folder, layout=DEFAULT_LAYOUT, *, with_csv=False, size=48):
    """Write class folders of JPEG slices (and kidneyData.csv); return the folder."""
    rows = []
    for name, series_list in layout.items():
        for series, numbers in series_list:
            for number in numbers:
                relative = f"{name}/{name}- ({number}).jpg"
                save_uint8(folder / relative, synthetic_slice(series, number, size))
                rows.append((f"{name}- ({number})", relative, name))
    if with_csv:
        write_csv(folder / "kidneyData.csv", rows)
    return folder


def write_csv(path, rows, labels=None):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "image_id", "path", "diag", "target", "Class"])
        for index, (image_id, relative, name) in enumerate(rows):
            label = labels[index] if labels else name
            writer.writerow([index, image_id, relative, label, CLASSES.index(name), label])


def csv_rows(folder):
    with open(folder / "kidneyData.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def tiny_dataset(tmp_path):
    return write_dataset(tmp_path / "tiny")


def write_ct_dicom(path, hounsfield, *, slope=1.0, intercept=-1024.0, **identifiers):
    """Write a minimal single-frame CT DICOM with the given HU values (and
    identifiers such as ``PatientID``)."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    stored = np.rint((np.asarray(hounsfield, dtype=np.float64) - intercept) / slope)
    stored = stored.astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = CTImageStorage
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "CT"
    dataset.Rows, dataset.Columns = stored.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 0
    dataset.RescaleSlope = slope
    dataset.RescaleIntercept = intercept
    dataset.PixelData = stored.tobytes()
    for keyword, value in identifiers.items():
        setattr(dataset, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    if int(pydicom.__version__.split(".")[0]) >= 3:
        dataset.save_as(path, enforce_file_format=True)
    else:  # pydicom 2.x
        dataset.is_little_endian, dataset.is_implicit_VR = True, False
        dataset.save_as(path, write_like_original=False)
    return path


@pytest.fixture(scope="module")
def ct_small_path():
    """pydicom's real CT test slice (bundled with pydicom, no download)."""
    pydicom_data = pytest.importorskip("pydicom.data")
    try:
        path = pydicom_data.get_testdata_file("CT_small.dcm")
    except Exception:  # an install without bundled test files tries the network
        path = None
    if path is None:
        pytest.skip("pydicom's CT_small.dcm is not available offline")
    return path


# --- The real shared data ---------------------------------------------------


@pytest.fixture(scope="module")
def real32():
    if SHARED_ROOT is None:
        pytest.skip(skip_message())
    return load_ct_kidney(SHARED_ROOT, image_size=32, verbose=False)


@pytest.mark.slow
@requires_shared_data
def test_real_data_counts_shapes_and_dtypes(real32):
    assert real32.target_names.tolist() == CLASSES
    counts = np.bincount(real32.target, minlength=4)
    assert dict(zip(CLASSES, counts.tolist())) == REAL_COUNTS
    n_slices = sum(REAL_COUNTS.values())
    assert real32.images.shape == (n_slices, 32, 32)
    assert real32.data.shape == (n_slices, 32 * 32)
    assert real32.images.dtype == real32.data.dtype == np.float32
    assert real32.target.dtype == real32.groups.dtype == np.int64
    assert real32.filenames.shape == real32.groups.shape == (n_slices,)
    assert 0 <= real32.images.min() and real32.images.max() <= 1
    assert real32.skipped == []
    assert Path(real32.root).name == DATASET_NAME
    assert "CC BY 4.0" in real32.DESCR and "Islam" in real32.DESCR


@pytest.mark.slow
@requires_shared_data
def test_real_data_images_and_data_share_one_buffer(real32):
    assert np.shares_memory(real32.data, real32.images)
    assert real32.data.base is real32.images or real32.data.base is real32.images.base


@pytest.mark.slow
@requires_shared_data
def test_real_data_order_is_natural_by_class_then_number(real32):
    assert real32.filenames[:3].tolist() == [
        "Cyst/Cyst- (1).jpg",
        "Cyst/Cyst- (2).jpg",
        "Cyst/Cyst- (3).jpg",
    ]
    assert np.all(np.diff(real32.target) >= 0)
    assert real32.filenames[-1] == "Tumor/Tumor- (2258).jpg"


@pytest.mark.slow
@requires_shared_data
def test_real_data_load_is_deterministic(real32):
    again = load_ct_kidney(SHARED_ROOT, image_size=32, n_jobs=2, verbose=False)
    for field in ["data", "target", "filenames", "groups", "target_names"]:
        np.testing.assert_array_equal(again[field], real32[field])


@pytest.mark.slow
@requires_shared_data
def test_real_data_at_the_default_size_and_at_128_pixels():
    stone = load_ct_kidney(SHARED_ROOT, classes=["Stone"], verbose=False)
    assert stone.images.shape == (476, 96, 96)
    stone = load_ct_kidney(SHARED_ROOT, classes=["Stone"], image_size=128, verbose=False)
    assert stone.images.shape == (476, 128, 128)
    assert stone.data.shape == (476, 128 * 128)
    assert stone.target_names.tolist() == ["Stone"]
    assert set(stone.target.tolist()) == {0}


@requires_shared_data
def test_real_data_return_X_y():
    X, y = load_ct_kidney(SHARED_ROOT, image_size=8, classes=["Tumor"], return_X_y=True)
    assert X.shape == (792, 64) and y.shape == (792,)


@pytest.mark.slow
@requires_shared_data
def test_real_data_same_files_without_the_csv(real32, tmp_path):
    # Class folders linked without kidneyData.csv: labels come from folders.
    root = tmp_path / "no_csv"
    root.mkdir()
    for name in CLASSES:
        (root / name).symlink_to(SHARED_ROOT / DATASET_NAME / name)
    folders = load_ct_kidney(root, image_size=32, classes=["Stone", "Tumor"], verbose=False)
    csv_stone_tumor = real32.target >= 2
    np.testing.assert_array_equal(folders.filenames, real32.filenames[csv_stone_tumor])
    np.testing.assert_array_equal(folders.target, real32.target[csv_stone_tumor] - 2)
    assert "class folders" in folders.DESCR


@requires_shared_data
@pytest.mark.parametrize("depth", ["dataset", "parent", "kaggle_inner", "kaggle_outer"])
def test_real_data_root_layouts(depth, tmp_path):
    dataset = SHARED_ROOT / DATASET_NAME
    if depth == "dataset":
        given = dataset
    elif depth == "parent":
        given = SHARED_ROOT
    else:
        # Kaggle nests the dataset in a folder of the same name, with the
        # CSV in the outer folder.
        outer = tmp_path / "versions" / "1" / DATASET_NAME
        inner = outer / DATASET_NAME
        inner.mkdir(parents=True)
        for name in CLASSES:
            (inner / name).symlink_to(dataset / name)
        shutil.copy(dataset / "kidneyData.csv", outer / "kidneyData.csv")
        given = inner if depth == "kaggle_inner" else tmp_path / "versions" / "1"
    loaded = load_ct_kidney(given, image_size=4, classes=["Stone"], verbose=False)
    assert len(loaded.target) == 476
    assert Path(loaded.root).name == DATASET_NAME
    assert "kidneyData.csv" in loaded.DESCR


@pytest.mark.slow
def test_shipped_sample_matches_the_complete_data(full_and_raw_roots):
    full_root = full_and_raw_roots[0]
    sample = load_ct_kidney_sample(image_size=96)
    rereads = read_images([full_root / name for name in sample.filenames], image_size=96,
                          domain="clahe", input_domain="clahe")
    np.testing.assert_array_equal(np.rint(rereads * 255), np.rint(sample.images * 255))
    # Four whole scan groups of each class of the complete data, each as a
    # run of up to 30 consecutive slices under one id.
    full = load_ct_kidney(full_root, image_size=16, domain="clahe", input_domain="clahe",
                          verbose=False)
    position = {name: index for index, name in enumerate(full.filenames)}
    rows = np.array([position[name] for name in sample.filenames])
    full_groups = full.groups[rows]
    assert len(np.unique(full_groups)) == 16
    for group in np.unique(full_groups):
        in_sample = sample.groups[full_groups == group]
        assert len(np.unique(in_sample)) == 1
        run = np.flatnonzero(full.groups == group)
        kept = rows[full_groups == group]
        assert len(kept) == min(30, len(run))
        assert np.array_equal(kept, run[np.searchsorted(run, kept[0]):][: len(kept)])


# --- The shipped sample -------------------------------------------------------


def test_sample_fields_and_sizes():
    sample = load_ct_kidney_sample()
    n_slices = len(sample.target)
    assert n_slices == 434
    assert sample.images.shape == (n_slices, 64, 64)
    assert sample.data.shape == (n_slices, 64 * 64)
    assert sample.images.dtype == np.float32
    assert 0 <= sample.images.min() and sample.images.max() <= 1
    assert np.shares_memory(sample.data, sample.images)
    assert sample.target_names.tolist() == CLASSES
    assert sample.filenames.shape == sample.groups.shape == (n_slices,)
    assert sample.skipped == [] and sample.root is None
    assert set(sample.keys()) == {
        "data", "images", "target", "target_names", "filenames",
        "groups", "groups_source", "groups_diagnostics", "skipped", "root", "domain", "DESCR",
    }
    assert set(sample.groups_source) == {"inferred"} and sample.groups_diagnostics["reliable"]
    assert sample.domain == "clahe"
    assert "CC BY 4.0" in sample.DESCR


def test_sample_has_whole_series_of_every_class():
    sample = load_ct_kidney_sample()
    for label in range(4):
        assert len(np.unique(sample.groups[sample.target == label])) == 4
    for group in np.unique(sample.groups):
        assert len(np.unique(sample.target[sample.groups == group])) == 1
    for n_splits in (3, 4):
        cv = StratifiedGroupKFold(n_splits=n_splits)
        for train, test in cv.split(sample.data, sample.target, sample.groups):
            assert set(sample.target[test]) == {0, 1, 2, 3}
            assert not set(sample.groups[train]) & set(sample.groups[test])


def test_sample_file_is_small_and_attributed():
    data = resources.files("ckdlearn.datasets") / "data"
    assert (data / "ct_kidney_sample.npz").stat().st_size < 4 * 1024 * 1024
    attribution = (data / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for needed in ["CC BY 4.0", "Islam", "Scientific Reports", "11440", "Changes made"]:
        assert needed in attribution


@pytest.mark.parametrize("image_size", [16, 32, 100])
def test_sample_resizes_from_the_stored_size(image_size):
    sample = load_ct_kidney_sample(image_size=image_size)
    assert sample.images.shape[1:] == (image_size, image_size)
    assert sample.data.shape[1] == image_size * image_size
    assert 0 <= sample.images.min() and sample.images.max() <= 1
    stored = load_ct_kidney_sample()
    # Downsampled means stay those of the stored images.
    np.testing.assert_allclose(
        sample.images.mean(axis=(1, 2)), stored.images.mean(axis=(1, 2)), atol=0.02
    )


def test_sample_return_X_y_and_classes():
    X, y = load_ct_kidney_sample(image_size=8, return_X_y=True)
    assert X.shape == (len(y), 64) and X.dtype == np.float32
    subset = load_ct_kidney_sample(classes=["Tumor", "Cyst"])
    assert subset.target_names.tolist() == ["Cyst", "Tumor"]
    assert set(subset.target.tolist()) == {0, 1}
    assert subset.groups.min() == 0 and subset.groups.max() == len(np.unique(subset.groups)) - 1
    assert all(name.split("/")[0] in {"Cyst", "Tumor"} for name in subset.filenames)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 0}, "image_size"),
        ({"image_size": 32.0}, "image_size"),
        ({"classes": ["Kidney"]}, "Unknown class"),
    ],
)
def test_sample_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_ct_kidney_sample(**kwargs)


# --- load_ct_kidney on synthetic folders -------------------------------------


def test_folder_of_class_folders(tiny_dataset):
    dataset = load_ct_kidney(tiny_dataset, image_size=16)
    assert dataset.images.shape == (24, 16, 16)
    assert dataset.target_names.tolist() == CLASSES
    assert np.bincount(dataset.target).tolist() == [6, 6, 6, 6]
    assert dataset.filenames[:4].tolist() == [
        "Cyst/Cyst- (1).jpg",
        "Cyst/Cyst- (2).jpg",
        "Cyst/Cyst- (3).jpg",
        "Cyst/Cyst- (10).jpg",
    ]
    # Each synthetic series is found: numbering gaps plus image changes.
    assert len(np.unique(dataset.groups)) == 8
    assert dataset.groups[:6].tolist() == [0, 0, 0, 1, 1, 1]
    assert Path(dataset.root) == tiny_dataset


def test_csv_is_used_and_matches_folders(tmp_path):
    root = write_dataset(tmp_path / "with_csv", with_csv=True)
    from_csv = load_ct_kidney(root, image_size=16)
    (root / "kidneyData.csv").unlink()
    from_folders = load_ct_kidney(root, image_size=16)
    np.testing.assert_array_equal(from_csv.filenames, from_folders.filenames)
    np.testing.assert_array_equal(from_csv.data, from_folders.data)
    assert "kidneyData.csv" in from_csv.DESCR


def test_csv_with_kaggle_absolute_paths_and_missing_rows(tmp_path):
    root = write_dataset(tmp_path / "kaggle", with_csv=True)
    rows = csv_rows(root)
    kaggle_prefix = "/kaggle/input/ct-kidney-dataset/" + DATASET_NAME + "/" + DATASET_NAME + "/"
    listed = [(row["image_id"], kaggle_prefix + row["path"], row["Class"]) for row in rows]
    listed.append(("Cyst- (99)", kaggle_prefix + "Cyst/Cyst- (99).jpg", "Cyst"))
    write_csv(root / "kidneyData.csv", listed)
    with pytest.warns(UserWarning, match=r"(?s)Left out 1 slice file.*Cyst- \(99\)"):
        dataset = load_ct_kidney(root, image_size=8)
    assert len(dataset.target) == 24
    assert dataset.skipped == [("Cyst/Cyst- (99).jpg", "listed in kidneyData.csv but not found")]


def test_csv_unlisted_files_are_reported(tmp_path):
    root = write_dataset(tmp_path / "unlisted", with_csv=True)
    save_uint8(root / "Stone" / "Stone- (50).jpg", synthetic_slice(99, 50))
    with pytest.warns(UserWarning, match=r"1 slice file\(s\).*not listed"):
        dataset = load_ct_kidney(root, image_size=8)
    assert "Stone/Stone- (50).jpg" not in dataset.filenames


def test_csv_labels_disagreeing_with_folders(tmp_path):
    root = write_dataset(tmp_path / "bad_labels")
    rows = [(f"x{i}", f"{name}/{name}- ({n}).jpg", name) for i, (name, n) in enumerate(
        [(name, n) for name in CLASSES for n in [1, 2, 3, 10, 11, 12]]
    )]
    labels = [name for _, _, name in rows]
    labels[7] = "Cyst"  # a Normal slice labelled Cyst
    write_csv(root / "kidneyData.csv", rows, labels=labels)
    expected = r"disagrees with the folder.*line 9: Class 'Cyst'.* but path 'Normal/"
    with pytest.raises(ValueError, match=expected):
        load_ct_kidney(root)


def test_csv_without_needed_columns(tmp_path):
    root = write_dataset(tmp_path / "bad_columns")
    (root / "kidneyData.csv").write_text("file,label\nCyst/Cyst- (1).jpg,Cyst\n")
    with pytest.raises(ValueError, match="expected a 'path' column"):
        load_ct_kidney(root)


def test_csv_whose_class_has_no_files(tmp_path):
    root = write_dataset(tmp_path / "no_files", with_csv=True)
    shutil.rmtree(root / "Tumor")
    with pytest.raises(ValueError, match="class 'Tumor'"):
        load_ct_kidney(root)


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*fetch_ct_kidney"):
        load_ct_kidney(tmp_path / "nowhere")


def test_root_is_a_file(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("not a folder")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        load_ct_kidney(path)


def test_folder_without_class_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"No class folders.*a/, b/.*Cyst/"):
        load_ct_kidney(tmp_path)


def test_empty_class_folder(tiny_dataset):
    (tiny_dataset / "Extra").mkdir()
    with pytest.raises(ValueError, match=r"Extra holds no slice files"):
        load_ct_kidney(tiny_dataset)


def test_hidden_and_non_slice_files_are_ignored(tiny_dataset):
    (tiny_dataset / ".cache").mkdir()
    (tiny_dataset / "__MACOSX").mkdir()
    (tiny_dataset / "Cyst" / "Thumbs.db").write_bytes(b"junk")
    (tiny_dataset / "Cyst" / ".DS_Store").write_bytes(b"junk")
    assert len(load_ct_kidney(tiny_dataset, image_size=8).target) == 24


def test_classes_subset(tiny_dataset):
    dataset = load_ct_kidney(tiny_dataset, image_size=8, classes=["Tumor", "Normal"])
    assert dataset.target_names.tolist() == ["Normal", "Tumor"]
    assert np.bincount(dataset.target).tolist() == [6, 6]
    one = load_ct_kidney(tiny_dataset, image_size=8, classes="Stone")
    assert one.target_names.tolist() == ["Stone"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"classes": ["cyst"]}, r"Unknown class name\(s\) \['cyst'\].*case-sensitive"),
        ({"classes": []}, "classes is empty"),
        ({"image_size": 0}, "'image_size' parameter of load_ct_kidney must be a positive integer"),
        ({"image_size": -5}, "image_size"),
        ({"image_size": 64.5}, "image_size"),
        ({"image_size": "64"}, "image_size"),
        ({"image_size": True}, "image_size"),
        ({"on_error": "ignore"}, "'on_error' parameter of load_ct_kidney must be 'raise'.*or 'skip'"),
        ({"verbose": 2}, "'verbose' parameter of load_ct_kidney must be None"),
    ],
)
def test_bad_parameters(tiny_dataset, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_ct_kidney(tiny_dataset, **kwargs)


# --- Unreadable files ---------------------------------------------------------


def break_files(root):
    """Truncate one JPEG, replace one with text, empty one; return their names."""
    truncated = root / "Cyst" / "Cyst- (2).jpg"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (root / "Stone" / "Stone- (11).jpg").write_text("this is not an image")
    (root / "Tumor" / "Tumor- (1).jpg").write_bytes(b"")
    return ["Cyst/Cyst- (2).jpg", "Stone/Stone- (11).jpg", "Tumor/Tumor- (1).jpg"]


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_unreadable_files_raise_naming_each_one(tiny_dataset, n_jobs, monkeypatch):
    # Small chunks: the broken files land in different threads' work.
    monkeypatch.setattr("ckdlearn.datasets._io._CHUNK", 2)
    broken = break_files(tiny_dataset)
    expected = r"Cannot read 3 slice files: .*Cyst- \(2\)\.jpg: OSError: .*truncated.*on_error='skip'"
    with pytest.raises(ValueError, match=expected) as excinfo:
        load_ct_kidney(tiny_dataset, n_jobs=n_jobs)
    message = str(excinfo.value)
    # All of them, in path order, each once, on one line.
    positions = [message.index(name) for name in broken]
    assert positions == sorted(positions) and "\n" not in message
    assert all(message.count(name) == 1 for name in broken)
    # Past the limit the rest are counted.
    monkeypatch.setattr("ckdlearn.datasets._io._LISTED_FAILURES", 2)
    with pytest.raises(ValueError, match="Cannot read 3 slice files: .*; and 1 more\\.") as excinfo:
        load_ct_kidney(tiny_dataset, n_jobs=n_jobs)
    assert broken[2] not in str(excinfo.value)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_unreadable_files_are_skipped_and_reported(tiny_dataset, n_jobs, monkeypatch):
    monkeypatch.setattr("ckdlearn.datasets._io._CHUNK", 2)
    broken = break_files(tiny_dataset)
    with pytest.warns(UserWarning, match="Left out 3 slice file") as record:
        dataset = load_ct_kidney(tiny_dataset, image_size=16, on_error="skip", n_jobs=n_jobs)
    message = str(record[0].message)
    assert all(name in message for name in broken)
    assert [name for name, _ in dataset.skipped] == broken
    assert "truncated" in dataset.skipped[0][1]
    assert "UnidentifiedImageError" in dataset.skipped[1][1]
    assert len(dataset.target) == len(dataset.filenames) == len(dataset.groups) == 21
    assert not set(broken) & set(dataset.filenames.tolist())
    # Still one buffer, rows shifted in place.
    assert np.shares_memory(dataset.data, dataset.images)
    clean = load_ct_kidney(write_dataset(tiny_dataset.parent / "clean"), image_size=16)
    keep = ~np.isin(clean.filenames, broken)
    np.testing.assert_array_equal(dataset.images, clean.images[keep])
    np.testing.assert_array_equal(dataset.target, clean.target[keep])


def test_every_file_unreadable_with_skip(tmp_path):
    root = tmp_path / "broken"
    (root / "Cyst").mkdir(parents=True)
    (root / "Cyst" / "Cyst- (1).jpg").write_text("no")
    with pytest.warns(UserWarning, match="Left out 1"):
        dataset = load_ct_kidney(root, image_size=8, on_error="skip")
    assert dataset.images.shape == (0, 8, 8) and dataset.data.shape == (0, 64)


# --- read_images: JPEG, PNG, DICOM ------------------------------------------


def test_read_images_jpeg_png_and_16_bit(tmp_path):
    pixels = synthetic_slice(3, 0, size=64)
    save_uint8(tmp_path / "slice.jpg", pixels)
    save_uint8(tmp_path / "slice.png", pixels)
    sixteen = np.rint(pixels * 65535).astype(np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "slice16.png")
    rgb = np.repeat(np.rint(pixels * 255).astype(np.uint8)[..., None], 3, axis=2)
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=95)
    images = read_images(
        [tmp_path / name for name in ["slice.jpg", "slice.png", "slice16.png", "rgb.jpg"]],
        image_size=32,
    )
    assert images.shape == (4, 32, 32) and images.dtype == np.float32
    expected = pixels.reshape(32, 2, 32, 2).mean(axis=(1, 3))
    for image in images:
        assert np.abs(image - expected).mean() < 0.02
    png = read_images([tmp_path / "slice.png"], image_size=64)[0]
    np.testing.assert_array_equal(png, np.rint(pixels * 255) / 255)


def test_read_images_12_bit_png_by_its_real_range(tmp_path):
    # A CT slice stores 12 bits; divided by 65535 it read near-black (mean 0.007).
    pixels = synthetic_slice(3, 0, size=32)
    Image.fromarray(np.rint(pixels * 4095).astype(np.uint16)).save(tmp_path / "ct12.png")
    image = read_images([tmp_path / "ct12.png"], image_size=32)[0]
    np.testing.assert_allclose(image, pixels, atol=1 / 4095)
    assert image.mean() == pytest.approx(pixels.mean(), abs=1e-3)


def _png_with_sbit(path, significant_bits):
    """Insert a greyscale sBIT chunk after a PNG's header chunk."""
    import struct
    import zlib

    data = path.read_bytes()
    end_of_header = 8 + 8 + 13 + 4
    body = b"sBIT" + bytes([significant_bits])
    chunk = struct.pack(">I", 1) + body + struct.pack(">I", zlib.crc32(body))
    path.write_bytes(data[:end_of_header] + chunk + data[end_of_header:])


def test_16_bit_png_of_8_bit_values_reads_as_the_8_bit_file_and_warns(tmp_path):
    # Saved without scaling (Image.fromarray(a.astype(np.uint16))), they read
    # 16x too dark (divided by 4095) and the prediction changed.
    pixels = synthetic_slice(3, 0, size=32)
    stored = np.rint(pixels * 255).astype(np.uint8)
    Image.fromarray(stored).save(tmp_path / "eight.png")
    Image.fromarray(stored.astype(np.uint16)).save(tmp_path / "wide.png")
    Image.fromarray(stored.astype(np.uint16)).save(tmp_path / "wide.tif")
    eight = read_images([tmp_path / "eight.png"], image_size=32)[0]
    with pytest.warns(UserWarning, match=r"2 image file\(s\) .*only values 0-255.*wide\.png.*"
                                         r"read as 8-bit images.*bit_depth=16") as caught:
        wide = read_images([tmp_path / "wide.png", tmp_path / "wide.tif"], image_size=32)
    assert len(caught) == 1  # one warning for all files
    for image in wide:
        np.testing.assert_allclose(image, eight, atol=1e-6)
    assert eight.mean() > 0.1
    # The override keeps the stored depth, silently.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dark = read_images([tmp_path / "wide.png"], image_size=32, bit_depth=16)[0]
    np.testing.assert_allclose(dark, eight * 255 / 65535, atol=1e-6)
    with pytest.raises(ValueError, match="bit_depth must be 8, 12, 16 or None"):
        read_images([tmp_path / "wide.png"], bit_depth=10)


def test_true_12_and_16_bit_files_read_by_their_depth_without_warning(tmp_path):
    pixels = synthetic_slice(4, 0, size=32)
    Image.fromarray(np.rint(pixels * 4095).astype(np.uint16)).save(tmp_path / "ct12.png")
    Image.fromarray(np.rint(pixels * 65535).astype(np.uint16)).save(tmp_path / "ct16.png")
    Image.fromarray(np.rint(pixels * 65535).astype(np.uint16)).save(tmp_path / "ct16.tif")
    # A 10-bit image that says so (PNG sBIT) is read by its 1023, not 4095.
    Image.fromarray(np.rint(pixels * 1023).astype(np.uint16)).save(tmp_path / "ct10.png")
    _png_with_sbit(tmp_path / "ct10.png", 10)
    names = ["ct12.png", "ct16.png", "ct16.tif", "ct10.png"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images = read_images([tmp_path / name for name in names], image_size=32)
    for name, image in zip(names, images):
        np.testing.assert_allclose(image, pixels, atol=1 / 1023, err_msg=name)


def test_read_images_float_tiff_by_its_real_range(tmp_path):
    # A float TIFF in [0, 1] was converted to 8 bits and read all black.
    pixels = synthetic_slice(5, 0, size=32)
    Image.fromarray(pixels, mode="F").save(tmp_path / "unit.tif")
    Image.fromarray(pixels * 255, mode="F").save(tmp_path / "byte.tif")
    images = read_images([tmp_path / "unit.tif", tmp_path / "byte.tif"], image_size=32)
    np.testing.assert_allclose(images[0], pixels, atol=1e-6)
    np.testing.assert_allclose(images[1], pixels, atol=1e-5)
    Image.fromarray(pixels * 1000 - 500, mode="F").save(tmp_path / "hu.tif")
    with pytest.raises(ValueError, match=r"hu\.tif.*floating-point image with values in"):
        read_images([tmp_path / "hu.tif"], image_size=32)


def test_extension_less_files_must_be_dicom(tiny_dataset, tmp_path):
    # A stray README was taken for DICOM and failed with a pydicom message.
    (tiny_dataset / "Cyst" / "README").write_text("Exported from PACS on Monday.\n")
    (tiny_dataset / "Cyst" / "LICENSE").write_bytes(b"\x00" * 200)
    dataset = load_ct_kidney(tiny_dataset, image_size=16)
    assert len(dataset.filenames) == 24 and "Cyst/README" not in dataset.filenames
    with pytest.raises(ValueError, match=r"README.*no DICOM marker"):
        read_images([tiny_dataset / "Cyst" / "README"], image_size=16)


def test_unknown_class_folders_are_named(tiny_dataset):
    (tiny_dataset / "Tumor").rename(tiny_dataset / "Tumour")
    with pytest.warns(UserWarning) as record:
        dataset = load_ct_kidney(tiny_dataset, image_size=16)
    message = str(record[0].message)
    assert "['Cyst', 'Normal', 'Stone', 'Tumour']" in message
    assert "'Tumour' (did you mean 'Tumor'?)" in message and "classes=" in message
    assert dataset.target_names.tolist() == ["Cyst", "Normal", "Stone", "Tumour"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_ct_kidney(tiny_dataset, image_size=16, classes=["Cyst", "Tumour"])
        load_ct_kidney(write_dataset(tiny_dataset.parent / "known"), image_size=16)


def test_read_images_non_square_and_upsampling(tmp_path):
    save_uint8(tmp_path / "wide.png", np.full((20, 40), 0.5))
    images = read_images([tmp_path / "wide.png"], image_size=64)
    assert images.shape == (1, 64, 64)
    np.testing.assert_allclose(images, 128 / 255, atol=1e-6)


def test_read_images_real_ct_dicom(ct_small_path):
    import pydicom

    dataset = pydicom.dcmread(ct_small_path)
    slope, intercept = float(dataset.RescaleSlope), float(dataset.RescaleIntercept)
    hounsfield = dataset.pixel_array * slope + intercept
    expected = np.clip((hounsfield - (40 - 200)) / 400, 0, 1)
    native = read_images([ct_small_path], image_size=dataset.Rows)[0]
    np.testing.assert_allclose(native, expected, atol=1e-6)
    small = read_images([ct_small_path], image_size=32)
    assert small.shape == (1, 32, 32) and small.dtype == np.float32
    bone = read_images([ct_small_path], image_size=32, window_level=400, window_width=1800)
    assert not np.allclose(small, bone)


def test_read_images_windowing_of_known_hounsfield_units(tmp_path):
    hounsfield = np.array([[-1000, -160, 40, 240], [1000, 0, -60, 140]] * 2, dtype=float)
    path = write_ct_dicom(tmp_path / "ct.dcm", hounsfield, slope=2.0, intercept=-2048.0)
    windowed = read_images([path], image_size=4)[0]
    assert windowed.shape == (4, 4)
    np.testing.assert_allclose(windowed[0], [0, 0, 0.5, 1], atol=1e-6)
    np.testing.assert_allclose(windowed[1], [1, 0.4, 0.25, 0.75], atol=1e-6)
    narrow = read_images([path], image_size=4, window_level=0, window_width=200)[0]
    np.testing.assert_allclose(narrow[1], [1, 0.5, 0.2, 1], atol=1e-6)


def test_read_images_dicom_without_extension(tmp_path):
    path = write_ct_dicom(tmp_path / "IM000001", np.zeros((8, 8)))
    np.testing.assert_allclose(read_images([path], image_size=8), 0.4, atol=1e-6)


def test_load_ct_kidney_on_dicom_class_folders(tmp_path):
    root = tmp_path / "dicom"
    for label, name in enumerate(["Normal", "Tumor"]):
        for number in range(1, 4):
            hounsfield = np.full((16, 16), -100.0 + 150 * label + number)
            write_ct_dicom(root / name / f"IM-0001-{number:04d}.dcm", hounsfield)
    dataset = load_ct_kidney(root, image_size=8)
    assert dataset.target_names.tolist() == ["Normal", "Tumor"]
    assert dataset.images.shape == (6, 8, 8)
    np.testing.assert_allclose(dataset.images[0], (-99 + 160) / 400, atol=1e-6)
    assert dataset.groups.tolist() == [0, 0, 0, 1, 1, 1]


def test_dicom_slices_are_grouped_by_patient_then_study_then_series(tmp_path):
    # A patient's two series are one group, whatever the file numbering and
    # however different the images; files without identifiers are inferred.
    from pydicom.uid import generate_uid

    root = tmp_path / "dicom"
    study, series = generate_uid(), generate_uid()
    files = [
        ("Normal/IM-0001-0001.dcm", {"PatientID": "P1", "SeriesInstanceUID": generate_uid()}),
        ("Normal/IM-0002-0007.dcm", {"PatientID": "P1", "SeriesInstanceUID": generate_uid()}),
        ("Normal/IM-0003-0001.dcm", {"PatientID": "P2"}),
        ("Tumor/IM-0001-0001.dcm", {"PatientID": "", "StudyInstanceUID": study}),
        ("Tumor/IM-0001-0002.dcm", {"StudyInstanceUID": study}),
        ("Tumor/IM-0009-0001.dcm", {"SeriesInstanceUID": series}),
        ("Tumor/IM-0010-0001.dcm", {}),
    ]
    for number, (name, identifiers) in enumerate(files):
        write_ct_dicom(root / name, np.full((16, 16), -300.0 + 90 * number), **identifiers)
    dataset = load_ct_kidney(root, image_size=8)
    assert dataset.groups.tolist() == [0, 0, 1, 2, 2, 3, 4]
    assert dataset.groups_source.tolist() == [
        "dicom:PatientID", "dicom:PatientID", "dicom:PatientID",
        "dicom:StudyInstanceUID", "dicom:StudyInstanceUID", "dicom:SeriesInstanceUID",
        "inferred",
    ]
    assert dataset.groups_diagnostics["source"] == {
        "dicom:PatientID": 3, "dicom:StudyInstanceUID": 2, "dicom:SeriesInstanceUID": 1,
        "inferred": 1,
    }
    assert dataset.groups_diagnostics["n_groups"] == 5


def test_bad_dicom_files(tmp_path):
    not_dicom = tmp_path / "notes.dcm"
    not_dicom.write_text("plain text, no pixels")
    with pytest.raises(ValueError, match=r"notes\.dcm.*Expected a readable DICOM"):
        read_images([not_dicom], image_size=8)
    with pytest.warns(UserWarning, match="notes.dcm"):
        images, skipped = read_images(
            [not_dicom], image_size=8, on_error="skip", return_skipped=True
        )
    assert images.shape == (0, 8, 8)
    assert skipped[0][0] == str(not_dicom)


def test_missing_pydicom_is_a_clear_import_error(tmp_path, monkeypatch):
    path = write_ct_dicom(tmp_path / "ct.dcm", np.zeros((8, 8)))
    monkeypatch.setitem(sys.modules, "pydicom", None)
    for on_error in ("raise", "skip"):
        with pytest.raises(ImportError, match=r"pip install 'ckdlearn\[dicom\]'"):
            read_images([path], image_size=8, on_error=on_error)


def test_read_images_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jpg does not exist"):
        read_images([tmp_path / "missing.jpg"])
    with pytest.raises(ValueError, match="wrap it in a list"):
        read_images(str(tmp_path / "one.jpg"))
    with pytest.raises(ValueError, match="'window_width' parameter of read_images must be positive"):
        read_images([], window_width=0)
    with pytest.raises(ValueError, match="window_level"):
        read_images([], window_level="soft")
    assert read_images([], image_size=8).shape == (0, 8, 8)


def test_read_images_skip_keeps_order_and_reports(tmp_path):
    good = [tmp_path / f"{i}.png" for i in range(3)]
    for i, path in enumerate(good):
        save_uint8(path, np.full((8, 8), i / 4))
    paths = [good[0], tmp_path / "gone.png", good[1], good[2]]
    with pytest.warns(UserWarning, match="gone.png: file not found"):
        images, skipped = read_images(paths, image_size=8, on_error="skip", return_skipped=True)
    np.testing.assert_allclose(images[:, 0, 0], np.rint(np.arange(3) / 4 * 255) / 255)
    assert skipped == [(str(tmp_path / "gone.png"), "file not found")]


# --- Progress bar and memory --------------------------------------------------


def test_progress_bar_only_when_asked(tiny_dataset, capsys):
    load_ct_kidney(tiny_dataset, image_size=8, verbose=True)
    assert "Reading slices" in capsys.readouterr().err
    load_ct_kidney(tiny_dataset, image_size=8, verbose=False)
    assert "Reading slices" not in capsys.readouterr().err
    # Automatic mode: never on a non-terminal stderr (as under pytest).
    load_ct_kidney(tiny_dataset, image_size=8)
    assert "Reading slices" not in capsys.readouterr().err


@pytest.mark.slow
def test_peak_memory_is_the_output_plus_a_small_constant(tmp_path):
    layout = {name: [(label, range(1, 76))] for label, name in enumerate(CLASSES)}
    root = write_dataset(tmp_path / "memory", layout, size=64)
    load_ct_kidney(root, image_size=64)  # warm caches and lazy imports
    tracemalloc.start()
    try:
        dataset = load_ct_kidney(root, image_size=64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    output = dataset.images.nbytes
    assert output == 300 * 64 * 64 * 4
    # Beyond the output: the 16x16 thumbnails the groups are inferred from
    # (1 KiB per slice) and bounded work arrays of the near-duplicate search.
    assert peak < output + 300 * 1200 + 3 * 1024 * 1024


# --- fetch_ct_kidney with a fake kagglehub -------------------------------------


def fake_kagglehub(download):
    module = types.ModuleType("kagglehub")
    module.dataset_download = download
    return module


def test_fetch_loads_the_kaggle_download(tmp_path, monkeypatch):
    download_root = tmp_path / "cache" / "datasets" / "versions" / "1"
    outer = download_root / DATASET_NAME
    write_dataset(outer / DATASET_NAME, with_csv=True)
    shutil.move(outer / DATASET_NAME / "kidneyData.csv", outer / "kidneyData.csv")
    calls = []

    def download(handle, path=None, *, force_download=False):
        calls.append((handle, force_download, os.environ.get("KAGGLEHUB_CACHE")))
        return str(download_root)

    monkeypatch.setitem(sys.modules, "kagglehub", fake_kagglehub(download))
    monkeypatch.delenv("KAGGLEHUB_CACHE", raising=False)
    data_home = tmp_path / "my_data"
    dataset = fetch_ct_kidney(data_home, image_size=8, classes=["Cyst"])
    assert calls == [(KAGGLE_HANDLE, False, str(data_home))]
    assert "KAGGLEHUB_CACHE" not in os.environ  # restored
    assert data_home.is_dir()
    assert len(dataset.target) == 6 and "kidneyData.csv" in dataset.DESCR

    monkeypatch.setenv("KAGGLEHUB_CACHE", "/elsewhere")
    X, y = fetch_ct_kidney(version=1, force_download=True, image_size=8, return_X_y=True)
    assert calls[-1] == (KAGGLE_HANDLE + "/versions/1", True, "/elsewhere")
    assert X.shape == (24, 64)
    assert os.environ["KAGGLEHUB_CACHE"] == "/elsewhere"


def test_fetch_without_kagglehub(monkeypatch):
    monkeypatch.setitem(sys.modules, "kagglehub", None)
    with pytest.raises(ImportError, match=r"pip install 'ckdlearn\[kaggle\]'.*load_ct_kidney"):
        fetch_ct_kidney()


def test_fetch_offline(tmp_path, monkeypatch):
    def download(handle, path=None, *, force_download=False):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setitem(sys.modules, "kagglehub", fake_kagglehub(download))
    monkeypatch.delenv("KAGGLEHUB_CACHE", raising=False)
    expected = "Could not download.*name resolution.*load_ct_kidney"
    with pytest.raises(ConnectionError, match=expected):
        fetch_ct_kidney(tmp_path / "cache")
    assert "KAGGLEHUB_CACHE" not in os.environ


# --- Docstring examples ------------------------------------------------------


@pytest.mark.parametrize(
    "module_name",
    [
        "ckdlearn.datasets._ct_kidney",
        "ckdlearn.datasets._sample",
        "ckdlearn.datasets._io",
        "ckdlearn.datasets._fetch",
        "ckdlearn.model_selection._groups",
    ],
)
def test_docstring_examples_run(module_name):
    module = sys.modules.get(module_name) or __import__(module_name, fromlist=["_"])
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


# --- CKDLEARN_DATA ------------------------------------------------------------


def test_local_data_folder_follows_ckdlearn_data_then_the_default(tmp_path, monkeypatch):
    from ckdlearn.datasets import local_data_folder
    from ckdlearn.datasets._local import not_found_message

    home, default = tmp_path / "home", tmp_path / "default"
    (home / "ct-kidney").mkdir(parents=True)
    (default / "ct-kidney-full").mkdir(parents=True)
    monkeypatch.delenv("CKDLEARN_DATA", raising=False)
    assert local_data_folder("ct-kidney", default=default) is None
    assert local_data_folder("ct-kidney-full", default=default) == default / "ct-kidney-full"
    assert local_data_folder("ct-kidney") is None
    assert "CKDLEARN_DATA is not set" in not_found_message("ct-kidney", default=default)
    monkeypatch.setenv("CKDLEARN_DATA", str(home))
    assert local_data_folder("ct-kidney", default=default) == home / "ct-kidney"
    assert local_data_folder("ct-kidney-full", default=default) is None  # the variable wins
    message = not_found_message("ct-kidney-full", default=default)
    assert f"no ct-kidney-full/ in {home} (from CKDLEARN_DATA)" in message
    assert "set CKDLEARN_DATA to the folder holding ct-kidney-full/" in message
