"""Deprecated: the HTML report moved to :mod:`ckdlearn.app.html_report`.

This path still imports, with a ``FutureWarning``, and will be removed in
a future release.
"""

from .app.html_report import Report, figure_png, prepare_output_path  # noqa: F401
from .utils.deprecation import warn_moved

__all__ = ["Report", "figure_png", "prepare_output_path"]

warn_moved("ckdlearn.report", "ckdlearn.app.html_report")
