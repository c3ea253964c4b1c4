"""Checkpointed training that resumes only the run it interrupted.

:func:`train` fits the default pipeline and saves it. After every epoch
the network, optimizer and history go to ``<model>.checkpoint/`` together
with the run's settings, so an interrupted run continues with
``resume=True`` - and only with the same settings and data. An existing
checkpoint is work: it is never replaced unless asked (``overwrite=True``).
"""

import json
import time
from pathlib import Path

import numpy as np

from ..utils.deprecation import renamed_keyword
from ..utils.files import check_outputs, write_files
from .inputs import load_labelled
from .progress import EpochProgress, silent
from .recipe import adapt_smote_neighbours, build_pipeline, final_classifier

__all__ = ["check_training_outputs", "train", "train_folder"]

SETTINGS_FILE = "settings.json"
# What skorch's Checkpoint writes (with f_criterion=None), and the settings:
# the only files a finished or restarted run removes from the folder.
_CHECKPOINT_FILES = ("params.pt", "optimizer.pt", "history.json", SETTINGS_FILE)


def _checkpoint_folder(model_path):
    return Path(f"{model_path}.checkpoint")


@renamed_keyword("force", "overwrite")
def check_training_outputs(model_path, settings, *, resume=False, overwrite=False):
    """Check, before any work, that a run can start (or resume) and save.

    Returns the epochs the checkpoint already holds (0 unless resuming).
    Raises FileExistsError if the model file exists (without ``overwrite``)
    or an unfinished run is in the way (without ``resume`` or ``overwrite``);
    FileNotFoundError if ``resume`` finds no checkpoint; ValueError if it
    finds one of other ``settings`` (only the names given are compared).
    """
    check_outputs([model_path], overwrite=overwrite)
    folder = _checkpoint_folder(model_path)
    history = folder / "history.json"
    if not resume:
        if history.exists() and not overwrite:
            raise FileExistsError(
                f"{folder} holds an unfinished training run; continue it with "
                "resume=True, or start over with overwrite=True."
            )
        return 0
    if not history.exists():
        why = (f"the run in {folder} stopped before its first epoch ended"
               if (folder / SETTINGS_FILE).exists() else f"no checkpoint at {folder}")
        raise FileNotFoundError(f"Nothing to resume: {why}. Run without resume=True.")
    stored = json.loads((folder / SETTINGS_FILE).read_text()) if (folder / SETTINGS_FILE).exists() else {}
    changed = [
        f"{name} {stored.get(name)!r} (now {value!r})"
        for name, value in settings.items() if stored.get(name) != value
    ]
    if changed:
        raise ValueError(
            f"Cannot resume {folder}: it holds a run with other settings: "
            + ", ".join(changed)
            + ". Resume with the same settings, or start over with overwrite=True."
        )
    return len(json.loads(history.read_text()))


def _remove_checkpoint(folder):
    for name in _CHECKPOINT_FILES:
        (folder / name).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass  # missing, or holding files that are not ckdlearn's


@renamed_keyword("force", "overwrite")
def train(
    dataset, model_path, *, method="smote", max_epochs=20, lr=1e-3, batch_size=32, width=16,
    random_state=0, validation=None, resume=False, overwrite=False, progress=silent, extra_callbacks=(),
):
    """Fit the default pipeline on a labelled dataset and save it.

    Training checkpoints after every epoch into ``<model_path>.checkpoint``
    with the run's settings (those below, the image size, the classes and
    the number of images); ``resume=True`` continues an interrupted run to
    the same final epoch count, and refuses other settings. The checkpoint
    is removed once the model file is written.

    Parameters
    ----------
    dataset : Bunch
        From :func:`ckdlearn.datasets.load_ct_kidney`.
    model_path : str or Path
        Where the model file goes (must not exist unless ``overwrite``).
    method, max_epochs, lr, batch_size, width, random_state
        See :func:`~ckdlearn.app.build_pipeline`.
    validation : float, int or None, default=None
        Scan series (the dataset's ``groups``) held out, before SMOTE, to
        stop early, restore the best epoch and calibrate on; see
        :class:`~ckdlearn.CKDNetClassifier`. Early stopping that ends the
        run before ``max_epochs`` is a finished run. A resumed run
        counts its patience afresh.
    resume : bool, default=False
        Continue from the checkpoint folder.
    overwrite : bool, default=False
        Replace an existing model file; without ``resume``, also start
        over when an unfinished run's checkpoint exists.
    progress : callable
        Receives progress messages.
    extra_callbacks : sequence of skorch callbacks
        Added to the network's callbacks (tests use this to stop early).

    Returns
    -------
    estimator : fitted pipeline or CKDNetClassifier

    Raises
    ------
    ValueError
        If training diverged (the loss stopped being finite): no model is
        written and a fresh run's checkpoint is removed.
    KeyboardInterrupt, RuntimeError
        When interrupted, or stopped early by a callback; the checkpoint
        is kept for ``resume``.
    """
    from skorch.callbacks import Checkpoint, LoadInitState

    from ..persistence import save as save_model

    run = dict(method=method, lr=lr, batch_size=batch_size, width=width, random_state=random_state,
               validation=validation)
    settings = dict(
        run, max_epochs=max_epochs, image_size=int(dataset.images.shape[-1]),
        classes=[str(name) for name in dataset.target_names], n_images=int(len(dataset.data)),
    )
    done = check_training_outputs(model_path, settings, resume=resume, overwrite=overwrite)
    folder = _checkpoint_folder(model_path)
    if resume:
        progress(f"resuming after epoch {done} of {max_epochs}")
    else:
        _remove_checkpoint(folder)
    if done >= max_epochs:
        raise ValueError(
            f"The checkpoint in {folder} already holds all {done} epochs but no model "
            f"was saved from it; start over with overwrite=True."
        )
    write_files(folder, {SETTINGS_FILE: json.dumps(settings, indent=1).encode()}, overwrite=True)
    checkpoint = Checkpoint(monitor=None, dirname=str(folder), f_criterion=None, load_best=False)
    # Progress after the checkpoint: an epoch reported is an epoch saved.
    callbacks = [("checkpoint", checkpoint), ("progress", EpochProgress()), *extra_callbacks]
    if resume:
        callbacks.append(("resume", LoadInitState(checkpoint)))
    estimator = build_pipeline(**run, max_epochs=max_epochs - done, callbacks=callbacks)
    # The cosine schedule spans the whole run, also when resumed.
    final_classifier(estimator).set_params(callbacks__lr_scheduler__T_max=max_epochs)
    X, y = dataset.data, dataset.target_names[dataset.target]
    adapt_smote_neighbours(estimator, y, progress)
    # With validation, ckdlearn's pipeline holds whole series out before SMOTE.
    groups = None if validation is None else dataset.groups
    try:
        estimator.fit(X, y, groups=groups)
    except ValueError:
        if not resume:  # a diverged fresh run leaves nothing worth resuming
            _remove_checkpoint(folder)
        raise
    except BaseException:  # interrupted, however the interrupt is raised
        if (folder / "history.json").exists():
            progress(f"the checkpoint in {folder} is kept: run again with resume=True to continue.")
        else:  # stopped within the first epoch: only the settings, nothing to resume
            _remove_checkpoint(folder)
            progress("stopped before the first epoch ended: no checkpoint to resume.")
        raise
    trained = len(final_classifier(estimator).history_)
    if trained < max_epochs and not _stopped_early(final_classifier(estimator)):
        raise RuntimeError(
            f"Training stopped after epoch {trained} of {max_epochs}; the "
            f"checkpoint in {folder} is kept. Run again with resume=True."
        )
    if validation is not None:
        progress(_validation_summary(final_classifier(estimator), dataset.groups))
    # The model file carries the configured epochs, not the resumed remainder.
    final_classifier(estimator).set_params(max_epochs=max_epochs, callbacks=None, verbose=0)
    Path(model_path).parent.mkdir(parents=True, exist_ok=True)
    save_model(estimator, model_path, overwrite=overwrite)
    _remove_checkpoint(folder)
    return estimator


def _validation_summary(classifier, groups):
    """One line: the series held out, the epoch kept, the temperature fitted."""
    held_out = np.isin(groups, classifier.validation_groups_)
    losses = [row.get("valid_loss", np.inf) for row in classifier.history_]
    best = int(np.argmin(losses))
    text = (f"validated on {len(classifier.validation_groups_)} of {len(np.unique(groups))} scan series "
            f"({int(held_out.sum())} slices), held out before SMOTE; kept epoch {best + 1} "
            f"(valid loss {losses[best]:.3f})")
    temperature = getattr(classifier, "temperature_", None)
    return text + (f"; temperature {float(temperature):.2f}" if temperature is not None else "")


def _stopped_early(classifier):
    """Whether the validation series' early stopping ended the run."""
    stopper = dict(classifier.callbacks_).get("early_stopping")
    return bool(getattr(stopper, "active_", False)) and stopper.patience is not None and (
        stopper.misses_ >= stopper.patience
    )


@renamed_keyword("force", "overwrite")
def train_folder(data, model_path, *, image_size=96, on_error="raise", progress=silent,
                 input_domain="raw", groups=None, **params):
    """Check the outputs, then load a labelled folder and :func:`train` on it.

    ``params`` are :func:`train`'s keyword arguments; the model file and a
    resumed run's settings are checked before any image is read. ``groups``
    is a CSV of ``filename,group`` rows
    (:func:`~ckdlearn.app.inputs.read_groups_file`) naming the scan groups
    that ``validation`` holds out, instead of the ones the loader finds.
    """
    run = {name: value for name, value in params.items()
           if name not in ("resume", "overwrite", "extra_callbacks")}
    check_training_outputs(
        model_path, {"image_size": image_size, **run},
        resume=params.get("resume", False), overwrite=params.get("overwrite", False),
    )
    # The default recipe works in the "clahe" domain (the network's default).
    dataset = load_labelled(data, image_size, on_error, progress, groups, input_domain=input_domain)
    started = time.perf_counter()
    estimator = train(dataset, model_path, progress=progress, **params)
    progress(f"trained in {time.perf_counter() - started:.0f} s")
    return estimator
