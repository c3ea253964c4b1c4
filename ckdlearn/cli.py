"""Deprecated: the command line moved to :mod:`ckdlearn.app.cli`.

The ``ckdlearn`` command now starts at :func:`ckdlearn.app.cli.main`; this
path still imports, with a ``FutureWarning``, and will be removed in a
future release.
"""

import sys

from .app.cli import build_parser, main  # noqa: F401
from .utils.deprecation import warn_moved

__all__ = ["build_parser", "main"]

warn_moved("ckdlearn.cli", "ckdlearn.app.cli")

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
