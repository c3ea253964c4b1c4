"""Predictions and Grad-CAM overlays of image files, written as named files.

Both take a fitted model or the path of a model file, and image files or
folders. Outputs are checked before the model is loaded or an image read,
and only the named outputs are ever written or replaced.
"""

import io
from pathlib import Path

import numpy as np

from ..utils.deprecation import renamed_keyword
from ..utils.files import check_outputs, write_files
from .inputs import as_model, find_image_files, read_for_model
from .progress import silent
from .recipe import final_classifier

__all__ = ["explain_images", "predict_files"]

#: Side in pixels of the written overlays: the slice as read from its file,
#: not the model's (often 32 or 64 px) input.
OVERLAY_SIZE = 256


def predict_files(model, files, progress=silent, on_error="raise", abstain_below=None,
                  groups=None, input_domain="raw"):
    """Label and class probabilities for each image file, and each scan's answer.

    ``model`` is a fitted classifier or pipeline, a model file's path, or
    ``"pretrained"`` for the reference model; ``input_domain`` says whether
    the files are raw slices or already CLAHE-equalised (they are brought
    into the model's domain);
    ``files`` are image files and/or folders (searched recursively);
    ``on_error='skip'`` leaves unreadable files out with a warning. The
    slices are grouped into scans as the loaders group them (DICOM
    ``PatientID``, study or series UIDs where the files carry them, else
    :func:`~ckdlearn.model_selection.infer_scan_groups`, which warns where
    its grouping is unreliable), or by ``groups``, the path of a CSV of
    ``filename,group`` rows (:func:`~ckdlearn.app.inputs.read_groups_file`);
    each scan gets one answer
    (:meth:`~ckdlearn.CKDNetClassifier.predict_series`). With
    ``abstain_below``, a slice or scan whose top probability is below it is
    labelled ``"uncertain"``.

    Returns
    -------
    rows : list of dict
        One per file read: ``file``, ``label`` (the slice's own answer),
        one probability per class, ``uncertainty`` (normalised entropy),
        ``scan`` (scan number), ``scan_label`` and ``scan_uncertainty``
        (the scan's answer, never written over the slice's), and
        ``scan_group_source``: ``"explicit"``, ``"dicom:PatientID"`` (or
        ``StudyInstanceUID``, ``SeriesInstanceUID``), ``"inferred"``, or
        ``"inferred (unreliable)"`` where the inference warned.
    scans : list of dict
        One per scan: ``scan``, ``n_slices``, ``label``, ``confidence``
        (its top probability), ``uncertainty`` and ``group_source``.
    """
    from ..datasets import resolve_scan_groups
    from ..pipeline import final_step_input
    from .inputs import check_groups_file, explicit_diagnostics, read_groups_file

    if groups is not None:
        check_groups_file(groups)  # before the images are read
    files = find_image_files(files)
    model = as_model(model)
    images, files = read_for_model(files, model, progress, on_error, input_domain)
    classifier, flat = final_step_input(model, images.reshape(len(images), -1))
    proba = classifier.predict_proba(flat)
    unsure = classifier.predict_uncertainty(flat)
    names = [str(path) for path in files]
    if groups is not None:
        groups_file, groups = groups, read_groups_file(groups, names)
        sources = np.full(len(names), "explicit")
        diagnostics = explicit_diagnostics(groups_file, groups)
    else:
        groups, sources, diagnostics = resolve_scan_groups(
            images, names, paths=names, image_sizes=_image_sizes(files)
        )
    if not diagnostics["reliable"]:
        sources = np.where(sources == "inferred", "inferred (unreliable)", sources)
    answers = classifier.predict_series(flat, groups)
    classes = classifier.classes_

    def label(probabilities):
        if abstain_below is not None and probabilities.max() < abstain_below:
            return "uncertain"
        return _plain(classes[int(np.argmax(probabilities))])

    source_of = dict(zip(groups.tolist(), sources.tolist()))
    scans = [
        {"scan": int(scan), "n_slices": int(n), "label": label(p),
         "confidence": round(float(p.max()), 6), "uncertainty": round(float(u), 6),
         "group_source": source_of[int(scan)]}
        for scan, n, p, u in zip(answers.series, answers.n_slices, answers.proba, answers.uncertainty)
    ]
    by_scan = {entry["scan"]: entry for entry in scans}
    rows = []
    for path, p, u, scan in zip(files, proba, unsure, groups):
        row = {"file": str(path), "label": label(p)}
        row.update({str(c): round(float(v), 6) for c, v in zip(classes, p)})
        row.update(uncertainty=round(float(u), 6), scan=int(scan),
                   scan_label=by_scan[int(scan)]["label"],
                   scan_uncertainty=by_scan[int(scan)]["uncertainty"],
                   scan_group_source=by_scan[int(scan)]["group_source"])
        rows.append(row)
    return rows, scans


def _image_sizes(files):
    """Each raster file's ``(height, width)`` from its header; (0, 0) for others."""
    from PIL import Image

    sizes = np.zeros((len(files), 2), dtype=np.int64)
    for row, path in zip(sizes, files):
        try:
            with Image.open(path) as image:
                row[:] = image.size[::-1]
        except OSError:
            continue  # DICOM: grouped by its identifiers, or inferred without a size
    return sizes


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _overlay_names(files):
    return [f"{index:04d}_{Path(path).stem}_heatmap.png" for index, path in enumerate(files)]


@renamed_keyword("force", "overwrite")
def explain_images(model, files, out, *, method="gradcam", target=None, overwrite=False,
                   overlay_size=OVERLAY_SIZE, on_error="raise", progress=silent,
                   input_domain="raw"):
    """Write one heatmap overlay PNG per image and a grid of them into ``out``.

    ``model``, ``files``, ``on_error`` and ``progress`` are as for
    :func:`predict_files`. The heatmap of ``method`` (one of
    :data:`ckdlearn.explanation.CAM_METHODS`) for class ``target`` (None: each
    prediction) is computed at the model's input size and drawn, upsampled,
    on the slice read again from its file at ``overlay_size`` pixels, so
    the anatomy under it can be seen. Only the overlays
    (``NNNN_<name>_heatmap.png``) and ``grid.png`` are written; ``overwrite``
    replaces files of those names and never touches others. Returns the
    paths written, ``grid.png`` last.
    """
    import matplotlib.pyplot as plt
    import torch

    from ..explanation import explain
    from ..datasets import read_images
    from ..plotting import overlay_heatmap
    from .html_report import figure_png

    files = find_image_files(files)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{str(out)!r} is a file; expected a folder to write the overlays in")
    # Named by their place among the inputs, also when some are skipped.
    names = dict(zip(files, _overlay_names(files)))
    check_outputs([out / name for name in [*names.values(), "grid.png"]], overwrite=overwrite)
    model = as_model(model)
    if target is not None:
        target = _coerce_label(target, final_classifier(model).classes_)
    images, files = read_for_model(files, model, progress, on_error, input_domain)
    flat = images.reshape(len(images), -1)
    heatmaps, scores = explain(model, flat, method=method, target=target, return_scores=True)
    predictions = model.predict(flat)
    size = max(int(overlay_size), images.shape[-1])
    # The overlays show the slices as the model saw them, in its domain.
    slices = read_images(files, image_size=size, domain=final_classifier(model).domain,
                         input_domain=input_domain)
    heatmaps = torch.nn.functional.interpolate(
        torch.from_numpy(np.ascontiguousarray(heatmaps, dtype=np.float32))[:, None],
        size=(size, size), mode="bilinear", align_corners=False,
    )[:, 0].clamp(0, 1).numpy()
    explained = f"class {target}" if target is not None else "the predicted class"
    outputs = {}
    for name, image, heatmap, path, predicted in zip(
        [names[f] for f in files], slices, heatmaps, files, predictions
    ):
        buffer = io.BytesIO()
        # The overlay stays the slice alone; what it shows travels as PNG text.
        description = f"{method} heatmap of {explained} (predicted {predicted}) on {Path(path).name}"
        plt.imsave(buffer, overlay_heatmap(image, heatmap), format="png",
                   metadata={"Title": f"{method}: {explained}", "Description": description})
        outputs[name] = buffer.getvalue()
    outputs["grid.png"] = figure_png(
        _grid(files, slices, heatmaps, predictions, scores, method, target, out)
    )
    return write_files(out, outputs, overwrite=overwrite)


#: Most panels in the grid; every image still gets its own overlay file.
GRID_SIZE = 16


def grid_titles(files, predictions, scores, target=None):
    """Panel titles: the file, the class explained, the prediction, the faithfulness."""
    if target is None:
        return [f"{Path(f).name[:18]}\npred {p} | faith {s:.2f}"
                for f, p, s in zip(files, predictions, scores)]
    return [f"{Path(f).name[:18]}\nfor {target} (pred {p}) | faith {s:.2f}"
            for f, p, s in zip(files, predictions, scores)]


def grid_heading(method, target, n_shown, n_images, out):
    """The grid's title: method and class explained, and how many images it shows."""
    heading = f"{method} heatmaps of " + (f"class {target}" if target is not None else "each prediction")
    if n_shown < n_images:
        heading += (f"\n{n_shown} of {n_images} images shown, spread over the predicted classes; "
                    f"all overlays in {out}")
    return heading


def grid_picks(predictions, n_panels):
    """Which images the grid shows: up to ``n_panels``, every predicted class in turn.

    Each class's share is spread evenly over its images in file order, so a
    folder sorted by scan shows several scans rather than the first one.

    Examples
    --------
    >>> from ckdlearn.app.image_files import grid_picks
    >>> grid_picks(["Cyst"] * 20 + ["Stone"] * 4, 4).tolist()
    [0, 19, 20, 23]
    """
    predictions = np.asarray(predictions)
    if len(predictions) <= n_panels:
        return np.arange(len(predictions))
    _, first = np.unique(predictions, return_index=True)
    members = [np.flatnonzero(predictions == predictions[i]) for i in sorted(first)]
    quota = [0] * len(members)
    while sum(quota) < n_panels:  # one panel per class in turn, while it has images left
        for k, rows in enumerate(members):
            if quota[k] < len(rows) and sum(quota) < n_panels:
                quota[k] += 1
    picks = [rows[np.linspace(0, len(rows) - 1, count).round().astype(int)]
             for rows, count in zip(members, quota) if count]
    return np.sort(np.concatenate(picks))


def _grid(files, slices, heatmaps, predictions, scores, method, target, out):
    """The grid figure of up to :data:`GRID_SIZE` images (:func:`grid_picks`)."""
    from ..plotting import plot_explanations

    shown = grid_picks(predictions, GRID_SIZE)
    return plot_explanations(
        slices[shown], heatmaps[shown],
        titles=grid_titles([files[i] for i in shown], np.asarray(predictions)[shown],
                           np.asarray(scores)[shown], target),
        suptitle=grid_heading(method, target, len(shown), len(files), out), colorbar=True,
    )


def _coerce_label(label, classes):
    """Match a label typed on the command line to the model's classes."""
    for cls in classes:
        if str(cls) == str(label):
            return cls
    raise ValueError(
        f"Unknown target {label!r}; the model's classes are {[str(c) for c in classes]}."
    )
