"""What the ``ckdlearn`` commands do, as plain functions: one module per idea.

``pipeline`` builds the default classifier, ``inputs`` reads folders, model
files and images, ``progress`` reports training on stderr, ``training``
trains with checkpoints, ``files`` predicts and explains image files,
``scoring`` scores a model beside trivial baselines, ``reporting`` writes
the HTML report, ``audit`` compares splits for leakage, ``demo`` runs the
demo. Functions return results or write named outputs (checked before any
work, through :mod:`ckdlearn._files`) and print nothing: an optional
``progress`` callable receives messages. Names are imported on first use,
so that ``ckdlearn --help`` does not load torch.
"""

from importlib import import_module

_NAMES = {
    "pipeline": ("METHODS", "adapt_smote_neighbours", "build_pipeline", "final_classifier"),
    "inputs": ("as_model", "find_image_files", "load_labelled", "read_for_model", "read_groups_file"),
    "progress": ("EpochProgress", "silent"),
    "training": ("check_training_outputs", "train", "train_folder"),
    "files": ("explain_images", "predict_files"),
    "scoring": ("baseline_predictions", "evaluate_model", "label_scores"),
    "reporting": ("ATTRIBUTION", "REPORT_FILES", "describe_sanity_check", "describe_verdict",
                  "evaluation_report", "report_evaluation"),
    "audit": ("audit_folder",),
    "demo": ("run_demo",),
}

__all__ = sorted(name for names in _NAMES.values() for name in names)


def __getattr__(name):
    for module, names in _NAMES.items():
        if name in names:
            return getattr(import_module(f"{__name__}.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
