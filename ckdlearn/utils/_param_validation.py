"""scikit-learn's parameter validators, imported in one place.

``sklearn.utils._param_validation`` is private to scikit-learn, yet it is
how scikit-learn-compatible libraries state their parameter constraints
(imbalanced-learn re-exports it from ``imblearn.utils._param_validation``
for the same reason). Every ckdlearn module imports the validators from
here, so a rename or move in scikit-learn is fixed in this file alone.
"""

import inspect

from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    Options,
    StrOptions,
    validate_parameter_constraints,
    validate_params,
)

#: The file of ``validate_params``' wrapper, a frame that warnings skip
#: on their way to the user's line (:mod:`ckdlearn.utils._stack`).
WRAPPER_FILE = inspect.getsourcefile(validate_params)

__all__ = [
    "WRAPPER_FILE",
    "HasMethods",
    "Interval",
    "Options",
    "StrOptions",
    "validate_parameter_constraints",
    "validate_params",
]
