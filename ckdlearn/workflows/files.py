"""Predictions and Grad-CAM overlays of image files, written as named files.

Both take a fitted model or the path of a model file, and image files or
folders. Outputs are checked before the model is loaded or an image read,
and only the named outputs are ever written or replaced.
"""

import io
from pathlib import Path

import numpy as np

from .._files import check_outputs, write_files
from .inputs import as_model, find_image_files, read_for_model
from .pipeline import final_classifier
from .progress import silent

__all__ = ["explain_images", "predict_files"]

#: Side in pixels of the written overlays: the slice as read from its file,
#: not the model's (often 32 or 64 px) input.
OVERLAY_SIZE = 256


def predict_files(model, files, progress=silent, on_error="raise"):
    """Label and class probabilities for each image file.

    ``model`` is a fitted classifier or pipeline, or a model file's path;
    ``files`` are image files and/or folders (searched recursively);
    ``on_error='skip'`` leaves unreadable files out with a warning.
    Returns one dict per file read: ``file``, ``label``, and one
    probability per class.
    """
    files = find_image_files(files)
    model = as_model(model)
    images, files = read_for_model(files, model, progress, on_error)
    proba = model.predict_proba(images.reshape(len(images), -1))
    classes = final_classifier(model).classes_
    rows = []
    for path, p in zip(files, proba):
        row = {"file": str(path), "label": _plain(classes[int(np.argmax(p))])}
        row.update({str(c): round(float(v), 6) for c, v in zip(classes, p)})
        rows.append(row)
    return rows


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _overlay_names(files):
    return [f"{index:04d}_{Path(path).stem}_heatmap.png" for index, path in enumerate(files)]


def explain_images(model, files, out, *, method="gradcam", target=None, force=False,
                   overlay_size=OVERLAY_SIZE, on_error="raise", progress=silent):
    """Write one heatmap overlay PNG per image and a grid of them into ``out``.

    ``model``, ``files``, ``on_error`` and ``progress`` are as for
    :func:`predict_files`. The heatmap of ``method`` (one of
    :data:`ckdlearn.cam.CAM_METHODS`) for class ``target`` (None: each
    prediction) is computed at the model's input size and drawn, upsampled,
    on the slice read again from its file at ``overlay_size`` pixels, so
    the anatomy under it can be seen. Only the overlays
    (``NNNN_<name>_heatmap.png``) and ``grid.png`` are written; ``force``
    replaces files of those names and never touches others. Returns the
    paths written, ``grid.png`` last.
    """
    import matplotlib.pyplot as plt
    import torch

    from ..cam import explain
    from ..datasets import read_images
    from ..plotting import overlay_heatmap, plot_explanations
    from ..report import figure_png

    files = find_image_files(files)
    out = Path(out)
    # Named by their place among the inputs, also when some are skipped.
    names = dict(zip(files, _overlay_names(files)))
    check_outputs([out / name for name in [*names.values(), "grid.png"]], overwrite=force)
    model = as_model(model)
    if target is not None:
        target = _coerce_label(target, final_classifier(model).classes_)
    images, files = read_for_model(files, model, progress, on_error)
    flat = images.reshape(len(images), -1)
    heatmaps, scores = explain(model, flat, method=method, target=target, return_scores=True)
    predictions = model.predict(flat)
    size = max(int(overlay_size), images.shape[-1])
    slices = read_images(files, image_size=size)
    heatmaps = torch.nn.functional.interpolate(
        torch.from_numpy(np.ascontiguousarray(heatmaps, dtype=np.float32))[:, None],
        size=(size, size), mode="bilinear", align_corners=False,
    )[:, 0].clamp(0, 1).numpy()
    outputs = {}
    for name, image, heatmap in zip([names[f] for f in files], slices, heatmaps):
        buffer = io.BytesIO()
        plt.imsave(buffer, overlay_heatmap(image, heatmap), format="png")
        outputs[name] = buffer.getvalue()
    shown = min(len(files), 16)
    titles = [
        f"{Path(f).name[:18]}\npred {p} | faith {s:.2f}"
        for f, p, s in zip(files[:shown], predictions[:shown], scores[:shown])
    ]
    outputs["grid.png"] = figure_png(plot_explanations(slices[:shown], heatmaps[:shown], titles=titles))
    return write_files(out, outputs, overwrite=force)


def _coerce_label(label, classes):
    """Match a label typed on the command line to the model's classes."""
    for cls in classes:
        if str(cls) == str(label):
            return cls
    raise ValueError(
        f"Unknown target {label!r}; the model's classes are {[str(c) for c in classes]}."
    )
