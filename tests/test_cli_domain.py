"""The command line's input domains and the reference model by name."""

import csv
import io

import numpy as np
import pytest
from PIL import Image

from ckdlearn.app.cli import main
from ckdlearn.datasets import load_ct_kidney_sample
from ckdlearn.persistence import load


@pytest.fixture(scope="module")
def clahe_files(tmp_path_factory):
    """Two slices of each of the sample's scans, as PNG files (CLAHE domain)."""
    sample = load_ct_kidney_sample(image_size=96)
    root = tmp_path_factory.mktemp("clahe")
    rows = np.concatenate([np.flatnonzero(sample.groups == g)[:2] for g in np.unique(sample.groups)])
    for name in sample.target_names:
        (root / name).mkdir()
    for row in rows:
        label = sample.target_names[sample.target[row]]
        pixels = np.rint(sample.images[row] * 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / label / f"{label}- ({row}).png")
    return root


def run(args, capsys):
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "explain"])
def test_every_command_that_reads_slices_names_the_input_domain(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--input-domain {raw,clahe}" in text and "(default: raw)" in text


@pytest.mark.slow  # seconds: the reference model on every sample slice, or many CLI runs
def test_predict_with_the_reference_model_by_name(clahe_files, capsys):
    status, out, err = run(["predict", "pretrained", clahe_files, "--input-domain", "clahe"],
                           capsys)
    assert status == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 32
    assert {row["label"] for row in rows} <= {"Cyst", "Normal", "Stone", "Tumor"}
    right = np.mean([row["label"] in row["file"] for row in rows])
    assert right > 0.5  # scans the reference model never saw; chance is 0.25


@pytest.mark.slow  # seconds: the reference model on every sample slice, or many CLI runs
def test_explain_with_the_reference_model_by_name(clahe_files, tmp_path, capsys):
    out = tmp_path / "maps"
    status, _, err = run(["explain", "pretrained", clahe_files / "Stone", "--out", out,
                          "--input-domain", "clahe", "--overlay-size", "96"], capsys)
    assert status == 0, err
    assert len(list(out.glob("*.png"))) == 9  # 8 overlays and the grid


def test_train_records_the_domain_and_equalises_only_raw_files(clahe_files, tmp_path, capsys):
    args = ["train", clahe_files, "--image-size", "32", "--epochs", "1", "--width", "4",
            "--threads", "1"]
    assert run([*args, "--out", tmp_path / "a.ckdl", "--input-domain", "clahe"], capsys)[0] == 0
    assert run([*args, "--out", tmp_path / "b.ckdl"], capsys)[0] == 0
    declared, equalised = load(tmp_path / "a.ckdl")[-1], load(tmp_path / "b.ckdl")[-1]
    assert declared.domain == equalised.domain == "clahe"
    # Equalising already equalised slices again brightens them: another profile.
    assert equalised.domain_profile_["intensity"][1] > declared.domain_profile_["intensity"][1]


def test_a_raw_model_refuses_clahe_files_with_a_clear_error(clahe_files, tmp_path, capsys):
    from ckdlearn import save
    from ckdlearn.app import build_pipeline
    from ckdlearn.datasets import load_ct_kidney

    data = load_ct_kidney(clahe_files, image_size=32, domain="raw", input_domain="raw")
    pipe = build_pipeline("none", max_epochs=1, width=4)
    pipe.set_params(domain="raw").fit(data.data, data.target_names[data.target])
    save(pipe, tmp_path / "raw.ckdl")
    status, _, err = run(["predict", tmp_path / "raw.ckdl", clahe_files / "Cyst",
                          "--input-domain", "clahe"], capsys)
    assert status == 1
    assert "cannot be undone" in err and "'clahe'" in err
