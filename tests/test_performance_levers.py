"""The estimator's speed levers change speed, not results.

Each lever measured in ``benchmarks/`` is checked here for what it must
keep: batch_loader trains on the same batches with the same random
numbers as torch's per-image DataLoader; channels-last
weights change predictions only by float rounding; prediction runs in
inference mode and eval mode; no copy of X is made; joblib workers do not
oversubscribe the cores.
"""

import os
from functools import partial

import numpy as np
import pytest
import torch
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import make_pipeline
from joblib import Parallel, delayed
from skorch.dataset import Dataset, ValidSplit
from torch.utils.data import DataLoader

from ckdlearn import CKDNetClassifier
from ckdlearn.loaders import batch_loader

from helpers import tiny_classifier


# dropout and augmentation draw random numbers: the levers must keep them.
tiny = partial(tiny_classifier, batch_size=8, module__dropout=0.3, augment="ct")


def _same_weights(first, second):
    return all(
        torch.equal(a, b)
        for a, b in zip(first.module_.state_dict().values(), second.module_.state_dict().values())
    )


# --- whole batches instead of one image at a time ------------------------------


@pytest.mark.parametrize(
    "iterator_params",
    [
        {},
        {"iterator_train__shuffle": False},
        {"iterator_train__drop_last": True},
        {"batch_size": -1},
    ],
)
@pytest.mark.bitwise
def test_batch_loader_trains_exactly_like_the_dataloader(blob_data, iterator_params):
    X, y = blob_data
    whole = tiny(**iterator_params).fit(X, y)
    per_image = tiny(iterator_train=DataLoader, iterator_valid=DataLoader, **iterator_params)
    per_image.fit(X, y)
    assert _same_weights(whole, per_image)
    np.testing.assert_array_equal(whole.predict_proba(X), per_image.predict_proba(X))
    batch_sizes = [b["train_batch_size"] for b in whole.history_[-1]["batches"]]
    assert batch_sizes == [b["train_batch_size"] for b in per_image.history_[-1]["batches"]]


@pytest.mark.bitwise
def test_batch_loader_with_internal_validation_split(blob_data):
    X, y = blob_data
    labels = np.unique(y, return_inverse=True)[1]
    split = dict(train_split=ValidSplit(4, stratified=True))
    whole = tiny(**split).fit(X, labels)
    per_image = tiny(iterator_train=DataLoader, iterator_valid=DataLoader, **split).fit(X, labels)
    assert _same_weights(whole, per_image)
    assert whole.history_[-1]["valid_loss"] == per_image.history_[-1]["valid_loss"]


def test_batch_loader_fetches_each_batch_once():
    calls = []

    class Counting(Dataset):
        def __getitem__(self, i):
            calls.append(i)
            return super().__getitem__(i)

    data = Counting(np.zeros((10, 1, 2, 2), dtype=np.float32), np.arange(10))
    batches = list(batch_loader(data, batch_size=4))
    assert [len(yb) for _, yb in batches] == [4, 4, 2]
    assert len(calls) == 3 and all(torch.is_tensor(Xb) for Xb, _ in batches)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in batches]), np.arange(10))


def test_a_training_batch_of_one_image_is_left_out(blob_data):
    # 37 images in batches of 12: the 37th would be a batch of one, which
    # BatchNorm cannot train on (with a 1x1 last feature map it raises).
    X, y = blob_data
    X, y = np.concatenate([X, X[:1]]), np.concatenate([y, y[:1]])
    clf = tiny(batch_size=12, module__depth=4, max_epochs=2).fit(X, y)
    sizes = [b["train_batch_size"] for b in clf.history_[-1]["batches"]]
    assert sizes == [12, 12, 12]
    assert clf.predict(X[:1]).shape == (1,)  # prediction takes single images


def test_no_copy_of_float32_input(blob_data):
    X, y = blob_data
    seen = []

    class Recording(CKDNetClassifier):
        def get_dataset(self, X, y=None):
            dataset = super().get_dataset(X, y)
            seen.append(dataset)
            return dataset

    Recording(max_epochs=1, module__width=4, module__depth=2, augment=None).fit(X, y)
    assert np.shares_memory(seen[0].X, X)


def test_no_copy_between_smote_and_the_network(blob_data):
    X, y = blob_data
    received = {}

    class Recording(CKDNetClassifier):
        def fit(self, X, y, **fit_params):
            received["X"] = X
            return super().fit(X, y, **fit_params)

        def get_dataset(self, X, y=None):
            dataset = super().get_dataset(X, y)
            received.setdefault("dataset", dataset)
            return dataset

    net = Recording(max_epochs=1, module__width=4, module__depth=2, augment=None)
    make_pipeline(SMOTE(k_neighbors=3, random_state=0), net).fit(X[:-6], y[:-6])
    assert received["X"].dtype == np.float32
    assert np.shares_memory(received["dataset"].X, received["X"])


def test_in_place_augmentation_never_writes_into_X(blob_data):
    X, y = blob_data
    before = X.copy()

    def zero_in_place(images):
        return images.mul_(0)

    tiny(augment=zero_in_place).fit(X, y)
    tiny(augment=zero_in_place, iterator_train__shuffle=True).fit(X, y)
    np.testing.assert_array_equal(X, before)


# --- channels-last weights -------------------------------------------------------


def test_channels_last_changes_only_rounding(blob_data):
    X, y = blob_data
    fast = tiny().fit(X, y)
    conv = fast.module_.features[0][0].conv2.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert not conv.is_contiguous()
    classic = tiny()
    classic._channels_last = False
    classic.fit(X, y)
    assert classic.module_.features[0][0].conv2.weight.is_contiguous()
    np.testing.assert_allclose(fast.predict_proba(X), classic.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(fast.predict(X), classic.predict(X))


def test_one_pixel_high_images_keep_the_classic_layout():
    X = np.random.RandomState(0).rand(20, 10).astype(np.float32)
    clf = tiny(augment=None).fit(X, np.arange(20) % 2)
    assert clf.image_shape_ == (1, 1, 10)
    assert clf.module_.features[0][0].conv2.weight.is_contiguous()


# --- prediction ---------------------------------------------------------------


def test_predict_runs_in_inference_and_eval_mode_and_fit_still_trains(blob_data):
    X, y = blob_data
    clf = tiny(max_epochs=1).fit(X, y)
    states = []
    clf.module_.register_forward_pre_hook(
        lambda module, args: states.append((torch.is_inference_mode_enabled(), module.training))
    )
    clf.predict_proba(X)
    clf.predict(X[:3])
    assert states and all(state == (True, False) for state in states)
    states.clear()
    clf.partial_fit(X, y)
    assert states and all(state == (False, True) for state in states)


def test_prediction_batch_size_is_honoured_and_changes_nothing(blob_data):
    X, y = blob_data
    clf = tiny(max_epochs=1).fit(X, y)
    sizes = []
    handle = clf.module_.register_forward_pre_hook(lambda m, args: sizes.append(len(args[0])))
    default = clf.predict_proba(X)
    assert sizes == [8, 8, 8, 8, 4]  # batch_size, as skorch does
    handle.remove()
    sizes.clear()
    large = tiny(max_epochs=1, iterator_valid__batch_size=32).fit(X, y)
    large.module_.load_state_dict(clf.module_.state_dict())
    large.module_.register_forward_pre_hook(lambda m, args: sizes.append(len(args[0])))
    larger = large.predict_proba(X)
    assert sizes == [32, 4]
    np.testing.assert_allclose(larger, default, atol=1e-6)


# --- threads ------------------------------------------------------------------------


def _torch_threads(_):
    return torch.get_num_threads()


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores")
def test_joblib_workers_share_the_cores():
    # GridSearchCV(n_jobs=k) runs fits in loky worker processes; loky caps
    # OpenMP at cpu_count // k threads per worker, and torch reads that cap,
    # so k workers together use the cores once, not k times over.
    n_jobs = 2
    threads = Parallel(n_jobs=n_jobs)(delayed(_torch_threads)(i) for i in range(4))
    assert max(threads) * n_jobs <= os.cpu_count()


# --- mixed precision on CUDA ---------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast on CUDA needs a GPU")
def test_bf16_on_cuda_trains_and_predicts(blob_data):  # pragma: no cover - no GPU in CI
    X, y = blob_data
    clf = tiny(precision="bf16", device="cuda").fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-3)


def test_moved_names_keep_their_old_import_path():
    import ckdlearn.callbacks
    import ckdlearn.estimator

    assert ckdlearn.estimator.batch_loader is batch_loader
    assert ckdlearn.estimator.CosineAnnealing is ckdlearn.callbacks.CosineAnnealing
