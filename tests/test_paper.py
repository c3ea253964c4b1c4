"""The paper's protocol next to ckdlearn's, on a small labelled folder."""

import json

import numpy as np
import pytest
from PIL import Image

from ckdlearn import CKDNetClassifier
from ckdlearn.app.cli import main
from ckdlearn.datasets import load_ct_kidney_sample
from ckdlearn.paper import as_paper_rgb, paper_classifier, reproduce_paper


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """Six whole series per class would be too slow; four slices of each of
    several series keep the folds meaningful."""
    root = tmp_path_factory.mktemp("paper") / "CT"
    sample = load_ct_kidney_sample(image_size=32)
    for index, name in enumerate(sample.target_names):
        (root / name).mkdir(parents=True)
        rows = np.flatnonzero(sample.target == index)
        picked = np.concatenate([rows[sample.groups[rows] == g][:4] for g in np.unique(sample.groups[rows])])
        for row in picked:
            number = sample.filenames[row].rsplit("(", 1)[1].split(")")[0]
            pixels = (sample.images[row] * 255).round().astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}- ({number}).png")
    return root


def test_paper_classifier_is_the_papers_setup():
    clf = paper_classifier()
    params = clf.get_params()
    assert params["image_shape"] == (3, 28, 28)
    assert params["optimizer"].__name__ == "Adam" and params["lr"] == 1e-3
    assert params["max_epochs"] == 20 and params["augment"] is None
    # No learning-rate schedule: the paper trained at a constant rate.
    X = np.random.RandomState(0).rand(8, 3 * 28 * 28).astype(np.float32)
    clf.set_params(max_epochs=1).fit(X, np.arange(8) % 4)
    assert "event_lr" not in clf.history_[-1]


def test_as_paper_rgb_repeats_channels():
    images = np.random.RandomState(0).rand(2, 28, 28).astype(np.float32)
    rgb = as_paper_rgb(images).reshape(2, 3, 28, 28)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, channel], images)


def test_reproduce_paper_runs_all_protocols(small_dataset):
    result = reproduce_paper(
        small_dataset,
        max_epochs=1,
        n_splits=2,
        default_image_size=32,
        default_classifier=CKDNetClassifier(max_epochs=1, module__width=4, random_state=0),
    )
    assert set(result.protocols) == {"1", "2", "3"}
    for scores in result.protocols.values():
        assert 0 <= scores["accuracy"] <= 1 and 0 <= scores["macro_f1"] <= 1
        assert set(scores["recall"]) == {"Cyst", "Normal", "Stone", "Tumor"}
    # SMOTE before a random split: every test image has a duplicate or a
    # synthetic blend of itself in training.
    assert result.audit["leaked_fraction"] > 0.5
    text = str(result)
    assert "paper (SMOTE first, random slice split)" in text and "duplicate" in text
    json.dumps(result.to_dict())


def test_reproduce_paper_command(small_dataset, tmp_path, capsys):
    out = tmp_path / "paper.json"
    status = main(["reproduce-paper", "--data", str(small_dataset), "--epochs", "1",
                   "--folds", "2", "--protocols", "1,2", "--json", str(out)])
    assert status == 0
    figures = json.loads(out.read_text())
    assert set(figures["protocols"]) == {"1", "2"}
    assert "protocol" in capsys.readouterr().out
    status = main(["reproduce-paper", "--data", str(small_dataset), "--protocols", "4"])
    assert status == 1


def test_unknown_protocol_is_refused_before_any_work(tmp_path):
    # The folder does not exist: the protocols are checked before loading.
    with pytest.raises(ValueError, match=r"protocols must be among '1', '2', '3'; got \['4'\]"):
        reproduce_paper(tmp_path / "missing", protocols=["1", "4"])
