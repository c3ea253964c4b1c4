"""
=========================================================
Scan-level answers, and knowing when not to answer
=========================================================

A clinician reads a scan, not a slice, and would rather hear "I don't
know" than a confident wrong answer on a scan unlike any the model has
seen. This example

* holds whole scan series out *inside* ``fit`` (for early stopping and
  temperature calibration), before SMOTE resamples, with
  :func:`ckdlearn.pipeline.make_pipeline`;
* combines the slices of each held-out scan into one answer
  (:meth:`~ckdlearn.CKDNetClassifier.predict_series`);
* scores how unsure each answer is and draws what declining the least
  certain ones buys (:func:`~ckdlearn.metrics.risk_coverage_curve`).

It runs on the small sample shipped with ckdlearn (at most 10 slices of
each of 81 scan series, at 64 px), so every number below comes from a few
dozen unseen scans and moves by tenths between seeds; ``benchmarks/trust.py`` measures the same
on all 81 series of the full dataset.

.. rst-class:: attribution

CT slices: CT KIDNEY DATASET (Normal-Cyst-Tumor-Stone), Islam M. N. et al.,
*Scientific Reports* 12:11440 (2022), CC BY 4.0.
"""

# %%
# Validation by scan series inside the pipeline
# ---------------------------------------------
#
# ``validation=0.25`` holds out a quarter of the training series in every
# fit. ckdlearn's ``make_pipeline`` removes them *before* SMOTE, so no
# synthetic image made from a validation slice is trained on; they decide
# when to stop and fit a temperature that makes the probabilities honest.
import numpy as np
from imblearn.over_sampling import SMOTE
from sklearn.model_selection import StratifiedGroupKFold

from ckdlearn import CKDNetClassifier
from ckdlearn.datasets import load_ct_kidney_sample
from ckdlearn.model_selection import evaluate
from ckdlearn.pipeline import make_pipeline


dataset = load_ct_kidney_sample()
X, y, groups = dataset.data, dataset.target_names[dataset.target], dataset.groups

pipe = make_pipeline(
    SMOTE(random_state=0),
    CKDNetClassifier(max_epochs=10, lr=3e-3, batch_size=64, module__width=8, module__depth=3,
                     validation=0.25, early_stopping=4, random_state=0),
)
cv = StratifiedGroupKFold(3, shuffle=True, random_state=0)
result = evaluate(pipe, X, y, groups=groups, cv=cv, return_estimator=True, audit=False)
print(result)
print("temperatures:", [round(float(model[-1].temperature_), 2) for model in result.estimators])

# %%
# Slices and scans
# ----------------
#
# Each held-out scan gets one answer: the mean of its slices'
# log-probabilities. With eight test scans per fold the series-level
# figures are coarse (one scan is 1/24 of the accuracy). A scan answer is
# usually at least as good as its slices' (neighbouring slices are not
# independent evidence, but a few odd slices no longer decide), and
# where a whole scan is unfamiliar, every slice is wrong the same way and
# the scan answer is too: that is what the uncertainty below is for.
print(f"slice macro-F1 {result.pooled_scores['macro_f1']:.2f}, "
      f"scan macro-F1 {result.series.scores['macro_f1']:.2f} "
      f"({len(result.series.ids)} scans)")

# %%
# Declining the least certain answers
# -----------------------------------
#
# The uncertainty of a slice is the entropy of its probabilities; of a
# scan, the entropy of its combined probabilities. Sorting by it and
# answering only the surest share gives the risk-coverage curve: a useful
# score keeps accuracy rising as coverage falls (AUROC above 0.5 means it
# ranks wrong answers as less certain than right ones).
from ckdlearn.plotting import plot_risk_coverage

figure = plot_risk_coverage({"slices": result.selective, "scans": result.series.selective})
print(f"slices answered at 80% coverage: accuracy {result.selective.accuracy_at_80:.2f} "
      f"(all: {result.pooled_scores['accuracy']:.2f})")

# %%
# One scan, one answer
# --------------------
#
# ``predict_series`` gives the answer, its probabilities and uncertainty for
# each scan in a batch of slices; here, the first fold's held-out scans.
(_, test), model = result.splits[0], result.estimators[0]
answers = model[-1].predict_series(X[test], groups[test])
for scan, label, unsure, n in zip(answers.series, answers.label, answers.uncertainty,
                                  answers.n_slices):
    truth = y[test][groups[test] == scan][0]
    print(f"scan {scan:3d}: {n:3d} slices -> {label:6s} (true {truth:6s}), "
          f"uncertainty {unsure:.2f}")
