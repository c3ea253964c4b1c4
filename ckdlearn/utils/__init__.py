"""Private helpers shared across ckdlearn.

:mod:`ckdlearn.utils._param_validation` is the one place that imports
scikit-learn's private parameter validators, so that a change in
scikit-learn is fixed in one file (imbalanced-learn keeps
``imblearn.utils._param_validation`` for the same reason).
"""
