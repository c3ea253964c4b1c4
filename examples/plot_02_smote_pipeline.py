"""
================================================
SMOTE in the pipeline, class weights, or nothing
================================================

The sample's classes are far from balanced: about three *Cyst* slices for
every *Tumor* one (the counts are printed below). This example compares three ways of training on
such data, each evaluated on scan series it never saw:

* no remedy;
* class weights in the loss (``class_weight="balanced"``);
* SMOTE oversampling as a step of an imbalanced-learn pipeline.

It also shows what SMOTE's synthetic images look like, which explains why
SMOTE must never see the test images.

.. rst-class:: attribution

CT slices: CT KIDNEY DATASET (Normal-Cyst-Tumor-Stone), Islam M. N. et al.,
*Scientific Reports* 12:11440 (2022), CC BY 4.0.
"""

# %%
# The data
# --------
import matplotlib.pyplot as plt
import numpy as np

from ckdlearn.datasets import load_ct_kidney_sample

ATTRIBUTION = "CT KIDNEY DATASET, Islam et al. 2022, CC BY 4.0"

dataset = load_ct_kidney_sample()
X, y, groups = dataset.data, dataset.target_names[dataset.target], dataset.groups
names, counts = np.unique(y, return_counts=True)
for name, count in zip(names, counts):
    print(f"{name:<8s}{count:4d} slices")

# %%
# What SMOTE makes
# ----------------
#
# SMOTE creates a new minority-class sample on the line between a real one
# and one of its nearest neighbours of the same class. For images, that is
# a cross-fade of two slices. imbalanced-learn appends the synthetic
# samples after the real ones.
from imblearn.over_sampling import SMOTE

X_resampled, y_resampled = SMOTE(random_state=0).fit_resample(X, y)
synthetic = np.arange(len(X), len(X_resampled))
print(f"{len(synthetic)} synthetic slices added")

# One synthetic slice of each class SMOTE topped up (all but the largest).
topped_up = [name for name in names if np.any(y_resampled[synthetic] == name)]
shown = [synthetic[y_resampled[synthetic] == name][0] for name in topped_up]
side = int(np.sqrt(X.shape[1]))
fig, axes = plt.subplots(1, len(shown), figsize=(2.2 * len(shown), 2.6))
for ax, index in zip(np.atleast_1d(axes), shown):
    ax.imshow(X_resampled[index].reshape(side, side), cmap="gray")
    ax.set_title(f"synthetic {y_resampled[index]}", fontsize=9)
    ax.axis("off")
fig.text(0.5, 0.01, "Blends of " + ATTRIBUTION, ha="center", fontsize=7, color="0.4")
fig.tight_layout(rect=(0, 0.05, 1, 1))

# %%
# A synthetic slice is made of two real ones. If SMOTE runs before the
# train/test split, the test set holds slices whose blends sit in the
# training set; inside a pipeline, SMOTE only ever blends training slices.
#
# Three pipelines
# ---------------
#
# The same small network in each. ``make_pipeline`` from
# :mod:`imblearn.pipeline` accepts samplers as steps; at predict time they
# are skipped. To keep the six fits below quick, the slices are
# downsampled to 32 x 32 pixels and the networks train for four epochs
# without augmentation.
from imblearn.pipeline import make_pipeline

from ckdlearn import CKDNetClassifier


def small_cnn(**params):
    return CKDNetClassifier(max_epochs=4, lr=3e-3, batch_size=64, module__width=8,
                            module__depth=3, augment=None, random_state=0, **params)


candidates = {
    "no remedy": small_cnn(),
    "class weights": small_cnn(class_weight="balanced"),
    "SMOTE pipeline": make_pipeline(SMOTE(random_state=0), small_cnn()),
}

# %%
# Evaluate each on held-out scan series
# -------------------------------------
#
# :func:`~ckdlearn.model_selection.evaluate` cross-validates with
# ``StratifiedGroupKFold`` when given ``groups``, so every test fold holds
# whole scan series, and pools the out-of-fold predictions.
from sklearn.model_selection import StratifiedGroupKFold

from ckdlearn.model_selection import evaluate

X_small = load_ct_kidney_sample(image_size=32).data
cv = StratifiedGroupKFold(n_splits=2, shuffle=True, random_state=0)
results = {}
for name, estimator in candidates.items():
    results[name] = evaluate(estimator, X_small, y, groups=groups, cv=cv, audit=False)
    scores = results[name].pooled_scores
    print(f"{name:<16s}accuracy {scores['accuracy']:.2f}   macro-F1 {scores['macro_f1']:.2f}")

# %%
# Recall per class
# ----------------
#
# Accuracy hides what happens to the rare classes. The pooled recall of each
# class shows it: without a remedy, a network tends to favour the classes it
# saw most (here *Cyst*) and to miss the rarest (*Tumor*).
classes = results["no remedy"].classes
width = 0.26
fig, ax = plt.subplots(figsize=(7, 3.6))
for offset, (name, result) in zip((-width, 0, width), results.items()):
    ax.bar(np.arange(len(classes)) + offset, result.recall, width, label=name)
ax.set_xticks(range(len(classes)), classes)
ax.set_ylim(0, 1.05)
ax.set_ylabel("recall on held-out series")
ax.legend(loc="upper right", fontsize=8)
ax.set_title("Per-class recall, 2 scan-series folds")
fig.tight_layout()

# %%
# On a sample this small the differences are noisy, and which remedy wins
# varies with the data and the budget. What does not vary is the rule: any
# resampling happens inside the pipeline, so that it sees training folds
# only. See :ref:`pipeline` in the user guide.
