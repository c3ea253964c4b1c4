"""The one input domain: CLAHE as the dataset's, declared input domains, the
estimator's recorded domain and its check, and fine-tuning from weights."""

import warnings

import numpy as np
import pytest
from PIL import Image

from ckdlearn import CKDNetClassifier, save
from ckdlearn.datasets import read_images
from ckdlearn.datasets._io import resize_float
from ckdlearn.preprocessing import DOMAINS, check_domain, clahe, conversion

from helpers import make_blob_images, tiny_classifier


def _slice(seed=0, size=128):
    """A CT-like slice: a dark background, a body of low contrast, two organs."""
    rng = np.random.RandomState(seed)
    rows, cols = np.mgrid[:size, :size] / size
    body = ((rows - 0.5) ** 2 + (cols - 0.5) ** 2 < 0.16) * 0.35
    organs = (((rows - 0.5) ** 2 + (cols - 0.35) ** 2 < 0.01)
              | ((rows - 0.5) ** 2 + (cols - 0.65) ** 2 < 0.01)) * 0.1
    return np.clip(body + organs + rng.normal(0, 0.01, (size, size)), 0, 1).astype(np.float32)


@pytest.fixture
def raw_png(tmp_path):
    path = tmp_path / "slice.png"
    Image.fromarray(np.rint(_slice() * 255).astype(np.uint8)).save(path)
    return path


# -- the step itself ----------------------------------------------------------

def test_clahe_keeps_kind_and_spreads_a_narrow_range():
    image = _slice()
    as_uint8 = clahe(np.rint(image * 255).astype(np.uint8))
    as_float = clahe(image)
    assert as_uint8.dtype == np.uint8 and as_float.dtype == np.float32
    assert as_float.shape == image.shape
    np.testing.assert_array_equal(np.rint(as_float * 255).astype(np.uint8), as_uint8)
    body = image > 0.3
    assert np.ptp(as_float[body]) > 2 * np.ptp(image[body])


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 8, 8), np.float32), "one greyscale slice"),
    (np.full((8, 8), 2.0, np.float32), r"floats in \[0, 1\]"),
    (np.full((8, 8), np.nan, np.float32), r"floats in \[0, 1\]"),
])
def test_clahe_refuses_what_is_not_a_slice(bad, message):
    with pytest.raises(ValueError, match=message):
        clahe(bad)


def test_conversion_between_domains():
    assert DOMAINS == ("raw", "clahe")
    assert conversion("raw", "clahe") == "clahe"
    assert conversion("raw", "raw") is None
    assert conversion("clahe", "clahe") is None
    with pytest.raises(ValueError, match="cannot be undone"):
        conversion("clahe", "raw")
    with pytest.raises(ValueError, match="input_domain must be one of 'raw', 'clahe'"):
        conversion("CLAHE", "clahe")
    with pytest.raises(ValueError, match="domain must be one of"):
        check_domain(None)


# -- loaders ------------------------------------------------------------------

def test_read_images_equalises_raw_files_at_full_resolution(raw_png):
    stored = np.asarray(Image.open(raw_png), dtype=np.float32) / 255
    as_raw = read_images([raw_png], image_size=32, domain="raw")[0]
    equalised = read_images([raw_png], image_size=32)[0]  # default: into "clahe"
    declared = read_images([raw_png], image_size=32, input_domain="clahe")[0]
    np.testing.assert_allclose(equalised, resize_float(clahe(stored), 32), atol=1e-6)
    # Equalising the 32-px thumbnail instead would give another image.
    assert np.abs(equalised - clahe(as_raw)).mean() > 0.01
    # Slices declared to be in the domain already are never equalised twice.
    np.testing.assert_allclose(declared, as_raw, atol=1e-6)
    with pytest.raises(ValueError, match="cannot be undone"):
        read_images([raw_png], domain="raw", input_domain="clahe")


def test_the_dataset_domain_is_recorded_in_the_bunch(tmp_path):
    for label in ("Cyst", "Normal"):
        (tmp_path / label).mkdir()
        for index in range(3):
            image = np.rint(_slice(seed=index + (label == "Normal") * 10) * 255)
            Image.fromarray(image.astype(np.uint8)).save(tmp_path / label / f"{label}-{index}.png")
    from ckdlearn.datasets import load_ct_kidney

    equalised = load_ct_kidney(tmp_path, image_size=32)
    as_raw = load_ct_kidney(tmp_path, image_size=32, domain="raw")
    assert equalised.domain == "clahe" and as_raw.domain == "raw"
    assert not np.allclose(equalised.images, as_raw.images)


def test_clahe_reproduces_the_complete_datasets_copies(full_and_raw_roots):
    """The dataset's own CLAHE copies (ct-kidney-full) against raw slices
    equalised here: closer than the raw slices themselves by far."""
    full_root, raw_root = full_and_raw_roots
    names = sorted(p.relative_to(raw_root) for p in raw_root.glob("*/*.jpg"))[::97][:40]
    theirs = read_images([full_root / n for n in names], image_size=96, input_domain="clahe")
    ours = read_images([raw_root / n for n in names], image_size=96)
    untouched = read_images([raw_root / n for n in names], image_size=96, domain="raw")
    ours_error = np.median(np.abs(ours - theirs).mean(axis=(1, 2))) * 255
    raw_error = np.median(np.abs(untouched - theirs).mean(axis=(1, 2))) * 255
    assert ours_error < 10  # measured 6-7 grey levels at 96 px
    assert ours_error < raw_error / 2


# -- the estimator's domain -----------------------------------------------------

def test_domain_is_a_validated_parameter():
    X, y = make_blob_images(n_per_class=4)
    with pytest.raises(ValueError, match="domain"):
        tiny_classifier(domain="ct").fit(X, y)
    model = tiny_classifier(domain="raw").fit(X, y)
    assert model.get_params()["domain"] == "raw"
    assert set(model.domain_profile_) == {"intensity", "detail"}


def test_images_of_another_domain_get_a_warning(blob_data):
    X, y = blob_data
    model = tiny_classifier().fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(X)  # the training images themselves: no warning
    with pytest.warns(UserWarning, match="look unlike the ones .*domain 'clahe'"):
        model.predict(X * 0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(X[:4] * 0.2)  # too few images to judge a domain


def test_the_domain_travels_in_the_model_file(blob_data, tmp_path):
    from ckdlearn import load

    X, y = blob_data
    save(tiny_classifier(domain="raw").fit(X, y), tmp_path / "m.ckdl")
    loaded = load(tmp_path / "m.ckdl")
    assert loaded.domain == "raw"
    assert loaded.domain_profile_["detail"] == pytest.approx(
        tiny_classifier(domain="raw").fit(X, y).domain_profile_["detail"], abs=1e-6)


# -- fine-tuning from weights -----------------------------------------------------

def _weights(model):
    return {k: v.detach().clone() for k, v in model.module_.state_dict().items()}


def test_initial_weights_start_training_from_a_model_file(blob_data, tmp_path):
    X, y = blob_data
    source = tiny_classifier(max_epochs=3).fit(X, y)
    save(source, tmp_path / "source.ckdl")
    # A learning rate of ~0 leaves the weights where training started.
    tuned = tiny_classifier(max_epochs=1, lr=1e-12, random_state=1,
                            initial_weights=tmp_path / "source.ckdl").fit(X, y)
    fresh = tiny_classifier(max_epochs=1, lr=1e-12, random_state=1).fit(X, y)
    start, after, scratch = _weights(source), _weights(tuned), _weights(fresh)
    for name in ("features.0.0.conv1.weight", "classifier.weight"):
        np.testing.assert_allclose(after[name], start[name], atol=1e-5)
        assert not np.allclose(scratch[name], start[name], atol=1e-3)


def test_initial_weights_for_other_classes_keep_the_features(blob_data, tmp_path):
    X, y = blob_data
    save(tiny_classifier().fit(X, y), tmp_path / "three.ckdl")
    two = np.isin(y, ["Cyst", "Normal"])
    tuned = tiny_classifier(max_epochs=1, lr=1e-12, initial_weights=tmp_path / "three.ckdl")
    tuned.fit(X[two], y[two])
    assert tuned.module_.classifier.out_features == 2
    source = _weights(tiny_classifier().fit(X, y))
    np.testing.assert_allclose(_weights(tuned)["features.1.0.conv2.weight"],
                               source["features.1.0.conv2.weight"], atol=1e-5)


def test_initial_weights_must_fit_the_network_and_domain(blob_data, tmp_path):
    X, y = blob_data
    save(tiny_classifier().fit(X, y), tmp_path / "m.ckdl")
    with pytest.raises(ValueError, match="another network"):
        tiny_classifier(module__width=8, initial_weights=tmp_path / "m.ckdl").fit(X, y)
    with pytest.raises(ValueError, match="'clahe' domain, this model's domain is 'raw'"):
        tiny_classifier(domain="raw", initial_weights=tmp_path / "m.ckdl").fit(X, y)
    with pytest.raises(FileNotFoundError):
        tiny_classifier(initial_weights=tmp_path / "missing.ckdl").fit(X, y)


def test_initial_weights_survive_clone(tmp_path):
    from sklearn.base import clone

    model = CKDNetClassifier(initial_weights="reference", lr=1e-4)
    assert clone(model).get_params()["initial_weights"] == "reference"


def test_a_fine_tuned_model_loads_without_the_file_it_started_from(blob_data, tmp_path):
    from ckdlearn import load

    X, y = blob_data
    save(tiny_classifier().fit(X, y), tmp_path / "source.ckdl")
    tuned = tiny_classifier(max_epochs=1, initial_weights=tmp_path / "source.ckdl").fit(X, y)
    save(tuned, tmp_path / "tuned.ckdl")
    (tmp_path / "source.ckdl").unlink()
    loaded = load(tmp_path / "tuned.ckdl")
    assert str(loaded.initial_weights) == str(tmp_path / "source.ckdl")
    np.testing.assert_allclose(loaded.predict_proba(X), tuned.predict_proba(X), atol=1e-5)


def test_model_files_from_before_input_domains_are_raw(blob_data, tmp_path, monkeypatch):
    """A file whose parameters lack ``domain`` was trained on raw slices."""
    import ckdlearn.persistence as persistence
    from ckdlearn import load

    X, y = blob_data
    model = tiny_classifier().fit(X, y)
    params = CKDNetClassifier.get_params
    monkeypatch.setattr(CKDNetClassifier, "get_params",
                        lambda self, deep=True: {k: v for k, v in params(self, deep).items()
                                                 if k not in ("domain", "initial_weights")})
    save(model, tmp_path / "old.ckdl")
    monkeypatch.undo()
    assert persistence.load(tmp_path / "old.ckdl").domain == "raw"
    assert load(tmp_path / "old.ckdl").initial_weights is None
