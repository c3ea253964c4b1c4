"""
=========================================================
Quickstart: train, evaluate and explain on real CT slices
=========================================================

This example runs the whole ckdlearn workflow on the sample of real CT
slices that ships with the package: load the slices with their scan-series
ids, train a SMOTE + CNN pipeline on some scan series, test it on others,
and look at Grad-CAM heatmaps of its predictions.

The model is tiny and trained for a few epochs so that the example runs
in seconds on a laptop CPU; its scores say nothing about what ckdlearn
reaches on the full dataset.

.. rst-class:: attribution

CT slices: CT KIDNEY DATASET (Normal-Cyst-Tumor-Stone), Islam M. N. et al.,
*Scientific Reports* 12:11440 (2022), CC BY 4.0.
"""

# %%
# Load the data
# -------------
#
# :func:`~ckdlearn.datasets.load_ct_kidney_sample` returns 64 x 64 pixel
# slices as a flat float32 matrix ``data`` (what a SMOTE pipeline takes),
# the same pixels as ``images``, class indices in ``target`` and the
# inferred scan-series id of each slice in ``groups``. If the environment
# variable ``CKDLEARN_DATA`` names a folder holding a copy of the full
# dataset in ``ct-kidney-full/`` (see
# :func:`~ckdlearn.datasets.local_data_folder`), the example uses that
# instead (and takes much longer).

import matplotlib.pyplot as plt
import numpy as np

from ckdlearn.datasets import load_ct_kidney, load_ct_kidney_sample, local_data_folder


root = local_data_folder("ct-kidney-full")
if root is not None:
    dataset = load_ct_kidney(root, image_size=64)
else:
    dataset = load_ct_kidney_sample()

X, groups = dataset.data, dataset.groups
y = dataset.target_names[dataset.target]  # string labels read better
print(f"{X.shape[0]} slices of {dataset.images.shape[1:]} pixels, "
      f"{len(np.unique(groups))} scan series")
for name in dataset.target_names:
    in_class = y == name
    print(f"  {name:<7s}{in_class.sum():4d} slices, "
          f"{len(np.unique(groups[in_class]))} series")

# %%
# One slice of each class:
ATTRIBUTION = "CT KIDNEY DATASET, Islam et al. 2022, CC BY 4.0"

fig, axes = plt.subplots(1, 4, figsize=(8, 2.4))
for ax, name in zip(axes, dataset.target_names):
    first = np.flatnonzero(y == name)[0]
    ax.imshow(dataset.images[first], cmap="gray")
    ax.set_title(name)
    ax.axis("off")
fig.text(0.5, 0.01, ATTRIBUTION, ha="center", fontsize=7, color="0.4")
fig.tight_layout(rect=(0, 0.05, 1, 1))

# %%
# Split by scan series
# --------------------
#
# Neighbouring slices of one scan are nearly identical, so training and
# test slices must come from different scan series.
# :class:`~sklearn.model_selection.StratifiedGroupKFold` keeps each group
# whole and the class proportions roughly equal. We test on the fold that
# holds the most scan series: the more series, the less the score depends
# on how one particular scan fares.
from sklearn.model_selection import StratifiedGroupKFold

cv = StratifiedGroupKFold(n_splits=4, shuffle=True, random_state=0)
train, test = max(cv.split(X, y, groups), key=lambda split: len(np.unique(groups[split[1]])))
print(f"test: {len(test)} slices from {len(np.unique(groups[test]))} series")
print("series shared by training and test:",
      len(np.intersect1d(groups[train], groups[test])))

# %%
# Train a SMOTE + CNN pipeline
# ----------------------------
#
# SMOTE balances the classes by interpolating between training slices. As a
# step of an imbalanced-learn pipeline it only ever sees the training data.
# :class:`~ckdlearn.CKDNetClassifier` reshapes the flat rows into
# ``(n, 1, 64, 64)`` batches for the network. ``module__width`` and
# ``module__depth`` make the network small enough to train in seconds.
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import make_pipeline

from ckdlearn import CKDNetClassifier

pipe = make_pipeline(
    SMOTE(random_state=0),
    CKDNetClassifier(
        max_epochs=5,
        lr=1e-3,
        batch_size=64,
        module__width=8,
        module__depth=3,
        device="auto",
        random_state=0,
    ),
)
pipe.fit(X[train], y[train])

# %%
# Evaluate on the held-out scan series
# ------------------------------------
#
# With strongly imbalanced classes, balanced accuracy (the mean of the
# per-class recalls) says more than accuracy.
from sklearn.metrics import balanced_accuracy_score, recall_score

from ckdlearn.plotting import plot_confusion_matrix

y_pred = pipe.predict(X[test])
print(f"accuracy          {np.mean(y_pred == y[test]):.2f}")
print(f"balanced accuracy {balanced_accuracy_score(y[test], y_pred):.2f}")
recalls = recall_score(y[test], y_pred, labels=dataset.target_names, average=None)
print("recall per class ", ", ".join(f"{name} {r:.2f}" for name, r in zip(dataset.target_names, recalls)))
plot_confusion_matrix(y[test], y_pred, labels=dataset.target_names)

# %%
# Do not expect high numbers here. The test slices come from scan series
# the network has never seen, often of another patient, position or
# contrast phase, and the network learned from about 60 series of at most
# 10 slices each, for a few epochs. What a result means: always answering
# the most frequent class would score a balanced accuracy of 0.25 (one
# class of four recalled), so 0.5 is a model that learned something; the
# default recipe trained on all 3,879 slices reaches macro-F1 0.60 on
# unseen series (:ref:`accuracy`). This is the honest
# measurement the seed paper's 100% lacked (see
# :ref:`sphx_glr_auto_examples_plot_06_leakage_audit.py` and
# :ref:`evaluation` in the user guide).

# %%
# Explain the predictions
# -----------------------
#
# :func:`ckdlearn.explain` takes the fitted pipeline and the input its
# ``predict`` takes, skips SMOTE as ``predict`` does, and returns one
# Grad-CAM heatmap per slice, in [0, 1]. Warm regions raised the score of
# the predicted class; they are not a segmentation of the lesion.
import ckdlearn
from ckdlearn.plotting import plot_explanations

rng = np.random.RandomState(0)
shown = np.concatenate([
    rng.choice(test[y[test] == name], size=min(2, np.sum(y[test] == name)), replace=False)
    for name in dataset.target_names
])
heatmaps = ckdlearn.explain(pipe, X[shown])
titles = [f"true {t}\npred {p}" for t, p in zip(y[shown], pipe.predict(X[shown]))]
fig = plot_explanations(dataset.images[shown], heatmaps, titles=titles, ncols=4)
fig.text(0.5, 0.005, ATTRIBUTION, ha="center", fontsize=7, color="0.4")

# %%
# Next steps: the :ref:`user guide <user_guide>` explains why SMOTE stays
# inside the pipeline, how to tune it with scan-series groups, and how far
# to trust a heatmap.
