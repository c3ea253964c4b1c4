"""
=================================================
Are the heatmaps faithful? Measuring explanations
=================================================

A heatmap can look convincing without showing what the network relies on.
:func:`ckdlearn.explanation.faithfulness_scores` tests each map against the
network: it removes the pixels the map ranks most relevant (filling them
in from their neighbours) and measures how much the explained class's
probability drops. This example compares CAM methods with two baselines
every method should beat: a random map, and the map turned upside down.

.. rst-class:: attribution

CT slices: CT KIDNEY DATASET (Normal-Cyst-Tumor-Stone), Islam M. N. et al.,
*Scientific Reports* 12:11440 (2022), CC BY 4.0.
"""

# %%
# A small network and held-out slices
# -----------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from ckdlearn import CKDNetClassifier
from ckdlearn.datasets import load_ct_kidney_sample

ATTRIBUTION = "CT KIDNEY DATASET, Islam et al. 2022, CC BY 4.0"

dataset = load_ct_kidney_sample()
X, y, groups = dataset.data, dataset.target_names[dataset.target], dataset.groups
train, test = next(StratifiedGroupKFold(4, shuffle=True, random_state=0).split(X, y, groups))

clf = CKDNetClassifier(max_epochs=6, lr=3e-3, batch_size=64, module__width=8,
                       module__depth=3, class_weight="balanced", random_state=0)
clf.fit(X[train], y[train])

rng = np.random.RandomState(0)
explained = rng.choice(test, size=min(24, len(test)), replace=False)

# %%
# Scores per method
# -----------------
#
# ``"confidence_drop"``: the predicted class's probability before, minus
# after, removing the 20% of pixels the map ranks highest. Higher is more
# faithful; around zero, the map marks pixels the network does not need.
# The images and class indices go in as the network sees them
# (:meth:`~ckdlearn.CKDNetClassifier.to_images`).
from ckdlearn.explanation import faithfulness_scores

images = clf.to_images(X[explained])
methods = ["gradcam", "hirescam", "layercam", "eigencam"]
heatmaps = {method: clf.explain(X[explained], method=method) for method in methods}
heatmaps["random map"] = rng.rand(*heatmaps["gradcam"].shape).astype(np.float32)
heatmaps["gradcam inverted"] = 1 - heatmaps["gradcam"]

scores = {
    name: faithfulness_scores(clf.module_, images, None, maps, metric="confidence_drop")
    for name, maps in heatmaps.items()
}
for name, values in scores.items():
    print(f"{name:<18s}{values.mean():+.3f} (median {np.median(values):+.3f})")

# %%
names = list(scores)
fig, ax = plt.subplots(figsize=(7, 3.6))
ax.boxplot([scores[name] for name in names], showmeans=True)
ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
ax.axhline(0, color="0.5", lw=0.8, ls="--")
ax.set_ylabel("confidence drop (higher = more faithful)")
ax.set_title(f"Faithfulness of heatmaps on {len(explained)} held-out slices")
fig.tight_layout()

# %%
# ROAD: both orders
# -----------------
#
# Filling in pixels changes an image even where nothing relevant was
# removed. ROAD (Rong et al., 2022) compares removing the *most* relevant
# pixels with removing the *least* relevant ones, at several thresholds,
# which cancels that artefact. With its default four thresholds it costs
# about eight times as much.
road = {
    name: faithfulness_scores(clf.module_, images, None, heatmaps[name], metric="road")
    for name in ["gradcam", "random map"]
}
for name, values in road.items():
    print(f"ROAD {name:<12s}{values.mean():+.3f}")

# %%
# A faithful map and an unfaithful one
# ------------------------------------
#
# The slices where Grad-CAM scored highest and lowest. A low score does not
# make the heatmap wrong about anatomy: it says the network's prediction
# does not depend on the marked pixels.
from ckdlearn.plotting import plot_explanations

order = np.argsort(scores["gradcam"])
picked = np.concatenate([order[-2:][::-1], order[:2]])
titles = [f"{y[explained][k]}: drop {scores['gradcam'][k]:+.2f}" for k in picked]
fig = plot_explanations(dataset.images[explained][picked], heatmaps["gradcam"][picked],
                        titles=titles, ncols=4)
fig.text(0.5, 0.005, ATTRIBUTION, ha="center", fontsize=7, color="0.4")

# %%
# Faithfulness scores compare explanations of *one* network on *one* set of
# images. They are not comparable across models, and a model that is
# wrong can have faithful explanations of its mistakes.
