"""Sphinx configuration of the ckdlearn documentation.

Build (examples executed)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

A quick build that skips running the gallery::

    sphinx-build -W --keep-going -b html -D plot_gallery=0 docs docs/_build/html

Nothing here needs the internet: no intersphinx, no remote images, no
binder or JupyterLite links.
"""

import os
import sys
from pathlib import Path

# Threads must be capped before numpy or torch is first imported: the
# examples run on small shared CI machines.
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "2")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "sphinxext"))

import ckdlearn  # noqa: E402

# -- Project -----------------------------------------------------------------

project = "ckdlearn"
author = "The ckdlearn developers"
copyright = "The ckdlearn developers"
release = ckdlearn.__version__
version = ".".join(release.split(".")[:2])

# -- General -----------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "viewcode_links",  # docs/sphinxext: mends viewcode links that Sphinx 9 leaves dead
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "sphinxext"]
root_doc = "index"
default_role = "literal"
pygments_style = "sphinx"
# References to NumPy, scikit-learn, torch... objects render as code but
# are not resolved: the build must not download intersphinx inventories.
nitpicky = False

# -- autodoc / autosummary / numpydoc -----------------------------------------

autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
autodoc_member_order = "groupwise"
add_module_names = False

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False
# Validation is run separately (``python -m numpydoc lint``); a build
# warning here would turn -W into a style checker.
numpydoc_validation_checks = set()

# Members of ckdlearn's classes that come from other libraries (skorch's
# NeuralNet, torch's LRScheduler callback, scikit-learn's mixins) are not
# part of ckdlearn's documented API; their docstrings are not numpydoc, or
# refer to labels of other projects' docs, and would break a -W build.


def _defining_module(obj):
    target = obj.fget if isinstance(obj, property) else obj
    target = getattr(target, "__func__", target)
    return getattr(target, "__module__", None) or ""


_MEMBER_TYPES = {"class", "exception", "method", "property", "attribute"}


def skip_foreign_members(app, what, name, obj, skip, options):
    """Document a class's own members, and only those with a docstring.

    autodoc calls this with ``what`` the type of the class, autosummary
    (listing a class's methods) with the type of the member. Members
    without a docstring are skorch extension points that ckdlearn
    overrides (``initialize_module``, ``infer``...) or properties already
    described in the class's Attributes section. Returning None keeps
    the default decision.
    """
    if what not in _MEMBER_TYPES or skip:
        return None
    if name == "__init__":
        return True  # the class docstring documents the parameters
    if name.startswith("_"):
        return None
    if not _defining_module(obj).startswith("ckdlearn"):
        return True
    target = obj.fget if isinstance(obj, property) else obj
    if not (getattr(target, "__doc__", None) or "").strip():
        return True
    return None


# -- HTML --------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"ckdlearn {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False
html_theme_options = {
    "logo": {"text": "ckdlearn"},
    "navbar_align": "left",
    "header_links_before_dropdown": 6,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc", "sg_download_links", "sg_launcher_links"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_sidebars = {
    "install": [],
    "whats_new": [],
}
html_context = {"default_mode": "light"}

# -- sphinx-gallery ------------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": "/plot_",
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "reset_modules": ("matplotlib", "gallery_setup.reset_torch"),
    "reset_modules_order": "before",
    "remove_config_comments": True,
    "doc_module": ("ckdlearn",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"ckdlearn": None},
    "show_memory": False,
    "min_reported_time": 1,
    "write_computation_times": True,
    "capture_repr": ("_repr_html_", "__repr__"),
    # A cell ending in a plotting call shows the figure, not its repr.
    "ignore_repr_types": r"matplotlib\.(text|axes|figure|image|lines|collections|container)",
    "matplotlib_animations": False,
    "download_all_examples": False,
}


def setup(app):
    app.connect("autodoc-skip-member", skip_foreign_members)
