"""
==============================================
Grad-CAM and its relatives on the four classes
==============================================

Class activation maps explain a CNN's prediction with a heatmap over the
input. ckdlearn offers the methods of pytorch-grad-cam by name
(:data:`ckdlearn.explanation.CAM_METHODS`). They weigh the feature maps of the
same layer differently, and they do not agree. This example trains a small
network and draws several methods side by side on one held-out slice of
each class.

.. rst-class:: attribution

CT slices: CT KIDNEY DATASET (Normal-Cyst-Tumor-Stone), Islam M. N. et al.,
*Scientific Reports* 12:11440 (2022), CC BY 4.0.
"""

# %%
# Train a small network
# ---------------------
#
# Class weights instead of SMOTE, to keep the example short (see the
# SMOTE example for the comparison). The test slices come from scan series
# the network has not seen.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from ckdlearn import CKDNetClassifier
from ckdlearn.datasets import load_ct_kidney_sample

ATTRIBUTION = "CT KIDNEY DATASET, Islam et al. 2022, CC BY 4.0"

dataset = load_ct_kidney_sample()
X, y, groups = dataset.data, dataset.target_names[dataset.target], dataset.groups
train, test = next(StratifiedGroupKFold(4, shuffle=True, random_state=0).split(X, y, groups))

clf = CKDNetClassifier(max_epochs=8, lr=3e-3, batch_size=64, module__width=8,
                       module__depth=3, class_weight="balanced", random_state=0)
clf.fit(X[train], y[train])
print(f"held-out accuracy: {clf.score(X[test], y[test]):.2f}")

# %%
# The test slices come from scan series the network never saw, after eight
# epochs on about 60 small series: an accuracy near 0.6 (against about 0.37
# for always answering the most frequent class) is what to expect here.
# The maps below explain this network, right or wrong: what they compare
# is the methods, on one network.

# %%
# One test slice per class
# ------------------------
#
# We explain the *true* class of each slice (``target=``), so that every
# row answers the same question: "what in this slice speaks for its class,
# according to the network?" With ``target=None`` each map would explain
# the predicted class instead.
rng = np.random.RandomState(1)
shown = np.array([rng.choice(test[y[test] == name]) for name in dataset.target_names])
predicted = clf.predict(X[shown])

methods = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "scorecam"]
heatmaps = {method: clf.explain(X[shown], method=method, target=y[shown]) for method in methods}

# %%
# Side by side
# ------------
from ckdlearn.plotting import overlay_heatmap

fig, axes = plt.subplots(len(shown), len(methods) + 1,
                         figsize=(1.55 * (len(methods) + 1), 1.75 * len(shown)))
for row, index in enumerate(shown):
    axes[row, 0].imshow(dataset.images[index], cmap="gray")
    axes[row, 0].set_ylabel(f"{y[index]}\n(pred {predicted[row]})", fontsize=8)
    for column, method in enumerate(methods, start=1):
        axes[row, column].imshow(overlay_heatmap(dataset.images[index], heatmaps[method][row]))
        if row == 0:
            axes[row, column].set_title(method, fontsize=8)
    axes[0, 0].set_title("slice", fontsize=8)
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.text(0.5, 0.005, ATTRIBUTION, ha="center", fontsize=7, color="0.4")
fig.tight_layout(rect=(0, 0.02, 1, 1))

# %%
# How much do the methods agree?
# ------------------------------
#
# The rank correlation between the maps of two methods, averaged over the
# four slices. Methods built on the same gradients (Grad-CAM, HiResCAM,
# XGrad-CAM) tend to agree; EigenCAM, which ignores the class, and
# Score-CAM, which uses no gradients, differ more.
from scipy.stats import spearmanr

agreement = np.array([
    [np.mean([spearmanr(heatmaps[a][k].ravel(), heatmaps[b][k].ravel())[0]
              for k in range(len(shown))]) for b in methods]
    for a in methods
])
fig, ax = plt.subplots(figsize=(5.2, 4.4))
image = ax.imshow(agreement, vmin=-1, vmax=1, cmap="RdBu_r")
ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right")
ax.set_yticks(range(len(methods)), methods)
for (i, j), value in np.ndenumerate(agreement):
    ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7)
fig.colorbar(image, ax=ax, label="Spearman correlation")
ax.set_title("Agreement between CAM methods")
fig.tight_layout()

# %%
# Which to trust? None by default. Agreement is not correctness: two
# methods can share the same blind spot. The next example measures how
# *faithful* each map is to the network, by removing what it marks, and
# :ref:`sphx_glr_auto_examples_plot_09_sanity_checks.py` whether the maps
# depend on the network's weights at all.
