"""The training recipes that benchmarks/accuracy_folds.py screens and
tools/train_reference.py trains, written once so both build the same model.

A recipe is how to load the data (``load``: keyword arguments of
``load_ct_kidney``) and which pipeline to fit (``build``). ``default`` is
exactly what ``ckdlearn train`` fits.
"""

from pathlib import Path

from imblearn.over_sampling import SMOTE
from imblearn.pipeline import make_pipeline

from ckdlearn import CKDNetClassifier
from ckdlearn.datasets import local_data_folder
from ckdlearn.datasets._local import not_found_message

REPO = Path(__file__).resolve().parents[1]


def data_root(name):
    """``name`` under $CKDLEARN_DATA, or under ../shared/data beside the checkout."""
    default = REPO.parent / "shared" / "data"
    folder = local_data_folder(name, default=default)
    if folder is None:
        raise SystemExit(not_found_message(name, default=default))
    return folder


def _default(seed, **classifier):
    return make_pipeline(SMOTE(random_state=seed),
                         CKDNetClassifier(random_state=seed, verbose=1, **classifier))


RECIPES = {
    "default": {
        "describe": "load_ct_kidney(image_size=96) + make_pipeline(SMOTE(), CKDNetClassifier())",
        "load": {"image_size": 96},
        "build": lambda seed: _default(seed),
    },
}


def build_recipe(name, *, seed=0):
    """The unfitted pipeline of recipe ``name``, seeded."""
    return RECIPES[name]["build"](seed)
