"""Deprecated: the command line's workflows moved to :mod:`ckdlearn.app`.

``ckdlearn.workflows`` and its modules still import (``pipeline`` is now
:mod:`ckdlearn.app.recipe`, ``files`` is :mod:`ckdlearn.app.image_files`,
the others kept their names), with a ``FutureWarning``; they will be
removed in a future release.
"""

from ..app import __all__  # noqa: F401  (the same public names)
from ..app import __getattr__  # noqa: F401  (resolved on first use, as there)
from ..utils.deprecation import alias_submodules, warn_moved

warn_moved("ckdlearn.workflows", "ckdlearn.app")
alias_submodules(__name__, "ckdlearn.app", {
    "audit": "audit", "demo": "demo", "files": "image_files", "inputs": "inputs",
    "pipeline": "recipe", "progress": "progress", "reporting": "reporting",
    "scoring": "scoring", "training": "training",
})
