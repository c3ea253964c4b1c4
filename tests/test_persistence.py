"""Model files: round trips, refusals of foreign and tampered files, safe writes."""

import builtins
import copy
import io
import json
import os
import pickle
import subprocess
import zipfile
from functools import partial
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import make_pipeline
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from skorch.callbacks import EarlyStopping

import ckdlearn
from ckdlearn import CKDNet, CKDNetClassifier, PaperCNN
from ckdlearn import persistence
from ckdlearn.persistence import ModelFileError, load, save, supported_classes

from helpers import tiny_classifier


tiny = partial(tiny_classifier, max_epochs=1)


class TinyNet(CKDNet):
    """A user's own network: not something a model file may name."""


class MyClassifier(CKDNetClassifier):
    """A user's own subclass: not something a model file may name."""


@pytest.fixture(scope="module")
def string_model(blob_data):
    X, y = blob_data
    return tiny(
        optimizer__weight_decay=0.05,
        optimizer__betas=(0.9, 0.99),
        callbacks__lr_scheduler__eta_min=1e-5,
    ).fit(X, y)


@pytest.fixture(scope="module")
def int_model(blob_data):
    X, y = blob_data
    labels = np.array([10, 20, 30])[np.unique(y, return_inverse=True)[1]]
    weights = {10: 2.0, 20: 1.0, 30: 0.5}
    return tiny(class_weight=weights, module__width=2).fit(X, labels), labels


@pytest.fixture(scope="module")
def smote_pipeline(blob_data):
    X, y = blob_data
    keep = np.r_[np.flatnonzero(y == "Cyst")[:6], np.flatnonzero(y != "Cyst")]
    callbacks = [("stop", EarlyStopping(monitor="train_loss", patience=3))]
    pipeline = make_pipeline(
        StandardScaler(), SMOTE(k_neighbors=3, random_state=0), tiny(callbacks=callbacks)
    )
    return pipeline.fit(X[keep], y[keep])


@pytest.fixture
def model_file(tmp_path, string_model):
    return save(string_model, tmp_path / "model.ckdl")


def read_archive(path):
    with zipfile.ZipFile(path) as archive:
        return archive.read("model.json").decode(), archive.read("weights.safetensors")


def write_archive(path, model_json, weights):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.json", model_json)
        archive.writestr("weights.safetensors", weights)
    return path


def assert_same_predictions(original, loaded, X):
    np.testing.assert_array_equal(loaded.predict_proba(X), original.predict_proba(X))
    predictions = loaded.predict(X)
    np.testing.assert_array_equal(predictions, original.predict(X))
    assert predictions.dtype == original.predict(X).dtype


# --- round trips ------------------------------------------------------------------


def test_round_trip_string_labels(tmp_path, blob_data, string_model):
    X, _ = blob_data
    path = save(string_model, tmp_path / "model.ckdl")
    assert path == tmp_path / "model.ckdl"
    loaded = load(path)

    assert type(loaded) is CKDNetClassifier
    assert_same_predictions(string_model, loaded, X)
    np.testing.assert_array_equal(loaded.explain(X[:4]), string_model.explain(X[:4]))
    assert loaded.classes_.dtype == string_model.classes_.dtype
    assert loaded.image_shape_ == (1, 16, 16)
    assert loaded.n_features_in_ == 256
    assert loaded.class_weight_ is None
    assert not loaded.module_.training
    assert len(loaded.history_) == len(string_model.history_)
    assert loaded.history_[-1, "train_loss"] == string_model.history_[-1, "train_loss"]


def test_routed_and_all_parameters_survive(model_file, string_model):
    params = load(model_file).get_params(deep=False)
    assert params == string_model.get_params(deep=False)
    assert params["module__width"] == 4
    assert params["optimizer__betas"] == (0.9, 0.99)
    assert params["callbacks__lr_scheduler__eta_min"] == 1e-5
    assert params["device"] == "auto"


def test_round_trip_int_labels_and_class_weight(tmp_path, blob_data, int_model):
    X, _ = blob_data
    model, _ = int_model
    loaded = load(save(model, tmp_path / "model.ckdl"))
    assert_same_predictions(model, loaded, X)
    assert loaded.classes_.dtype == model.classes_.dtype
    assert loaded.get_params()["class_weight"] == {10: 2.0, 20: 1.0, 30: 0.5}
    np.testing.assert_array_equal(loaded.class_weight_, model.class_weight_)
    torch.testing.assert_close(loaded.criterion_.weight, model.criterion_.weight)


@pytest.mark.parametrize("inline_limit", [4096, 8], ids=["arrays-in-json", "arrays-as-tensors"])
def test_round_trip_smote_pipeline(tmp_path, monkeypatch, blob_data, smote_pipeline, inline_limit):
    X, _ = blob_data
    monkeypatch.setattr(persistence, "_INLINE_ARRAY_LIMIT", inline_limit)
    path = save(smote_pipeline, tmp_path / "pipeline.ckdl")
    model_json, _ = read_archive(path)
    assert ('"tensor": "array0"' in model_json) == (inline_limit == 8)

    loaded = load(path)
    assert type(loaded) is type(smote_pipeline)
    assert list(loaded.named_steps) == ["standardscaler", "smote", "ckdnetclassifier"]
    assert_same_predictions(smote_pipeline, loaded, X)
    assert loaded[1].get_params() == smote_pipeline[1].get_params()
    scaler, original_scaler = loaded[0], smote_pipeline[0]
    for name in ("mean_", "var_", "scale_"):
        np.testing.assert_array_equal(getattr(scaler, name), getattr(original_scaler, name))
        assert getattr(scaler, name).dtype == getattr(original_scaler, name).dtype
    callback = dict(loaded[-1].callbacks)["stop"]
    assert type(callback) is EarlyStopping and callback.patience == 3


def test_round_trip_paper_cnn_rgb_28(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.rand(24, 3 * 28 * 28).astype(np.float32)
    y = np.repeat(["Normal", "Tumor"], 12)
    model = CKDNetClassifier(
        module=PaperCNN,
        image_shape=(3, 28, 28),
        optimizer=torch.optim.Adam,
        max_epochs=1,
        augment=None,
        random_state=0,
    ).fit(X, y)
    loaded = load(save(model, tmp_path / "paper.ckdl"))
    assert type(loaded.module_) is PaperCNN
    assert loaded.image_shape_ == (3, 28, 28)
    assert loaded.get_params()["optimizer"] is torch.optim.Adam
    assert_same_predictions(model, loaded, X)
    assert_same_predictions(model, loaded, X.reshape(-1, 3, 28, 28))


def test_load_with_device_override(model_file, blob_data, string_model):
    X, _ = blob_data
    loaded = load(model_file, device="cpu")
    assert loaded.get_params()["device"] == "cpu"
    assert all(p.device.type == "cpu" for p in loaded.module_.parameters())
    assert_same_predictions(string_model, loaded, X)
    assert load(model_file).get_params()["device"] == "auto"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_model_on_a_cpu_machine_says_how_to_load_it(tmp_path, model_file, blob_data):
    model_json, weights = read_archive(model_file)
    cuda_file = write_archive(
        tmp_path / "cuda.ckdl", model_json.replace('"device": "auto"', '"device": "cuda"'), weights
    )
    with pytest.raises(RuntimeError, match="device='cpu'"):
        load(cuda_file)
    assert load(cuda_file, device="cpu").get_params()["device"] == "cpu"


def test_load_leaves_torch_random_state_alone(model_file):
    before = torch.get_rng_state()
    load(model_file)
    assert torch.equal(torch.get_rng_state(), before)


def test_loaded_model_trains_on_with_warm_start(model_file, blob_data):
    X, y = blob_data
    loaded = load(model_file)
    weights = loaded.module_.classifier.weight.detach().clone()
    loaded.set_params(warm_start=True).fit(X, y)
    assert len(loaded.history_) == 2
    assert not torch.equal(loaded.module_.classifier.weight, weights)


def test_file_layout_is_documented_json_and_safetensors(model_file, string_model):
    with zipfile.ZipFile(model_file) as archive:
        assert archive.namelist() == ["model.json", "weights.safetensors"]
        assert archive.getinfo("weights.safetensors").compress_type == zipfile.ZIP_STORED
    model_json, weights = read_archive(model_file)
    document = json.loads(model_json)
    assert document["format"] == "ckdlearn-model"
    assert document["format_version"] == 1
    assert set(document["versions"]) >= {
        "ckdlearn", "torch", "scikit-learn", "imbalanced-learn", "skorch", "numpy", "python"
    }
    node = document["estimator"]
    assert node["__estimator__"] == "ckdlearn.CKDNetClassifier"
    assert node["params"]["module"] == {"__class__": "ckdlearn.nets.CKDNet"}
    assert node["fitted"]["classes_"]["__ndarray__"]["data"] == ["Cyst", "Normal", "Stone"]
    assert node["preprocessing"]["uint8_scale"] == pytest.approx(1 / 255)
    from safetensors.torch import load as read_safetensors

    tensors = read_safetensors(weights)
    assert set(tensors) == {f"net0/{k}" for k in string_model.module_.state_dict()}


def test_same_model_gives_same_bytes(tmp_path, string_model):
    first = save(string_model, tmp_path / "a.ckdl").read_bytes()
    assert save(string_model, tmp_path / "b.ckdl").read_bytes() == first


def test_pickle_and_joblib_still_work(blob_data, smote_pipeline):
    X, _ = blob_data
    assert_same_predictions(smote_pipeline, pickle.loads(pickle.dumps(smote_pipeline)), X)
    buffer = io.BytesIO()
    joblib.dump(smote_pipeline, buffer)
    buffer.seek(0)
    assert_same_predictions(smote_pipeline, joblib.load(buffer), X)


def test_public_names():
    assert ckdlearn.save is save and ckdlearn.load is load
    assert issubclass(ModelFileError, ValueError)
    names = supported_classes()
    assert {"ckdlearn.CKDNetClassifier", "ckdlearn.nets.PaperCNN"} <= set(names)
    assert "imblearn.over_sampling.SMOTE" in names
    assert not {"builtins.eval", "os.system", "sklearn.preprocessing.PowerTransformer"} & set(names)


# --- what save refuses ------------------------------------------------------------


def test_unfitted_estimators_are_refused(tmp_path):
    with pytest.raises(NotFittedError):
        save(CKDNetClassifier(), tmp_path / "a.ckdl")
    with pytest.raises(NotFittedError):
        save(make_pipeline(SMOTE(), CKDNetClassifier()), tmp_path / "b.ckdl")
    assert list(tmp_path.iterdir()) == []


def test_custom_networks_are_refused_with_a_pickle_hint(tmp_path, blob_data):
    X, y = blob_data
    model = CKDNetClassifier(TinyNet, module__width=2, module__depth=1, max_epochs=1, augment=None)
    model.fit(X, y)
    with pytest.raises(ModelFileError, match="TinyNet.*pickle"):
        save(model, tmp_path / "model.ckdl")
    assert list(tmp_path.iterdir()) == []


def test_module_instances_are_refused(tmp_path, string_model):
    # skorch accepts a network instance as ``module``; its settings are not
    # parameters, so the file could not rebuild it.
    model = copy.deepcopy(string_model)
    vars(model)["module"] = model.module_
    with pytest.raises(ModelFileError, match="CKDNet instance.*module__width"):
        save(model, tmp_path / "model.ckdl")
    assert list(tmp_path.iterdir()) == []


def test_other_unsupported_objects_are_refused(tmp_path, blob_data, string_model):
    X, _ = blob_data
    with pytest.raises(ModelFileError, match="MyClassifier.*pickle"):
        save(MyClassifier(), tmp_path / "a.ckdl")
    with pytest.raises(ModelFileError, match="best_estimator_"):
        save(GridSearchCV(tiny(), {"lr": [0.1]}), tmp_path / "b.ckdl")
    unsafe = Pipeline([("log", FunctionTransformer(np.log1p).fit(X)), ("net", string_model)])
    with pytest.raises(ModelFileError, match="FunctionTransformer with func"):
        save(unsafe, tmp_path / "c.ckdl")
    assert list(tmp_path.iterdir()) == []


# --- writing safely ---------------------------------------------------------------


def test_existing_files_are_kept_unless_overwrite(tmp_path, model_file, int_model):
    before = model_file.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save(int_model[0], model_file)
    assert model_file.read_bytes() == before
    save(int_model[0], model_file, overwrite=True)
    assert load(model_file).classes_.tolist() == [10, 20, 30]


def test_failure_before_rename_keeps_the_old_file(tmp_path, monkeypatch, model_file, int_model):
    before = model_file.read_bytes()

    def disk_full(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        save(int_model[0], model_file, overwrite=True)
    assert model_file.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckdl"]


def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch, model_file, int_model):
    before = model_file.read_bytes()
    writestr = zipfile.ZipFile.writestr

    def interrupted(self, info, data, *args, **kwargs):
        if getattr(info, "filename", info) == "weights.safetensors":
            self.fp.write(data[: len(data) // 2])
            raise KeyboardInterrupt
        return writestr(self, info, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save(int_model[0], model_file, overwrite=True)
    with pytest.raises(KeyboardInterrupt):
        save(int_model[0], tmp_path / "new.ckdl")
    assert model_file.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckdl"]


# --- what load refuses ------------------------------------------------------------


class WritesSentinel:
    """Unpickling this writes a file: proof that a pickle ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "pickle code ran"))


def test_pickle_in_disguise_is_refused_unopened(tmp_path):
    control = tmp_path / "control.txt"
    pickle.loads(pickle.dumps(WritesSentinel(control)))
    assert control.exists()  # the payload is live

    sentinel = tmp_path / "sentinel.txt"
    disguised = tmp_path / "model.ckdl"
    disguised.write_bytes(pickle.dumps(WritesSentinel(sentinel)))
    with pytest.raises(ModelFileError, match="it looks like a pickle.*never unpickles"):
        load(disguised)
    assert not sentinel.exists()


def test_pickled_model_and_torch_save_files_are_refused(tmp_path, string_model):
    pickled = tmp_path / "pickled.ckdl"
    pickled.write_bytes(pickle.dumps(string_model))
    with pytest.raises(ModelFileError, match="looks like a pickle"):
        load(pickled)
    torch_file = tmp_path / "torch.ckdl"
    torch.save(string_model.module_.state_dict(), torch_file)
    with pytest.raises(ModelFileError, match="torch.save"):
        load(torch_file)


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.5, 0.999])
def test_truncated_files_are_refused(tmp_path, model_file, fraction):
    data = model_file.read_bytes()
    truncated = tmp_path / "truncated.ckdl"
    truncated.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelFileError, match="truncated|empty"):
        load(truncated)


def test_corrupted_weights_are_refused(tmp_path, model_file):
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the stored weights
    damaged = tmp_path / "damaged.ckdl"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="damaged"):
        load(damaged)


def test_missing_file_and_folder(tmp_path):
    missing = tmp_path / "nowhere.ckdl"
    with pytest.raises(FileNotFoundError, match="nowhere.ckdl") as excinfo:
        load(missing)
    assert excinfo.value.filename == str(missing)
    with pytest.raises(ModelFileError, match="folder"):
        load(tmp_path)


@pytest.mark.parametrize(
    "original, replacement",
    [
        ('"ckdlearn.CKDNetClassifier"', '"os.system"'),
        ('"ckdlearn.nets.CKDNet"', '"builtins.eval"'),
        ('"torch.optim.AdamW"', '"subprocess.Popen"'),
        ('{"__class__": "torch.nn.CrossEntropyLoss"}', '{"__function__": "builtins.exec"}'),
    ],
)
def test_tampered_class_names_run_nothing(tmp_path, monkeypatch, model_file, original, replacement):
    load(model_file)  # every import load needs is done before the traps are set
    calls = []
    for owner, name in [(os, "system"), (builtins, "eval"), (subprocess, "Popen")]:
        real = getattr(owner, name)

        def trap(*args, _real=real, _name=name, **kwargs):
            calls.append((_name, args))
            return _real(*args, **kwargs)

        monkeypatch.setattr(owner, name, trap)
    model_json, weights = read_archive(model_file)
    assert original in model_json
    tampered = write_archive(
        tmp_path / "tampered.ckdl", model_json.replace(original, replacement), weights
    )
    name = replacement.split('"')[-2]
    with pytest.raises(ModelFileError, match=f"refusing to rebuild '{name}'.*nothing"):
        load(tampered)
    assert calls == []


def test_weights_of_a_different_network_are_refused(tmp_path, model_file):
    model_json, weights = read_archive(model_file)
    edited = model_json.replace('"module__width": 4', '"module__width": 8')
    assert edited != model_json
    with pytest.raises(ModelFileError, match="different network"):
        load(write_archive(tmp_path / "other.ckdl", edited, weights))


def test_format_fields_are_checked(tmp_path, model_file):
    model_json, weights = read_archive(model_file)
    foreign = model_json.replace('"ckdlearn-model"', '"something-else"')
    with pytest.raises(ModelFileError, match="not a ckdlearn model file"):
        load(write_archive(tmp_path / "a.ckdl", foreign, weights))
    newer = model_json.replace('"format_version": 1', '"format_version": 2')
    with pytest.raises(ModelFileError, match="Upgrade ckdlearn"):
        load(write_archive(tmp_path / "b.ckdl", newer, weights))
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load(write_archive(tmp_path / "c.ckdl", model_json[:-20], weights))


def test_other_ckdlearn_minor_version_warns(tmp_path, model_file, blob_data, string_model):
    X, _ = blob_data
    model_json, weights = read_archive(model_file)
    document = json.loads(model_json)
    document["versions"]["ckdlearn"] = "0.99.0"
    older = write_archive(tmp_path / "older.ckdl", json.dumps(document), weights)
    with pytest.warns(UserWarning, match="ckdlearn 0.99.0"):
        loaded = load(older)
    assert_same_predictions(string_model, loaded, X)


def test_tampered_function_transformer_is_refused(tmp_path, smote_pipeline):
    model_json, weights = read_archive(save(smote_pipeline, tmp_path / "pipeline.ckdl"))
    document = json.loads(model_json)
    step = document["estimator"]["params"]["steps"][0]["__tuple__"][1]
    step["__estimator__"] = "sklearn.preprocessing.FunctionTransformer"
    step["params"] = {"func": {"__class__": "ckdlearn.CKDNetClassifier"}}
    step["fitted"] = {}
    with pytest.raises(ModelFileError, match="FunctionTransformer with func"):
        load(write_archive(tmp_path / "tampered.ckdl", json.dumps(document), weights))
