"""The workflows behind the commands, as Python functions, and their layout."""

import ast
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import ckdlearn.app as workflows
from ckdlearn.app.html_report import Report
from ckdlearn.app import (
    EpochProgress,
    baseline_predictions,
    build_pipeline,
    check_training_outputs,
    find_image_files,
    label_scores,
)

PACKAGE = Path(workflows.__file__).parent


def test_every_public_name_resolves():
    for name in workflows.__all__:
        assert getattr(workflows, name) is not None
    with pytest.raises(AttributeError):
        workflows.no_such_workflow


LIBRARY = PACKAGE.parent
# Old paths of moved modules: they import the app to forward to it.
DEPRECATED_ALIASES = {"cam.py", "cli.py", "report.py", "validation.py", "workflows/__init__.py"}


def _imported_modules(path):
    """The absolute names of the ckdlearn modules that ``path`` imports."""
    package = ".".join(path.relative_to(LIBRARY.parent).with_suffix("").parts[:-1])
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            modules.add(f"{base}.{node.module}" if node.module else base)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ckdlearn"):
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names if alias.name.startswith("ckdlearn"))
    return modules


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_one_idea_per_module_and_no_private_imports(path):
    tree = ast.parse(path.read_text())
    assert ast.get_docstring(tree), f"{path.name} has no opening docstring"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:  # a ckdlearn module
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            assert not private, f"{path.name} imports private {private} from {node.module}"
            module = node.module or ""
            reaches_in = [part for part in module.split(".") if part.startswith("_")]
            assert node.level == 1 or not reaches_in, f"{path.name} imports the library's private {module}"


def test_the_library_never_imports_the_app():
    for path in sorted(LIBRARY.rglob("*.py")):
        name = path.relative_to(LIBRARY).as_posix()
        if name.startswith("app/") or name in DEPRECATED_ALIASES:
            continue
        into_app = {m for m in _imported_modules(path) if m == "ckdlearn.app" or m.startswith("ckdlearn.app.")}
        assert not into_app, f"ckdlearn/{name} imports the command-line app: {sorted(into_app)}"


def test_no_module_reaches_into_another_packages_privates():
    # A private module serves its own package (and the packages below it);
    # ckdlearn.utils' private helpers serve the whole library, not the app.
    for path in sorted(LIBRARY.rglob("*.py")):
        importer = ".".join(path.relative_to(LIBRARY.parent).with_suffix("").parts[:-1])
        for module in _imported_modules(path):
            parts = module.split(".")
            private = next((i for i, part in enumerate(parts) if part.startswith("_")), None)
            if private is None:
                continue
            owner = ".".join(parts[:private])
            if owner == "ckdlearn.utils" and not importer.startswith("ckdlearn.app"):
                continue  # the library's shared helpers (scikit-learn's validators among them)
            assert importer == owner or importer.startswith(owner + "."), (
                f"{path.relative_to(LIBRARY.parent)} imports {module}, private to {owner}"
            )


@pytest.mark.slow
def test_importing_the_library_leaves_the_app_out():
    import subprocess

    code = ("import sys, ckdlearn, ckdlearn.persistence, ckdlearn.datasets, ckdlearn.model_selection, "
            "ckdlearn.plotting, ckdlearn.explanation, ckdlearn.paper, ckdlearn.pipeline; "
            "ckdlearn.CKDNetClassifier; assert 'ckdlearn.app' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("old", "new", "warned"), [
    ("ckdlearn.workflows", "ckdlearn.app", "ckdlearn.workflows is deprecated: it moved to ckdlearn.app;"),
    ("ckdlearn.workflows.pipeline", "ckdlearn.app.recipe", "ckdlearn.workflows is deprecated"),
    ("ckdlearn.workflows.files", "ckdlearn.app.image_files", "ckdlearn.workflows is deprecated"),
    ("ckdlearn.workflows.reporting", "ckdlearn.app.reporting", "ckdlearn.workflows is deprecated"),
    ("ckdlearn.cli", "ckdlearn.app.cli", "ckdlearn.cli is deprecated: it moved to ckdlearn.app.cli;"),
    ("ckdlearn.report", "ckdlearn.app.html_report", "ckdlearn.report is deprecated: it moved to "
                                                    "ckdlearn.app.html_report;"),
    ("ckdlearn.validation", "ckdlearn.utils.input_checks", "ckdlearn.validation is deprecated: it moved "
                                                           "to ckdlearn.utils.input_checks;"),
])
def test_old_paths_still_import_with_a_warning(old, new, warned):
    import importlib

    for name in [old, "ckdlearn.workflows"]:
        sys.modules.pop(name, None)
    with pytest.warns(FutureWarning, match=re.escape(warned)):
        module = importlib.import_module(old)
    moved = importlib.import_module(new)
    for name in getattr(moved, "__all__", []):
        assert getattr(module, name) is getattr(moved, name)


def test_the_developers_page_names_every_module():
    # docs/developers.rst is the map a newcomer reads: it stays complete.
    page = (LIBRARY.parent / "docs" / "developers.rst").read_text()
    aliases = {name.split("/")[0] for name in DEPRECATED_ALIASES}
    for path in sorted(LIBRARY.iterdir()):
        name = path.name if path.is_dir() else path.stem
        if name.startswith("__") or name in {"_version", "data"} or f"{path.name}" in aliases:
            continue
        if path.is_dir() and not (path / "__init__.py").exists():
            continue
        shown = f"{name}/``" if path.is_dir() else f"``{path.name}``"
        assert shown in page, f"docs/developers.rst does not name {shown}"
    for path in sorted((LIBRARY / "app").glob("*.py")):
        if not path.name.startswith("_"):
            assert path.stem in page, f"docs/developers.rst does not name app/{path.name}"


def test_the_cli_holds_no_workflow():
    # The command line parses and prints: it reaches the library only
    # through the app's workflows (and the safe writer for printing to a
    # file, the library's exceptions, to raise and catch Ctrl-C as training
    # does, and the paper's protocol it runs).
    modules = _imported_modules(PACKAGE / "cli.py")
    assert modules <= {"ckdlearn", "ckdlearn.utils.files", "ckdlearn.exceptions", "ckdlearn.paper"} | {
        f"ckdlearn.app.{name}" for name in
        ["_method_names", "recipe", "demo", "training", "scoring", "image_files", "audit"]
    }


def test_baselines():
    y = np.array(["Normal"] * 6 + ["Cyst"] * 2 + ["Stone"] * 2)
    guesses = baseline_predictions(y, len(y))
    assert set(guesses) == {"majority class", "stratified chance"}
    assert (guesses["majority class"] == "Normal").all()
    scores = label_scores(y, guesses["majority class"])
    assert scores["accuracy"] == pytest.approx(0.6)
    assert scores["macro_f1"] == pytest.approx(0.75 / 3)


def test_report_writes_only_its_files(tmp_path):
    import matplotlib.pyplot as plt

    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "thesis.txt").write_text("mine")
    report = Report("r")
    figure, ax = plt.subplots()
    report.add_figure(figure, "line")
    report.write(folder)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        report.write(folder)
    report.write(folder, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["line.png", "report.html", "thesis.txt"]
    assert (folder / "thesis.txt").read_text() == "mine"


def test_one_keyword_refuses_to_overwrite_and_the_old_ones_still_work(tmp_path):
    # Python says overwrite= everywhere (the command line says --force);
    # force= and prepare_output_path still work, with a warning.
    from ckdlearn.app.html_report import prepare_output_path

    report = Report("r")
    report.write(tmp_path)
    with pytest.warns(FutureWarning, match=r"Report.write\(force=...\) is deprecated; pass overwrite="):
        report.write(tmp_path, force=True)
    with pytest.raises(TypeError, match="both force= and overwrite="):
        report.write(tmp_path, force=True, overwrite=True)
    with pytest.warns(FutureWarning, match="check_outputs"):
        with pytest.raises(FileExistsError, match="overwrite=True"):
            prepare_output_path(tmp_path / "report.html")
    with pytest.warns(FutureWarning, match="check_outputs"):
        assert prepare_output_path(tmp_path / "report.html", force=True).name == "report.html"
    with pytest.warns(FutureWarning, match=r"check_training_outputs\(force=...\)"):
        assert check_training_outputs(tmp_path / "new.ckdl", {}, force=True) == 0


def _fake_checkpoint(model_path, settings, epochs=2):
    folder = Path(f"{model_path}.checkpoint")
    folder.mkdir()
    (folder / "history.json").write_text(json.dumps([{"epoch": i + 1} for i in range(epochs)]))
    (folder / "settings.json").write_text(json.dumps(settings))
    return folder


def test_check_training_outputs(tmp_path):
    model = tmp_path / "m.ckdl"
    settings = {"image_size": 32, "lr": 0.001, "classes": ["Cyst", "Normal"]}
    assert check_training_outputs(model, settings) == 0
    with pytest.raises(FileNotFoundError, match="Nothing to resume"):
        check_training_outputs(model, settings, resume=True)
    _fake_checkpoint(model, settings)
    with pytest.raises(FileExistsError, match=r"unfinished.*resume=True.*overwrite=True"):
        check_training_outputs(model, settings)
    assert check_training_outputs(model, settings, overwrite=True) == 0
    assert check_training_outputs(model, settings, resume=True) == 2
    # Only the settings a caller knows are compared (the command line checks
    # the image size before the data, whose classes it cannot know yet).
    assert check_training_outputs(model, {"image_size": 32}, resume=True) == 2
    with pytest.raises(ValueError, match=r"other settings: classes \['Cyst', 'Normal'\] \(now \['Cyst'\]\)"):
        check_training_outputs(model, {**settings, "classes": ["Cyst"]}, resume=True)
    model.write_bytes(b"model")
    with pytest.raises(FileExistsError):
        check_training_outputs(model, settings, resume=True)


def test_find_image_files_uses_the_readers_rules(tmp_path):
    for name in ("a.png", "b.JPG", "README", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "IM0001").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    # The loaders' natural order: case-insensitive, numbers by value.
    assert [p.name for p in find_image_files([tmp_path])] == ["a.png", "b.JPG", "IM0001"]
    (tmp_path / "scan").mkdir()
    for number in (10, 2, 1):
        (tmp_path / "scan" / f"slice{number}.png").write_bytes(b"x")
    assert [p.name for p in find_image_files([tmp_path / "scan"])] == ["slice1.png", "slice2.png", "slice10.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="looked for .*DICOM files without an extension"):
        find_image_files([tmp_path / "empty"])


def test_build_pipeline_refuses_unknown_methods():
    with pytest.raises(ValueError, match="method must be one of"):
        build_pipeline("oversample")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("terminal", [False, True])
def test_training_progress_goes_to_stderr(terminal, monkeypatch, capsys, blob_data):
    from helpers import tiny_classifier

    if terminal:
        monkeypatch.setattr(sys, "stderr", _Terminal())
    X, y = blob_data
    tiny_classifier(callbacks=[("progress", EpochProgress("fold 1"))]).fit(X, y)
    captured = capsys.readouterr()
    assert captured.out == ""
    err = sys.stderr.getvalue() if terminal else captured.err
    if terminal:  # a bar that redraws itself, no line per epoch
        assert "fold 1:" in err and "/2 [" in err and "\r" in err and "epoch 1:" not in err
    else:
        assert "fold 1: epoch 1 of 2: train loss" in err and "fold 1: epoch 2 of 2:" in err
        assert "\x1b[" not in err and "\r" not in err


def test_progress_counts_folds_across_clones_and_shows_validation(monkeypatch, capsys, blob_data):
    from helpers import tiny_classifier
    from sklearn.base import clone

    # A clock that advances 10 s per reading: elapsed and time left are exact.
    ticks = iter(range(0, 10_000, 10))
    monkeypatch.setattr("ckdlearn.app.progress.time.perf_counter", lambda: next(ticks))
    X, y = blob_data
    groups = np.arange(len(y)) % 6
    stages = ["fold 1 of 2", "fold 2 of 2", "final model"]
    template = tiny_classifier(validation=0.34, callbacks=[("progress", EpochProgress(stages=stages))])
    for _ in range(2):  # as cross-validation does: a clone per fold
        clone(template).fit(X, y, groups=groups)
    template.fit(X, y, groups=groups)
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(": train loss")[0] for line in lines] == [
        f"{stage}: epoch {epoch} of 2" for stage in stages for epoch in (1, 2)
    ]
    pattern = r"train loss \d\.\d{3}, valid loss \d\.\d{3}, valid acc \d\.\d{3}; "
    assert all(re.search(pattern, line) for line in lines), lines
    # 6 epochs in all; the time left counts the folds still to come.
    def seconds(text):
        minutes, secs = text.split(":")
        return 60 * int(minutes) + int(secs)

    timing = [re.search(r"; (\d+:\d\d) elapsed, about (\d+:\d\d) left$", line).groups() for line in lines]
    elapsed, left = zip(*[(seconds(e), seconds(t)) for e, t in timing])
    assert all(0 < a < b for a, b in zip(elapsed, elapsed[1:]))
    # After 1 epoch of 6 (two folds and the final fit, 2 epochs each): 5 more like it.
    assert left[0] == 5 * elapsed[0]
    assert left[3] == 2 * elapsed[3] / 4 and left[-1] == 0


def test_ckdlearn_train_fits_the_default_recipe():
    # One default recipe: `ckdlearn train DATA` and load_ct_kidney(path) +
    # make_pipeline(SMOTE(), CKDNetClassifier()) train the same thing.
    import inspect

    from ckdlearn import CKDNetClassifier
    from ckdlearn.app.cli import build_parser
    from ckdlearn.datasets import load_ct_kidney

    args = build_parser().parse_args(["train", "DATA", "--out", "m.ckdl"])
    assert args.image_size == inspect.signature(load_ct_kidney).parameters["image_size"].default
    built = workflows.build_pipeline(args.method, max_epochs=args.epochs, lr=args.lr,
                                     batch_size=args.batch_size, width=args.width)
    assert [name for name, _ in built.steps] == ["smote", "ckdnetclassifier"]
    assert (built[0].k_neighbors, built[0].sampling_strategy) == (5, "auto")  # SMOTE()'s defaults
    ignore = {"random_state", "callbacks", "verbose"}
    trained = {k: v for k, v in built[-1].get_params(deep=False).items() if k not in ignore}
    from ckdlearn.nets import CKDNet

    assert trained.pop("module__width") == inspect.signature(CKDNet).parameters["width"].default
    default = {k: v for k, v in CKDNetClassifier().get_params(deep=False).items() if k not in ignore}
    assert {k: repr(v) for k, v in trained.items()} == {k: repr(v) for k, v in default.items()}


def test_read_groups_file_matches_names_paths_and_unique_base_names(tmp_path):
    from ckdlearn.app import read_groups_file

    data = tmp_path / "data"
    csv_file = tmp_path / "groups.csv"
    csv_file.write_text(
        "filename,group\n"
        "Cyst/Cyst- (1).jpg,p1\n"            # as the loader names it
        "data/Cyst/Cyst- (2).jpg,p1\n"       # relative to the CSV's folder
        f"{data / 'Tumor' / 'T (1).jpg'},p2\n"  # absolute
        "T (2).jpg,p3\n"                     # a base name found once
        "Normal/N.jpg,p4\nStone/N.jpg,p5\n"  # a base name twice: no guessing
    )
    names = ["Cyst/Cyst- (1).jpg", "Cyst/Cyst- (2).jpg", "Tumor/T (1).jpg", "Tumor/T (2).jpg",
             "Normal/N.jpg"]
    groups = read_groups_file(csv_file, names, [str(data / name) for name in names])
    assert groups.tolist() == [0, 0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"1 of 1 images have no row in the groups file .*'Other/N\.jpg'"):
        read_groups_file(csv_file, ["Other/N.jpg"], [str(data / "Other" / "N.jpg")])
    csv_file.write_text("filename,group\nCyst/Cyst- (1).jpg,\n")
    with pytest.raises(ValueError, match="line 2: 'Cyst/Cyst- .1..jpg' has an empty group"):
        read_groups_file(csv_file, names[:1])
    with pytest.raises(FileNotFoundError, match="Groups file .*missing.csv does not exist"):
        read_groups_file(tmp_path / "missing.csv", names)


# --- the report's verdict and captions come from the numbers ---------------------------


CLASSES = ["Cyst", "Normal", "Stone", "Tumor"]


def test_verdict_names_the_weak_class_and_the_finding_called_normal():
    from ckdlearn.metrics import BootstrapInterval
    from ckdlearn.app import describe_verdict

    # The report: Tumor recall 0.18, 54% of tumour slices called Normal.
    matrix = [[80, 10, 5, 5], [5, 90, 3, 2], [10, 10, 75, 5], [20, 54, 8, 18]]
    intervals = {"macro_f1": BootstrapInterval(0.62, 0.55, 0.69, 0.95, 81),
                 "accuracy": BootstrapInterval(0.66, 0.60, 0.72, 0.95, 81)}
    text = describe_verdict(matrix, CLASSES, macro_f1=0.62, accuracy=0.66,
                            baseline=("majority class", 0.15), intervals=intervals)
    assert "clearly learned" not in text
    assert "Weakest class: Tumor (recall 0.18)" in text
    assert "54% of Tumor slices (54 of 100) were called Normal" in text
    assert "do not rely on it for Tumor" in text
    assert "0.620 (95% interval 0.550-0.690, resampling scan series)" in text
    assert "0.660 (95% interval 0.600-0.720" in text


def test_verdict_follows_the_numbers():
    from ckdlearn.metrics import BootstrapInterval
    from ckdlearn.app import describe_verdict

    good = np.diag([50, 80, 30, 40]) + 2
    text = describe_verdict(good, CLASSES, macro_f1=0.9, accuracy=0.9,
                            baseline=("majority class", 0.15))
    assert "Better than the baselines, and no class mostly missed (every recall at least 0.5)" in text
    assert "Weakest class: Stone" in text
    # An interval reaching down to the baseline is no evidence.
    wide = {"macro_f1": BootstrapInterval(0.3, 0.1, 0.5, 0.95, 6)}
    text = describe_verdict(good, CLASSES, macro_f1=0.3, accuracy=0.4,
                            baseline=("stratified chance", 0.2), intervals=wide)
    assert text.count("No clear evidence") == 1
    # No finding called Normal: said, not invented.
    text = describe_verdict(np.diag([5, 5, 5, 5]), CLASSES, macro_f1=1.0, accuracy=1.0,
                            baseline=("majority class", 0.1))
    assert "No Cyst, Stone, Tumor slice was called Normal" in text


def test_sanity_caption_is_read_off_its_table():
    from ckdlearn.app import describe_sanity_check
    from ckdlearn.app.reporting import describe_layers

    stages = ["classifier", "features.3", "features.2", "features.1", "features.0"]
    passing = {"gradcam": [0.2, 0.1, 0.0, 0.0, 0.0], "gradcam++": [0.3, 0.2, 0.1, 0.1, 0.0]}
    caption = describe_sanity_check(passing, stages)
    assert caption.startswith("Pass") and "gradcam, gradcam++" in caption and "Fail" not in caption
    failing = {**passing, "gradcam++": [0.9, 0.8, 0.6, 0.2, 0.1]}
    caption = describe_sanity_check(failing, stages)
    assert "Pass (mean correlation below 0.5 at every stage): gradcam." in caption
    assert "Fail: gradcam++ (0.90 with classifier randomised)" in caption
    layers = describe_layers(stages)
    assert "features.3 = the last convolution block (4 of 4)" in layers
    assert "features.0 = the first convolution block (1 of 4)" in layers
    assert "classifier = the final linear layer" in layers
