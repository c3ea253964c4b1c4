"""Figures for evaluation and explanation: confusion matrices, reliability
diagrams, and Grad-CAM heatmaps over CT slices.

Every function returns the matplotlib ``Figure`` and never calls
``plt.show()``; pass ``ax=`` to draw into a figure of your own. pyplot is
imported only when a figure is made, and the backend is left to
matplotlib (it picks Agg when there is no display).
"""

import numbers

import numpy as np

from .metrics import expected_calibration_error, reliability_curve

__all__ = [
    "overlay_heatmap",
    "plot_confusion_matrix",
    "plot_cv_scores",
    "plot_explanations",
    "plot_reliability_diagram",
    "plot_randomisation_test",
    "plot_risk_coverage",
]


def _new_axes(ax, figsize):
    """Return (figure, ax), creating them through pyplot when ax is None.

    pyplot (rather than a bare Figure) lets notebooks and sphinx-gallery
    find and show the figure.
    """
    if ax is not None:
        return ax.figure, ax
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=figsize)
    return figure, ax


def plot_confusion_matrix(
    y_true,
    y_pred,
    *,
    labels=None,
    normalize=None,
    ax=None,
    cmap="Blues",
    title=None,
    colorbar=True,
):
    """Draw a confusion matrix with the value of each cell written in it.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels.
    labels : array-like of shape (n_classes,), default=None
        Classes and their order; None uses the sorted labels present in
        ``y_true`` and ``y_pred``.
    normalize : {None, "true", "pred", "all"}, default=None
        None writes counts. ``"true"`` divides each row by the number of
        samples of its class, so the diagonal holds per-class recall;
        ``"pred"`` divides columns, ``"all"`` the whole matrix.
    ax : matplotlib Axes, default=None
        Where to draw; None creates a new figure.
    cmap : str or Colormap, default="Blues"
        Colour map of the cells.
    title : str, default=None
        Axes title; None writes "Confusion matrix" (with the normalisation).
    colorbar : bool, default=True
        Whether to add a colour bar.

    Returns
    -------
    figure : matplotlib Figure
        The figure holding the axes.

    Raises
    ------
    ValueError
        If ``y_true`` and ``y_pred`` differ in length or ``normalize`` is
        not one of the options.

    Notes
    -----
    Drawn by scikit-learn's
    :meth:`~sklearn.metrics.ConfusionMatrixDisplay.from_predictions`.

    Examples
    --------
    >>> from ckdlearn.plotting import plot_confusion_matrix
    >>> fig = plot_confusion_matrix(["Cyst", "Stone", "Stone"],
    ...                             ["Cyst", "Cyst", "Stone"])
    >>> [text.get_text() for text in fig.axes[0].texts]
    ['1', '0', '1', '1']
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, ax = _new_axes(ax, figsize=(6.5, 5.5))
    if labels is None:
        labels = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]))
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=labels, normalize=normalize, ax=ax, cmap=cmap,
        colorbar=colorbar, values_format=".2f" if normalize else "d",
        im_kw={"vmin": 0, "vmax": 1} if normalize else None,
    )
    if title is None:
        title = "Confusion matrix" + (f" (normalised over {normalize})" if normalize else "")
    ax.set_title(title)
    return figure


def plot_reliability_diagram(
    y_true,
    y_proba,
    *,
    n_bins=15,
    strategy="uniform",
    labels=None,
    ax=None,
    title=None,
):
    """Draw a top-label reliability diagram with the ECE and confidence counts.

    Bars show the accuracy of the predictions in each confidence bin; the
    dashed diagonal is perfect calibration, red boxes the gap to it. Bars
    below the diagonal mean overconfidence. A histogram shows how many
    predictions fall in each bin, since sparse bins are noisy.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_proba : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, as from ``predict_proba``.
    n_bins : int, default=15
        Number of confidence bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Binning, as in :func:`ckdlearn.metrics.reliability_curve`.
    labels : array-like of shape (n_classes,), default=None
        The label of each column of ``y_proba``.
    ax : matplotlib Axes, default=None
        Where to draw the diagram. None creates a figure with the diagram
        above a histogram of confidences; with an ``ax``, the histogram is
        drawn as light bars on a twin y-axis (counts on the right).
    title : str, default=None
        Title; None writes "Reliability diagram (ECE = ...)".

    Returns
    -------
    figure : matplotlib Figure

    Raises
    ------
    ValueError
        As :func:`ckdlearn.metrics.reliability_curve`.

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn.plotting import plot_reliability_diagram
    >>> y_true = np.array([0, 1, 1, 0])
    >>> y_proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.7, 0.3], [0.9, 0.1]])
    >>> fig = plot_reliability_diagram(y_true, y_proba, n_bins=5)
    >>> fig.axes[0].get_title()
    'Reliability diagram (ECE = 0.150)'
    """
    curve = reliability_curve(y_true, y_proba, n_bins=n_bins, strategy=strategy, labels=labels)
    ece = expected_calibration_error(
        y_true, y_proba, n_bins=n_bins, strategy=strategy, labels=labels
    )
    stacked = ax is None
    if stacked:
        import matplotlib.pyplot as plt

        figure, (ax, histogram_ax) = plt.subplots(
            2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
        )
    else:
        figure, histogram_ax = ax.figure, ax.twinx()

    edges = curve.bin_edges
    lefts, widths = edges[:-1], np.diff(edges)
    filled = curve.counts > 0
    ax.bar(
        lefts[filled], curve.accuracy[filled], width=widths[filled], align="edge",
        color="tab:blue", edgecolor="black", label="Accuracy",
    )
    gap_bottom = np.minimum(curve.accuracy[filled], curve.confidence[filled])
    gap_height = np.abs(curve.accuracy[filled] - curve.confidence[filled])
    ax.bar(
        lefts[filled], gap_height, bottom=gap_bottom, width=widths[filled], align="edge",
        color="tab:red", alpha=0.3, edgecolor="tab:red", hatch="//", label="Gap",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="Perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("Accuracy")
    ax.legend(loc="upper left")
    ax.set_title(title if title is not None else f"Reliability diagram (ECE = {ece:.3f})")

    histogram_ax.bar(
        lefts, curve.counts, width=widths, align="edge", color="grey",
        alpha=1.0 if stacked else 0.3, edgecolor="grey",
    )
    histogram_ax.set_ylabel("Count")
    if stacked:
        histogram_ax.set_xlabel("Confidence (top-label probability)")
    else:
        # A twin axes is drawn on top; put it behind the diagram, and keep
        # its bars in the lower third so they do not hide the accuracy bars.
        ax.set_zorder(histogram_ax.get_zorder() + 1)
        ax.patch.set_visible(False)
        histogram_ax.set_ylim(0, 3 * max(curve.counts.max(), 1))
        ax.set_xlabel("Confidence (top-label probability)")
    return figure


def _as_image_stack(values, name):
    """(n, H, W) float array from (n, H, W), (n, 1, H, W) or square (n, H*W)."""
    values = np.asarray(values)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric; got dtype {values.dtype}.")
    if values.ndim == 4 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim == 2:
        side = int(round(np.sqrt(values.shape[1])))
        if side * side != values.shape[1]:
            raise ValueError(
                f"{name} is 2-D with {values.shape[1]} features per image, not a "
                "square number; reshape it to (n_images, height, width)."
            )
        values = values.reshape(len(values), side, side)
    if values.ndim != 3:
        raise ValueError(
            f"{name} must be (n_images, height, width), (n_images, 1, height, "
            f"width) or (n_images, height*width); got shape {values.shape}."
        )
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinity.")
    return values


def _unit_range_image(image, name):
    """Float image in [0, 1]; uint8 is divided by 255."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image / 255.0
    image = image.astype(np.float64)
    if image.size and (image.min() < -1e-6 or image.max() > 1 + 1e-6):
        raise ValueError(
            f"{name} values must lie in [0, 1] (or be uint8); found "
            f"{image.min():.4g} to {image.max():.4g}. Scale it, e.g. "
            f"({name} - {name}.min()) / ({name}.max() - {name}.min())."
        )
    return np.clip(image, 0.0, 1.0)


def overlay_heatmap(image, heatmap, alpha=0.4, cmap="jet"):
    """Blend a heatmap over a greyscale slice into an RGB image.

    ``(1 - alpha) * grey + alpha * cmap(heatmap)``, the blend of
    pytorch-grad-cam's ``show_cam_on_image``. Save the result with
    ``matplotlib.pyplot.imsave`` or PIL (after ``* 255`` and ``uint8``).

    Parameters
    ----------
    image : array-like of shape (H, W), (H, W, 3) or (H*W,) with square H*W
        The slice, values in [0, 1] (or uint8, divided by 255).
    heatmap : array-like of shape (H, W) or (H*W,)
        Relevance in [0, 1], e.g. a Grad-CAM map.
    alpha : float, default=0.4
        Weight of the heatmap, in [0, 1].
    cmap : str or Colormap, default="jet"
        Colour map of the heatmap.

    Returns
    -------
    overlay : ndarray of shape (H, W, 3)
        RGB float image in [0, 1].

    Raises
    ------
    ValueError
        If shapes differ, values lie outside [0, 1], or alpha is outside
        [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn.plotting import overlay_heatmap
    >>> image = np.full((4, 4), 0.5)
    >>> heatmap = np.zeros((4, 4))
    >>> overlay = overlay_heatmap(image, heatmap, alpha=0.0)
    >>> overlay.shape, float(overlay.min()), float(overlay.max())
    ((4, 4, 3), 0.5, 0.5)
    """
    import matplotlib

    if not isinstance(alpha, numbers.Real) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1]; got {alpha!r}.")
    image = _unit_range_image(image, "image")
    heatmap = _unit_range_image(heatmap, "heatmap")
    if image.ndim == 1:
        image = _as_image_stack(image[np.newaxis], "image")[0]
    if heatmap.ndim == 1:
        heatmap = _as_image_stack(heatmap[np.newaxis], "heatmap")[0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, np.newaxis], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"image must be (H, W) greyscale or (H, W, 3) RGB; got shape {image.shape}."
        )
    if heatmap.shape != image.shape[:2]:
        raise ValueError(
            f"heatmap has shape {heatmap.shape} but image is {image.shape[:2]}; "
            "resize the heatmap to the image (Grad-CAM maps usually are)."
        )
    colormap = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    colored = colormap(heatmap)[..., :3]
    return np.clip((1.0 - alpha) * image + alpha * colored, 0.0, 1.0)


def plot_explanations(
    images,
    heatmaps,
    *,
    titles=None,
    ncols=4,
    alpha=0.4,
    cmap="jet",
    panel_size=2.5,
    suptitle=None,
    colorbar=False,
):
    """Show CT slices in a grid with their heatmaps (e.g. Grad-CAM) laid over.

    Parameters
    ----------
    images : array-like of shape (n, H, W), (n, 1, H, W) or (n, H*W)
        Slices with values in [0, 1] (or uint8); flattened slices must be
        square.
    heatmaps : array-like of shape (n, H, W), (n, 1, H, W) or (n, H*W)
        Relevance maps in [0, 1], one per slice, as returned by
        ``CKDNetClassifier.explain``.
    titles : list of str, default=None
        One title per panel, e.g. ``"true Stone / pred Cyst"``.
    ncols : int, default=4
        Panels per row (fewer if there are fewer images).
    alpha : float, default=0.4
        Weight of the heatmap in the blend.
    cmap : str or Colormap, default="jet"
        Colour map of the heatmaps.
    panel_size : float, default=2.5
        Side of each panel, in inches.
    suptitle : str, default=None
        A title above the grid, e.g. the method and the class explained.
    colorbar : bool, default=False
        Add a colour bar reading the heatmap's colours as relevance
        from 0 to 1.

    Returns
    -------
    figure : matplotlib Figure
        One axes per grid cell (cells past the last image are hidden),
        then the colour bar's axes when ``colorbar``.

    Raises
    ------
    ValueError
        If images and heatmaps differ in number or shape, values lie
        outside [0, 1], or titles do not match the number of images.

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn.plotting import plot_explanations
    >>> rng = np.random.default_rng(0)
    >>> images, heatmaps = rng.random((3, 16, 16)), rng.random((3, 16, 16))
    >>> fig = plot_explanations(images, heatmaps, titles=["a", "b", "c"], ncols=2)
    >>> [ax.get_title() for ax in fig.axes if ax.get_visible()]
    ['a', 'b', 'c']
    """
    import matplotlib.pyplot as plt

    images = _as_image_stack(images, "images")
    heatmaps = _as_image_stack(heatmaps, "heatmaps")
    if len(images) == 0:
        raise ValueError("images is empty; pass at least one slice.")
    if images.shape != heatmaps.shape:
        raise ValueError(
            f"images {images.shape} and heatmaps {heatmaps.shape} must have the "
            "same shape: one heatmap of the slice's size per slice."
        )
    if titles is not None and len(titles) != len(images):
        raise ValueError(
            f"titles has {len(titles)} entries for {len(images)} images; give "
            "one title per image."
        )
    if isinstance(ncols, bool) or not isinstance(ncols, numbers.Integral) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer; got {ncols!r}.")
    ncols = min(ncols, len(images))
    nrows = -(-len(images) // ncols)
    figure, axes = plt.subplots(
        nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows), squeeze=False
    )
    for index, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if index >= len(images):
            ax.set_visible(False)
            continue
        ax.imshow(
            overlay_heatmap(images[index], heatmaps[index], alpha=alpha, cmap=cmap),
            interpolation="nearest",
        )
        if titles is not None:
            ax.set_title(str(titles[index]), fontsize="small")
    if suptitle is not None:
        figure.suptitle(str(suptitle))
    figure.tight_layout()
    if colorbar:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        figure.colorbar(
            ScalarMappable(Normalize(0, 1), cmap), ax=axes.ravel().tolist(),
            fraction=0.03, pad=0.02, label="relevance (heatmap, 0 to 1)",
        )
    return figure


def plot_cv_scores(scores, *, metrics=None, ax=None):
    """Show the per-fold scores of a cross-validation, one column per metric.

    Parameters
    ----------
    scores : dict of str to array-like, or object with ``fold_scores``
        Per-fold values by metric name, e.g. ``evaluate(...).fold_scores``
        or the result itself.
    metrics : list of str, default=None
        Metrics to show, in order; None shows all.
    ax : matplotlib Axes, default=None
        Where to draw; None creates a new figure.

    Returns
    -------
    figure : matplotlib Figure

    Raises
    ------
    ValueError
        If a requested metric is missing.

    Examples
    --------
    >>> from ckdlearn.plotting import plot_cv_scores
    >>> fig = plot_cv_scores({"accuracy": [0.9, 0.8, 0.85], "macro_f1": [0.7, 0.75, 0.8]})
    >>> [tick.get_text() for tick in fig.axes[0].get_xticklabels()]
    ['accuracy', 'macro_f1']
    """
    scores = getattr(scores, "fold_scores", scores)
    names = list(scores) if metrics is None else list(metrics)
    missing = [name for name in names if name not in scores]
    if missing:
        raise ValueError(f"No scores for {missing}; available: {list(scores)}.")
    figure, ax = _new_axes(ax, figsize=(1.4 * len(names) + 1.5, 4))
    for position, name in enumerate(names):
        values = np.asarray(scores[name], dtype=np.float64)
        ax.scatter(np.full(len(values), position), values, color="tab:blue", zorder=3)
        if np.isfinite(values).any():
            ax.hlines(
                np.nanmean(values), position - 0.25, position + 0.25,
                color="black", label="mean" if position == 0 else None,
            )
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("Score per fold")
    ax.grid(axis="y", alpha=0.3)
    return figure


def plot_risk_coverage(curves, *, ax=None):
    """Accuracy against coverage: what declining the least certain cases buys.

    Parameters
    ----------
    curves : Bunch or dict of str to Bunch
        One :func:`~ckdlearn.metrics.risk_coverage_curve` (or
        ``evaluate(...).selective``), or several by name (e.g. slices and
        scan series, or uncertainty scores).
    ax : matplotlib Axes, default=None
        Where to draw; None creates a new figure.

    Returns
    -------
    figure : matplotlib Figure

    Examples
    --------
    >>> from ckdlearn.metrics import risk_coverage_curve
    >>> from ckdlearn.plotting import plot_risk_coverage
    >>> curve = risk_coverage_curve([0, 1, 1, 0], [0, 1, 0, 0], [0.1, 0.2, 0.9, 0.3])
    >>> fig = plot_risk_coverage({"slices": curve})
    >>> fig.axes[0].get_xlabel()
    'Coverage (share of predictions answered)'
    """
    if hasattr(curves, "coverage"):
        curves = {"": curves}
    figure, ax = _new_axes(ax, figsize=(5.5, 4.2))
    for name, curve in curves.items():
        label = f"{name} (AUROC {curve.auroc:.2f}, AURC {curve.aurc:.3f})".strip()
        ax.step(curve.coverage, curve.accuracy, where="post", label=label)
    ax.axvline(0.8, color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Coverage (share of predictions answered)")
    ax.set_ylabel("Accuracy of the answered predictions")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    return figure


def plot_randomisation_test(results, *, methods=None, image_index=0, metric="spearman",
                            panel_size=1.4):
    """Draw a CAM sanity check: similarity per randomisation stage, and the maps.

    The top panel shows, per CAM method, the mean similarity between the
    trained network's map and the randomised one at each stage, with the
    interquartile range over images shaded; a method that passes drops
    towards zero at the first stage and stays there. Below, for one image,
    each method's trained map and its map at every stage.

    Parameters
    ----------
    results : Bunch or sequence of Bunch
        What :func:`ckdlearn.explanation.randomisation_test` returns; several
        results on the same images (e.g. the cascading and the label test)
        are drawn one after the other.
    methods : list of str or None, default=None
        The methods to draw, in order; None draws the first result's.
    image_index : int, default=0
        The image whose maps the grid shows.
    metric : {"spearman", "ssim"}, default="spearman"
        The similarity drawn in the top panel.
    panel_size : float, default=1.4
        Side of each map in the grid, in inches.

    Returns
    -------
    figure : matplotlib Figure
        Its first axes holds the curves, the others the grid.

    Raises
    ------
    ValueError
        For an unknown metric or method, an image index out of range, or
        results computed on different images.

    Examples
    --------
    >>> import numpy as np
    >>> import ckdlearn
    >>> from ckdlearn.explanation import randomisation_test
    >>> from ckdlearn.plotting import plot_randomisation_test
    >>> rng = np.random.RandomState(0)
    >>> X, y = rng.rand(20, 16 * 16).astype(np.float32), np.repeat(["Cyst", "Stone"], 10)
    >>> clf = ckdlearn.CKDNetClassifier(max_epochs=1, module__width=4, module__depth=2,
    ...                                 augment=None, random_state=0).fit(X, y)
    >>> result = randomisation_test(clf, X[:4], methods=["gradcam", "eigencam"])
    >>> fig = plot_randomisation_test(result)
    >>> [tick.get_text() for tick in fig.axes[0].get_xticklabels()]
    ['trained', 'classifier', 'features.1', 'features.0']
    """
    import matplotlib.pyplot as plt

    results = [results] if hasattr(results, "stages") else list(results)
    first = results[0]
    if any(not np.array_equal(result.images, first.images) for result in results[1:]):
        raise ValueError("The results explain different images; pass results of one set of images.")
    methods = list(first.methods) if methods is None else list(methods)
    missing = [m for m in methods if any(m not in result.methods for result in results)]
    if missing or not methods:
        raise ValueError(f"No results for methods {missing or methods}; available: {first.methods}.")
    if metric not in ("spearman", "ssim"):
        raise ValueError(f'metric must be "spearman" or "ssim"; got {metric!r}.')
    if isinstance(image_index, bool) or not isinstance(image_index, numbers.Integral) or not (
        0 <= image_index < len(first.images)
    ):
        raise ValueError(f"image_index must be an integer in [0, {len(first.images) - 1}]; "
                         f"got {image_index!r}.")
    stages = [stage for result in results for stage in result.stages]
    similarity = {m: np.concatenate([getattr(result, metric)[m] for result in results]) for m in methods}
    maps = {m: np.concatenate([result.heatmaps[m][:, image_index] for result in results])
            for m in methods}

    figure = plt.figure(figsize=(max(6.0, panel_size * (len(stages) + 2)),
                                 3.2 + panel_size * len(methods)), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[3.2, panel_size * len(methods)])
    ax = top.subplots()
    x = np.arange(len(stages) + 1)
    for method in methods:
        (line,) = ax.plot(x, np.r_[1.0, similarity[method].mean(axis=1)], marker="o", label=method)
        low, high = np.percentile(similarity[method], [25, 75], axis=1)
        ax.fill_between(x[1:], low, high, color=line.get_color(), alpha=0.12, linewidth=0)
    ax.axhline(0, color="0.5", lw=0.8, ls="--")
    ax.set_xticks(x, ["trained", *stages], rotation=25, ha="right")
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("Spearman rho with trained map" if metric == "spearman" else "SSIM with trained map")
    ax.set_xlabel("randomised (cumulatively, top layer first)")
    ax.legend(fontsize="small", ncol=2)

    image = np.asarray(first.images[image_index], dtype=np.float64)[0]
    span = image.max() - image.min()
    image = (image - image.min()) / span if span > 0 else np.zeros_like(image)
    grid = bottom.subplots(len(methods), len(stages) + 2, squeeze=False)
    for row, method in enumerate(methods):
        panels = [image, overlay_heatmap(image, first.trained_heatmaps[method][image_index])]
        panels += [overlay_heatmap(image, heatmap) for heatmap in maps[method]]
        for column, panel in enumerate(panels):
            grid[row, column].imshow(panel, cmap="gray" if column == 0 else None,
                                     interpolation="nearest")
            grid[row, column].set_xticks([])
            grid[row, column].set_yticks([])
        grid[row, 0].set_ylabel(method, fontsize="small")
    for column, title in enumerate(["slice", "trained", *stages]):
        grid[0, column].set_title(title, fontsize="x-small")
    return figure
