"""The ``ckdlearn`` command, end to end on the shipped sample and temp folders."""

import json
import os
import pickle
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skorch.callbacks import Callback

from ckdlearn.app.cli import main
from ckdlearn.datasets import load_ct_kidney, load_ct_kidney_sample
from ckdlearn.persistence import load
from ckdlearn.app import train


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


@pytest.mark.slow
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
    # Progress names the fold, the epoch of how many, and the time.
    for stage in ("fold 1 of 2", "fold 2 of 2", "final model"):
        assert re.search(rf"^{stage}: epoch 1 of 1: train loss \d+\.\d{{3}}.*; "
                         r"\d+:\d\d elapsed, about \d+:\d\d left$", stderr, re.M), stderr
    assert "training: epoch" not in stderr
    # Every score table shows the trivial baselines beside the model.
    assert "baseline: majority class" in page and "baseline: stratified chance" in page
    # The verdict is read off the numbers: intervals over scan series, the
    # weakest class, the scores' names in words.
    assert "clearly learned" not in page
    assert "resampling scan series" in page and "Weakest class:" in page
    assert "<th>macro-F1</th>" in page and "ECE (expected calibration error)" in page
    assert "AURC" in page and "Layers, randomised cumulatively from the top" in page
    # The Grad-CAM cases come from different scan series, and the page says
    # what to look for in them.
    gradcam = page[page.index("<h2>Grad-CAM explanations</h2>"):page.index("<h2>Leakage audit</h2>")]
    rows = re.findall(r"<tr><td>([^<]+)</td><td>(\d+)</td>", gradcam)
    assert len(rows) >= 4
    series = [int(s) for _, s in rows]
    assert len(set(series)) == len(series)
    assert "What to look for" in gradcam
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


def test_train_with_validation_holds_scan_series_out_before_smote(tmp_path, capsys, monkeypatch):
    # `ckdlearn train --validation` builds ckdlearn's pipeline: whole scan
    # series leave before SMOTE, so no synthetic image is made from a
    # validation slice, and the network validates on real slices only.
    from ckdlearn.app import load_labelled
    from ckdlearn.over_sampling import LeanSMOTE

    sample = load_ct_kidney_sample(image_size=32)
    rows = np.concatenate([np.flatnonzero(sample.groups == g)[:4] for g in np.unique(sample.groups)])
    csv_lines = ["filename,group"]
    for number, row in enumerate(rows, start=1):
        name = sample.target_names[sample.target[row]]
        folder = tmp_path / "CT" / name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((sample.images[row] * 255).round().astype(np.uint8)).save(
            folder / f"{name}- ({number}).png")
        csv_lines.append(f"{name}/{name}- ({number}).png,scan{sample.groups[row]}")
    (tmp_path / "groups.csv").write_text("\n".join(csv_lines) + "\n")
    resampled = []
    original = LeanSMOTE.fit_resample

    def recording(self, X, y, **params):
        resampled.append(np.array(X, copy=True))
        return original(self, X, y, **params)

    monkeypatch.setattr(LeanSMOTE, "fit_resample", recording)
    status, _, err = run(["train", tmp_path / "CT", "--out", tmp_path / "m.ckdl", "--image-size", 32,
                          "--epochs", 2, "--width", 4, "--threads", 1, "--validation", 0.25,
                          "--groups", tmp_path / "groups.csv"], capsys)
    assert status == 0, err
    model = load(tmp_path / "m.ckdl")
    dataset = load_labelled(tmp_path / "CT", 32, groups=tmp_path / "groups.csv")
    held_out = np.isin(dataset.groups, model[-1].validation_groups_)
    assert type(model).__module__ == "ckdlearn.pipeline"
    assert len(np.unique(dataset.groups[held_out])) == 4  # a quarter of 16 series, whole
    assert len(resampled) == 1 and np.array_equal(resampled[0], dataset.data[~held_out])
    assert "valid_loss" in model[-1].history_[-1]
    assert "validated on 4 of 16 scan series (16 slices), held out before SMOTE; kept epoch" in err


def test_train_validation_must_be_a_share(dataset_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(dataset_dir), "--out", str(tmp_path / "m.ckdl"), "--validation", "2"])
    assert exit_info.value.code == 2
    assert "must be below 1" in capsys.readouterr().err


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
    classes = ["Cyst", "Normal", "Stone", "Tumor"]
    assert scores["classes"] == classes and scores["series"]["classes"] == classes
    # The slice matrix: true classes in rows, 8 slices of each.
    matrix = np.array(scores["matrix"])
    assert matrix.shape == (4, 4) and matrix.sum(axis=1).tolist() == [8, 8, 8, 8]
    assert np.array(scores["series"]["matrix"]).sum() == scores["series"]["n_series"]
    assert sorted(scores["per_class"]) == classes
    for index, name in enumerate(classes):
        row = scores["per_class"][name]
        assert row["support"] == 8
        assert row["recall"] == pytest.approx(matrix[index, index] / 8)
        predicted = matrix[:, index].sum()
        assert row["precision"] == pytest.approx(matrix[index, index] / predicted if predicted else 0)
        assert 0 <= row["f1"] <= 1
    assert np.mean([scores["per_class"][c]["f1"] for c in classes]) == pytest.approx(scores["macro_f1"])
    status, out, _ = run(["evaluate", model_file, dataset_dir], capsys)
    assert "macro-F1" in out and "Stone" in out


def test_evaluate_shows_trivial_baselines(model_file, dataset_dir, capsys):
    status, out, err = run(["evaluate", model_file, dataset_dir], capsys)
    assert status == 0, err
    assert "majority class" in out and "stratified chance" in out
    status, out, _ = run(["evaluate", model_file, dataset_dir, "--format", "json"], capsys)
    baselines = json.loads(out)["baselines"]
    # 8 slices per class: always answering one class is right a quarter of the time.
    assert baselines["majority class"]["accuracy"] == pytest.approx(0.25)
    assert set(baselines["stratified chance"]) == {"accuracy", "macro_f1"}


def test_evaluate_with_a_class_folder_missing(model_file, dataset_dir, tmp_path, capsys):
    partial = tmp_path / "partial"
    for name in ("Cyst", "Normal", "Tumor"):
        (partial / name).mkdir(parents=True)
        for f in (dataset_dir / name).iterdir():
            (partial / name / f.name).write_bytes(f.read_bytes())
    status, out, err = run(["evaluate", model_file, partial, "--format", "json"], capsys)
    assert status == 0, err
    assert "no Stone images" in err
    scores = json.loads(out)
    assert scores["n_images"] == 24 and scores["missing_classes"] == ["Stone"]
    # A folder of a class the model never saw cannot be scored.
    (partial / "Banana").mkdir()
    (partial / "Banana" / "b.png").write_bytes((partial / "Cyst" / "Cyst- (1).png").read_bytes())
    status, _, err = run(["evaluate", model_file, partial], capsys)
    assert_one_line_error(status, err, "Banana", "does not know")


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


def test_predict_answers_each_scan_and_can_abstain(model_file, dataset_dir, capsys):
    status, out, err = run(["predict", model_file, dataset_dir / "Stone", "--format", "json"], capsys)
    assert status == 0, err
    rows = json.loads(out)
    scans = {row["scan"] for row in rows}
    assert 1 <= len(scans) < len(rows)
    for scan in scans:
        labels = {row["scan_label"] for row in rows if row["scan"] == scan}
        assert len(labels) == 1, "one answer per scan"
    # One summary line, not one per scan; each scan's answer is in the rows.
    assert not [line for line in err.splitlines() if line.startswith("scan ")]
    summary = [line for line in err.splitlines() if line.startswith("predicted ")]
    assert len(summary) == 1, err
    assert f"predicted 8 slices in {len(scans)} inferred scan series" in summary[0]
    assert "scan_label column" in summary[0]
    assert all(0 <= row["uncertainty"] <= 1 for row in rows)
    status, out, err = run(["predict", model_file, dataset_dir / "Stone", "--format", "json",
                            "--abstain-below", "1.0"], capsys)
    assert status == 0, err
    rows = json.loads(out)
    assert {row["label"] for row in rows} == {"uncertain"}
    assert {row["scan_label"] for row in rows} == {"uncertain"}
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(model_file), str(dataset_dir), "--abstain-below", "0"])
    assert exit_info.value.code == 2 and "must be above 0" in capsys.readouterr().err


def test_predict_to_file_and_no_overwrite(model_file, dataset_dir, tmp_path, capsys):
    target = tmp_path / "predictions.csv"
    target.write_text("keep me")
    status, _, err = run(["predict", model_file, dataset_dir / "Cyst", "-o", target], capsys)
    assert_one_line_error(status, err, "exists")
    assert target.read_text() == "keep me"
    status, _, err = run(["predict", model_file, dataset_dir / "Cyst", "-o", target, "--force"], capsys)
    assert status == 0, err
    assert target.read_text().startswith("file,label,")
    nested = tmp_path / "new" / "folder" / "predictions.json"
    status, _, err = run(["predict", model_file, dataset_dir / "Cyst", "-o", nested, "--format", "json"], capsys)
    assert status == 0, err
    assert len(json.loads(nested.read_text())) == 8


def test_predict_says_nothing_of_shrinking_square_slices(model_file, tmp_path, capsys):
    for size in (32, 64, 512):
        Image.fromarray(np.full((size, size), 90, dtype=np.uint8)).save(tmp_path / f"square{size}.png")
    status, out, err = run(["predict", model_file, tmp_path], capsys)
    assert status == 0, err
    assert "resized" not in err and "note:" not in err
    small = tmp_path / "small.png"
    Image.fromarray(np.full((16, 16), 90, dtype=np.uint8)).save(small)
    status, out, err = run(["predict", model_file, tmp_path], capsys)
    notes = [line for line in err.splitlines() if "resized" in line]
    assert notes == ["note: of 4 images, 1 smaller (enlarged) were resized to 32x32 pixels."], err


def test_predict_resizes_other_sizes_and_says_so(model_file, tmp_path, capsys):
    big = tmp_path / "big.png"
    Image.fromarray(np.full((100, 80), 90, dtype=np.uint8)).save(big)
    status, out, err = run(["predict", model_file, big], capsys)
    assert status == 0, err
    assert "resized to 32x32" in err and "1 not square (aspect ratio changed)" in err
    assert "big.png" in out


def test_explain_writes_overlays_and_grid(model_file, dataset_dir, tmp_path, capsys):
    out = tmp_path / "heatmaps"
    status, stdout, err = run(["explain", model_file, dataset_dir / "Tumor", "--out", out,
                               "--method", "gradcam++", "--target", "Tumor"], capsys)
    assert status == 0, err
    overlays = sorted(out.glob("*_heatmap.png"))
    assert len(overlays) == 8
    assert (out / "grid.png").exists()
    # Drawn on the slice as read from its file, at a viewable size, not at
    # the model's 32 x 32 input.
    with Image.open(overlays[0]) as image:
        assert image.size == (256, 256)
    with Image.open(overlays[0]) as image:
        assert image.text["Title"] == "gradcam++: class Tumor"
        assert "gradcam++ heatmap of class Tumor (predicted " in image.text["Description"]
    status, _, err = run(["explain", model_file, dataset_dir / "Tumor", "--out", out], capsys)
    assert_one_line_error(status, err, "already exists")
    status, _, err = run(["explain", model_file, dataset_dir / "Tumor", "--out", tmp_path / "x",
                          "--target", "Banana"], capsys)
    assert_one_line_error(status, err, "Banana")


def test_explain_grid_names_the_method_the_target_and_what_it_leaves_out(tmp_path, monkeypatch):
    from ckdlearn.app import image_files as files

    names = [tmp_path / f"slice{i}.png" for i in range(20)]
    predictions, scores = ["Cyst"] * 20, np.linspace(0, 1, 20)
    titles = files.grid_titles(names[:2], predictions, scores, target="Stone")
    assert titles[0] == "slice0.png\nfor Stone (pred Cyst) | faith 0.00"
    assert files.grid_titles(names[:1], predictions, scores)[0] == "slice0.png\npred Cyst | faith 0.00"
    assert files.grid_heading("gradcam++", "Stone", 16, 16, tmp_path) == "gradcam++ heatmaps of class Stone"
    assert files.grid_heading("gradcam", None, 16, 60, tmp_path) == (
        f"gradcam heatmaps of each prediction\n16 of 60 images shown, spread over the predicted classes; "
        f"all overlays in {tmp_path}"
    )
    # The grid drawn: at most GRID_SIZE panels, the heading, and a colour bar.
    rng = np.random.default_rng(0)
    figure = files._grid(names, rng.random((20, 8, 8)), rng.random((20, 8, 8)), predictions, scores,
                         "gradcam", "Stone", tmp_path)
    panels = [ax for ax in figure.axes if ax.get_visible() and ax.get_title()]
    assert len(panels) == files.GRID_SIZE
    assert all("for Stone" in ax.get_title() for ax in panels)
    assert "16 of 20 images shown" in figure._suptitle.get_text()
    assert any(ax.get_label() == "<colorbar>" for ax in figure.axes)
    # Not the first 16 files: every predicted class, spread over its files.
    predictions = ["Cyst"] * 12 + ["Normal"] * 6 + ["Stone"] * 2
    assert files.grid_picks(predictions, 6).tolist() == [0, 11, 12, 17, 18, 19]
    assert files.grid_picks(predictions, 20).tolist() == list(range(20))
    assert len(files.grid_picks(predictions, 16)) == 16


def test_explain_says_when_the_grid_shows_some(model_file, dataset_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("ckdlearn.app.image_files.GRID_SIZE", 4)
    status, out, err = run(["explain", model_file, dataset_dir / "Tumor", "--out", tmp_path / "h"], capsys)
    assert status == 0, err
    assert "wrote 8 overlays" in out and "(showing 4 of them)" in out


def test_audit(dataset_dir, capsys):
    status, out, err = run(["audit", dataset_dir, "--image-size", 32, "--folds", 2, "--format", "json"], capsys)
    assert status == 0, err
    summary = json.loads(out)
    assert summary["n_images"] == 32
    assert len(summary["by_scan_series"]) == 2 and len(summary["random_slices"]) == 2
    status, out, err = run(["audit", dataset_dir, "--image-size", 32, "--folds", 2], capsys)
    assert status == 0, err
    # The counts are of pairs of slices, and say so.
    near = sum(fold["n_near"] for fold in summary["random_slices"])
    assert f"exact, {near} near)" in out and out.count("(duplicate pairs: ") == 2


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


class InterruptInFirstEpoch(Callback):
    def __init__(self, error=KeyboardInterrupt):
        self.error = error

    def on_batch_end(self, net, **kwargs):
        raise self.error


class _Stop(BaseException):
    """Raised past skorch, as the command's Ctrl-C handler raises."""


@pytest.mark.parametrize("error", [KeyboardInterrupt, _Stop])
def test_interrupt_in_the_first_epoch_leaves_no_checkpoint(error, dataset_dir, tmp_path, capsys):
    dataset = load_ct_kidney(dataset_dir, image_size=32)
    path = tmp_path / "model.ckdl"
    settings = dict(max_epochs=3, width=4, method="none")
    with pytest.raises(error):
        train(dataset, path, extra_callbacks=[("stop", InterruptInFirstEpoch(error))], **settings)
    assert not Path(f"{path}.checkpoint").exists() and not path.exists()
    # So a plain run starts at once, and --resume says there is nothing to resume.
    args = ["train", dataset_dir, "--out", path, "--image-size", 32, "--epochs", 3, "--width", 4,
            "--method", "none"]
    status, _, err = run([*args, "--resume"], capsys)
    assert_one_line_error(status, err, "Nothing to resume", "no checkpoint")
    status, _, err = run(args, capsys)
    assert status == 0, err


def test_resume_explains_a_checkpoint_without_epochs(dataset_dir, tmp_path, capsys):
    # What earlier versions left after an interrupt in epoch 1.
    path = tmp_path / "model.ckdl"
    Path(f"{path}.checkpoint").mkdir()
    Path(f"{path}.checkpoint", "settings.json").write_text("{}")
    status, _, err = run(["train", dataset_dir, "--out", path, "--resume"], capsys)
    assert_one_line_error(status, err, "Nothing to resume", "stopped before its first epoch ended")
    assert "loading" not in err


# --- outputs: checked first, only ckdlearn's own replaced (issue 13) -----------------


def test_force_replaces_only_named_outputs(model_file, dataset_dir, tmp_path, capsys, monkeypatch):
    # ckdlearn explain m.ckdl few --out $PWD --force once deleted thesis.txt and few/.
    work = tmp_path / "work"
    few = work / "few"
    few.mkdir(parents=True)
    for f in sorted((dataset_dir / "Cyst").iterdir())[:3]:
        (few / f.name).write_bytes(f.read_bytes())
    (work / "thesis.txt").write_text("years of work")
    before = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    monkeypatch.chdir(work)
    for _ in range(2):
        status, _, err = run(["explain", model_file, "few", "--out", work, "--force"], capsys)
        assert status == 0, err
    assert {p: p.read_bytes() for p in before} == before
    written = {p.name for p in work.iterdir() if p.is_file()} - {"thesis.txt"}
    assert written == {"grid.png"} | {f"{i:04d}_{p.stem}_heatmap.png" for i, p in enumerate(sorted(few.iterdir()))}


def test_output_folders_get_normal_permissions(model_file, dataset_dir, tmp_path, capsys):
    out = tmp_path / "new" / "heatmaps"
    status, _, err = run(["explain", model_file, dataset_dir / "Cyst", "--out", out], capsys)
    assert status == 0, err
    umask = os.umask(0)
    os.umask(umask)
    for folder in (out, out.parent):
        assert folder.stat().st_mode & 0o777 == 0o777 & ~umask
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("command", ["demo", "train", "predict", "explain"])
def test_outputs_are_checked_before_any_work(command, model_file, dataset_dir, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    for name in ("report.html", "grid.png"):
        (taken / name).write_text("keep")
    target = tmp_path / "taken.out"
    target.write_text("keep")
    args = {
        "demo": ["demo", "--out", taken],
        "train": ["train", dataset_dir, "--out", target],
        "predict": ["predict", model_file, dataset_dir, "-o", target],
        "explain": ["explain", model_file, dataset_dir / "Cyst", "--out", taken],
    }[command]
    status, _, err = run(args, capsys)
    assert_one_line_error(status, err, "already exists", "--force")
    assert "overwrite=True" not in err and "force=True" not in err
    assert "Errno" not in err and err.count(str(tmp_path)) == 1  # the path, said once
    # Nothing was loaded, trained or predicted first.
    for sign_of_work in ("loading", "sample:", "resized", "cross-validating", "epoch"):
        assert sign_of_work not in err
    assert target.read_text() == "keep" and (taken / "report.html").read_text() == "keep"


@pytest.mark.parametrize("command", ["demo", "train", "predict", "explain", "reproduce-paper"])
def test_unwritable_outputs_fail_first_naming_the_path_given(command, model_file, dataset_dir, tmp_path,
                                                              capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("keep")
    target = a_file / "sub" / "out.x"
    args = {
        "demo": ["demo", "--out", a_file / "sub"],
        "train": ["train", dataset_dir, "--out", target],
        "predict": ["predict", model_file, dataset_dir, "-o", target],
        "explain": ["explain", model_file, dataset_dir / "Cyst", "--out", a_file / "sub"],
        "reproduce-paper": ["reproduce-paper", "--data", dataset_dir, "--json", target],
    }[command]
    status, _, err = run(args, capsys)
    assert_one_line_error(status, err, str(a_file / "sub"), f"{str(a_file)!r} is a file, not a folder")
    assert "Errno" not in err and ".tmp" not in err
    for sign_of_work in ("loading", "sample:", "resized", "cross-validating", "epoch", "protocol"):
        assert sign_of_work not in err
    assert a_file.read_text() == "keep"


def test_explain_out_must_be_a_folder(model_file, dataset_dir, tmp_path, capsys):
    a_file = tmp_path / "heatmaps.png"
    a_file.write_text("keep")
    status, _, err = run(["explain", model_file, dataset_dir / "Cyst", "--out", a_file], capsys)
    assert_one_line_error(status, err, str(a_file), "is a file", "folder")
    assert "not writable" not in err and "Errno" not in err
    assert a_file.read_text() == "keep"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
@pytest.mark.parametrize("command", ["train", "predict"])
def test_outputs_on_a_read_only_file_system_fail_first(command, model_file, dataset_dir, capsys):
    # /proc takes no new files even from root, whom os.access lets through.
    target = Path("/proc/ckdlearn-test-output.x")
    args = {
        "train": ["train", dataset_dir, "--out", target],
        "predict": ["predict", model_file, dataset_dir, "-o", target],
    }[command]
    status, _, err = run(args, capsys)
    assert_one_line_error(status, err, f"cannot write {str(target)!r}", "not a writable folder")
    assert "Errno" not in err and ".tmp" not in err and "ckdlearn-probe" not in err
    assert "loading" not in err and "predicted" not in err


def test_cli_hints_use_cli_syntax(model_file, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    status, _, err = run(["predict", model_file, broken], capsys)
    assert_one_line_error(status, err, "scan.png", "--on-error skip")
    assert "on_error=" not in err
    status, out, err = run(["predict", model_file, broken, "--on-error", "skip"], capsys)
    assert "warning: Left out 1 slice file" in err and "scan.png" in err
    assert_one_line_error(status, err, "None of the 1 image files could be read")


def test_stray_files_in_class_folders(model_file, dataset_dir, tmp_path, capsys):
    # An extension-less README was read as DICOM and failed with a pydicom message.
    data = tmp_path / "CT"
    for folder in dataset_dir.iterdir():
        (data / folder.name).mkdir(parents=True)
        for f in folder.iterdir():
            (data / folder.name / f.name).write_bytes(f.read_bytes())
    (data / "Cyst" / "README").write_text("Slices exported on Monday.\n")
    (data / "Cyst" / "notes.txt").write_text("not an image")
    status, out, err = run(["audit", data, "--image-size", 32, "--folds", 2, "--format", "json"], capsys)
    assert status == 0, err
    assert json.loads(out)["n_images"] == 32
    status, out, err = run(["predict", model_file, data / "Cyst"], capsys)
    assert status == 0, err
    assert "README" not in out and len(out.strip().splitlines()) == 9
    status, _, err = run(["predict", model_file, data / "Cyst" / "README"], capsys)
    assert_one_line_error(status, err, "README", "DICOM")


def test_wrong_class_folder_names_are_reported(dataset_dir, tmp_path, capsys):
    data = tmp_path / "CT"
    for folder in dataset_dir.iterdir():
        name = {"Tumor": "Tumour"}.get(folder.name, folder.name)
        (data / name).mkdir(parents=True)
        for f in folder.iterdir():
            (data / name / f.name).write_bytes(f.read_bytes())
    status, _, err = run(["audit", data, "--image-size", 32, "--folds", 2], capsys)
    assert status == 0, err
    warning = [line for line in err.splitlines() if "warning:" in line]
    assert len(warning) == 1 and "'Tumour'" in warning[0] and "did you mean 'Tumor'" in warning[0]
    # In the command's terms, not the Python argument's.
    assert "classes=" not in err and "out of the data folder" in warning[0]
    assert "Cyst 8, Normal 8, Stone 8, Tumour 8" in err


# --- usage errors, speed, streams (issues 13 and 17) ---------------------------------


@pytest.mark.parametrize(
    "option, value, message",
    [("--threads", "-2", "must be at least 1"), ("--batch-size", "0", "must be at least 2"),
     ("--epochs", "0", "must be at least 1"), ("--lr", "0", "must be above 0"), ("--image-size", "x", "expected a number")],
)
def test_bad_numbers_are_usage_errors(option, value, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tmp_path), "--out", str(tmp_path / "m.ckdl"), option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: {message}" in err and "Traceback" not in err


def test_help_version_and_typos_do_not_load_torch():
    code = (
        "import sys\n"
        "from ckdlearn.app.cli import main\n"
        "for argv in (['--help'], ['--version'], ['trian'], ['train', '--help'], ['explain', '--help'],\n"
        "             ['demo', '--help'], ['evaluate', '--help'], ['predict', '--help'], ['audit', '--help'],\n"
        "             ['reproduce-paper', '--help'], ['--debug', 'explain', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('torch', 'skorch', 'sklearn', 'matplotlib', 'pytorch_grad_cam', 'numpy')\n"
        "         if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "invalid choice: 'trian'" in done.stderr
    assert "did you mean 'train'?" in done.stderr


def test_explain_lists_every_cam_method_without_importing_them(capsys):
    from ckdlearn.app._method_names import CAM_METHOD_NAMES
    from ckdlearn.explanation import CAM_METHODS

    assert CAM_METHOD_NAMES == tuple(CAM_METHODS)
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "CAM method: " + ", ".join(CAM_METHODS) in text


def test_help_shows_defaults_and_explains_arguments(capsys):
    for command in ("predict", "explain", "evaluate", "audit", "train"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        if command in ("predict", "explain"):
            assert "FILES_OR_DIR image files and/or folders" in text
        if command != "explain" and command != "train":
            assert re.search(r"--format \{[a-z,]+\} \w", text), text  # explained, not bare
    assert "seeds SMOTE and the network (default: 0)" in text


def test_debug_is_accepted_before_the_command(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "predict", str(tmp_path / "missing.ckdl"), str(tmp_path)])


@pytest.mark.parametrize(("argv", "suggested"), [
    (["trian"], "did you mean 'train'?"),
    (["--debug", "evalute"], "did you mean 'evaluate'?"),
    (["explain", "m.ckdl", "x.png", "--out", "o", "--method", "gradcm"], "did you mean 'gradcam'?"),
    (["train", "DATA", "--out", "m.ckdl", "--method", "smoet"], "did you mean 'smote'?"),
    (["predict", "m.ckdl", "x.png", "--input-domain", "clahee"], "did you mean 'clahe'?"),
])
def test_typos_get_the_closest_choice_in_every_python(argv, suggested, capsys):
    # Suggested from ckdlearn's own list of choices, not by reading
    # argparse's message (whose quoting changed in Python 3.12.8).
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and suggested in err


def test_stdout_holds_results_and_progress_goes_to_stderr(dataset_dir, tmp_path, capsys):
    path = tmp_path / "m.ckdl"
    status, out, err = run(["train", dataset_dir, "--out", path, "--image-size", 32,
                            "--epochs", 2, "--width", 4], capsys)
    assert status == 0, err
    assert out == f"model: {path}\n"
    assert "training: epoch 1 of 2: train loss" in err and "training: epoch 2 of 2:" in err
    assert "\x1b[" not in out + err  # no colour codes when not on a terminal


# --- training runs: checkpoints, divergence, interrupts (issue 13) -------------------


def test_train_refuses_an_unfinished_run_without_resume(dataset_dir, tmp_path, capsys):
    dataset = load_ct_kidney(dataset_dir, image_size=32)
    path = tmp_path / "model.ckdl"
    with pytest.raises(RuntimeError, match="stopped after epoch 2"):
        train(dataset, path, max_epochs=4, width=4, extra_callbacks=[("stop", InterruptAfter(2))])
    history = Path(f"{path}.checkpoint", "history.json")
    before = history.read_bytes()
    args = ["train", dataset_dir, "--out", path, "--image-size", 32, "--epochs", 4, "--width", 4]
    status, _, err = run(args, capsys)
    assert_one_line_error(status, err, "unfinished", "--resume", "--force")
    assert history.read_bytes() == before
    assert "loading" not in err


@pytest.mark.parametrize(
    "changed, shown",
    [(["--image-size", 16], "image_size 32 (now 16)"), (["--lr", "0.01"], "lr 0.001 (now 0.01)"),
     (["--width", 8], "width 4 (now 8)"), (["--method", "none"], "method 'smote' (now 'none')"),
     (["--batch-size", 16], "batch_size 32 (now 16)"), (["--epochs", 6], "max_epochs 4 (now 6)")],
)
def test_resume_refuses_other_settings(changed, shown, dataset_dir, tmp_path, capsys):
    dataset = load_ct_kidney(dataset_dir, image_size=32)
    path = tmp_path / "model.ckdl"
    with pytest.raises(RuntimeError):
        train(dataset, path, max_epochs=4, width=4, extra_callbacks=[("stop", InterruptAfter(1))])
    args = ["train", dataset_dir, "--out", path, "--image-size", 32, "--epochs", 4,
            "--width", 4, "--resume", *changed]
    status, _, err = run(args, capsys)
    assert_one_line_error(status, err, "other settings", shown, "--force")
    assert len(err) < 600 and not path.exists()
    # The same settings resume.
    status, _, err = run(args[: -len(changed)], capsys)
    assert status == 0, err
    assert len(load(path)[-1].history_) == 4


def test_diverged_training_writes_no_model(dataset_dir, tmp_path, capsys):
    path = tmp_path / "d.ckdl"
    status, out, err = run(["train", dataset_dir, "--out", path, "--lr", "1e4", "--epochs", 8,
                            "--image-size", 32, "--width", 4], capsys)
    assert_one_line_error(status, err, "diverged", "learning rate")
    assert out == ""
    assert not path.exists() and not Path(f"{path}.checkpoint").exists()


def _interrupt_once_training(args, tmp_path):
    """Run the command in a subprocess, press Ctrl-C after its first epoch."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ckdlearn.app.cli", *map(str, args), "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    lines = []
    for line in process.stderr:
        lines.append(line)
        if ": epoch 1 of " in line:
            process.send_signal(signal.SIGINT)
            break
    out, rest = process.communicate(timeout=120)
    return process.returncode, out, "".join(lines) + rest


@pytest.mark.slow
def test_ctrl_c_stops_train_with_130_and_keeps_the_checkpoint(dataset_dir, tmp_path):
    path = tmp_path / "m.ckdl"
    status, out, err = _interrupt_once_training(
        ["train", dataset_dir, "--out", path, "--image-size", 32, "--epochs", 200, "--width", 4], tmp_path
    )
    assert status == 130, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    assert out == "" and not path.exists()
    assert Path(f"{path}.checkpoint", "history.json").exists()


@pytest.mark.slow
def test_ctrl_c_stops_the_demo_with_130_and_writes_nothing(tmp_path):
    out_dir = tmp_path / "demo"
    status, out, err = _interrupt_once_training(["demo", "--out", out_dir, "--epochs", 200], tmp_path)
    assert status == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert out == "" and not out_dir.exists()


# --- scan groups: explicit, and said when inferred unreliably -------------------------


def test_predict_with_groups_file_keeps_each_slice_label(model_file, dataset_dir, tmp_path, capsys):
    stone = sorted((dataset_dir / "Stone").glob("*.png"))
    groups = tmp_path / "groups.csv"
    groups.write_text("filename,group\n" + "".join(
        f"{path.name},patient-{'A' if k < 3 else 'B'}\n" for k, path in enumerate(stone)))
    status, out, err = run(["predict", model_file, dataset_dir / "Stone", "--format", "json",
                            "--groups", groups], capsys)
    assert status == 0, err
    rows = json.loads(out)
    assert [row["scan"] for row in rows] == [0] * 3 + [1] * (len(stone) - 3)
    assert {row["scan_group_source"] for row in rows} == {"explicit"}
    # The slice's own answer stays in "label"; the scan's is a column of its own.
    for row in rows:
        probabilities = {c: row[c] for c in ("Cyst", "Normal", "Stone", "Tumor")}
        assert row["label"] == max(probabilities, key=probabilities.get)
        assert "scan_label" in row


def test_groups_file_missing_images_or_columns_is_a_clear_error(model_file, dataset_dir, tmp_path,
                                                                capsys):
    partial = tmp_path / "partial.csv"
    partial.write_text("filename,group\nStone- (1).png,a\n")
    status, _, err = run(["predict", model_file, dataset_dir / "Stone", "--groups", partial], capsys)
    assert_one_line_error(status, err, "7 of 8 images have no row in the groups file",
                          "Stone- (2).png", "Add a row 'filename,group'")
    headless = tmp_path / "headless.csv"
    headless.write_text("Stone- (1).png,a\n")
    status, _, err = run(["evaluate", model_file, dataset_dir, "--groups", headless], capsys)
    assert_one_line_error(status, err, "columns filename and group")
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", str(dataset_dir), "--groups", str(tmp_path / "nope.csv")])
    assert exit_info.value.code == 2 and "nope.csv does not exist" in capsys.readouterr().err


def test_evaluate_and_audit_use_the_groups_file_and_record_the_source(model_file, dataset_dir,
                                                                      tmp_path, capsys):
    groups = tmp_path / "groups.csv"
    names = sorted(p.relative_to(dataset_dir).as_posix() for p in dataset_dir.rglob("*.png"))
    groups.write_text("filename,group\n" + "".join(f"{n},{n.split('/')[0]}\n" for n in names))
    status, out, err = run(["evaluate", model_file, dataset_dir, "--format", "json",
                            "--groups", groups], capsys)
    assert status == 0, err
    scores = json.loads(out)
    assert scores["series"]["n_series"] == 4
    assert scores["scan_groups"]["source"] == {"explicit": len(names)}
    assert scores["scan_groups"]["file"] == str(groups)
    status, out, err = run(["audit", dataset_dir, "--groups", groups, "--image-size", "16",
                            "--folds", "2"], capsys)
    assert status == 0, err
    assert "in 4 scan series from --groups" in out


def test_predict_on_unrelated_files_says_the_scans_are_unreliable(model_file, dataset_dir, tmp_path,
                                                                  capsys):
    # One slice from each class folder, copied into one upload folder.
    upload = tmp_path / "upload"
    upload.mkdir()
    for number, name in enumerate(["Cyst", "Normal", "Stone", "Tumor"], start=1):
        (upload / f"slice{number}.png").write_bytes((dataset_dir / name / f"{name}- (5).png").read_bytes())
    status, out, err = run(["predict", model_file, upload, "--format", "json"], capsys)
    assert status == 0, err
    rows = json.loads(out)
    assert "warning: The" in err and "may not keep each scan whole" in err
    assert {row["scan_group_source"] for row in rows} == {"inferred (unreliable)"}
