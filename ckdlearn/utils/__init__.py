"""Helpers shared by the library and its command-line app.

* :mod:`ckdlearn.utils.files` writes outputs safely: atomically, and never
  over an existing file unless asked;
* :func:`library_versions` names the software behind a model file or a
  report;
* ``ckdlearn.utils._param_validation`` is the one place that imports
  scikit-learn's private parameter validators, so that a change in
  scikit-learn is fixed in one file (imbalanced-learn keeps
  ``imblearn.utils._param_validation`` for the same reason).
"""

from .._version import library_versions

__all__ = ["library_versions"]
