"""The ``ckdlearn`` command, end to end on the shipped sample and temp folders."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skorch.callbacks import Callback

from ckdlearn.cli import main
from ckdlearn.datasets import load_ct_kidney, load_ct_kidney_sample
from ckdlearn.persistence import load
from ckdlearn.workflows import train


def write_class_folders(root, per_class=8, size=32):
    """A small dataset in the CT KIDNEY layout, from the shipped sample."""
    sample = load_ct_kidney_sample(image_size=size)
    for index, name in enumerate(sample.target_names):
        folder = root / name
        folder.mkdir(parents=True)
        rows = np.flatnonzero(sample.target == index)[:per_class]
        for number, row in enumerate(rows, start=1):
            pixels = (sample.images[row] * 255).round().astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}- ({number}).png")
    return root


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return write_class_folders(tmp_path_factory.mktemp("data") / "CT")


@pytest.fixture(scope="module")
def model_file(dataset_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.ckdl"
    status = main(
        ["train", str(dataset_dir), "--out", str(path), "--image-size", "32",
         "--epochs", "2", "--width", "4", "--threads", "1"]
    )
    assert status == 0
    return path


def run(args, capsys):
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(status, err, *fragments):
    assert status == 1
    lines = [line for line in err.strip().splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- demo -------------------------------------------------------------------------


def test_demo_writes_report_and_model(tmp_path, capsys):
    out = tmp_path / "demo"
    status, stdout, stderr = run(["demo", "--out", out, "--epochs", 1, "--folds", 2], capsys)
    assert status == 0, stderr
    assert f"report: {out / 'report.html'}" in stdout
    page = (out / "report.html").read_text()
    for heading in ("Data", "Cross-validated scores", "Calibration", "Grad-CAM explanations",
                    "Leakage audit", "Configuration and versions"):
        assert f"<h2>{heading}</h2>" in page
    for png in ("confusion_matrix.png", "reliability.png", "gradcam.png"):
        assert (out / png).stat().st_size > 1000
        assert f'src="{png}"' in page
    assert "CC BY 4.0" in page
    assert "cross-validating" in stderr
    model = load(out / "model.ckdl")
    sample = load_ct_kidney_sample(image_size=64)
    assert model.predict(sample.data[:3]).shape == (3,)
    # Nothing is overwritten without --force.
    status, _, stderr = run(["demo", "--out", out, "--epochs", 1, "--folds", 2], capsys)
    assert_one_line_error(status, stderr, "already exists", "--force")


# --- train / evaluate / predict / explain / audit ---------------------------------


def test_train_writes_a_loadable_model(model_file, dataset_dir):
    model = load(model_file)
    assert list(model[-1].classes_) == ["Cyst", "Normal", "Stone", "Tumor"]
    assert model[-1].image_shape_ == (1, 32, 32)
    assert model[-1].max_epochs == 2
    assert not Path(f"{model_file}.checkpoint").exists()


def test_train_refuses_to_overwrite(model_file, dataset_dir, capsys):
    before = model_file.read_bytes()
    status, _, err = run(["train", dataset_dir, "--out", model_file, "--epochs", 1], capsys)
    assert_one_line_error(status, err, "already exists")
    assert model_file.read_bytes() == before


@pytest.mark.parametrize("method", ["class-weight", "none"])
def test_train_methods(method, dataset_dir, tmp_path, capsys):
    path = tmp_path / "m.ckdl"
    status, _, err = run(["train", dataset_dir, "--out", path, "--image-size", 32, "--epochs", 1,
                          "--width", 4, "--method", method], capsys)
    assert status == 0, err
    model = load(path)
    assert not hasattr(model, "steps")
    assert (model.class_weight == "balanced") == (method == "class-weight")


def test_evaluate(model_file, dataset_dir, capsys):
    status, out, err = run(["evaluate", model_file, dataset_dir, "--format", "json"], capsys)
    assert status == 0, err
    scores = json.loads(out)
    assert scores["n_images"] == 32
    assert 0 <= scores["accuracy"] <= 1 and 0 <= scores["macro_f1"] <= 1
    status, out, _ = run(["evaluate", model_file, dataset_dir], capsys)
    assert "macro-F1" in out and "Stone" in out


def test_evaluate_with_a_class_folder_missing(model_file, dataset_dir, tmp_path, capsys):
    partial = tmp_path / "partial"
    for name in ("Cyst", "Normal", "Tumor"):
        (partial / name).mkdir(parents=True)
        for f in (dataset_dir / name).iterdir():
            (partial / name / f.name).write_bytes(f.read_bytes())
    status, _, err = run(["evaluate", model_file, partial], capsys)
    assert_one_line_error(status, err, "Stone")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_predict(model_file, dataset_dir, fmt, capsys):
    status, out, err = run(["predict", model_file, dataset_dir / "Stone", "--format", fmt], capsys)
    assert status == 0, err
    if fmt == "json":
        rows = json.loads(out)
    else:
        import csv
        import io

        rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 8
    for row in rows:
        assert row["label"] in {"Cyst", "Normal", "Stone", "Tumor"}
        assert sum(float(row[c]) for c in ("Cyst", "Normal", "Stone", "Tumor")) == pytest.approx(1, abs=1e-4)


def test_predict_to_file_and_no_overwrite(model_file, dataset_dir, tmp_path, capsys):
    target = tmp_path / "predictions.csv"
    target.write_text("keep me")
    status, _, err = run(["predict", model_file, dataset_dir / "Cyst", "-o", target], capsys)
    assert_one_line_error(status, err, "exists")
    assert target.read_text() == "keep me"
    status, _, err = run(["predict", model_file, dataset_dir / "Cyst", "-o", target, "--force"], capsys)
    assert status == 0, err
    assert target.read_text().startswith("file,label,")


def test_predict_resizes_other_sizes_and_says_so(model_file, tmp_path, capsys):
    big = tmp_path / "big.png"
    Image.fromarray(np.full((100, 80), 90, dtype=np.uint8)).save(big)
    status, out, err = run(["predict", model_file, big], capsys)
    assert status == 0, err
    assert "resized to 32x32" in err
    assert "big.png" in out


def test_explain_writes_overlays_and_grid(model_file, dataset_dir, tmp_path, capsys):
    out = tmp_path / "heatmaps"
    status, stdout, err = run(["explain", model_file, dataset_dir / "Tumor", "--out", out,
                               "--method", "gradcam++", "--target", "Tumor"], capsys)
    assert status == 0, err
    overlays = sorted(out.glob("*_heatmap.png"))
    assert len(overlays) == 8
    assert (out / "grid.png").exists()
    with Image.open(overlays[0]) as image:
        assert image.size == (32, 32)
    status, _, err = run(["explain", model_file, dataset_dir / "Tumor", "--out", out], capsys)
    assert_one_line_error(status, err, "already exists")
    status, _, err = run(["explain", model_file, dataset_dir / "Tumor", "--out", tmp_path / "x",
                          "--target", "Banana"], capsys)
    assert_one_line_error(status, err, "Banana")


def test_audit(dataset_dir, capsys):
    status, out, err = run(["audit", dataset_dir, "--image-size", 32, "--folds", 2, "--format", "json"], capsys)
    assert status == 0, err
    summary = json.loads(out)
    assert summary["n_images"] == 32
    assert len(summary["by_scan_series"]) == 2 and len(summary["random_slices"]) == 2


# --- bad input ----------------------------------------------------------------------


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    status, _, err = run(["train", tmp_path / "empty", "--out", tmp_path / "m.ckdl"], capsys)
    assert_one_line_error(status, err)
    status, _, err = run(["predict", tmp_path / "m.ckdl", tmp_path / "empty"], capsys)
    assert_one_line_error(status, err)


def test_unreadable_image(model_file, dataset_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    status, _, err = run(["predict", model_file, broken], capsys)
    assert_one_line_error(status, err, "scan.png")


def test_model_file_from_elsewhere(dataset_dir, tmp_path, capsys):
    sentinel = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (sentinel,))

    fake = tmp_path / "model.ckdl"
    fake.write_bytes(pickle.dumps(Evil()))
    status, _, err = run(["predict", fake, dataset_dir / "Cyst"], capsys)
    assert_one_line_error(status, err)
    assert not sentinel.exists()
    status, _, err = run(["predict", tmp_path / "missing.ckdl", dataset_dir / "Cyst"], capsys)
    assert_one_line_error(status, err, "missing.ckdl")


def test_debug_shows_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["predict", str(tmp_path / "missing.ckdl"), str(tmp_path), "--debug"])


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "reproduce-paper" in capsys.readouterr().out


# --- interrupted training resumes to the configured epochs ---------------------------


class InterruptAfter(Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) >= self.epochs:
            raise KeyboardInterrupt


def test_interrupted_training_resumes(dataset_dir, tmp_path):
    dataset = load_ct_kidney(dataset_dir, image_size=32)
    path = tmp_path / "model.ckdl"
    settings = dict(max_epochs=4, width=4, method="smote")
    with pytest.raises(RuntimeError, match="stopped after epoch 2 of 4"):
        train(dataset, path, extra_callbacks=[("stop", InterruptAfter(2))], **settings)
    assert not path.exists()
    assert Path(f"{path}.checkpoint", "history.json").exists()
    model = train(dataset, path, resume=True, **settings)
    history = model[-1].history_
    assert len(history) == 4
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    # The cosine schedule continued where it stopped instead of restarting.
    lrs = [row["event_lr"] for row in history]
    assert lrs == sorted(lrs, reverse=True) and lrs[2] < lrs[0]
    assert path.exists() and not Path(f"{path}.checkpoint").exists()
    with pytest.raises(FileNotFoundError, match="Nothing to resume"):
        train(dataset, tmp_path / "other.ckdl", resume=True, **settings)
