"""
=====================================================
Sanity checks: do the heatmaps depend on the network?
=====================================================

A heatmap that explains a prediction must change when what the network
learned is destroyed. Adebayo et al. (NeurIPS 2018, "Sanity checks for
saliency maps") found that some saliency methods barely change when the
weights are re-initialised: their maps show the image (its edges, its
bright spots), not the model. :func:`ckdlearn.explanation.randomisation_test` runs
their two checks for any CAM method of :data:`ckdlearn.explanation.CAM_METHODS`:

* **cascading model-parameter randomisation**: on a copy of the network,
  re-initialise the classifier head, then each block below it in turn;
* **label randomisation**: train a clone of the estimator on permuted
  labels.

Each randomised map is compared with the trained map of the same slice by
Spearman's rank correlation: a method passes when it drops towards zero.

.. rst-class:: attribution

CT slices: CT KIDNEY DATASET (Normal-Cyst-Tumor-Stone), Islam M. N. et al.,
*Scientific Reports* 12:11440 (2022), CC BY 4.0.
"""

# %%
# A small network and held-out slices
# -----------------------------------
#
# As in the other examples, a small network on the shipped sample, tested
# on scan series it has not seen. Its accuracy on those series is poor
# (tiny model, tiny sample); the sanity check asks a different question:
# whether each method's maps depend on the weights it learned at all.
import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from ckdlearn import CKDNetClassifier
from ckdlearn.explanation import randomisation_test
from ckdlearn.datasets import load_ct_kidney_sample

ATTRIBUTION = "CT KIDNEY DATASET, Islam et al. 2022, CC BY 4.0"

dataset = load_ct_kidney_sample()
X, y, groups = dataset.data, dataset.target_names[dataset.target], dataset.groups
train, test = next(StratifiedGroupKFold(4, shuffle=True, random_state=0).split(X, y, groups))

clf = CKDNetClassifier(max_epochs=6, lr=3e-3, batch_size=64, module__width=8,
                       module__depth=3, class_weight="balanced", random_state=0)
clf.fit(X[train], y[train])
explained = np.random.RandomState(0).choice(test, size=16, replace=False)

# %%
# Cascading randomisation
# -----------------------
#
# The stages are the network's top-level parameterised parts, top first:
# the linear head, then the convolution blocks. Each stage keeps the
# stages before it randomised.
methods = ["gradcam", "gradcam++", "layercam", "eigencam", "fullgrad", "scorecam"]
cascade = randomisation_test(clf, X[explained], methods=methods, random_state=0)
print("stages:", cascade.stages)
for method in methods:
    rho = cascade.spearman[method].mean(axis=1)
    print(f"{method:<10s}" + "  ".join(f"{value:+.2f}" for value in rho))

# %%
# EigenCAM is the first principal component of the layer's activations: it
# never looks at the classifier, so re-initialising the head leaves its
# maps exactly as they were (rank correlation 1). That is the failure
# Adebayo et al. describe: the map cannot explain a decision the head
# makes. Grad-CAM weighs the same activations by the head's gradients and
# changes at once.
#
# Label randomisation
# -------------------
#
# The clone trains with the classifier's own settings on the same slices,
# with the labels shuffled; it can only memorise.
labels = randomisation_test(clf, X[explained], test="labels", methods=methods,
                            X_train=X[train], y_train=y[train], random_state=0)
print(f"clone's accuracy on its shuffled training labels: {labels.train_accuracy:.2f}")
for method in methods:
    print(f"{method:<10s}{labels.spearman[method].mean():+.2f}")

# %%
# Both tests in one figure
# ------------------------
#
# Top: the mean rank correlation with the trained map after each stage
# (the band is the interquartile range over the 16 slices). Below: one
# slice, its trained map and its map after each stage.
from ckdlearn.plotting import plot_randomisation_test

figure = plot_randomisation_test([cascade, labels], methods=methods, image_index=0)
figure.text(0.5, 0.002, ATTRIBUTION, ha="center", fontsize=7, color="0.4")

# %%
# How to read it
# --------------
#
# A high correlation after randomisation does not make a map wrong about
# anatomy; it says the map would look much the same for a network that
# learned nothing, so it cannot be evidence of what *this* network
# learned. Random convolutions still respond to the bright spine and the
# body outline of a CT slice, so no method drops all the way to zero at
# the lower stages. Measured on the full dataset with grouped
# cross-validation, the user guide's table says which methods pass
# (``benchmarks/sanity_checks.py``).
