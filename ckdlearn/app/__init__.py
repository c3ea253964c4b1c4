"""The ``ckdlearn`` command-line application, in one room beside the library.

It imports the library and is never imported by it. One module per idea:

* :mod:`~ckdlearn.app.cli` parses the arguments and prints (the
  ``ckdlearn`` command's entry point is :func:`ckdlearn.app.cli.main`);
* :mod:`~ckdlearn.app.recipe` builds the default classifier with
  :func:`ckdlearn.pipeline.make_pipeline`;
* :mod:`~ckdlearn.app.inputs` reads folders, model files and images;
* :mod:`~ckdlearn.app.progress` reports training on stderr;
* :mod:`~ckdlearn.app.training` trains with checkpoints;
* :mod:`~ckdlearn.app.image_files` predicts and explains image files;
* :mod:`~ckdlearn.app.scoring` scores a model beside trivial baselines;
* :mod:`~ckdlearn.app.reporting` says what the evaluation report shows,
  and :mod:`~ckdlearn.app.html_report` writes it as one HTML folder;
* :mod:`~ckdlearn.app.audit` compares splits for leakage;
* :mod:`~ckdlearn.app.demo` runs the demo.

The workflows return results or write named outputs (checked before any
work, through :mod:`ckdlearn.utils.files`) and print nothing: an optional
``progress`` callable receives messages. Names are imported on first use,
so that ``ckdlearn --help`` does not load torch. Until December 2026 these
modules were :mod:`ckdlearn.workflows`, ``ckdlearn.cli`` and
``ckdlearn.report``; those paths still import, with a ``FutureWarning``.
"""

from importlib import import_module

_NAMES = {
    "recipe": ("METHODS", "adapt_smote_neighbours", "build_pipeline", "final_classifier"),
    "inputs": ("as_model", "check_groups_file", "find_image_files", "load_labelled", "read_for_model",
               "read_groups_file"),
    "progress": ("EpochProgress", "silent"),
    "training": ("check_training_outputs", "train", "train_folder"),
    "image_files": ("explain_images", "predict_files"),
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
