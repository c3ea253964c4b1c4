"""What commands read: labelled folders, model files, and image files at a model's size.

Which files count as slices is decided by the datasets' reader
(:func:`ckdlearn.datasets._io.is_slice_file`), so the loaders and the
commands agree on every file.
"""

import os
from pathlib import Path

from ..datasets import load_ct_kidney, read_images
from ..datasets._io import SLICE_SUFFIXES, is_slice_file
from ..datasets._layout import natural_key
from .pipeline import final_classifier
from .progress import silent

__all__ = ["as_model", "find_image_files", "load_labelled", "read_for_model"]


def as_model(model):
    """The model itself, or the model loaded from a model file's path."""
    if isinstance(model, (str, os.PathLike)):
        from ..persistence import load

        return load(model)
    return model


def load_labelled(data, image_size, on_error="raise", progress=silent):
    """Load a labelled folder (CT KIDNEY layout, or class folders), saying what was found."""
    progress(f"loading {data} at {image_size} px ...")
    dataset = load_ct_kidney(data, image_size=image_size, on_error=on_error)
    counts = ", ".join(
        f"{name} {int((dataset.target == i).sum())}" for i, name in enumerate(dataset.target_names)
    )
    progress(f"loaded {len(dataset.data)} images of {len(dataset.target_names)} classes ({counts})")
    return dataset


def find_image_files(paths):
    """Expand files and folders (searched recursively) into slice files.

    Parameters
    ----------
    paths : list of str or Path
        Image files and/or folders.

    Returns
    -------
    files : list of Path
        In a deterministic order: as given, each folder's files in natural
        order (``slice2`` before ``slice10``).

    Raises
    ------
    FileNotFoundError
        If a path does not exist or no image file is found.
    """
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = (p for p in path.rglob("*") if p.is_file() and is_slice_file(p))
            files.extend(sorted(found, key=lambda p: natural_key(os.fspath(p))))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"No such file or folder: {path}")
    if not files:
        suffixes = ", ".join(sorted(s for s in SLICE_SUFFIXES if s))
        raise FileNotFoundError(
            "No image files found in " + ", ".join(map(str, paths))
            + f" (looked for {suffixes} and DICOM files without an extension)."
        )
    return files


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


def read_for_model(files, model, progress=silent, on_error="raise"):
    """Read image files at the size the model was trained on.

    Returns the images and the files that were read (all of them unless
    ``on_error='skip'`` left some out).
    """
    channels, height, width = final_classifier(model).image_shape_
    if channels != 1 or height != width:
        raise ValueError(
            f"This model takes {channels}-channel {height}x{width} images; "
            "reading files is supported for greyscale square models only."
        )
    note = _resize_note(files, height)
    if note:
        progress(note)
    images, skipped = read_images(files, image_size=height, on_error=on_error, return_skipped=True)
    if not len(images):
        raise ValueError(f"None of the {len(files)} image files could be read (each is named above).")
    skipped_paths = {path for path, _ in skipped}
    return images, [f for f in files if os.fspath(f) not in skipped_paths]
