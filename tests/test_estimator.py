"""CKDNetClassifier: scikit-learn conventions, pipelines, input handling."""

import io
import pickle

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline, make_pipeline
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from skorch.callbacks import Callback
from skorch.dataset import ValidSplit

from ckdlearn import CKDNet, CKDNetClassifier, PaperCNN
from ckdlearn.augmentation import CTAugment
from ckdlearn.estimator import as_image_batch, resolve_image_shape

from helpers import tiny_classifier as tiny


class TinyNet(CKDNet):
    """CKDNet with small defaults, so the estimator checks run in seconds."""

    def __init__(
        self,
        in_channels=1,
        n_classes=2,
        width=8,
        depth=2,
        dropout=0.0,
        residual=True,
        image_shape=None,
    ):
        super().__init__(in_channels, n_classes, width, depth, dropout, residual, image_shape)


# --- scikit-learn's estimator checks ------------------------------------------

# The checks feed tabular data (2, 3, 10 ... features). With no
# image_shape, a non-square feature count is read as an image one pixel
# high, which the network handles, so every check runs for real.
#
# Every check runs once, on a network whose settings are all in its
# signature. skorch's routed ``module__*`` keyword parameters change only
# how parameters are stored (as attributes), not fitting, predicting or
# input handling, so with them only the checks of parameter handling run.
CHECKED = CKDNetClassifier(TinyNet, max_epochs=5, lr=1e-2, augment=None, random_state=0)
ROUTED = CKDNetClassifier(
    max_epochs=5,
    lr=1e-2,
    module__width=8,
    module__depth=2,
    module__dropout=0.0,
    augment=None,
    random_state=0,
)
# skorch stores routed ``*__*`` parameters as attributes by design (the
# estimator sets iterator_train__shuffle=True itself); get_params, set_params
# and clone round-trip them (test_routed_parameters_round_trip).
ROUTED_ATTRIBUTES = {"check_no_attributes_set_in_init": (
    "skorch stores routed *__* parameters as attributes by design; get_params/set_params/"
    "clone round-trip them (test_routed_parameters_round_trip)."
)}
PARAMETER_CHECKS = [
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_get_params_invariance",
    "check_set_params",
    "check_parameters_default_constructible",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_dont_overwrite_parameters",
    "check_estimators_overwrite_params",
]


@parametrize_with_checks([CHECKED], expected_failed_checks=lambda estimator: ROUTED_ATTRIBUTES)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("check", PARAMETER_CHECKS)
def test_sklearn_parameter_checks_with_routed_parameters(check):
    getattr(estimator_checks, check)(type(ROUTED).__name__, clone(ROUTED))


def test_routed_parameters_round_trip():
    clf = CKDNetClassifier(module__width=8, optimizer__weight_decay=0.05)
    params = clf.get_params()
    assert params["module__width"] == 8
    assert params["optimizer__weight_decay"] == 0.05
    cloned = clone(clf).set_params(module__width=16)
    assert cloned.get_params()["module__width"] == 16
    assert clf.get_params()["module__width"] == 8


# --- fitting and predicting -----------------------------------------------------


def test_fit_predict_string_labels(blob_data):
    X, y = blob_data
    clf = tiny(max_epochs=8, lr=1e-2).fit(X, y)
    assert list(clf.classes_) == ["Cyst", "Normal", "Stone"]
    predictions = clf.predict(X)
    assert predictions.dtype == y.dtype
    assert set(predictions) <= set(clf.classes_)
    assert clf.score(X, y) > 0.8
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert clf.image_shape_ == (1, 16, 16)
    assert clf.n_features_in_ == 256


def test_integer_labels_are_returned_as_given(blob_data):
    X, y = blob_data
    labels = np.where(y == "Cyst", 7, np.where(y == "Normal", 3, 11))
    clf = tiny().fit(X, labels)
    assert list(clf.classes_) == [3, 7, 11]
    assert set(clf.predict(X)) <= {3, 7, 11}


@pytest.mark.parametrize("dtype", [np.uint8, np.float16, np.float32, np.float64])
@pytest.mark.parametrize("layout", ["flat", "3d", "4d"])
def test_input_layouts_and_dtypes(blob_data, dtype, layout):
    X, y = blob_data
    if dtype == np.uint8:
        X = (X.clip(0, 1) * 255).astype(np.uint8)
    shaped = {
        "flat": X,
        "3d": X.reshape(-1, 16, 16),
        "4d": X.reshape(-1, 1, 16, 16),
    }[layout].astype(dtype)
    clf = tiny().fit(shaped, y)
    assert clf.image_shape_ == (1, 16, 16)
    # A model fitted on one layout predicts on any other of the same size.
    flat_proba = clf.predict_proba(shaped.reshape(len(shaped), -1))
    np.testing.assert_allclose(clf.predict_proba(shaped), flat_proba, rtol=1e-6)
    np.testing.assert_allclose(
        clf.predict_proba(shaped.reshape(-1, 1, 16, 16)), flat_proba, rtol=1e-6
    )


def test_uint8_input_is_scaled_like_float_input(blob_data):
    X, y = blob_data
    X8 = (X.clip(0, 1) * 255).round().astype(np.uint8)
    clf = tiny().fit(X8.astype(np.float32) / 255, y)
    np.testing.assert_allclose(
        clf.predict_proba(X8), clf.predict_proba(X8.astype(np.float32) / 255), atol=1e-6
    )


def test_multichannel_image_shape_and_paper_cnn():
    rng = np.random.RandomState(0)
    X = rng.rand(24, 3 * 28 * 28).astype(np.float32)
    y = np.repeat([0, 1, 2, 3], 6)
    clf = CKDNetClassifier(
        PaperCNN, image_shape=(3, 28, 28), max_epochs=1, augment=None, random_state=0
    ).fit(X, y)
    assert isinstance(clf.module_, PaperCNN)
    assert clf.module_.conv1.in_channels == 3
    assert clf.module_.dense.out_features == 4
    assert clf.predict(X).shape == (24,)


def test_standardize_makes_the_network_blind_to_intensity_windows():
    torch.manual_seed(0)
    images = torch.rand(4, 1, 16, 16)
    net = CKDNet(n_classes=3, width=4, depth=2, standardize=True).eval()
    plain = CKDNet(n_classes=3, width=4, depth=2, standardize=False).eval()
    plain.load_state_dict(net.state_dict())
    rewindowed = 0.3 * images + 0.5  # another export window of the same slices
    torch.testing.assert_close(net(rewindowed), net(images), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(plain(rewindowed), plain(images), atol=1e-3)
    flat = torch.full((1, 1, 16, 16), 0.7)  # zero variance stays finite
    assert torch.isfinite(net(flat)).all()


@pytest.mark.bitwise
def test_reproducible_with_random_state(blob_data):
    X, y = blob_data
    first = tiny(augment="ct").fit(X, y)
    second = tiny(augment="ct").fit(X, y)
    for a, b in zip(first.module_.state_dict().values(), second.module_.state_dict().values()):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))
    other = tiny(augment="ct", random_state=1).fit(X, y)
    assert not np.array_equal(first.predict_proba(X), other.predict_proba(X))


def test_random_state_leaves_global_torch_rng_alone(blob_data):
    X, y = blob_data
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny().fit(X, y)
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_device_auto_is_kept_as_parameter_and_resolved_for_torch():
    clf = CKDNetClassifier()
    assert clf.get_params()["device"] == "auto"
    assert clf.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert clone(clf).get_params()["device"] == "auto"
    assert CKDNetClassifier(device="cpu").device == "cpu"


@pytest.mark.bitwise
def test_pickle_round_trip(blob_data):
    X, y = blob_data
    clf = tiny().fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    assert restored.get_params()["device"] == "auto"


def test_class_weight_balanced(blob_data):
    X, y = blob_data
    keep = np.r_[np.flatnonzero(y == "Cyst")[:4], np.flatnonzero(y != "Cyst")]
    clf = tiny(class_weight="balanced").fit(X[keep], y[keep])
    weights = dict(zip(clf.classes_, clf.class_weight_))
    assert weights["Cyst"] > weights["Normal"]
    assert torch.allclose(
        clf.criterion_.weight, torch.as_tensor(clf.class_weight_, dtype=torch.float32)
    )


def test_partial_fit_and_warm_start(blob_data):
    X, y = blob_data
    clf = tiny(max_epochs=1)
    clf.partial_fit(X[y != "Stone"], y[y != "Stone"], classes=["Cyst", "Normal", "Stone"])
    assert list(clf.classes_) == ["Cyst", "Normal", "Stone"]
    clf.partial_fit(X, y)
    assert len(clf.history_) == 2
    warm = tiny(max_epochs=1, warm_start=True).fit(X, y).fit(X, y)
    assert len(warm.history_) == 2
    cold = tiny(max_epochs=1).fit(X, y).fit(X, y)
    assert len(cold.history_) == 1


def test_learning_rate_follows_cosine_schedule(blob_data):
    X, y = blob_data
    clf = tiny(max_epochs=4, lr=0.1).fit(X, y)
    lrs = [row["event_lr"] for row in clf.history_]
    assert lrs[0] == pytest.approx(0.1)
    assert lrs == sorted(lrs, reverse=True)
    assert lrs[-1] < 0.1 * 0.2
    flat = tiny(max_epochs=3, callbacks__lr_scheduler=None).fit(X, y)
    assert "event_lr" not in flat.history_[-1]


def test_label_smoothing_reaches_the_criterion(blob_data):
    X, y = blob_data
    assert tiny().fit(X, y).criterion_.label_smoothing == 0
    assert tiny(label_smoothing=0.1).fit(X, y).criterion_.label_smoothing == pytest.approx(0.1)
    routed = tiny(criterion__label_smoothing=0.3).fit(X, y)
    assert routed.criterion_.label_smoothing == pytest.approx(0.3)


@pytest.mark.parametrize("value", [-0.1, 1.0, "0.1", None])
def test_label_smoothing_out_of_range_is_refused(blob_data, value):
    X, y = blob_data
    with pytest.raises(ValueError, match=r"'label_smoothing' parameter of CKDNetClassifier must be a float in the range \[0.0, 1.0\)"):
        tiny(label_smoothing=value).fit(X, y)


def test_label_smoothing_needs_a_criterion_that_takes_it(blob_data):
    X, y = blob_data
    with pytest.raises(ValueError, match="NLLLoss does not"):
        tiny(criterion=torch.nn.NLLLoss, label_smoothing=0.1).fit(X, y)
    # Without smoothing (the default) any criterion goes.
    tiny(criterion=torch.nn.MultiMarginLoss).fit(X, y)


def test_mixup_blends_each_batch_with_a_shuffled_copy(blob_data):
    X, y = blob_data
    seen = {}

    def record(images):
        seen["augmented"] = images.clone()
        return images

    class RecordForwardInput(Callback):
        def on_train_begin(self, net, **kwargs):
            net.module_.register_forward_pre_hook(
                lambda module, args: seen.setdefault("forward", args[0].detach().clone())
            )

    tiny(mixup=0.4, augment=record, max_epochs=1, batch_size=len(X),
         callbacks=[RecordForwardInput()]).fit(X, y)
    before, after = seen["augmented"], seen["forward"]
    # A blend with a permutation of the same batch: images change, the
    # batch mean does not.
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after.mean(0), before.mean(0), rtol=1e-4, atol=1e-5)


@pytest.mark.bitwise
def test_mixup_is_reproducible_and_changes_training(blob_data):
    X, y = blob_data
    first = tiny(mixup=0.4).fit(X, y).predict_proba(X)
    again = tiny(mixup=0.4).fit(X, y).predict_proba(X)
    plain = tiny().fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, plain)


def test_mixup_still_learns(blob_data):
    X, y = blob_data
    clf = tiny(mixup=0.4, max_epochs=8, lr=1e-2).fit(X, y)
    assert clf.score(X, y) > 0.9


@pytest.mark.parametrize("value", [-0.2, float("inf"), float("nan"), "0.2", None])
def test_mixup_out_of_range_is_refused(blob_data, value):
    X, y = blob_data
    with pytest.raises(ValueError, match=r"'mixup' parameter of CKDNetClassifier must be a float in the range \[0.0, inf\)"):
        tiny(mixup=value).fit(X, y)


def test_bf16_precision_trains_and_returns_float32(blob_data):
    X, y = blob_data
    clf = tiny(precision="bf16").fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-3)


def test_verbose_prints_epoch_table(blob_data, capsys):
    X, y = blob_data
    tiny(verbose=0).fit(X, y)
    assert capsys.readouterr().out == ""
    tiny(verbose=1).fit(X, y)
    out = capsys.readouterr().out
    assert "train_loss" in out and "epoch" in out


class BatchLabels(Callback):
    """Records the (encoded) labels of every training batch."""

    def initialize(self):
        self.batches = []
        return self

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            self.batches.append(set(batch[1].tolist()))


def test_training_batches_are_shuffled_each_epoch(blob_data):
    # blob_data is sorted by class, as a folder loader (and SMOTE's appended
    # synthetic rows) gives it: in order, every batch of 12 holds one class.
    X, y = blob_data
    recorder = BatchLabels()
    tiny(batch_size=12, callbacks=[recorder]).fit(X, y)
    assert any(len(labels) > 1 for labels in recorder.batches)
    in_order = BatchLabels()
    tiny(batch_size=12, callbacks=[in_order], iterator_train__shuffle=False).fit(X, y)
    assert all(len(labels) == 1 for labels in in_order.batches)


@pytest.mark.parametrize("labels", [["Cyst", "Normal", "Stone"], [7, 3, 5]])
def test_internal_validation_split_scores_user_labels(blob_data, labels):
    X, names = blob_data
    y = np.asarray(labels)[np.unique(names, return_inverse=True)[1]]
    clf = tiny(max_epochs=3, train_split=ValidSplit(4, stratified=True)).fit(X, y)
    # skorch's stratified ValidSplit holds out the first StratifiedKFold fold.
    _, held_out = next(StratifiedKFold(4).split(X, y))
    expected = np.mean(clf.predict(X[held_out]) == y[held_out])
    assert len(clf.history_) == 3
    assert clf.history_[-1, "valid_acc"] == pytest.approx(expected)


# --- augmentation -----------------------------------------------------------


class CountingAugment:
    def __init__(self):
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        return images.flip(-1)


def test_augmentation_runs_in_training_only(blob_data):
    X, y = blob_data
    augment = CountingAugment()
    clf = tiny(augment=augment, batch_size=12, max_epochs=2).fit(X, y)
    # The estimator clones nothing: the callable given is the one used.
    assert clf.augment_ is augment
    assert augment.calls == 2 * 3  # 36 images / 12 per batch, 2 epochs
    clf.predict(X)
    clf.explain(X[:2])
    assert augment.calls == 6


def test_ct_augment_crops_a_window_by_default():
    torch.manual_seed(0)
    batch = torch.rand(6, 1, 96, 96)
    assert CTAugment()(batch).shape == (6, 1, 64, 64)
    assert CTAugment(crop=0.5)(batch).shape == (6, 1, 48, 48)
    # No window of a window: one-row tabular "images" and tiny ones stay whole.
    assert CTAugment()(torch.rand(2, 1, 1, 10)).shape == (2, 1, 1, 10)
    # Without rotation or zoom, a half window lies within the middle three
    # quarters of the slice (its centre moves up to half the free margin).
    still = CTAugment(rotation=0, translation=0, scale=(1, 1), hflip=0, contrast=0,
                      brightness=0, gamma=0, noise=0, crop=0.5)
    ramp = torch.arange(96.0).repeat(96, 1)[None, None] / 96
    out = still(ramp)
    assert float(out.min()) >= 0.12 and float(out.max()) <= 0.88


def test_ct_augment_changes_images_but_keeps_shape_and_range():
    torch.manual_seed(0)
    batch = torch.rand(6, 1, 32, 32)
    out = CTAugment(crop=None)(batch)
    assert out.shape == batch.shape
    assert not torch.allclose(out, batch)
    assert torch.isfinite(out).all()
    assert float(out.mean()) == pytest.approx(float(batch.mean()), abs=0.15)
    assert torch.equal(CTAugment(rotation=0, translation=0, scale=(1, 1), hflip=0,
                                 contrast=0, brightness=0, gamma=0, noise=0, crop=None)(batch), batch)


def test_ct_augment_leaves_one_row_images_geometry_alone():
    row = torch.arange(10.0).view(1, 1, 1, 10) / 10
    out = CTAugment(contrast=0, brightness=0, gamma=0, noise=0)(row)
    assert torch.equal(out, row)


def test_augment_inside_smote_pipeline(blob_data):
    X, y = blob_data
    pipe = make_pipeline(SMOTE(k_neighbors=3, random_state=0), tiny(augment="ct"))
    pipe.fit(X[:-6], y[:-6])
    assert pipe.predict(X).shape == (len(X),)


# --- pipelines and model selection ---------------------------------------------


@pytest.mark.bitwise
def test_smote_pipeline_fit_predict_score_clone_pickle(blob_data):
    X, y = blob_data
    keep = np.r_[np.flatnonzero(y == "Stone")[:5], np.flatnonzero(y != "Stone")]
    X, y = X[keep], y[keep]
    pipe = make_pipeline(SMOTE(k_neighbors=3, random_state=0), tiny(max_epochs=6, lr=1e-2))
    pipe.fit(X, y)
    assert pipe.predict(X).shape == (len(X),)
    assert pipe.predict_proba(X).shape == (len(X), 3)
    assert 0 <= pipe.score(X, y) <= 1
    # SMOTE balanced the classes the network saw: 12 images per class.
    assert pipe[-1].history_[-1]["batches"][-1]["train_batch_size"] == 36 - 2 * 16
    cloned = clone(pipe)
    assert not hasattr(cloned[-1], "classes_")
    restored = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(restored.predict_proba(X), pipe.predict_proba(X))
    named = Pipeline([("smote", SMOTE(k_neighbors=3)), ("cnn", tiny())]).fit(X, y)
    assert named.named_steps["cnn"].classes_.tolist() == ["Cyst", "Normal", "Stone"]


@pytest.mark.slow
def test_grid_search_with_groups_tunes_network_and_smote(blob_data):
    X, y = blob_data
    groups = np.arange(len(X)) // 3  # series of three neighbouring images
    pipe = make_pipeline(SMOTE(random_state=0), tiny(max_epochs=1))
    grid = {
        "ckdnetclassifier__lr": [1e-2, 1e-3],
        "ckdnetclassifier__module__width": [4, 8],
        "smote__k_neighbors": [2, 3],
    }
    search = GridSearchCV(pipe, grid, cv=StratifiedGroupKFold(3)).fit(X, y, groups=groups)
    assert len(search.cv_results_["params"]) == 8
    best = search.best_estimator_[-1]
    assert best.module_.features[0][0].conv1.out_channels == search.best_params_[
        "ckdnetclassifier__module__width"
    ]


# --- bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "X, message",
    [
        (np.zeros(10), "Expected 2D array"),
        (np.zeros((0, 16)), "0 sample"),
        (np.full((4, 16), np.nan), "NaN"),
        (np.full((4, 16), np.inf), "infinity"),
        (np.full((4, 16), 1e300), "beyond the float32 range"),
        (np.zeros((4, 2, 2, 2, 2)), "5 dimensions"),
        (np.array([["a"] * 4] * 4), "could not convert|dtype"),
    ],
)
def test_bad_training_input_raises_clear_error(X, message):
    y = np.arange(len(X)) % 2 if len(X) else np.array([])
    with pytest.raises(ValueError, match=message):
        tiny().fit(X, y)


def test_one_class_and_bad_labels():
    X = np.zeros((6, 16), dtype=np.float32)
    with pytest.raises(ValueError, match="at least 2 classes"):
        tiny().fit(X, ["Cyst"] * 6)
    with pytest.raises(ValueError, match="Unknown label type"):
        tiny().fit(X, np.linspace(0, 1, 6))
    with pytest.raises(ValueError, match="same number of samples"):
        tiny().fit(X, [0, 1])
    with pytest.raises(ValueError, match="y to be passed"):
        tiny().fit(X, None)
    with pytest.raises(ValueError, match="not among the classes"):
        tiny(classes=["Cyst", "Normal"]).fit(X, ["Cyst", "Normal", "Stone"] * 2)


def test_image_shape_errors():
    X = np.zeros((4, 100), dtype=np.float32)
    with pytest.raises(ValueError, match="holds 64 values per image, but X has 100"):
        tiny(image_shape=(8, 8)).fit(X, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="positive integers"):
        tiny(image_shape=(0, 10)).fit(X, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="disagrees with image_shape"):
        tiny(image_shape=(5, 20)).fit(X.reshape(4, 10, 10), [0, 1, 0, 1])


def test_predict_input_must_match_training_size(blob_data):
    X, y = blob_data
    clf = tiny().fit(X, y)
    with pytest.raises(ValueError, match="X has 100 features, but CKDNetClassifier is expecting 256"):
        clf.predict(np.zeros((2, 100)))
    with pytest.raises(ValueError, match=r"fitted on images of shape \(1, 16, 16\)"):
        clf.predict(np.zeros((2, 32, 32)))
    with pytest.raises(ValueError, match="NaN"):
        clf.predict_proba(np.full((2, 256), np.nan))


def test_unfitted_raises_not_fitted_error():
    with pytest.raises(NotFittedError):
        CKDNetClassifier().predict(np.zeros((2, 16)))
    with pytest.raises(NotFittedError):
        CKDNetClassifier().explain(np.zeros((2, 16)))


def test_invalid_parameters_fail_in_fit_not_init(blob_data):
    X, y = blob_data
    clf = CKDNetClassifier(precision="fp8")
    with pytest.raises(ValueError, match=r"'precision' parameter of CKDNetClassifier must be a str among"):
        clf.fit(X, y)
    with pytest.raises(ValueError, match=r"'augment' parameter of CKDNetClassifier must be a str among \{'ct'\}, a callable or None"):
        tiny(augment="strong").fit(X, y)


def test_input_is_not_modified(blob_data):
    X, y = blob_data
    X_before, y_before = X.copy(), y.copy()
    clf = tiny(augment="ct").fit(X, y)
    clf.predict(X)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)


def test_as_image_batch_views_and_copies():
    X = np.zeros((3, 64), dtype=np.float32)
    assert np.shares_memory(as_image_batch(X), X)
    X.setflags(write=False)
    images = as_image_batch(X)
    assert images.flags.writeable and not np.shares_memory(images, X)
    assert resolve_image_shape(49) == (1, 7, 7)
    assert as_image_batch(torch.zeros(2, 1, 4, 4)).shape == (2, 1, 4, 4)


# --- property-based: any input gives a result or a clear error -----------------

FITTED = {}


def _fitted_model():
    if "model" not in FITTED:
        X = np.random.RandomState(0).rand(12, 16).astype(np.float32)
        FITTED["model"] = tiny(max_epochs=1).fit(X, np.arange(12) % 2)
    return FITTED["model"]


arrays = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int32, np.float16, np.float32, np.float64, np.bool_]),
    shape=hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=6),
    elements=None,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(X=arrays)
def test_random_input_gives_result_or_clear_error(X):
    clf = _fitted_model()
    for method in (clf.predict_proba, clf.explain):
        try:
            out = method(X)
        except ValueError as error:
            assert str(error), "errors must say what was wrong"
        else:
            assert len(out) == X.shape[0]
            assert np.isfinite(out).all()
    y = np.arange(X.shape[0]) % 2 if X.ndim >= 1 else None
    try:
        fitted = tiny(max_epochs=1).fit(X, y)
    except ValueError as error:
        assert str(error)
    else:
        assert fitted.predict(X).shape == (X.shape[0],)


# --- a last batch of one image -----------------------------------------------------


def test_fit_with_a_last_batch_of_one_image_whose_feature_map_is_1x1():
    # 33 rows of 5 features are 1x5 images: the last block's feature map is
    # 1x1, and 33 = 32 + 1 left BatchNorm's refresh pass a batch of one.
    rng = np.random.default_rng(0)
    X = rng.random((33, 5), dtype=np.float32)
    clf = CKDNetClassifier(max_epochs=1, batch_size=32).fit(X, np.arange(33) % 2)
    assert clf.predict(X).shape == (33,)
    for name, buffer in clf.module_.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            assert torch.isfinite(buffer).all(), name


def test_batch_size_one_on_one_pixel_feature_maps_is_a_clear_error():
    # 8 px slices shrink to 1 x 1 maps, where BatchNorm cannot train on one
    # image; the message says which setting to change, not torch's words.
    X = np.random.default_rng(0).random((12, 8 * 8), dtype=np.float32)
    with pytest.raises(ValueError, match=r"batch_size=1 trains on one image.*batch_size=2 or more") as info:
        CKDNetClassifier(max_epochs=1, batch_size=1).fit(X, np.arange(12) % 2)
    assert "more than 1 value per channel" in str(info.value.__cause__)
    # Larger slices keep 2 x 2 maps or more: one image per batch trains.
    X = np.random.default_rng(0).random((6, 32 * 32), dtype=np.float32)
    assert CKDNetClassifier(max_epochs=1, batch_size=1).fit(X, np.arange(6) % 2).predict(X).shape == (6,)


def test_refresh_pass_joins_each_lone_batch_to_a_neighbour():
    from ckdlearn.loaders import join_lone_batches as join

    def sizes(*lengths):
        return [len(batch) for batch in join(torch.zeros(n, 1) for n in lengths)]

    assert sizes(32, 1) == [33]
    assert sizes(32, 32, 1) == [32, 33]
    assert sizes(1, 1, 1, 1, 1) == [2, 3]
    assert sizes(1, 4) == [5]
    assert sizes(4, 4) == [4, 4]
    assert sizes(1) == [] and sizes() == []
    # Every image is passed once, in order.
    batches = [torch.tensor([[0], [1], [2]]), torch.tensor([[3]]), torch.tensor([[4]])]
    assert torch.cat(list(join(iter(batches)))).ravel().tolist() == [0, 1, 2, 3, 4]
