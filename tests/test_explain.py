"""Grad-CAM heatmaps, faithfulness scores and pipeline explanations."""

import copy
import doctest
import importlib

import numpy as np
import pytest
import torch
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import make_pipeline as make_imblearn_pipeline
from pytorch_grad_cam import AblationCAM, FullGrad
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from torch import nn

import ckdlearn
from ckdlearn import CKDNetClassifier, PaperCNN
from ckdlearn.explanation import (
    CAM_METHODS,
    FAITHFULNESS_METRICS,
    compute_heatmaps,
    faithfulness_scores,
    heatmap_energy_in_mask,
    randomisation_test,
)

from helpers import tiny_classifier as tiny

torch.set_num_threads(1)

EXPLANATION_MODULES = ["_cam", "_explain", "_faithfulness", "_localisation", "_network", "_sanity"]

SIZE = 16


def make_square_images(n, seed=0, size=SIZE):
    """Noise; every other image ("Stone") has a bright 4x4 square somewhere
    in the upper-left corner, the only thing that tells the classes apart.

    Returns flat float32 rows, string labels and the square's mask per image
    (drawn for the "Normal" images too, where nothing is there).
    """
    rng = np.random.RandomState(seed)
    images = 0.5 * rng.rand(n, size, size).astype(np.float32)
    labels = np.where(np.arange(n) % 2 == 0, "Stone", "Normal")
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        row, col = rng.randint(0, 4, size=2)
        masks[i, row : row + 4, col : col + 4] = True
    images[masks & (labels == "Stone")[:, None, None]] = 1.0
    return images.reshape(n, -1), labels, masks


@pytest.fixture(scope="module")
def data():
    return make_square_images(160)


@pytest.fixture(scope="module")
def fitted(data):
    X, y, _ = data
    # lr=1e-2 learns the square in 4 epochs (test accuracy 1.0). Global
    # average pooling, for which Grad-CAM's channel weights are exactly the
    # classifier's (Grad-CAM = CAM): the textbook network for these checks.
    # (With the default's added max pooling, cam_mult, which multiplies the
    # image by the map, also dims the square the max reads, and scores
    # Grad-CAM below a random map on this toy; test_max_pooling_and_cam_mult.)
    return tiny(lr=1e-2, max_epochs=4, module__pool="avg").fit(X, y)


@pytest.fixture(scope="module")
def X_test():
    X, _, _ = make_square_images(12, seed=1)
    return X


@pytest.fixture
def fresh(fitted):
    """A private copy, for tests that change or refit the estimator."""
    return copy.deepcopy(fitted)


def state_bytes(module):
    return {name: tensor.cpu().numpy().tobytes() for name, tensor in module.state_dict().items()}


def assert_no_hooks(module):
    for name, submodule in module.named_modules():
        for attribute in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
        ):
            assert not getattr(submodule, attribute), f"{attribute} left on {name!r}"


def direct_cam(module, images, class_indices, method, layer):
    """pytorch-grad-cam used the way its README shows."""
    cam_class = CAM_METHODS[method]
    if cam_class is FullGrad:
        cam = cam_class(module, [])
    elif cam_class is AblationCAM:
        cam = cam_class(module, [layer], ablation_layer=AblationLayer())
    else:
        cam = cam_class(module, [layer])
    targets = [ClassifierOutputTarget(int(c)) for c in class_indices]
    with cam:
        return cam(input_tensor=torch.from_numpy(images), targets=targets)


# --- heatmaps ---------------------------------------------------------------


def test_cam_methods_is_read_only():
    assert {"gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "scorecam"} <= set(CAM_METHODS)
    with pytest.raises(TypeError):
        CAM_METHODS["mine"] = object


@pytest.mark.parametrize("method", list(CAM_METHODS))
def test_each_method_gives_unit_heatmaps_and_leaves_network_alone(fitted, X_test, method):
    module = fitted.module_
    before = state_bytes(module)
    heatmaps = fitted.explain(X_test, method=method)
    assert heatmaps.shape == (len(X_test), SIZE, SIZE)
    assert heatmaps.dtype == np.float32
    assert np.all(np.isfinite(heatmaps))
    assert heatmaps.min() >= 0 and heatmaps.max() <= 1
    assert heatmaps.max() > 0.5  # not degenerate on a trained network
    assert state_bytes(module) == before
    assert_no_hooks(module)
    assert all(p.grad is None for p in module.parameters())


@pytest.mark.parametrize("method", list(CAM_METHODS))
def test_heatmaps_match_pytorch_grad_cam_called_directly(fresh, X_test, method):
    # ckdlearn freezes the weights and starts the backward pass at the
    # layer; the maps must still be pytorch-grad-cam's, bit for bit.
    images = fresh.to_images(X_test)
    ours, classes = compute_heatmaps(fresh.module_, images, method=method)
    np.testing.assert_array_equal(classes, fresh.predict_proba(X_test).argmax(axis=1))
    layer = dict(fresh.module_.named_modules())[fresh.module_.cam_layer]
    theirs = direct_cam(fresh.module_, images, classes, method, layer)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_heatmaps_do_not_depend_on_batch_size(fitted, X_test):
    images = fitted.to_images(X_test)
    reference, _ = compute_heatmaps(fitted.module_, images, batch_size=len(images))
    for batch_size in (1, 5):
        heatmaps, _ = compute_heatmaps(fitted.module_, images, batch_size=batch_size)
        np.testing.assert_allclose(heatmaps, reference, atol=1e-6)


def test_all_zero_cam_stays_zero(fresh, X_test):
    # A head that ignores the features gives zero gradients everywhere.
    with torch.no_grad():
        fresh.module_.classifier.weight.zero_()
    for method in ("gradcam", "gradcam++", "layercam"):
        heatmaps = fresh.explain(X_test, method=method)
        assert not np.any(np.isnan(heatmaps))
        assert np.all(heatmaps == 0)


def test_empty_batch(fitted):
    heatmaps, classes = compute_heatmaps(fitted.module_, np.zeros((0, 1, SIZE, SIZE), np.float32))
    assert heatmaps.shape == (0, SIZE, SIZE) and heatmaps.dtype == np.float32
    assert classes.shape == (0,) and classes.dtype == np.int64


# --- targets ----------------------------------------------------------------


def test_target_none_explains_the_prediction(fitted, X_test):
    predicted = fitted.predict(X_test)
    np.testing.assert_array_equal(
        fitted.explain(X_test), fitted.explain(X_test, target=predicted)
    )
    _, classes = compute_heatmaps(fitted.module_, fitted.to_images(X_test))
    assert classes.dtype == np.int64
    np.testing.assert_array_equal(fitted.classes_[classes], predicted)


def test_target_forms(fitted, X_test):
    n = len(X_test)
    one = fitted.explain(X_test, target="Stone")
    per_image = fitted.explain(X_test, target=["Stone"] * n)
    np.testing.assert_array_equal(one, per_image)
    other = fitted.explain(X_test, target="Normal")
    assert not np.allclose(one, other)
    mixed = np.where(np.arange(n) % 2 == 0, "Stone", "Normal")
    heatmaps = fitted.explain(X_test, target=mixed)
    np.testing.assert_array_equal(heatmaps[::2], one[::2])
    np.testing.assert_array_equal(heatmaps[1::2], other[1::2])


def test_integer_labels(data, X_test):
    X, y, _ = data
    clf = tiny().fit(X, np.where(y == "Stone", 7, 3))
    np.testing.assert_array_equal(
        clf.explain(X_test, target=7),
        compute_heatmaps(clf.module_, clf.to_images(X_test), np.ones(len(X_test), int))[0],
    )


@pytest.mark.parametrize(
    "target, message",
    [
        ("Tumor", "Unknown target label"),
        (5, "Unknown target label"),
        (["Stone", "Normal"], "one label per image"),
        ([["Stone"] * 12], "one label per image"),
    ],
)
def test_bad_targets(fitted, X_test, target, message):
    with pytest.raises(ValueError, match=message):
        fitted.explain(X_test, target=target)
    assert_no_hooks(fitted.module_)


@pytest.mark.parametrize(
    "class_indices, message",
    [
        ([0, 1], r"shape \(12,\)"),
        (np.zeros(12), "integers"),
        (-np.ones(12, int), "non-negative"),
        (np.full(12, 2), r"only 2 outputs"),
    ],
)
def test_bad_class_indices(fresh, X_test, class_indices, message):
    module = fresh.module_.train()
    before = state_bytes(module)
    with pytest.raises(ValueError, match=message):
        compute_heatmaps(module, fresh.to_images(X_test), class_indices)
    assert module.training
    assert_no_hooks(module)
    assert state_bytes(module) == before


# --- methods and layers -----------------------------------------------------


def test_unknown_method_lists_the_known_ones(fitted, X_test):
    with pytest.raises(
        ValueError,
        match=r"'method' parameter of compute_heatmaps must be a str among \{.*'gradcam\+\+'.*\}\. "
        r"Got 'gradcam\+' instead",
    ):
        fitted.explain(X_test, method="gradcam+")


def test_layer_by_name_and_by_module(fitted, X_test):
    module = fitted.module_
    default = fitted.explain(X_test)
    np.testing.assert_array_equal(default, fitted.explain(X_test, layer=module.cam_layer))
    by_name = fitted.explain(X_test, layer="features.0")
    by_module = fitted.explain(X_test, layer=module.features[0])
    np.testing.assert_array_equal(by_name, by_module)
    assert not np.allclose(by_name, default)
    conv = fitted.explain(X_test, layer="features.1.0.conv2")
    assert conv.shape == default.shape


def test_unknown_layer(fitted, X_test):
    with pytest.raises(ValueError, match="Unknown layer 'features.9'.*'features.1'"):
        fitted.explain(X_test, layer="features.9")
    with pytest.raises(ValueError, match="not one of"):
        fitted.explain(X_test, layer=nn.Conv2d(8, 8, 3))
    with pytest.raises(
        TypeError,
        match=r"'layer' parameter of compute_heatmaps must be an instance of 'str', an instance "
        r"of 'torch\.nn\.modules\.module\.Module' or None\. Got 3 instead",
    ):
        fitted.explain(X_test, layer=3)


def test_layer_without_feature_maps(fresh, X_test):
    module = fresh.module_
    before = state_bytes(module)
    with pytest.raises(ValueError, match=r"outputs \(12, 2\).*\(n, channels, height, width\)"):
        fresh.explain(X_test, layer="classifier", batch_size=12)
    assert_no_hooks(module)
    assert state_bytes(module) == before


def test_default_layer_is_the_last_convolution():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2),
    )
    images = np.random.RandomState(0).rand(3, 1, 8, 8).astype(np.float32)
    np.testing.assert_array_equal(
        compute_heatmaps(net, images)[0], compute_heatmaps(net, images, layer="2")[0]
    )
    with pytest.raises(ValueError, match="no cam_layer attribute and no"):
        compute_heatmaps(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), images)


def test_bad_images_and_batch_size(fitted):
    module = fitted.module_
    with pytest.raises(ValueError, match="4-D array"):
        compute_heatmaps(module, np.zeros((2, SIZE, SIZE)))
    with pytest.raises(ValueError, match=r"images contains NaN or infinity \(image index 0, 1\)"):
        compute_heatmaps(module, np.full((2, 1, SIZE, SIZE), np.nan))
    with pytest.raises(
        ValueError,
        match=r"'batch_size' parameter of compute_heatmaps must be an int in the range "
        r"\[1, inf\)\. Got 0 instead",
    ):
        compute_heatmaps(module, np.zeros((2, 1, SIZE, SIZE)), batch_size=0)


# --- the network is left as it was ------------------------------------------


@pytest.mark.bitwise
@pytest.mark.parametrize("method", ["gradcam", "scorecam", "ablationcam", "fullgrad"])
def test_explain_leaves_no_trace(fresh, X_test, method):
    module = fresh.module_
    predicted = fresh.predict_proba(X_test)
    for parameter in module.parameters():  # as a training step leaves them
        parameter.grad = torch.ones_like(parameter)
    before = state_bytes(module)
    first = fresh.explain(X_test, method=method)
    second = fresh.explain(X_test, method=method)
    np.testing.assert_array_equal(first, second)
    assert_no_hooks(module)
    assert all(p.grad is None for p in module.parameters())
    assert state_bytes(module) == before
    np.testing.assert_array_equal(fresh.predict_proba(X_test), predicted)
    # The layer AblationCAM swaps out while it runs is back in place.
    assert isinstance(module.features[1], nn.Sequential)


def test_modes_and_requires_grad_restored(fresh, X_test):
    module = fresh.module_.train()
    module.features[0][0].bn1.eval()  # a mixed state must survive as it is
    modes = {name: m.training for name, m in module.named_modules()}
    module.classifier.bias.requires_grad_(False)
    flags = {name: p.requires_grad for name, p in module.named_parameters()}
    before = state_bytes(module)
    fresh.explain(X_test, return_scores=True)
    assert {name: m.training for name, m in module.named_modules()} == modes
    assert {name: p.requires_grad for name, p in module.named_parameters()} == flags
    # Train mode did not leak into the CAM pass: batch-norm statistics stay.
    assert state_bytes(module) == before


def test_fit_after_explain(fresh, data, X_test):
    X, y, _ = data
    fresh.explain(X_test)
    fresh.fit(X, y)
    refitted = tiny(lr=1e-2, max_epochs=4, module__pool="avg").fit(X, y)
    np.testing.assert_allclose(fresh.predict_proba(X_test), refitted.predict_proba(X_test), atol=1e-6)


def test_global_torch_random_state_untouched(fitted, X_test):
    state = torch.random.get_rng_state()
    fitted.explain(X_test, return_scores=True)
    faithfulness_scores(
        fitted.module_, fitted.to_images(X_test), None,
        fitted.explain(X_test), metric="road",
    )
    assert torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_module_on_cuda(fresh, X_test):
    images = fresh.to_images(X_test)
    on_cpu, classes = compute_heatmaps(fresh.module_, images)
    module = fresh.module_.to("cuda")
    on_gpu, gpu_classes = compute_heatmaps(module, images, device="cpu")
    np.testing.assert_array_equal(gpu_classes, classes)
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4)
    scores = faithfulness_scores(module, images, classes, on_gpu)
    assert scores.shape == (len(images),)
    assert all(p.device.type == "cuda" for p in module.parameters())


# --- other inputs and networks ----------------------------------------------


@pytest.mark.parametrize("method", list(CAM_METHODS))
def test_one_pixel_high_images(method):
    # Tabular rows are read as images one pixel high: the layers' feature
    # maps are 1 x W.
    rng = np.random.RandomState(0)
    X = rng.rand(40, 10).astype(np.float32)
    y = np.repeat([0, 1], 20)
    X[y == 1, :3] += 1
    clf = tiny().fit(X, y)
    heatmaps = clf.explain(X[:5], method=method)
    assert heatmaps.shape == (5, 1, 10)
    assert np.all(np.isfinite(heatmaps)) and heatmaps.min() >= 0 and heatmaps.max() <= 1
    assert_no_hooks(clf.module_)


def test_paper_cnn_on_rgb_images():
    rng = np.random.RandomState(0)
    X = rng.rand(24, 3 * 28 * 28).astype(np.float32)
    y = np.repeat(["Cyst", "Tumor"], 12)
    clf = CKDNetClassifier(
        PaperCNN, image_shape=(3, 28, 28), max_epochs=2, batch_size=16,
        augment=None, random_state=0,
    ).fit(X, y)
    heatmaps, scores = clf.explain(X[:4], return_scores=True)
    assert heatmaps.shape == (4, 28, 28)
    assert scores.shape == (4,)
    layer = dict(clf.module_.named_modules())["conv2"]
    np.testing.assert_array_equal(
        clf.explain(X[:4], layer="conv2"), clf.explain(X[:4], layer=layer)
    )


# --- pipelines and the top-level function -----------------------------------


def test_explain_imblearn_pipeline_skips_the_sampler(data, X_test):
    X, y, _ = data
    keep = np.r_[np.flatnonzero(y == "Stone")[:6], np.flatnonzero(y == "Normal")[:30]]
    pipe = make_imblearn_pipeline(SMOTE(k_neighbors=2, random_state=0), tiny()).fit(X[keep], y[keep])
    heatmaps = ckdlearn.explain(pipe, X_test)
    np.testing.assert_array_equal(heatmaps, pipe[-1].explain(X_test))
    np.testing.assert_array_equal(
        ckdlearn.explain(pipe, X_test, target="Stone"), pipe[-1].explain(X_test, target="Stone")
    )


def test_explain_pipeline_transforms_first(data, X_test):
    X, y, _ = data
    invert = FunctionTransformer(lambda rows: 1 - rows)
    for pipe in (
        make_pipeline(invert, tiny()),
        make_imblearn_pipeline(invert, SMOTE(k_neighbors=2), tiny()),
    ):
        pipe.fit(X, y)
        heatmaps = ckdlearn.explain(pipe, X_test, method="layercam", batch_size=5)
        np.testing.assert_array_equal(
            heatmaps, pipe[-1].explain(1 - X_test, method="layercam", batch_size=5)
        )
        assert not np.allclose(heatmaps, pipe[-1].explain(X_test, method="layercam"))


def test_explain_nested_pipeline_and_search(data, X_test):
    from sklearn.model_selection import GridSearchCV

    X, y, _ = data
    inner = make_pipeline(FunctionTransformer(lambda rows: rows * 2), tiny())
    outer = make_pipeline(FunctionTransformer(lambda rows: rows / 2), inner).fit(X, y)
    np.testing.assert_allclose(
        ckdlearn.explain(outer, X_test), outer[-1][-1].explain(X_test), atol=1e-6
    )
    search = GridSearchCV(tiny(), {"lr": [1e-2]}, cv=2).fit(X, y)
    np.testing.assert_array_equal(
        ckdlearn.explain(search, X_test), search.best_estimator_.explain(X_test)
    )


def test_explain_return_scores(fitted, X_test):
    heatmaps, scores = ckdlearn.explain(fitted, X_test, return_scores=True)
    np.testing.assert_array_equal(heatmaps, fitted.explain(X_test))
    assert scores.shape == (len(X_test),) and scores.dtype == np.float32
    assert np.all(np.isfinite(scores))


def test_explain_not_fitted(X_test):
    with pytest.raises(NotFittedError):
        ckdlearn.explain(tiny(), X_test)
    with pytest.raises(NotFittedError):
        ckdlearn.explain(make_imblearn_pipeline(SMOTE(), tiny()), X_test)


def test_explain_needs_an_explain_method(data, X_test):
    X, y, _ = data
    with pytest.raises(TypeError, match="LogisticRegression, which has no explain method"):
        ckdlearn.explain(LogisticRegression().fit(X, y), X_test)
    with pytest.raises(TypeError, match="last step 'logisticregression'"):
        ckdlearn.explain(make_pipeline(LogisticRegression()).fit(X, y), X_test)
    with pytest.raises(TypeError, match="no explain method"):
        ckdlearn.explain(object(), X_test)


# --- faithfulness -----------------------------------------------------------


@pytest.fixture(scope="module")
def stone_images(fitted):
    """Test images with a square, explained for the class the square means."""
    X, y, masks = make_square_images(40, seed=1)
    stone = y == "Stone"
    assert np.all(fitted.predict(X[stone]) == "Stone")
    images = fitted.to_images(X[stone])
    classes = np.full(len(images), list(fitted.classes_).index("Stone"))
    return images, classes, masks[stone]


def test_gradcam_points_at_the_square(fitted, stone_images):
    images, classes, masks = stone_images
    heatmaps, _ = compute_heatmaps(fitted.module_, images, classes)
    energy = heatmap_energy_in_mask(heatmaps, masks)
    # The square is 1/16 of the image; a map that ignored it would put
    # about that share of its mass there.
    assert energy.mean() > 3 * masks.mean()


@pytest.mark.parametrize("metric", [
    # ROAD (with its imputation) takes seconds here, the other metrics a fraction.
    pytest.param(metric, marks=pytest.mark.slow) if metric == "road" else metric
    for metric in FAITHFULNESS_METRICS
])
def test_faithful_heatmaps_score_higher(fitted, stone_images, metric):
    images, classes, masks = stone_images
    module = fitted.module_
    heatmaps, _ = compute_heatmaps(module, images, classes)
    random_maps = np.random.RandomState(0).rand(*heatmaps.shape).astype(np.float32)
    before = state_bytes(module)

    def score(maps):
        return faithfulness_scores(module, images, classes, maps, metric=metric)

    gradcam, inverted, random = score(heatmaps), score(1 - heatmaps), score(random_maps)
    assert gradcam.dtype == np.float32 and gradcam.shape == (len(images),)
    assert gradcam.mean() > inverted.mean() + 0.05
    assert gradcam.mean() > random.mean() + 0.05
    if metric == "decision_flip":
        # Per image the score is 1 (flipped), 0 or -1: ties are common.
        assert set(np.unique(gradcam)) <= {-1.0, 0.0, 1.0}
        assert np.mean(gradcam >= inverted) >= 0.9
    else:
        assert np.mean(gradcam > inverted) >= 0.9
    # The metric itself ranks the true region above its complement.
    truth = masks.astype(np.float32)
    assert score(truth).mean() > score(1 - truth).mean() + 0.05
    assert state_bytes(module) == before
    assert_no_hooks(module)
    assert all(p.grad is None for p in module.parameters())


def test_max_pooling_and_cam_mult(data, stone_images):
    # The default head also max-pools. Deletion (confidence_drop) still
    # ranks Grad-CAM far above a random map; cam_mult, which keeps the
    # image times the map, does not: the product dims the square itself,
    # and its brightest pixel is what the max reads.
    X, y, _ = data
    avgmax = tiny(lr=1e-2, max_epochs=4, module__pool="avgmax").fit(X, y)
    images, classes, _ = stone_images
    heatmaps, _ = compute_heatmaps(avgmax.module_, images, classes)
    random_maps = np.random.RandomState(0).rand(*heatmaps.shape).astype(np.float32)

    def score(maps, metric):
        return faithfulness_scores(avgmax.module_, images, classes, maps, metric=metric).mean()

    assert score(heatmaps, "confidence_drop") > score(random_maps, "confidence_drop") + 0.3
    assert score(heatmaps, "cam_mult") < score(random_maps, "cam_mult") + 0.05


class _Scaled(torch.nn.Module):
    """A network whose logits are multiplied by a temperature."""

    def __init__(self, module, factor):
        super().__init__()
        self.module, self.factor = module, factor

    def forward(self, x):
        return self.module(x) * self.factor


def test_decision_flip_ignores_confidence_but_confidence_drop_does_not(fitted, stone_images):
    images, classes, _ = stone_images
    heatmaps, _ = compute_heatmaps(fitted.module_, images, classes)

    def score(module, metric):
        return faithfulness_scores(module, images, classes, heatmaps, metric=metric)

    softened = _Scaled(fitted.module_, 0.2)
    flips = score(fitted.module_, "decision_flip")
    np.testing.assert_array_equal(flips, score(softened, "decision_flip"))
    assert flips.mean() > 0
    # The same decisions, less confident: less probability to lose.
    assert score(softened, "confidence_drop").mean() < score(fitted.module_, "confidence_drop").mean()


def test_decision_flip_counts_a_decision_gained_as_minus_one(fitted, stone_images):
    images, classes, masks = stone_images
    # Explaining a class the network does not predict: removing pixels can
    # only keep it out of first place (0) or bring it there (-1).
    other = (classes + 1) % len(fitted.classes_)
    scores = faithfulness_scores(fitted.module_, images, other, masks.astype(np.float32),
                                 metric="decision_flip")
    assert set(np.unique(scores)) <= {-1.0, 0.0}


@pytest.mark.slow
def test_faithfulness_is_reproducible(fitted, stone_images):
    images, classes, _ = stone_images
    heatmaps, _ = compute_heatmaps(fitted.module_, images, classes)
    first = faithfulness_scores(fitted.module_, images, classes, heatmaps, metric="road", random_state=3)
    again = faithfulness_scores(fitted.module_, images, classes, heatmaps, metric="road", random_state=3, batch_size=4)
    np.testing.assert_allclose(first, again, atol=1e-6)
    predicted = faithfulness_scores(fitted.module_, images, None, heatmaps)
    np.testing.assert_allclose(predicted, faithfulness_scores(fitted.module_, images, classes, heatmaps))


def test_faithfulness_of_flat_maps_is_finite(fitted, stone_images):
    images, classes, _ = stone_images
    for maps in (np.zeros(images.shape[:1] + images.shape[2:], np.float32),):
        for metric in FAITHFULNESS_METRICS:
            scores = faithfulness_scores(fitted.module_, images, classes, maps, metric=metric)
            assert np.all(np.isfinite(scores))


def test_faithfulness_bad_arguments(fitted, stone_images):
    images, classes, _ = stone_images
    heatmaps = np.zeros((len(images), SIZE, SIZE), np.float32)
    module = fitted.module_
    with pytest.raises(
        ValueError,
        match=r"'metric' parameter of faithfulness_scores must be a str among \{.*'road'.*\}\. "
        r"Got 'drop' instead",
    ):
        faithfulness_scores(module, images, classes, heatmaps, metric="drop")
    with pytest.raises(
        ValueError,
        match=r"'percentile' parameter of faithfulness_scores must be a float in the range "
        r"\(0\.0, 100\.0\), an array-like or None\. Got 100 instead",
    ):
        faithfulness_scores(module, images, classes, heatmaps, percentile=100)
    with pytest.raises(ValueError, match="strictly between 0 and 100; got \\[20, 100\\]"):
        faithfulness_scores(module, images, classes, heatmaps, percentile=[20, 100], metric="road")
    with pytest.raises(ValueError, match="takes one percentile"):
        faithfulness_scores(module, images, classes, heatmaps, percentile=[20, 80])
    with pytest.raises(ValueError, match="'decision_flip' takes one percentile"):
        faithfulness_scores(module, images, classes, heatmaps, percentile=[20, 80],
                            metric="decision_flip")
    with pytest.raises(ValueError, match="heatmaps must be"):
        faithfulness_scores(module, images, classes, heatmaps[:, :8])
    with pytest.raises(ValueError, match="only 2 outputs"):
        faithfulness_scores(module, images, classes + 5, heatmaps)
    assert_no_hooks(module)


def test_heatmap_energy_in_mask():
    heatmaps = np.zeros((3, 4, 4), np.float32)
    heatmaps[0, 0, 0] = 1
    heatmaps[1] = 1
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    np.testing.assert_allclose(heatmap_energy_in_mask(heatmaps, mask), [1, 0.25, 0])
    np.testing.assert_allclose(
        heatmap_energy_in_mask(heatmaps, np.stack([~mask, mask, mask])), [0, 0.25, 0]
    )
    with pytest.raises(ValueError, match="masks must be"):
        heatmap_energy_in_mask(heatmaps, mask[:3])
    with pytest.raises(ValueError, match="non-negative"):
        heatmap_energy_in_mask(-heatmaps, mask)


def test_docstring_examples():
    attempted = 0
    for name in EXPLANATION_MODULES:
        module = importlib.import_module(f"ckdlearn.explanation.{name}")
        results = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert results.failed == 0, name
        attempted += results.attempted
    assert attempted > 0


def test_the_old_cam_module_still_works_and_warns():
    import sys

    import ckdlearn.explanation

    sys.modules.pop("ckdlearn.cam", None)
    with pytest.warns(FutureWarning, match="ckdlearn.cam is deprecated.*ckdlearn.explanation"):
        from ckdlearn.cam import compute_heatmaps as old_compute_heatmaps
    assert old_compute_heatmaps is compute_heatmaps
    old = importlib.import_module("ckdlearn.cam")
    for name in ckdlearn.explanation.__all__:
        assert getattr(old, name) is getattr(ckdlearn.explanation, name)
    assert ckdlearn.explain is ckdlearn.explanation.explain


@pytest.mark.slow
def test_the_library_does_not_import_the_deprecated_module():
    import subprocess
    import sys

    code = ("import warnings; warnings.simplefilter('error', FutureWarning); import ckdlearn, sys; "
            "ckdlearn.explain; ckdlearn.CKDNetClassifier; import ckdlearn.persistence, "
            "ckdlearn.plotting, ckdlearn.app.cli; assert 'ckdlearn.cam' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- sanity checks: randomisation tests --------------------------------------


@pytest.fixture(scope="module")
def stone_rows():
    X, y, masks = make_square_images(40, seed=1)
    return X[y == "Stone"], masks[y == "Stone"]


@pytest.fixture(scope="module")
def cascade(fitted, stone_rows):
    return randomisation_test(fitted, stone_rows[0], methods=["gradcam", "eigencam", "layercam"])


def test_cascading_randomisation_changes_gradcam(fitted, cascade, stone_rows):
    _, masks = stone_rows
    assert cascade.test == "cascading"
    assert cascade.stages == ["classifier", "features.1", "features.0"]
    n = len(masks)
    for method in cascade.methods:
        assert cascade.spearman[method].shape == cascade.ssim[method].shape == (3, n)
        assert cascade.heatmaps[method].shape == (3, n, SIZE, SIZE)
        assert cascade.baseline[method].shape == (n,)
        assert np.all(np.abs(cascade.spearman[method]) <= 1)
    # The trained maps are the ones explain gives, for the predicted class.
    np.testing.assert_array_equal(cascade.trained_heatmaps["gradcam"], fitted.explain(stone_rows[0]))
    np.testing.assert_array_equal(fitted.classes_[cascade.classes], fitted.predict(stone_rows[0]))
    # A trained map correlates perfectly with itself; randomised, Grad-CAM's
    # maps keep little of their ranking at any stage ...
    gradcam = cascade.spearman["gradcam"]
    assert np.all(gradcam.mean(axis=1) < 0.5)
    assert np.all(cascade.ssim["gradcam"].mean(axis=1) < 0.5)
    # ... and no longer point at the square.
    trained_energy = heatmap_energy_in_mask(cascade.trained_heatmaps["gradcam"], masks).mean()
    for stage_maps in cascade.heatmaps["gradcam"]:
        assert heatmap_energy_in_mask(stage_maps, masks).mean() < 0.7 * trained_energy


def test_eigencam_ignores_the_head(cascade):
    # EigenCAM is the first principal component of the layer's activations:
    # it never looks at the classifier, so re-initialising it changes nothing.
    np.testing.assert_allclose(cascade.spearman["eigencam"][0], 1, atol=1e-5)
    np.testing.assert_allclose(cascade.ssim["eigencam"][0], 1, atol=1e-5)
    np.testing.assert_array_equal(cascade.heatmaps["eigencam"][0], cascade.trained_heatmaps["eigencam"])
    # Re-initialising the block it explains does change it.
    assert cascade.spearman["eigencam"][1].mean() < 0.5


def test_randomisation_leaves_the_estimator_alone(fresh, stone_rows):
    module = fresh.module_.train()
    module.classifier.bias.requires_grad_(False)
    flags = {name: p.requires_grad for name, p in module.named_parameters()}
    before = state_bytes(module)
    torch_state = torch.random.get_rng_state()
    randomisation_test(fresh, stone_rows[0], methods=["gradcam", "ablationcam"])
    assert state_bytes(module) == before
    assert module.training
    assert {name: p.requires_grad for name, p in module.named_parameters()} == flags
    assert all(p.grad is None for p in module.parameters())
    assert_no_hooks(module)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert isinstance(module.features[1], nn.Sequential)


def test_randomisation_is_reproducible(fitted, cascade, stone_rows):
    again = randomisation_test(fitted, stone_rows[0], methods=["gradcam", "eigencam", "layercam"],
                               batch_size=3)
    for method in cascade.methods:
        np.testing.assert_allclose(again.heatmaps[method], cascade.heatmaps[method], atol=1e-6)
        # Another batch size rounds differently, which reorders near-equal
        # pixels: rank correlations agree to a few thousandths, not bits.
        np.testing.assert_allclose(again.spearman[method], cascade.spearman[method], atol=5e-3)
    other = randomisation_test(fitted, stone_rows[0], methods="gradcam", random_state=1)
    assert other.methods == ["gradcam"]
    assert not np.allclose(other.heatmaps["gradcam"], cascade.heatmaps["gradcam"])


def test_randomisation_stages(fitted, stone_rows):
    images = stone_rows[0][:4]
    result = randomisation_test(fitted, images, stages=["classifier", "features.1.0.conv2"])
    assert result.stages == ["classifier", "features.1.0.conv2"]
    head_only = randomisation_test(fitted, images, stages=["classifier"])
    np.testing.assert_array_equal(head_only.heatmaps["gradcam"][0], result.heatmaps["gradcam"][0])
    for stages, bad in [(["features.9"], "features.9"), (["dropout"], "dropout"), ([], "")]:
        with pytest.raises(ValueError, match=f"stages must name submodules of CKDNet.*{bad}"):
            randomisation_test(fitted, images, stages=stages)


def test_paper_cnn_stages():
    rng = np.random.RandomState(0)
    X = rng.rand(24, 3 * 28 * 28).astype(np.float32)
    clf = CKDNetClassifier(PaperCNN, image_shape=(3, 28, 28), max_epochs=1, batch_size=16,
                           augment=None, random_state=0).fit(X, np.repeat(["Cyst", "Tumor"], 12))
    result = randomisation_test(clf, X[:3], methods=["gradcam", "gradcam++"])
    assert result.stages == ["dense", "conv3", "conv2", "conv1"]
    assert result.spearman["gradcam++"].shape == (4, 3)


@pytest.mark.bitwise
def test_label_randomisation(data, fitted, stone_rows):
    X, y, masks = data
    images = stone_rows[0]
    before = fitted.predict_proba(images)
    result = randomisation_test(fitted, images, test="labels", methods=["gradcam", "eigencam"],
                                X_train=X, y_train=y)
    np.testing.assert_array_equal(fitted.predict_proba(images), before)
    assert result.stages == ["labels"]
    assert result.spearman["gradcam"].shape == (1, len(images))
    assert result.shuffled_estimator is not fitted
    assert 0 <= result.train_accuracy <= 1
    # Trained on permuted labels, the network cannot find the square.
    assert result.shuffled_estimator.score(*make_square_images(40, seed=1)[:2]) < 0.8
    assert result.spearman["gradcam"].mean() < 0.5
    # The same clone, given back, explains other images without training.
    again = randomisation_test(fitted, images, test="labels", methods="gradcam",
                               shuffled_estimator=result.shuffled_estimator)
    np.testing.assert_array_equal(again.heatmaps["gradcam"], result.heatmaps["gradcam"])
    assert again.train_accuracy is None
    # Reproducible: the same permutation and the clone's own seed.
    repeat = randomisation_test(fitted, images, test="labels", methods="gradcam",
                                X_train=X, y_train=y)
    np.testing.assert_allclose(repeat.spearman["gradcam"], result.spearman["gradcam"], atol=1e-6)


@pytest.mark.slow
def test_label_randomisation_of_a_pipeline(data, X_test):
    X, y, _ = data
    pipe = make_imblearn_pipeline(SMOTE(k_neighbors=2, random_state=0), tiny()).fit(X, y)
    result = randomisation_test(pipe, X_test, test="labels", X_train=X, y_train=y)
    assert result.shuffled_estimator is not pipe
    assert isinstance(result.shuffled_estimator.steps[0][1], SMOTE)
    np.testing.assert_array_equal(result.trained_heatmaps["gradcam"], pipe[-1].explain(X_test))
    with pytest.raises(ValueError, match="learned the classes"):
        randomisation_test(pipe, X_test, test="labels", X_train=X, y_train=np.where(y == "Stone", "A", "B"))


def test_randomisation_bad_arguments(fitted, data, X_test):
    X, y, _ = data
    with pytest.raises(ValueError, match=r"'test' parameter of randomisation_test must be a str among"):
        randomisation_test(fitted, X_test, test="weights")
    with pytest.raises(ValueError, match=r"methods must name at least one CAM method.*\['gradcam\+'\]"):
        randomisation_test(fitted, X_test, methods=["gradcam", "gradcam+"])
    with pytest.raises(ValueError, match="methods must name at least one"):
        randomisation_test(fitted, X_test, methods=[])
    with pytest.raises(ValueError, match="pass its training data as X_train= and y_train="):
        randomisation_test(fitted, X_test, test="labels", X_train=X)
    with pytest.raises(TypeError, match=r"'layer' parameter of randomisation_test must be an instance of 'str' or None"):
        randomisation_test(fitted, X_test, layer=fitted.module_.features[0])
    with pytest.raises(ValueError, match="Unknown layer 'features.7'"):
        randomisation_test(fitted, X_test, layer="features.7")
    with pytest.raises(ValueError, match=r"X has 64 features, but CKDNetClassifier is expecting 256"):
        randomisation_test(fitted, X_test[:, :64])
    with pytest.raises(NotFittedError):
        randomisation_test(tiny(), X_test)
    with pytest.raises(TypeError, match="no explain method"):
        randomisation_test(LogisticRegression().fit(X, y), X_test)


def test_similarities_are_spearman_and_ssim(cascade, fresh, stone_rows):
    from scipy.stats import spearmanr

    trained, randomised = cascade.trained_heatmaps["layercam"], cascade.heatmaps["layercam"]
    expected = [[spearmanr(trained[i].ravel(), stage[i].ravel())[0] for i in range(len(trained))]
                for stage in randomised]
    np.testing.assert_allclose(cascade.spearman["layercam"], expected, atol=1e-5)
    previous = [spearmanr(trained[i].ravel(), trained[i - 1].ravel())[0] for i in range(len(trained))]
    np.testing.assert_allclose(cascade.baseline["layercam"], previous, atol=1e-5)
    assert np.all(cascade.ssim["layercam"] <= 1 + 1e-6)
    # A head that ignores the features gives all-zero Grad-CAM maps: no
    # ranking to share with anything, so the similarity is 0, not NaN.
    with torch.no_grad():
        fresh.module_.classifier.weight.zero_()
    flat = randomisation_test(fresh, stone_rows[0][:4], stages=["classifier"])
    assert np.all(flat.trained_heatmaps["gradcam"] == 0)
    assert flat.spearman["gradcam"].tolist() == [[0, 0, 0, 0]]
    assert flat.baseline["gradcam"].tolist() == [0, 0, 0, 0]


def test_plot_randomisation_test(fitted, data, cascade):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ckdlearn.plotting import plot_randomisation_test

    X, y, _ = data
    figure = plot_randomisation_test(cascade, methods=["gradcam", "eigencam"], image_index=2)
    curves = figure.axes[0]
    assert [t.get_text() for t in curves.get_xticklabels()] == ["trained", *cascade.stages]
    assert [t.get_text() for t in curves.get_legend().get_texts()] == ["gradcam", "eigencam"]
    np.testing.assert_allclose(curves.lines[0].get_ydata(), [1, *cascade.spearman["gradcam"].mean(axis=1)], rtol=1e-6)
    assert len(figure.axes) == 1 + 2 * (len(cascade.stages) + 2)
    plt.close(figure)
    labels = randomisation_test(fitted, make_square_images(40, seed=1)[0][::2], test="labels",
                                methods=["gradcam"], X_train=X, y_train=y)
    both = plot_randomisation_test([cascade, labels], methods=["gradcam"], metric="ssim")
    assert [t.get_text() for t in both.axes[0].get_xticklabels()][-1] == "labels"
    plt.close(both)
    with pytest.raises(ValueError, match="metric must be"):
        plot_randomisation_test(cascade, metric="pearson")
    with pytest.raises(ValueError, match=r"No results for methods \['fullgrad'\]"):
        plot_randomisation_test(cascade, methods=["fullgrad"])
    with pytest.raises(ValueError, match=r"image_index must be an integer in \[0, 19\]"):
        plot_randomisation_test(cascade, image_index=20)
    other = randomisation_test(fitted, make_square_images(4, seed=5)[0], methods=["gradcam"])
    with pytest.raises(ValueError, match="different images"):
        plot_randomisation_test([cascade, other])


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_per_image_methods_draw_no_progress_bar(method, capfd):
    from ckdlearn.nets import CKDNet

    torch.manual_seed(0)
    net = CKDNet(n_classes=2, width=4, depth=2)
    images = np.random.RandomState(0).rand(3, 1, 16, 16).astype(np.float32)
    heatmaps, _ = compute_heatmaps(net, images, method=method)
    assert heatmaps.shape == (3, 16, 16)
    assert capfd.readouterr().err == ""
