"""LeanSMOTE: imbalanced-learn's SMOTE, bit for bit, in less memory."""

import tracemalloc

import numpy as np
import pytest
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import make_pipeline
from scipy import sparse
from sklearn.base import clone

from ckdlearn import load, save
from ckdlearn.over_sampling import LeanSMOTE

from helpers import make_blob_images, tiny_classifier


def _imbalanced(n=(40, 25, 9), n_features=64, dtype=np.float32, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.rand(sum(n), n_features).astype(dtype)
    y = np.repeat(["Normal", "Cyst", "Stone"], n)
    return X, y


@pytest.mark.bitwise
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk_size", [1, 7, 256])
@pytest.mark.parametrize(
    "params",
    [{}, {"k_neighbors": 3}, {"sampling_strategy": {"Cyst": 30, "Stone": 40}}, {"sampling_strategy": 0.8}],
)
def test_output_is_bit_identical_to_smote(dtype, chunk_size, params):
    X, y = _imbalanced(dtype=dtype)
    if params.get("sampling_strategy") == 0.8:  # a ratio needs two classes
        X, y = X[y != "Stone"], y[y != "Stone"]
    expected_X, expected_y = SMOTE(random_state=3, **params).fit_resample(X, y)
    found_X, found_y = LeanSMOTE(random_state=3, chunk_size=chunk_size, **params).fit_resample(X, y)
    assert found_X.dtype == expected_X.dtype == dtype
    np.testing.assert_array_equal(found_X, expected_X)
    np.testing.assert_array_equal(found_y, expected_y)


def test_input_is_not_modified_and_sparse_goes_to_smote():
    X, y = _imbalanced()
    before = X.copy()
    LeanSMOTE(random_state=0).fit_resample(X, y)
    np.testing.assert_array_equal(X, before)
    X_sparse = sparse.csr_matrix(X)
    found, _ = LeanSMOTE(random_state=0).fit_resample(X_sparse, y)
    expected, _ = SMOTE(random_state=0).fit_resample(X_sparse, y)
    assert sparse.issparse(found)
    np.testing.assert_array_equal(found.toarray(), expected.toarray())


@pytest.mark.slow
def test_peak_memory_is_far_below_smote():
    # 2,800 new 64x64 rows: SMOTE holds the resampled matrix twice plus
    # float64 blocks of the new rows; LeanSMOTE holds the output, one
    # class's rows and one chunk (measured: 2.13x and 1.35x the output).
    X, y = _imbalanced(n=(2000, 400, 800), n_features=64 * 64)

    def traced_peak(sampler):
        tracemalloc.start()
        try:
            X_out, _ = sampler.fit_resample(X, y)
            return tracemalloc.get_traced_memory()[1], X_out.nbytes
        finally:
            tracemalloc.stop()

    smote_peak, output_bytes = traced_peak(SMOTE(random_state=0))
    lean_peak, _ = traced_peak(LeanSMOTE(random_state=0))
    assert lean_peak < 1.5 * output_bytes < smote_peak


def test_clone_params_and_bad_chunk_size():
    sampler = LeanSMOTE(k_neighbors=2, chunk_size=64, random_state=1)
    assert clone(sampler).get_params() == sampler.get_params()
    assert sampler.get_params()["chunk_size"] == 64
    X, y = _imbalanced()
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match=r"'chunk_size' parameter of LeanSMOTE must be an int in the range \[1, inf\)"):
            LeanSMOTE(chunk_size=bad).fit_resample(X, y)


def test_class_too_small_for_its_neighbours_is_a_clear_error():
    X, y = _imbalanced(n=(20, 20, 3))
    with pytest.raises(ValueError, match=r"class 'Stone'.*3 image\(s\).*k_neighbors=2 or lower"):
        LeanSMOTE(k_neighbors=5).fit_resample(X, y)


def test_pipeline_fits_predicts_and_saves(tmp_path):
    X, y = make_blob_images(n_per_class=12)
    X, y = X[:-6], y[:-6]  # make the last class the minority
    pipe = make_pipeline(LeanSMOTE(k_neighbors=3, random_state=0), tiny_classifier()).fit(X, y)
    assert pipe.predict(X).shape == (len(X),)
    path = tmp_path / "lean.ckdl"
    save(pipe, path)
    loaded = load(path)
    assert isinstance(loaded[0], LeanSMOTE)
    assert loaded[0].get_params() == pipe[0].get_params()
    np.testing.assert_array_equal(loaded.predict(X), pipe.predict(X))


# --- scikit-learn's and imbalanced-learn's estimator checks ------------------

from imblearn.utils.estimator_checks import parametrize_with_checks as imblearn_checks  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402


@parametrize_with_checks([LeanSMOTE(random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@imblearn_checks([LeanSMOTE(random_state=0)])
def test_imblearn_sampler_checks(estimator, check):
    check(estimator)


def test_integer_images_do_not_wrap_around():
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, size=(30, 64)).astype(np.uint8)
    y = np.array([0] * 20 + [1] * 10)
    X_new, _ = LeanSMOTE(random_state=0).fit_resample(X, y)
    assert X_new.dtype == np.uint8
    new = X_new[30:].astype(float)
    # Each synthetic pixel lies between the two images it interpolates; with
    # a wrap-around 3 - 5 = 254 it would not.
    minority = X[y == 1].astype(float)
    assert new.min() >= minority.min(axis=0).min() and new.max() <= minority.max()
    reference, _ = LeanSMOTE(random_state=0).fit_resample(X.astype(np.float64), y)
    assert np.abs(new - reference[30:]).max() <= 0.5 + 1e-9


@pytest.mark.parametrize("n_minority, message", [
    (3, r"class 'Stone'.*3 image\(s\) and k_neighbors=5.*k_neighbors=2 or lower"),
    (1, r"class 'Stone'.*1 image\(s\).*Add images"),
])
def test_a_class_too_small_for_smote_is_named(n_minority, message):
    X, y = _imbalanced(n=(20, 15, n_minority))
    with pytest.raises(ValueError, match=message):
        LeanSMOTE(random_state=0).fit_resample(X, y)
    with pytest.raises(ValueError, match="chunk_size"):
        LeanSMOTE(chunk_size=0).fit_resample(*_imbalanced())
