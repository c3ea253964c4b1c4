"""What commands read: labelled folders, model files, and image files at a model's size.

Which files count as slices is decided by the datasets' reader
(:func:`ckdlearn.datasets.find_slice_files`), so the loaders and the
commands agree on every file.
"""

import csv
import os
from pathlib import Path

import numpy as np

from ..datasets import find_slice_files, load_ct_kidney, read_images
from .progress import silent
from .recipe import final_classifier

__all__ = ["as_model", "check_groups_file", "find_image_files", "load_labelled", "read_for_model",
           "read_groups_file"]


#: The name that stands for the reference model wherever a model file is asked for.
PRETRAINED = "pretrained"


def as_model(model):
    """The model itself, the reference model for ``"pretrained"``, or a model file's model.

    A file that happens to be called ``pretrained`` is read as ``./pretrained``.
    """
    if isinstance(model, str) and model == PRETRAINED:
        from ..datasets import load_pretrained

        return load_pretrained()
    if isinstance(model, (str, os.PathLike)):
        from ..persistence import load

        return load(model)
    return model


def load_labelled(data, image_size, on_error="raise", progress=silent, groups=None, *,
                  domain="clahe", input_domain="raw"):
    """Load a labelled folder (CT KIDNEY layout, or class folders), saying what was found.

    Slices are brought from ``input_domain`` into ``domain``
    (:func:`ckdlearn.datasets.load_ct_kidney`).

    ``groups``, the path of a CSV of ``filename,group`` rows
    (:func:`read_groups_file`), replaces the scan groups the loader found.
    """
    if groups is not None:
        check_groups_file(groups)  # before the images are read
    step = "" if input_domain == domain else f", {input_domain} -> {domain}"
    progress(f"loading {data} at {image_size} px{step} ...")
    dataset = load_ct_kidney(data, image_size=image_size, on_error=on_error, domain=domain,
                             input_domain=input_domain)
    if groups is not None:
        names = [str(name) for name in dataset.filenames]
        paths = [str(Path(dataset.root) / name) for name in names]
        dataset.groups = read_groups_file(groups, names, paths)
        dataset.groups_source = np.full(len(names), "explicit")
        dataset.groups_diagnostics = explicit_diagnostics(groups, dataset.groups)
    counts = ", ".join(
        f"{name} {int((dataset.target == i).sum())}" for i, name in enumerate(dataset.target_names)
    )
    progress(f"loaded {len(dataset.data)} images of {len(dataset.target_names)} classes ({counts})")
    return dataset


#: Image files and folders' slices in a deterministic order; see
#: :func:`ckdlearn.datasets.find_slice_files`.
find_image_files = find_slice_files


def _resize_note(files, image_size):
    """A note on the resizing that may change what the model sees, or None.

    Shrinking square slices (the dataset's own 512 px ones) is how every
    model was trained and goes unmentioned; stretching a slice that is not
    square, or enlarging one smaller than the model's input, is said once.
    """
    from PIL import Image

    stretched = enlarged = 0
    for path in files:
        try:
            with Image.open(path) as image:
                width, height = image.size
        except OSError:
            continue  # DICOM, or unreadable: read_images reports those properly
        stretched += width != height
        enlarged += min(width, height) < image_size
    if not (stretched or enlarged):
        return None
    changes = []
    if stretched:
        changes.append(f"{stretched} not square (aspect ratio changed)")
    if enlarged:
        changes.append(f"{enlarged} smaller (enlarged)")
    return (f"note: of {len(files)} images, {' and '.join(changes)} were resized to "
            f"{image_size}x{image_size} pixels.")


def read_for_model(files, model, progress=silent, on_error="raise", input_domain="raw"):
    """Read image files at the size, and in the domain, the model was trained on.

    ``input_domain`` says what the files are; raw slices are equalised for a
    model of the ``"clahe"`` domain (:mod:`ckdlearn.preprocessing`).

    Returns the images and the files that were read (all of them unless
    ``on_error='skip'`` left some out).
    """
    classifier = final_classifier(model)
    channels, height, width = classifier.image_shape_
    if channels != 1 or height != width:
        raise ValueError(
            f"This model takes {channels}-channel {height}x{width} images; "
            "reading files is supported for greyscale square models only."
        )
    note = _resize_note(files, height)
    if note:
        progress(note)
    images, skipped = read_images(files, image_size=height, on_error=on_error, return_skipped=True,
                                  domain=classifier.domain, input_domain=input_domain)
    if not len(images):
        raise ValueError(f"None of the {len(files)} image files could be read (each is named above).")
    skipped_paths = {path for path, _ in skipped}
    return images, [f for f in files if os.fspath(f) not in skipped_paths]


def check_groups_file(path):
    """The groups file's path; FileNotFoundError, naming it, if it does not exist."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Groups file {path} does not exist.")
    return path


def read_groups_file(path, names, paths=None):
    """The group of each image, from a CSV file of ``filename,group`` rows.

    A row's ``filename`` matches an image by its name as the command knows
    it (relative to the data folder, or as given), by its absolute path
    (a relative ``filename`` is taken from the CSV file's folder), or by
    its base name where only one row has it. Any text is a group; returns
    int64 ids numbered by first appearance.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file lacks a ``filename`` or ``group`` column, a group is
        empty, or images have no row (the first few are named).
    """
    path = check_groups_file(path)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        if "filename" not in header or "group" not in header:
            raise ValueError(
                f"Groups file {path} must be a CSV with the columns filename and group "
                f"(one row per image); its header is {header}."
            )
        rows = [{key.strip(): (value or "").strip() for key, value in row.items() if key}
                for row in reader]
    exact, absolute, by_base = {}, {}, {}
    for number, row in enumerate(rows, start=2):
        name, group = row["filename"].replace("\\", "/"), row["group"]
        if not group:
            raise ValueError(f"Groups file {path}, line {number}: {name!r} has an empty group.")
        exact[name] = group
        absolute[os.path.normpath(path.parent / name)] = group
        by_base.setdefault(name.rpartition("/")[2], []).append(group)
    paths = names if paths is None else paths
    found, missing = [], []
    for name, full in zip(names, paths):
        name = str(name).replace("\\", "/")
        group = exact.get(name)
        if group is None:
            group = absolute.get(os.path.normpath(os.path.abspath(full)))
        if group is None and len(by_base.get(name.rpartition("/")[2], [])) == 1:
            group = by_base[name.rpartition("/")[2]][0]
        if group is None:
            missing.append(name)
        found.append(group)
    if missing:
        shown = ", ".join(repr(name) for name in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(
            f"{len(missing)} of {len(names)} images have no row in the groups file {path}: "
            f"{shown}{more}. Add a row 'filename,group' for each (the name relative to the "
            "data folder or as given on the command line, or the absolute path)."
        )
    codes = {}
    return np.array([codes.setdefault(group, len(codes)) for group in found], dtype=np.int64)


def explicit_diagnostics(path, groups):
    """The ``groups_diagnostics`` of groups read from a file (JSON-ready)."""
    return {
        "source": {"explicit": int(len(groups))}, "reliable": True, "reasons": [],
        "n_slices": int(len(groups)), "n_groups": int(len(np.unique(groups))),
        "file": str(path), "inferred": None,
    }

