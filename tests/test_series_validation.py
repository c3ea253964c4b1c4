"""Validation by scan series inside fit: held out before resampling, never trained on."""

import numpy as np
import pytest
import sklearn
import torch
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import make_pipeline as imblearn_make_pipeline
from scipy.special import softmax
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from skorch.callbacks import Callback

from ckdlearn import CKDNetClassifier
from ckdlearn.persistence import load, save
from ckdlearn.pipeline import make_pipeline

from helpers import tiny_classifier as tiny

N_SERIES = 12


def coded_series(slices_per_series=6, size=16, seed=0):
    """Images whose first row marks their scan series: pixel ``g`` is 1 for
    series ``g``. A SMOTE image made from two slices carries both marks."""
    rng = np.random.RandomState(seed)
    groups = np.repeat(np.arange(N_SERIES), slices_per_series)
    y = np.where(groups % 3 == 0, "Stone", "Cyst")  # 4 Stone series, 8 Cyst
    images = 0.5 * rng.rand(len(groups), size, size).astype(np.float32)
    images[y == "Stone", 8:12, 8:12] += 0.5
    images[:, 0, :] = 0.0
    images[np.arange(len(groups)), 0, groups] = 1.0
    return images.reshape(len(groups), -1), y, groups


class RecordBatches(Callback):
    """The series marks of every training and validation image the network sees."""

    def initialize(self):
        self.train, self.valid = [], []
        return self

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        marks = batch[0][:, 0, 0, :N_SERIES].numpy() > 0.01
        (self.train if training else self.valid).append(marks)


def series_seen(marks):
    return set(np.flatnonzero(np.concatenate(marks).any(axis=0)).tolist())


def test_no_validation_series_or_synthetic_neighbour_is_trained_on():
    X, y, groups = coded_series()
    recorder = RecordBatches()
    pipe = make_pipeline(
        SMOTE(k_neighbors=3, random_state=0),
        tiny(max_epochs=3, validation=0.25, callbacks=[recorder]),
    ).fit(X, y, groups=groups)
    held_out = set(pipe[-1].validation_groups_.tolist())
    assert len(held_out) == 3 and held_out < set(groups.tolist())
    # SMOTE ran: more training images than real training slices.
    n_real_train = int(np.isin(groups, list(held_out), invert=True).sum())
    assert sum(len(m) for m in recorder.train) / 3 > n_real_train
    assert series_seen(recorder.train).isdisjoint(held_out)
    # Validation batches: real slices of the held-out series only, each one mark.
    valid = np.concatenate(recorder.valid)
    assert (valid.sum(axis=1) == 1).all()
    assert series_seen(recorder.valid) == held_out


def test_imblearn_pipeline_would_leak_and_is_refused():
    X, y, groups = coded_series()
    pipe = imblearn_make_pipeline(SMOTE(k_neighbors=3), tiny(validation=0.25))
    with pytest.raises(ValueError, match="ckdlearn.pipeline.make_pipeline"):
        pipe.fit(X, y, ckdnetclassifier__groups=groups)


def test_classifier_alone_splits_series_itself():
    X, y, groups = coded_series()
    recorder = RecordBatches()
    clf = tiny(max_epochs=2, validation=4, callbacks=[recorder]).fit(X, y, groups=groups)
    assert series_seen(recorder.train).isdisjoint(clf.validation_groups_.tolist())
    assert series_seen(recorder.valid) == set(clf.validation_groups_.tolist())
    assert "valid_loss" in clf.history_[-1]
    with pytest.raises(ValueError, match="needs groups="):
        tiny(validation=0.25).fit(X, y)


class RecordWeights(Callback):
    """The learnable weights after every epoch (BatchNorm statistics aside)."""

    def on_train_begin(self, net, **kwargs):
        self.epochs = []

    def on_epoch_end(self, net, **kwargs):
        self.epochs.append({name: p.detach().clone() for name, p in net.module_.named_parameters()})


def test_early_stopping_restores_the_best_epoch():
    X, y, groups = coded_series()
    shuffled = np.random.RandomState(1).permutation(y)  # unrelated to the images
    recorder = RecordWeights()
    clf = tiny(max_epochs=30, lr=0.05, validation=0.25, early_stopping=2,
               callbacks=[recorder]).fit(X, shuffled, groups=groups)
    assert len(clf.history_) < 30
    losses = [row["valid_loss"] for row in clf.history_]
    best = int(np.argmin(losses))
    assert best < len(losses) - 1  # training went on past the best epoch
    # The weights kept are the best epoch's, not the last one's. (BatchNorm's
    # running statistics are then recomputed for them on the training images.)
    final = dict(clf.module_.named_parameters())
    for name, weights in recorder.epochs[best].items():
        torch.testing.assert_close(final[name].detach(), weights, rtol=0, atol=0)
    assert any(not torch.equal(final[name].detach(), weights)
               for name, weights in recorder.epochs[-1].items())


def test_routed_early_stopping_patience_is_respected():
    X, y, groups = coded_series()
    shuffled = np.random.RandomState(1).permutation(y)  # unrelated to the images
    settings = dict(max_epochs=30, lr=0.05, validation=0.25, early_stopping=20)
    routed = tiny(**settings, callbacks__early_stopping__patience=2).fit(X, shuffled, groups=groups)
    stopping = dict(routed.callbacks_)["early_stopping"]
    assert stopping.patience == 2
    # It stopped two epochs after the best one, not twenty.
    assert len(routed.history_) == stopping.best_epoch_ + 2 < 30
    unrouted = tiny(**settings).fit(X, shuffled, groups=groups)
    assert dict(unrouted.callbacks_)["early_stopping"].patience == 20
    assert len(unrouted.history_) > len(routed.history_)


def test_temperature_calibrates_without_changing_predictions():
    X, y, groups = coded_series()
    calibrated = tiny(max_epochs=4, validation=0.25, lr=1e-2).fit(X, y, groups=groups)
    raw = clone(calibrated).set_params(calibrate=False).fit(X, y, groups=groups)
    assert raw.temperature_ == 1.0 and calibrated.temperature_ != 1.0
    np.testing.assert_array_equal(calibrated.predict(X), raw.predict(X))
    logits = raw.forward(X, training=False).numpy()
    np.testing.assert_allclose(
        calibrated.predict_proba(X), softmax(logits / calibrated.temperature_, axis=1), atol=1e-5
    )
    # Calibration lowers the log-loss on the held-out series it was fitted on.
    rows = np.isin(groups, calibrated.validation_groups_)
    codes = raw._encode_labels(y[rows])

    def log_loss(proba):
        return -np.log(proba[np.arange(len(codes)), codes] + 1e-12).mean()

    assert log_loss(calibrated.predict_proba(X[rows])) <= log_loss(raw.predict_proba(X[rows]))


@pytest.mark.slow
def test_grid_search_routes_groups_with_two_jobs():
    X, y, groups = coded_series()
    pipe = make_pipeline(SMOTE(k_neighbors=3, random_state=0), tiny(max_epochs=1, validation=0.25))
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(
            pipe, {"ckdnetclassifier__lr": [1e-2, 1e-3]}, cv=StratifiedGroupKFold(3), n_jobs=2
        ).fit(X, y, groups=groups)
    best = search.best_estimator_[-1]
    assert best.validation_groups_ is not None and len(best.validation_groups_) == 3
    assert clone(search.best_estimator_)[-1].get_params()["validation"] == 0.25


def test_validation_settings_survive_the_model_file(tmp_path):
    X, y, groups = coded_series()
    pipe = make_pipeline(SMOTE(k_neighbors=3, random_state=0), tiny(validation=0.25))
    pipe.fit(X, y, groups=groups)
    loaded = load(save(pipe, tmp_path / "model.ckdl"))
    assert type(loaded) is type(pipe)
    assert loaded[-1].temperature_ == pipe[-1].temperature_
    np.testing.assert_array_equal(loaded[-1].validation_groups_, pipe[-1].validation_groups_)
    np.testing.assert_array_equal(loaded.predict_proba(X), pipe.predict_proba(X))
