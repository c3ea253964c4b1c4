"""Where the slices of a dataset folder are, and which class each has.

Finds the dataset root among the layouts users arrive with (the root, the
folder above it, Kaggle's doubly nested download), then lists the slice
files from ``kidneyData.csv`` when present or from the class folders
otherwise, in a deterministic order.
"""

import csv
import difflib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._io import SLICE_SUFFIXES, is_slice_file, natural_key
from ..utils._stack import external_stacklevel

CSV_NAME = "kidneyData.csv"
KNOWN_CLASSES = ("Cyst", "Normal", "Stone", "Tumor")
KAGGLE_URL = (
    "https://www.kaggle.com/datasets/nazmul0087/ct-kidney-dataset-normal-cyst-tumor-and-stone"
)
# Kaggle nests the dataset folder in a folder of the same name, inside a
# version folder: three levels is the deepest layout met in practice.
_MAX_NESTING = 4
_EXPECTED_LAYOUT = (
    "Expected the CT KIDNEY DATASET folder holding the class folders Cyst/, "
    "Normal/, Stone/ and Tumor/ (and optionally kidneyData.csv), the folder "
    "above it, or Kaggle's doubly nested download; any folder of class "
    "folders holding slice files ({suffixes}) also works."
).format(suffixes=", ".join(sorted(s for s in SLICE_SUFFIXES if s) + ["no extension (DICOM)"]))


@dataclass
class DatasetFiles:
    """The slice files of a dataset, in loading order."""

    root: Path
    csv_path: Path | None
    class_names: list
    relative_paths: list
    target: np.ndarray
    # (relative path, reason) of files listed in the CSV but not on disk.
    missing: list = field(default_factory=list)
    # Slice files on disk that the CSV does not list (they are not loaded).
    unlisted: list = field(default_factory=list)


def list_dataset_files(path, classes=None):
    """Locate the dataset under ``path`` and list its slices.

    Raises FileNotFoundError if ``path`` does not exist and ValueError if no
    class folders are found, a class folder is empty, a requested class does
    not exist, or the CSV disagrees with the folders.
    """
    root, csv_path = locate_dataset(path)
    if csv_path is not None:
        files = _files_from_csv(root, csv_path, classes)
    else:
        files = _files_from_folders(root, classes)
    if classes is None:
        _warn_unknown_classes(files.class_names, root)
    return files


def _warn_unknown_classes(found, root):
    """Warn about class names that are not the dataset's: a misspelt folder
    (``Tumour``) would otherwise train as a class of its own without a word."""
    unknown = [name for name in found if name not in KNOWN_CLASSES]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, KNOWN_CLASSES, n=1, cutoff=0.6)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    warnings.warn(
        f"Found the classes {list(found)} in {root}; " + ", ".join(hints)
        + f" {'is' if len(unknown) == 1 else 'are'} not among the CT KIDNEY DATASET's "
        f"classes {list(KNOWN_CLASSES)}. Rename a misspelt folder, or pass "
        "classes=[...] naming the classes you mean to load.",
        UserWarning,
        stacklevel=external_stacklevel(),
    )


def locate_dataset(path):
    """Return ``(root, csv_path or None)`` of the dataset under ``path``."""
    given = Path(path).expanduser()
    if not given.exists():
        raise FileNotFoundError(
            f"Dataset folder {given} does not exist. {_EXPECTED_LAYOUT} "
            f"Download it with ckdlearn.datasets.fetch_ct_kidney() or from {KAGGLE_URL}."
        )
    if not given.is_dir():
        raise ValueError(f"{given} is a file, not a folder. {_EXPECTED_LAYOUT}")

    walked = [given]
    folder = given
    while not _holds_class_folders(folder):
        subfolders = _visible_subfolders(folder)
        if len(subfolders) != 1 or len(walked) >= _MAX_NESTING:
            found = ", ".join(f"{sub.name}/" for sub in subfolders) or "no subfolders"
            raise ValueError(
                f"No class folders with slice files found in {given} "
                f"(looked down to {folder}, which holds {found}). {_EXPECTED_LAYOUT}"
            )
        folder = subfolders[0]
        walked.append(folder)
    root = folder

    # The CSV sits beside the class folders, or, in Kaggle's download, one
    # or two levels up: in a folder the search walked through, or above a
    # root that the user passed directly.
    candidates = [root, *reversed(walked[:-1])]
    if root.parent.name == root.name:
        candidates += [root.parent, root.parent.parent]
    for candidate in candidates:
        if (candidate / CSV_NAME).is_file():
            return root, candidate / CSV_NAME
    return root, None


def _visible_subfolders(folder):
    # Hidden folders and archive artefacts such as __MACOSX are never classes.
    return sorted(
        (
            Path(entry.path)
            for entry in os.scandir(folder)
            if entry.is_dir() and not entry.name.startswith((".", "__"))
        ),
        key=lambda sub: sub.name,
    )


def _holds_class_folders(folder):
    return any(_first_slice_file(sub) is not None for sub in _visible_subfolders(folder))


def _first_slice_file(folder):
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file() and is_slice_file(entry.path):
                return entry.name
    return None


def _slice_files(folder):
    with os.scandir(folder) as entries:
        return [entry.name for entry in entries if entry.is_file() and is_slice_file(entry.path)]


def select_classes(available, classes, source):
    """The requested classes, in the dataset's order."""
    if classes is None:
        return list(available)
    if isinstance(classes, str):
        classes = [classes]
    classes = list(classes)
    if not classes:
        raise ValueError(
            f"classes is empty; pass some of {list(available)} ({source}), or None for all."
        )
    unknown = [name for name in classes if name not in available]
    if unknown:
        raise ValueError(
            f"Unknown class name(s) {unknown}: this dataset has the classes "
            f"{list(available)} ({source}). Pass a subset of those (names are "
            "case-sensitive), or None for all."
        )
    wanted = set(classes)
    return [name for name in available if name in wanted]


def _files_from_folders(root, classes):
    class_folders = {sub.name: sub for sub in _visible_subfolders(root)}
    class_names = select_classes(
        sorted(class_folders), classes, f"the subfolders of {root}"
    )
    relative_paths, target = [], []
    for label, name in enumerate(class_names):
        files = sorted(_slice_files(class_folders[name]), key=natural_key)
        if not files:
            raise ValueError(
                f"Class folder {class_folders[name]} holds no slice files. "
                f"{_EXPECTED_LAYOUT} Add its slices, delete the empty folder, "
                "or leave the class out with classes=[...]."
            )
        relative_paths += [f"{name}/{file}" for file in files]
        target += [label] * len(files)
    return DatasetFiles(
        root=root,
        csv_path=None,
        class_names=class_names,
        relative_paths=relative_paths,
        target=np.asarray(target, dtype=np.int64),
    )


def _read_csv_rows(csv_path):
    """Return ``[(row number, class label, "Class/file name")]`` from the CSV."""
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        label_columns = [column for column in ("Class", "diag") if column in columns]
        if "path" not in columns or not label_columns:
            raise ValueError(
                f"{csv_path} has the columns {columns}; expected a 'path' column "
                "and a 'Class' or 'diag' label column, as in the dataset's "
                "kidneyData.csv. Fix the file, or delete it to read the class "
                "folders instead."
            )
        rows, disagreements = [], []
        # Row numbers count the header as line 1, as a spreadsheet shows them.
        for line, row in enumerate(reader, start=2):
            # Kaggle's CSV holds absolute paths of Kaggle's machines: only
            # the class folder and the file name are meaningful here.
            parts = [part for part in (row["path"] or "").replace("\\", "/").split("/") if part]
            if len(parts) < 2:
                raise ValueError(
                    f"{csv_path}, line {line}: path {row['path']!r} does not name a "
                    "class folder and a file; expected e.g. 'Cyst/Cyst- (1).jpg'."
                )
            folder, file = parts[-2], parts[-1]
            labels = {column: (row[column] or "").strip() for column in label_columns}
            if any(label != folder for label in labels.values()):
                shown = ", ".join(f"{column} {label!r}" for column, label in labels.items())
                disagreements.append(f"line {line}: {shown} but path {row['path']!r}")
            rows.append((folder, f"{folder}/{file}"))
    if disagreements:
        examples = "; ".join(disagreements[:5])
        more = f" (and {len(disagreements) - 5} more)" if len(disagreements) > 5 else ""
        raise ValueError(
            f"{csv_path}: {len(disagreements)} row(s) have a label that disagrees "
            f"with the folder of their file: {examples}{more}. Expected each "
            "row's label to name the class folder its image is in. Correct "
            "the CSV, or delete it to label slices by their folders."
        )
    if not rows:
        raise ValueError(
            f"{csv_path} lists no slices. Fix the file, or delete it to read "
            "the class folders."
        )
    return rows


def _files_from_csv(root, csv_path, classes):
    rows = _read_csv_rows(csv_path)
    class_names = select_classes(
        sorted({folder for folder, _ in rows}), classes, f"the classes listed in {csv_path}"
    )
    label_of = {name: label for label, name in enumerate(class_names)}
    on_disk = {}
    for name in class_names:
        folder = root / name
        on_disk[name] = set(_slice_files(folder)) if folder.is_dir() else set()

    listed = {}
    missing = []
    seen = set()
    for folder, relative in rows:
        if folder not in label_of or relative in seen:
            continue
        seen.add(relative)
        if relative.split("/", 1)[1] in on_disk[folder]:
            listed[relative] = label_of[folder]
        else:
            missing.append((relative, f"listed in {CSV_NAME} but not found"))
    # Missing files leave a gap, not an error; a class with no file left
    # means a broken or misplaced download, which is.
    found_classes = set(listed.values())
    for name in class_names:
        if label_of[name] not in found_classes:
            raise ValueError(
                f"None of the {CSV_NAME} rows of class {name!r} has its file in "
                f"{root / name}. {_EXPECTED_LAYOUT} Check that the class folder "
                "was extracted next to the CSV, or leave the class out with classes=[...]."
            )
    relative_paths = sorted(listed, key=lambda rel: (listed[rel], natural_key(rel)))
    listed_names = set(listed)
    unlisted = sorted(
        f"{name}/{file}"
        for name in class_names
        for file in on_disk[name]
        if f"{name}/{file}" not in listed_names
    )
    return DatasetFiles(
        root=root,
        csv_path=csv_path,
        class_names=class_names,
        relative_paths=relative_paths,
        target=np.asarray([listed[rel] for rel in relative_paths], dtype=np.int64),
        missing=sorted(missing, key=lambda item: natural_key(item[0])),
        unlisted=unlisted,
    )
