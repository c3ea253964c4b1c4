"""
===================================================
Calibration: can the model's confidence be trusted?
===================================================

A classifier that says "Stone, 95%" should be right about 95 times in 100
when it says so. Networks trained on small data tend to be overconfident,
most of all on scans unlike those they were trained on. This example
measures calibration on held-out scan series with
:func:`~ckdlearn.metrics.expected_calibration_error`, draws reliability
diagrams, and recalibrates the network with temperature scaling, fitted
on a third set of scan series.

.. rst-class:: attribution

CT slices: CT KIDNEY DATASET (Normal-Cyst-Tumor-Stone), Islam M. N. et al.,
*Scientific Reports* 12:11440 (2022), CC BY 4.0.
"""

# %%
# Three sets of scan series
# -------------------------
#
# Training, calibration and test slices come from different scan series:
# calibrating on the training slices would learn how confident the model
# is on images it has seen, which is not the question.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from ckdlearn.datasets import load_ct_kidney_sample


dataset = load_ct_kidney_sample()
X, y, groups = dataset.data, dataset.target_names[dataset.target], dataset.groups

# Four folds of whole series; the one holding the most series is the test
# set (the more series, the less its scores depend on one scan), the next
# one calibrates, and the other two train.
folds = [test for _, test in StratifiedGroupKFold(4, shuffle=True, random_state=0).split(X, y, groups)]
folds.sort(key=lambda fold: len(np.unique(groups[fold])), reverse=True)
test, calibration, train = folds[0], folds[1], np.concatenate(folds[2:])
for name, part in [("train", train), ("calibration", calibration), ("test", test)]:
    print(f"{name:<12s}{len(part):4d} slices, {len(np.unique(groups[part]))} series")

# %%
# Train a SMOTE + CNN pipeline
# ----------------------------
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import make_pipeline

from ckdlearn import CKDNetClassifier

pipe = make_pipeline(
    SMOTE(random_state=0),
    CKDNetClassifier(max_epochs=6, lr=3e-3, batch_size=64, module__width=8,
                     module__depth=3, random_state=0),
)
pipe.fit(X[train], y[train])

# %%
# Calibration on unseen series
# ----------------------------
#
# The reliability diagram bins the test predictions by confidence (their
# largest class probability) and compares each bin's accuracy with its mean
# confidence. Bars below the diagonal are overconfidence. The expected
# calibration error (ECE) is the average gap, weighted by the number of
# predictions in each bin. With few test slices the bins are noisy; the
# histogram below the diagram shows how many predictions each bin holds.
from ckdlearn.metrics import expected_calibration_error
from ckdlearn.plotting import plot_reliability_diagram

proba = pipe.predict_proba(X[test])
labels = pipe.classes_
print(f"accuracy {np.mean(labels[proba.argmax(1)] == y[test]):.2f}, "
      f"mean confidence {proba.max(1).mean():.2f}, "
      f"ECE {expected_calibration_error(y[test], proba, labels=labels, n_bins=10):.3f}")
plot_reliability_diagram(y[test], proba, labels=labels, n_bins=10,
                         title="Before recalibration")

# %%
# Temperature scaling
# -------------------
#
# Temperature scaling divides the network's logits by one number, fitted
# on the calibration series to minimise the log loss. It changes the
# confidence, never the predicted class. scikit-learn's
# :class:`~sklearn.calibration.CalibratedClassifierCV` does it for any
# fitted classifier wrapped in :class:`~sklearn.frozen.FrozenEstimator`.
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import KFold

# The frozen pipeline is never refitted, so the folds only organise its
# predictions on the calibration slices; plain KFold avoids stratification
# warnings about classes with few calibration slices.
calibrated = CalibratedClassifierCV(FrozenEstimator(pipe), method="temperature",
                                    cv=KFold(n_splits=2))
calibrated.fit(X[calibration], y[calibration])
calibrated_proba = calibrated.predict_proba(X[test])

print(f"mean confidence {calibrated_proba.max(1).mean():.2f}, ECE "
      f"{expected_calibration_error(y[test], calibrated_proba, labels=calibrated.classes_, n_bins=10):.3f}")
print("same predictions:",
      np.array_equal(proba.argmax(1), calibrated_proba.argmax(1)))

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
plot_reliability_diagram(y[test], proba, labels=labels, n_bins=10, ax=axes[0],
                         title="Before")
plot_reliability_diagram(y[test], calibrated_proba, labels=calibrated.classes_,
                         n_bins=10, ax=axes[1], title="After temperature scaling")
fig.tight_layout()

# %%
# Temperature scaling fixes *how* confident the model is, on average, on
# series like the calibration ones. It cannot make a model that has not
# learned to generalise across scans accurate, and with a few hundred
# slices from a handful of series, the estimate of the ECE itself is
# uncertain: compare models on the same test series and bins.
