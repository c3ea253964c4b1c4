"""The reference model that ships: loads by name, is a fitted estimator like any
other, answers raw and CLAHE input alike through its recorded domain, and was
never trained on the sample's scans."""

import json
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from ckdlearn import CKDNetClassifier, load_pretrained
from ckdlearn.datasets import load_ct_kidney_sample, read_images, reference_model_info

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference():
    return load_pretrained()


@pytest.fixture(scope="module")
def sample():
    return load_ct_kidney_sample(image_size=96)


def test_the_reference_model_is_small_and_documented():
    data = resources.files("ckdlearn.datasets") / "data"
    assert (data / "reference_model.ckdl").stat().st_size < 15 * 1024 * 1024
    info = reference_model_info()
    assert info["recipe"] == "default" and info["seed"] == 0
    assert info["held_out_groups_for_sample"] == 16
    assert 7000 < info["n_training_slices"] < 8743
    assert info["temperature"] > 0


def test_it_is_a_fitted_classifier_in_the_clahe_domain(reference):
    assert isinstance(reference, CKDNetClassifier)
    assert reference.classes_.tolist() == ["Cyst", "Normal", "Stone", "Tumor"]
    assert reference.domain == "clahe"
    assert reference.image_shape_ == (1, 96, 96)
    assert reference.temperature_ == pytest.approx(reference_model_info()["temperature"])


def test_every_answer_of_an_estimator(reference, sample):
    X, groups = sample.data[:40], sample.groups[:40]
    proba = reference.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert set(reference.predict(X)) <= set(reference.classes_)
    assert reference.explain(X[:3]).shape == (3, 96, 96)
    answer = reference.predict_series(X, groups)
    assert len(answer.series) == len(np.unique(groups))
    assert reference.predict_uncertainty(X).shape == (40,)


@pytest.mark.slow  # seconds: the reference model on every sample slice, or many CLI runs
def test_it_scores_well_above_chance_on_scans_it_never_saw(reference, sample):
    """The sample's 16 scan groups were held out of its training: four
    classes, so always one class would score a macro-F1 near 0.1."""
    y = sample.target_names[sample.target]
    assert f1_score(y, reference.predict(sample.data), average="macro") > 0.5


def test_raw_and_clahe_copies_of_the_same_slices_get_the_same_answers(reference,
                                                                      full_and_raw_roots):
    """The raw subset's slices, equalised through the model's recorded domain,
    against the complete data's own CLAHE copies of the same slices."""
    full_root, raw_root = full_and_raw_roots
    names = sorted(p.relative_to(raw_root) for p in raw_root.glob("*/*.jpg"))[::41][:90]
    from_raw = read_images([raw_root / n for n in names], image_size=96,
                           domain=reference.domain, input_domain="raw")
    from_clahe = read_images([full_root / n for n in names], image_size=96,
                             domain=reference.domain, input_domain="clahe")
    agree = np.mean(reference.predict(from_raw) == reference.predict(from_clahe))
    assert agree >= 0.8


@pytest.mark.slow
def test_the_sample_scans_are_not_in_its_training_data(full_and_raw_roots, sample):
    sys.path.insert(0, str(REPO / "tools"))
    from train_reference import training_rows

    from ckdlearn.datasets import load_ct_kidney

    full = load_ct_kidney(full_and_raw_roots[0], image_size=16, domain="clahe",
                          input_domain="clahe", verbose=False)
    rows, held_out = training_rows(full, sample.filenames)
    assert len(held_out) == 16
    assert not np.isin(full.filenames[rows], sample.filenames).any()
    assert len(rows) == reference_model_info()["n_training_slices"]
    record = json.loads((REPO / "ckdlearn/datasets/data/reference_model.json").read_text())
    assert record == reference_model_info()
