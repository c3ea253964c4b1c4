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
        return {name: archive.read(name) for name in archive.namelist()}


def write_archive(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def edited(model_file, path, member, edit):
    """A copy of ``model_file`` with ``edit`` applied to a JSON member."""
    members = read_archive(model_file)
    document = json.loads(members[member])
    edit(document)
    members[member] = json.dumps(document)
    return write_archive(path, members)


def nodes(schema, name):
    """The skops nodes of the type ``name`` (module.class), in file order."""
    if isinstance(schema, dict):
        if f"{schema.get('__module__')}.{schema.get('__class__')}" == name:
            yield schema
        for value in schema.values():
            yield from nodes(value, name)
    elif isinstance(schema, list):
        for value in schema:
            yield from nodes(value, name)


def edit_param(schema, name, old, new):
    """Set a classifier parameter, held as JSON, in a classifier's file."""
    node = schema["content"]["params"]["content"][name]
    assert node["content"] == old
    node["content"] = new
    del node["__id__"]  # skops builds equal objects saved once (such as "auto") once


def assert_same_predictions(original, loaded, X):
    np.testing.assert_array_equal(loaded.predict_proba(X), original.predict_proba(X))
    predictions = loaded.predict(X)
    np.testing.assert_array_equal(predictions, original.predict(X))
    assert predictions.dtype == original.predict(X).dtype


# --- round trips ------------------------------------------------------------------


@pytest.mark.bitwise
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


@pytest.mark.bitwise
def test_round_trip_int_labels_and_class_weight(tmp_path, blob_data, int_model):
    X, _ = blob_data
    model, _ = int_model
    loaded = load(save(model, tmp_path / "model.ckdl"))
    assert_same_predictions(model, loaded, X)
    assert loaded.classes_.dtype == model.classes_.dtype
    assert loaded.get_params()["class_weight"] == {10: 2.0, 20: 1.0, 30: 0.5}
    np.testing.assert_array_equal(loaded.class_weight_, model.class_weight_)
    torch.testing.assert_close(loaded.criterion_.weight, model.criterion_.weight)


@pytest.mark.bitwise
def test_round_trip_smote_pipeline(tmp_path, blob_data, smote_pipeline):
    X, _ = blob_data
    path = save(smote_pipeline, tmp_path / "pipeline.ckdl")
    loaded = load(path)
    assert type(loaded) is type(smote_pipeline)
    assert list(loaded.named_steps) == ["standardscaler", "smote", "ckdnetclassifier"]
    assert_same_predictions(smote_pipeline, loaded, X)
    assert loaded[1].get_params() == smote_pipeline[1].get_params()
    # A sampler acts only in fit; its fitted neighbours (the training data) stay out.
    assert hasattr(smote_pipeline[1], "nn_k_") and not hasattr(loaded[1], "nn_k_")
    scaler, original_scaler = loaded[0], smote_pipeline[0]
    for name in ("mean_", "var_", "scale_"):
        np.testing.assert_array_equal(getattr(scaler, name), getattr(original_scaler, name))
        assert getattr(scaler, name).dtype == getattr(original_scaler, name).dtype
    callback = dict(loaded[-1].callbacks)["stop"]
    assert type(callback) is EarlyStopping and callback.patience == 3


@pytest.mark.bitwise
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


@pytest.mark.bitwise
def test_torch_device_parameter_round_trips(tmp_path, blob_data):
    X, y = blob_data
    model = tiny(device=torch.device("cpu")).fit(X, y)
    loaded = load(save(model, tmp_path / "model.ckdl"))
    assert loaded.get_params()["device"] == torch.device("cpu")
    assert_same_predictions(model, loaded, X)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_model_on_a_cpu_machine_says_how_to_load_it(tmp_path, model_file, blob_data):
    def to_cuda(schema):
        edit_param(schema, "device", '"auto"', '"cuda"')

    cuda_file = edited(model_file, tmp_path / "cuda.ckdl", "schema.json", to_cuda)
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


def test_file_layout_is_documented_skops_and_safetensors(model_file, string_model):
    import skops.io
    from safetensors.torch import load as read_safetensors

    with zipfile.ZipFile(model_file) as archive:
        names = archive.namelist()
        assert names[:2] == ["model.json", "schema.json"] and names[-1] == "weights.safetensors"
        assert all(name.endswith(".npy") for name in names[2:-1])
        assert archive.getinfo("weights.safetensors").compress_type == zipfile.ZIP_STORED
    members = read_archive(model_file)
    header = json.loads(members["model.json"])
    assert header["format"] == "ckdlearn-model"
    assert header["format_version"] == 2
    assert set(header["versions"]) >= {
        "ckdlearn", "torch", "scikit-learn", "imbalanced-learn", "skorch", "numpy", "python"
    }
    # The estimator part is a skops archive: skops lists the types it names,
    # and loads it (the classifier as its declared spec) with those trusted.
    untrusted = skops.io.get_untrusted_types(file=model_file)
    assert "ckdlearn.nets.CKDNet" in untrusted
    assert not any("CKDNetClassifier" in name for name in untrusted)
    spec = skops.io.load(model_file, trusted=untrusted)
    assert set(spec) == {"params", "fitted", "history"}
    assert spec["params"]["module"] is CKDNet
    assert spec["fitted"]["classes_inferred_"].tolist() == ["Cyst", "Normal", "Stone"]
    assert spec["fitted"]["image_shape_"] == (1, 16, 16)
    torch_objects = {"module_", "optimizer_", "criterion_", "history_", "callbacks_"}
    assert not torch_objects & set(spec["fitted"])
    assert len(spec["history"]) == len(string_model.history_)
    tensors = read_safetensors(members["weights.safetensors"])
    assert set(tensors) == set(string_model.module_.state_dict())


def test_same_model_gives_same_bytes(tmp_path, string_model):
    first = save(string_model, tmp_path / "a.ckdl").read_bytes()
    assert save(string_model, tmp_path / "b.ckdl").read_bytes() == first


@pytest.mark.bitwise
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


def test_files_naming_where_moved_names_lived_still_load(tmp_path, model_file):
    # batch_loader and CosineAnnealing moved out of ckdlearn.estimator; files
    # written before the move name them there.
    from ckdlearn.loaders import batch_loader

    def old_homes(schema):
        found = list(nodes(schema, "ckdlearn.loaders.batch_loader"))
        assert found
        for node in found:
            node["__module__"] = "ckdlearn.estimator"

    old = edited(model_file, tmp_path / "old.ckdl", "schema.json", old_homes)
    assert load(old).get_params()["iterator_train"] is batch_loader
    assert {"ckdlearn.estimator.CosineAnnealing", "ckdlearn.callbacks.CosineAnnealing"} <= set(
        supported_classes())


@pytest.mark.parametrize(
    "original, replacement",
    [
        (None, ("os", "system")),  # the classifier's own record
        ("ckdlearn.nets.CKDNet", ("builtins", "eval")),
        ("torch.optim.adamw.AdamW", ("subprocess", "Popen")),
        ("torch.nn.modules.loss.CrossEntropyLoss", ("builtins", "exec", "FunctionNode")),
        # skorch's own __setstate__ unpickles: skops must never build a net
        (None, ("ckdlearn.estimator", "CKDNetClassifier", "ObjectNode")),
    ],
)
def test_tampered_class_names_run_nothing(tmp_path, monkeypatch, model_file, original, replacement):
    load(model_file)  # every import load needs is done before the traps are set
    calls = []
    for owner, name in [(os, "system"), (builtins, "eval"), (builtins, "exec"),
                        (subprocess, "Popen"), (CKDNetClassifier, "__setstate__")]:
        real = getattr(owner, name)

        def trap(*args, _real=real, _name=name, **kwargs):
            calls.append((_name, args))
            return _real(*args, **kwargs)

        monkeypatch.setattr(owner, name, trap)

    def tamper(schema):
        node = schema if original is None else next(nodes(schema, original))
        node["__module__"], node["__class__"] = replacement[:2]
        if len(replacement) == 3:
            node["__loader__"] = replacement[2]

    tampered = edited(model_file, tmp_path / "tampered.ckdl", "schema.json", tamper)
    name = ".".join(replacement[:2])
    with pytest.raises(ModelFileError, match=f"refusing to rebuild '{name}'.*nothing"):
        load(tampered)
    assert calls == []


def test_weights_of_a_different_network_are_refused(tmp_path, model_file):
    def widen(schema):
        edit_param(schema, "module__width", "4", "8")

    with pytest.raises(ModelFileError, match="different network"):
        load(edited(model_file, tmp_path / "other.ckdl", "schema.json", widen))


def test_format_fields_are_checked(tmp_path, model_file):
    members = read_archive(model_file)
    foreign = edited(model_file, tmp_path / "a.ckdl", "model.json",
                     lambda header: header.update(format="something-else"))
    with pytest.raises(ModelFileError, match="not a ckdlearn model file"):
        load(foreign)
    newer = edited(model_file, tmp_path / "b.ckdl", "model.json",
                   lambda header: header.update(format_version=3))
    with pytest.raises(ModelFileError, match="Upgrade ckdlearn"):
        load(newer)
    members["model.json"] = members["model.json"][:-20]
    broken = write_archive(tmp_path / "c.ckdl", members)
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load(broken)


def test_format_1_files_name_their_version(tmp_path, model_file):
    # What ckdlearn 0.1.0.dev0 wrote before skops: tagged JSON beside the weights.
    members = read_archive(model_file)
    header = {"format": "ckdlearn-model", "format_version": 1,
              "versions": {"ckdlearn": "0.1.0.dev0"}, "estimator": {}}
    old = write_archive(tmp_path / "old.ckdl", {
        "model.json": json.dumps(header), "weights.safetensors": members["weights.safetensors"]
    })
    with pytest.raises(ModelFileError, match="format 1 by ckdlearn 0.1.0.dev0.*train the model"):
        load(old)


def test_missing_members_are_refused(tmp_path, model_file):
    for name in ("schema.json", "weights.safetensors"):
        members = read_archive(model_file)
        del members[name]
        with pytest.raises(ModelFileError, match=f"lacks {name}"):
            load(write_archive(tmp_path / "partial.ckdl", members))
    members = read_archive(model_file)
    del members["model.json"]
    with pytest.raises(ModelFileError, match="lacks model.json"):
        load(write_archive(tmp_path / "headless.ckdl", members))


def test_decompression_bombs_are_refused_unread(tmp_path, monkeypatch, model_file):
    members = read_archive(model_file)
    members["schema.json"] += b" " * (2 * 2**20)  # 2 MiB of JSON whitespace
    bomb = tmp_path / "bomb.ckdl"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    monkeypatch.setattr(persistence, "_MAX_UNPACKED_BYTES", 2**20)
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda *a: pytest.fail(f"read {a[1]}"))
    with pytest.raises(ModelFileError, match="schema.json.*would unpack"):
        load(bomb)


def test_non_finite_weights_are_refused(tmp_path, model_file, string_model):
    from safetensors.torch import load as read_safetensors
    from safetensors.torch import save as write_safetensors

    members = read_archive(model_file)
    tensors = read_safetensors(members["weights.safetensors"])
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    for bad in (float("nan"), float("inf")):
        tensors[name].view(-1)[0] = bad
        members["weights.safetensors"] = write_safetensors(tensors)
        with pytest.raises(ModelFileError, match=f"{name}.*NaN or infinite"):
            load(write_archive(tmp_path / "diverged.ckdl", members))

    diverged = copy.deepcopy(string_model)
    with torch.no_grad():
        diverged.module_.classifier.weight[0, 0] = float("nan")
    with pytest.raises(ModelFileError, match="NaN or infinite.*train it again"):
        save(diverged, tmp_path / "never.ckdl")
    assert not (tmp_path / "never.ckdl").exists()


def test_other_ckdlearn_minor_version_warns(tmp_path, model_file, blob_data, string_model):
    X, _ = blob_data
    older = edited(model_file, tmp_path / "older.ckdl", "model.json",
                   lambda header: header["versions"].update(ckdlearn="0.99.0"))
    with pytest.warns(UserWarning, match="ckdlearn 0.99.0"):
        loaded = load(older)
    assert_same_predictions(string_model, loaded, X)


def test_tampered_function_transformer_is_refused(tmp_path, smote_pipeline):
    path = save(smote_pipeline, tmp_path / "pipeline.ckdl")

    def to_function_transformer(schema):
        # The scaler becomes FunctionTransformer(func=CKDNet): allowed
        # types, but a function that a model file never stores.
        step = next(nodes(schema, "sklearn.preprocessing._data.StandardScaler"))
        step["__class__"] = "FunctionTransformer"
        step["__module__"] = "sklearn.preprocessing._function_transformer"
        attributes = step["content"]  # a dict: its values, and the types of its keys
        attributes["content"]["func"] = next(nodes(schema, "ckdlearn.nets.CKDNet"))
        attributes["key_types"]["content"].append(attributes["key_types"]["content"][0])

    with pytest.raises(ModelFileError, match="FunctionTransformer with func"):
        load(edited(path, tmp_path / "tampered.ckdl", "schema.json", to_function_transformer))
