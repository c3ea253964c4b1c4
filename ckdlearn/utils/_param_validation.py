"""scikit-learn's parameter validators, imported in one place.

``sklearn.utils._param_validation`` is private to scikit-learn, yet it is
how scikit-learn-compatible libraries state their parameter constraints
(imbalanced-learn re-exports it from ``imblearn.utils._param_validation``
for the same reason). Every ckdlearn module imports the validators from
here, so a rename or move in scikit-learn is fixed in this file alone.
"""

from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    Options,
    StrOptions,
    validate_parameter_constraints,
    validate_params,
)

__all__ = [
    "HasMethods",
    "Interval",
    "Options",
    "StrOptions",
    "validate_parameter_constraints",
    "validate_params",
]
