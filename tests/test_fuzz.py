"""Fuzzing the public entry points: a correct result or a clear error, nothing else.

Each test draws inputs with hypothesis (shapes, dtypes, NaN / inf / huge
values, intensity scales, empty and one-sample inputs, mismatched lengths,
mixed labels, corrupt files) and runs them through :func:`fuzzing.outcome`,
which fails on crashes and on errors that do not come from ckdlearn's (or
scikit-learn's) input checks. File-handling tests also check that nothing
outside the named outputs changes. The default profile is small; the large
one: ``pytest tests/test_fuzz.py --hypothesis-profile=fuzz``, with
``CKDLEARN_FUZZ_REPORT=fuzz.json`` for the tally.
"""

import hashlib
from pathlib import Path
import io
import pickle
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from ckdlearn.explanation import compute_heatmaps, faithfulness_scores
from ckdlearn.datasets import load_ct_kidney, read_images
from ckdlearn.metrics import (
    accuracy_at_coverage,
    expected_calibration_error,
    reliability_curve,
    risk_coverage_curve,
)
from ckdlearn.model_selection import audit_cv, audit_leakage, evaluate, infer_scan_groups
from ckdlearn.nets import CKDNet
from ckdlearn.persistence import load, save
from ckdlearn.series import aggregate_series

from fuzzing import count_files_changed, outcome
from helpers import tiny_classifier

pytestmark = pytest.mark.fuzz

DTYPES = [np.bool_, np.int8, np.uint8, np.uint16, np.int64, np.float16, np.float32, np.float64]


def tiny(**params):
    defaults = dict(max_epochs=1, module__width=2, module__depth=1, batch_size=8)
    return tiny_classifier(**{**defaults, **params})


def arrays(max_dims=5, max_side=6, dtypes=DTYPES):
    """Arrays of any of the dtypes, any layout, with NaN, inf and huge values."""
    return st.sampled_from(dtypes).flatmap(
        lambda dtype: hnp.arrays(
            dtype=dtype,
            shape=hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side),
            elements=(
                st.floats(width=np.dtype(dtype).itemsize * 8, allow_nan=True, allow_infinity=True)
                if np.dtype(dtype).kind == "f" else None
            ),
        )
    )


def images(shapes, dtypes=DTYPES):
    """Well-formed images (what a careful user passes), in [0, 1] or 0-255."""
    def draw(dtype, shape):
        kind = np.dtype(dtype).kind
        elements = (st.floats(0, 1, width=np.dtype(dtype).itemsize * 8) if kind == "f"
                    else st.booleans() if kind == "b" else st.integers(0, 255 if dtype != np.int8 else 127))
        return hnp.arrays(dtype=dtype, shape=shape, elements=elements)

    return st.tuples(st.sampled_from(dtypes), st.sampled_from(shapes)).flatmap(lambda pair: draw(*pair))


def object_arrays():
    return hnp.arrays(
        dtype=object,
        shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5),
        elements=st.one_of(st.integers(-3, 300), st.floats(allow_nan=True), st.text(max_size=2),
                           st.none()),
    )


def labels(n):
    return st.one_of(
        st.lists(st.sampled_from(["Cyst", "Stone", "Tumor"]), min_size=n, max_size=n),
        st.lists(st.integers(-2, 3), min_size=n, max_size=n),
        st.lists(st.one_of(st.integers(0, 2), st.sampled_from(["a", "b"])), min_size=n, max_size=n),
        st.lists(st.floats(0, 1), min_size=n, max_size=n),
        st.lists(st.integers(0, 1), min_size=0, max_size=n + 2),  # other lengths
        st.none(),
    )


def snapshot(folder):
    return {
        path.relative_to(folder): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


def changed_outside(before, after, outputs=()):
    outputs = set(outputs)
    return sum(
        1 for name in set(before) | set(after)
        if name not in outputs and before.get(name) != after.get(name)
    )


# --- the classifier -------------------------------------------------------------


@given(X=st.one_of(arrays(), object_arrays()), data=st.data())
def test_fit(X, data):
    n = X.shape[0] if X.ndim else 0
    y = data.draw(labels(n))
    kind, fitted = outcome("fit", tiny().fit, X, y)
    if kind == "result":
        assert outcome("fit", fitted.predict, X)[1].shape == (n,)


@pytest.fixture(scope="module")
def fitted():
    X = np.random.RandomState(0).rand(24, 16).astype(np.float32)
    return tiny().fit(X, np.repeat(["Cyst", "Stone", "Tumor"], 8))


@given(X=st.one_of(arrays(), object_arrays(),
                   images([(1, 16), (3, 16), (5, 4, 4), (2, 1, 4, 4)], [np.float32, np.float64])),
       scale=st.sampled_from([1, 1, 1, 255, 1e-3, -1]),
       groups=st.one_of(st.none(), st.lists(st.integers(0, 2), max_size=8)))
def test_predict_explain_and_uncertainty(fitted, X, scale, groups):
    if X.dtype.kind in "iuf" and scale != 1:
        with np.errstate(all="ignore"):
            X = X.astype(np.float64) * scale
    for method in (fitted.predict, fitted.predict_proba, fitted.explain, fitted.to_images,
                   fitted.transform_features):
        kind, value = outcome("predict", method, X)
        if kind == "result":
            assert len(value) == X.shape[0]
            assert value.dtype.kind not in "fc" or np.isfinite(value).all()
    for method in ("entropy", "margin", "knn"):
        kind, value = outcome("predict", fitted.predict_uncertainty, X, method=method)
        if kind == "result":
            assert np.isfinite(value).all() and value.shape == (X.shape[0],)
    if groups is not None:
        kind, value = outcome("predict", fitted.predict_series, X, groups)
        if kind == "result":
            assert len(value.label) == len(np.unique(groups))


@given(params=st.fixed_dictionaries({}, optional={
    "max_epochs": st.sampled_from([0, -1, 1, 2.5, True, None]),
    # 23: the 24 rows leave a last batch of one image.
    "batch_size": st.sampled_from([0, -1, 1, 3, 23, "32"]),
    "lr": st.sampled_from([0.0, -1.0, 1e4, float("nan"), 1e-3]),
    "image_shape": st.sampled_from([(4, 4), (3, 5), (0, 16), (2, 2, 4), "4x4", None]),
    "validation": st.sampled_from([0.0, 0.25, 1, 3, 2.0, None]),
    "mixup": st.sampled_from([-1.0, 0.0, 0.4, float("inf")]),
    "precision": st.sampled_from(["32", "bf16", "fp8"]),
    "class_weight": st.sampled_from(["balanced", "auto", None]),
}), with_groups=st.booleans())
def test_fit_parameters(params, with_groups):
    X = np.random.RandomState(1).rand(24, 16).astype(np.float32)
    y = np.repeat(["Cyst", "Stone"], 12)
    groups = np.repeat(np.arange(8), 3) if with_groups else None
    kind, model = outcome("fit", tiny(**params).fit, X, y, groups=groups)
    if kind == "result":
        proba = model.predict_proba(X)
        assert np.isfinite(proba).all(), "a fitted model must predict finite probabilities"


def batch_remainders():
    """(batch_size, n_images): a last batch of one image (n = 1 mod batch_size)
    more often than not. (Batches of one throughout, batch_size=1, cannot
    train BatchNorm on 1x1 feature maps at all.)"""
    return st.tuples(st.integers(2, 5), st.integers(1, 3), st.sampled_from([1, 1, 0, 2])).map(
        lambda t: (t[0], max(2, t[0] * t[1] + t[2]))
    )


@given(shape=batch_remainders(),
       side=st.sampled_from([(1, 1), (1, 5), (2, 2), (3, 3), (1, 16), (8, 8)]),
       depth=st.sampled_from([1, 2, 4]))
def test_fit_any_batch_remainder_and_tiny_feature_maps(shape, side, depth):
    # Images of 1x1 to 8x8 pixels shrink to 1x1 feature maps, where
    # BatchNorm cannot normalise a batch of one image.
    batch_size, n = shape
    X = np.random.default_rng(n).random((n, side[0] * side[1]), dtype=np.float32)
    y = np.arange(n) % 2
    clf = tiny(batch_size=batch_size, module__depth=depth, image_shape=side)
    kind, model = outcome("fit", clf.fit, X, y)
    if kind == "result":
        assert np.isfinite(model.predict_proba(X)).all()


# --- explanations -------------------------------------------------------------------


@given(images=st.one_of(arrays(max_dims=5), images([(3, 1, 8, 8), (2, 1, 16, 16)])),
       classes=st.one_of(st.none(), st.lists(st.integers(-2, 5))),
       method=st.sampled_from(["gradcam", "gradcam++", "eigencam", "layercam", "nope"]),
       metric=st.sampled_from(["confidence_drop", "decision_flip", "road", "cam_mult", "x"]),
       batch_size=st.sampled_from([1, 4, 0, -1]))
def test_heatmaps_and_faithfulness(images, classes, method, metric, batch_size):
    torch.manual_seed(0)
    net = CKDNet(n_classes=3, width=2, depth=1)
    kind, value = outcome("explain", compute_heatmaps, net, images, classes, method=method,
                          batch_size=batch_size)
    if kind == "result":
        heatmaps, used = value
        assert heatmaps.shape[0] == len(used) == images.shape[0]
        outcome("explain", faithfulness_scores, net, images, used, heatmaps, metric=metric,
                batch_size=batch_size)


# --- audit, groups, evaluation, metrics ----------------------------------------------


@given(X_train=st.one_of(arrays(max_dims=4), images([(4, 16, 16), (5, 64), (3, 1, 8, 8)])),
       X_test=st.one_of(arrays(max_dims=4), images([(4, 16, 16), (2, 64), (3, 1, 8, 8)])),
       params=st.fixed_dictionaries({}, optional={
           "near_threshold": st.sampled_from([-1, 0, 0.15, 2, 3, float("nan")]),
           "max_shift": st.sampled_from([-1, 0, 1, 2, True, 1.5]),
           "thumbnail_size": st.sampled_from([0, 1, 2, 16, 3.0]),
           "image_shape": st.sampled_from([None, (4, 4), (2, 8), "4x4", (0, 1)]),
       }))
def test_audit(X_train, X_test, params):
    outcome("audit", audit_leakage, X_train, X_test, **params)
    image_shape = params.pop("image_shape", None)
    outcome("audit", audit_cv, X_train, cv=2, image_shape=image_shape, **params)


@given(slices=st.one_of(arrays(max_dims=4), images([(4, 8, 8), (6, 16, 16), (3, 64)])),
       data=st.data(), change=st.sampled_from([-1.0, 0.0, 0.035, 0.035, float("nan")]))
def test_scan_groups(slices, data, change):
    n = slices.shape[0] if slices.ndim else 0
    names = data.draw(st.one_of(
        st.lists(st.text(max_size=12), max_size=8),
        st.just([f"Cyst/Cyst- ({k}).png" for k in range(n)]),
    ))
    kind, groups = outcome("groups", infer_scan_groups, slices, names, change_threshold=change)
    if kind == "result":
        assert len(groups) == len(names)


@given(n=st.integers(0, 30), n_classes=st.integers(1, 3), n_groups=st.integers(1, 8),
       cv=st.sampled_from([2, 3, 5, 1, 0]), bad=st.sampled_from([None, "nan", "length", "shape"]))
def test_evaluate(n, n_classes, n_groups, cv, bad):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.RandomState(n)
    X = rng.rand(n, 16)
    y = rng.randint(0, n_classes, n)
    groups = rng.randint(0, n_groups, n)
    if bad == "nan" and n:
        X[0, 0] = np.nan
    elif bad == "length":
        groups = groups[:-1]
    elif bad == "shape":
        X = X.reshape(-1)
    outcome("evaluate", evaluate, LogisticRegression(max_iter=200), X, y, groups=groups, cv=cv,
            audit=n % 2 == 0)


def probabilities():
    return st.integers(1, 8).flatmap(lambda n: hnp.arrays(
        np.float64, (n, 3), elements=st.floats(0.01, 1))).map(lambda a: a / a.sum(1, keepdims=True))


@given(y_proba=st.one_of(arrays(max_dims=3), probabilities()), data=st.data())
def test_metrics(y_proba, data):
    n = y_proba.shape[0] if y_proba.ndim else 0
    y_true = data.draw(st.one_of(labels(n), st.lists(st.sampled_from([0, 1, 2]), min_size=n,
                                                      max_size=n)))
    uncertainty = data.draw(st.one_of(arrays(max_dims=2), hnp.arrays(np.float64, n)))
    for metric in (expected_calibration_error, reliability_curve):
        outcome("metrics", metric, y_true, y_proba)
    outcome("metrics", aggregate_series, y_proba, y_true, method=data.draw(
        st.sampled_from(["mean_log", "mean", "vote", "median"])))
    outcome("metrics", risk_coverage_curve, y_true, y_true, uncertainty)
    outcome("metrics", accuracy_at_coverage, y_true, y_true, uncertainty, coverage=0.5)


# --- model files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory, fitted):
    return save(fitted, tmp_path_factory.mktemp("model") / "model.ckdl").read_bytes()


def _corrupt(model_bytes, kind, data):
    if kind == "random":
        return data.draw(st.binary(max_size=300))
    if kind == "truncated":
        return model_bytes[: data.draw(st.integers(0, len(model_bytes) - 1))]
    if kind == "flipped":
        position = data.draw(st.integers(0, len(model_bytes) - 1))
        return model_bytes[:position] + bytes([model_bytes[position] ^ 0xFF]) + model_bytes[position + 1:]
    if kind == "pickle":
        return pickle.dumps({"weights": [1, 2, 3]})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in data.draw(st.lists(st.sampled_from(
                ["model.json", "schema.json", "weights.safetensors", "0.npy", "other"]),
                max_size=4, unique=True)):
            archive.writestr(name, data.draw(st.binary(max_size=64)))
    return buffer.getvalue()


@given(kind=st.sampled_from(["random", "truncated", "flipped", "pickle", "zip"]), data=st.data())
def test_load_corrupt_model_files(model_bytes, tmp_path_factory, kind, data):
    folder = tmp_path_factory.mktemp("corrupt")
    path = folder / "model.ckdl"
    path.write_bytes(_corrupt(model_bytes, kind, data))
    before = snapshot(folder)
    kind_, model = outcome("model files", load, path)
    if kind_ == "result":  # a flip in padding can leave a valid file
        assert np.isfinite(model.predict_proba(np.zeros((2, 16), np.float32))).all()
    count_files_changed("model files", changed_outside(before, snapshot(folder)))


@given(overwrite=st.booleans(), existing=st.booleans(), name=st.sampled_from(
    ["model.ckdl", "sub/model.ckdl", "", "."]))
def test_save_never_touches_other_files(fitted, tmp_path_factory, overwrite, existing, name):
    folder = tmp_path_factory.mktemp("save")
    (folder / "thesis.txt").write_text("mine")
    target = folder / name
    if existing and name not in ("", "."):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"an older file")
    before = snapshot(folder)
    outcome("model files", save, fitted, target, overwrite=overwrite)
    outputs = {target.relative_to(folder)} if name not in ("", ".") else set()
    count_files_changed("model files", changed_outside(before, snapshot(folder), outputs))
    assert (folder / "thesis.txt").read_text() == "mine"


# --- image files and folders ---------------------------------------------------------------


def _image_bytes(kind, size, rng):
    buffer = io.BytesIO()
    if kind == "png8":
        Image.fromarray(rng.randint(0, 256, (size, size)).astype(np.uint8)).save(buffer, "PNG")
    elif kind == "png16":
        Image.fromarray(rng.randint(0, 4096, (size, size)).astype(np.uint16)).save(buffer, "PNG")
    elif kind == "tiff_float":
        Image.fromarray(rng.rand(size, size).astype(np.float32)).save(buffer, "TIFF")
    elif kind == "rgb_jpeg":
        Image.fromarray(rng.randint(0, 256, (size, size, 3)).astype(np.uint8)).save(buffer, "JPEG")
    elif kind == "truncated":
        Image.fromarray(rng.randint(0, 256, (size, size)).astype(np.uint8)).save(buffer, "PNG")
        return buffer.getvalue()[: len(buffer.getvalue()) // 2]
    elif kind == "text":
        return b"not an image\n"
    return buffer.getvalue()


KINDS = ["png8", "png16", "tiff_float", "rgb_jpeg", "truncated", "text", "empty"]
SUFFIX = {"png8": ".png", "png16": ".png", "tiff_float": ".tif", "rgb_jpeg": ".jpg",
          "truncated": ".png", "text": ".png", "empty": ".jpg"}


@given(files=st.lists(st.tuples(st.sampled_from(["Cyst", "Stone", "Tumour", "Normal", "x"]),
                                st.sampled_from(KINDS), st.integers(1, 40)), max_size=10),
       on_error=st.sampled_from(["raise", "skip", "ignore"]), size=st.sampled_from([8, 0, 16]),
       readme=st.booleans())
def test_loaders(tmp_path_factory, files, on_error, size, readme):
    root = tmp_path_factory.mktemp("dataset")
    rng = np.random.RandomState(len(files))
    paths = []
    for index, (folder, kind, side) in enumerate(files):
        path = root / folder / f"{folder}- ({index}){SUFFIX[kind]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"" if kind == "empty" else _image_bytes(kind, side, rng))
        paths.append(path)
    if readme and files:
        (root / files[0][0] / "README").write_text("notes about this folder\n")
    before = snapshot(root)
    kind, images = outcome("loaders", read_images, paths, image_size=size, on_error=on_error)
    if kind == "result":
        assert images.dtype == np.float32 and np.isfinite(images).all()
        assert not images.size or (images.min() >= 0 and images.max() <= 1)
    kind, dataset = outcome("loaders", load_ct_kidney, root, image_size=size, on_error=on_error)
    if kind == "result":
        assert len(dataset.data) == len(dataset.target) == len(dataset.groups)
    count_files_changed("loaders", changed_outside(before, snapshot(root)))
    assume(True)


# --- the command line ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_world(tmp_path_factory):
    """A labelled folder, a model trained on it, and files a user would not want touched."""
    from ckdlearn.app.cli import main

    from test_cli import write_class_folders

    root = tmp_path_factory.mktemp("cli")
    data = write_class_folders(root / "data", per_class=6, size=16)
    model = root / "model.ckdl"
    assert main(["train", str(data), "--out", str(model), "--image-size", "16",
                 "--epochs", "1", "--width", "2", "--threads", "1"]) == 0
    (root / "garbage.ckdl").write_bytes(b"PK\x03\x04 not really a zip")
    (root / "notes.txt").write_text("mine")
    return root, data, model


def _argv(draw, root, data, model):
    command = draw(st.sampled_from(["predict", "explain", "evaluate", "audit", "train"]))
    # Half of the draws are what a careful user would type, half are not.
    def either(good, bad):
        return st.one_of(st.sampled_from(good), st.sampled_from(good + bad))

    path = either([str(data), str(data / "Cyst"), str(data / "Cyst" / "Cyst- (1).png")],
                  [str(root / "notes.txt"), str(root / "missing")])
    model_path = either([str(model)], [str(root / "garbage.ckdl"), str(root / "notes.txt"),
                                       str(root / "none.ckdl")])
    out = either([str(root / "out" / f"x{draw(st.integers(0, 9))}")],
                 [str(root), str(root / "notes.txt"), str(data), str(root / "out" / "m.ckdl")])
    number = either(["1", "2", "0.5"], ["0", "-2", "1e4", "nan", "abc"])
    argv = [command]
    if command in ("predict", "explain", "evaluate"):
        argv += [draw(model_path), draw(path)]
    else:
        argv += [draw(path)]
    if command in ("explain", "train"):
        argv += ["--out", draw(out)]
    if command == "predict" and draw(st.booleans()):
        argv += ["-o", draw(out)]
    if command == "train":
        argv += ["--epochs", draw(either(["1"], ["0", "-1", "x"])), "--image-size",
                 draw(either(["16", "8"], ["0"])), "--width", "2", "--threads", "1"]
        if draw(st.booleans()):
            argv += [draw(st.sampled_from(["--lr", "--batch-size", "--seed"])), draw(number)]
    if command == "audit":
        argv += ["--folds", draw(number)]
    if command == "predict" and draw(st.booleans()):
        argv += ["--abstain-below", draw(number)]
    argv += sorted(draw(st.sets(st.sampled_from(["--force", "--resume", "--on-error=skip"]),
                                max_size=2)))
    return argv


@pytest.mark.slow  # seconds: the reference model on every sample slice, or many CLI runs
@given(data=st.data())
def test_cli_commands(cli_world, capsys, data):
    from ckdlearn.app.cli import main

    root, folder, model = cli_world
    argv = _argv(data.draw, root, folder, model)
    before = snapshot(root)
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse: usage errors
        status = stop.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, (argv, err)
    assert status in (0, 1, 2), (argv, status, err)
    if status == 1:
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"ckdlearn {argv[0]}: error: ") and len(last) > 30, (argv, err)
    kind = {0: "result", 1: "clear error", 2: "clear error"}[status]
    from fuzzing import TALLY

    TALLY[("cli", kind)] += 1
    # The data, the model and the user's own files never change, unless the
    # command was told to write to that very path (with --force).
    after = snapshot(root)
    named = {Path(argv[argv.index(flag) + 1]).resolve() for flag in ("--out", "-o") if flag in argv}
    protected = [name for name in before
                 if name.parts[0] == "data" or name.name in ("model.ckdl", "garbage.ckdl", "notes.txt")]
    changed = [name for name in protected
               if before.get(name) != after.get(name) and (root / name).resolve() not in named]
    count_files_changed("cli", len(changed))
    assert not changed, (argv, changed)
