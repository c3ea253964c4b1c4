"""The ``ckdlearn`` command.

Sub-commands: ``demo``, ``train``, ``evaluate``, ``predict``, ``explain``,
``audit`` and ``reproduce-paper``. Each prints progress to stderr and
results to stdout, never overwrites an output without ``--force``, and
reports bad input as one line on stderr with exit status 1 (``--debug``
shows the traceback). Usage errors exit with status 2, as argparse does.
"""

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _progress(message):
    print(message, file=sys.stderr, flush=True)


def _limit_threads(args):
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


# --- commands -------------------------------------------------------------------


def cmd_demo(args):
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    from .datasets import load_ct_kidney_sample
    from .persistence import save
    from .report import prepare_output_path
    from .workflows import build_pipeline, report_evaluation

    out = prepare_output_path(args.out, force=args.force)
    started = time.perf_counter()
    dataset = load_ct_kidney_sample(image_size=64)
    _progress(
        f"sample: {len(dataset.data)} real CT slices at 64 px, "
        f"{len(np.unique(dataset.groups))} scan series"
    )
    config = dict(method="smote", max_epochs=args.epochs, lr=1e-3, batch_size=32, width=16, random_state=0)
    pipeline = build_pipeline(**config)
    cv = StratifiedGroupKFold(args.folds, shuffle=True, random_state=0)
    result, report_path = report_evaluation(
        pipeline,
        dataset,
        out,
        cv=cv,
        title="ckdlearn demo: SMOTE + CKDNetClassifier on the shipped CT sample",
        description=(
            "The sample holds 24 scan series, so each fold trains on about 16 and "
            "tests on the rest: the scores below are noisy and far from what the "
            "same recipe reaches on the full dataset (macro-F1 0.51 at 64 px and "
            "0.57 at 96 px with 81 series, benchmarks/ACCURACY.md). The demo shows "
            "the workflow and its checks; train on your own folder with ckdlearn train."
        ),
        config={**config, "image_size": 64, "cv": repr(cv)},
        force=args.force,
        progress=_progress,
    )
    _progress("fitting the final model on all images ...")
    y = np.asarray(dataset.target_names)[dataset.target]
    pipeline.fit(dataset.data, y)
    save(pipeline, out / "model.ckdl")
    _progress(f"done in {time.perf_counter() - started:.0f} s")
    print(f"report: {report_path}")
    print(f"model:  {out / 'model.ckdl'}")
    return 0


def cmd_train(args):
    from .workflows import load_labelled, train

    dataset = load_labelled(args.data, args.image_size, args.on_error, _progress)
    started = time.perf_counter()
    train(
        dataset,
        args.out,
        method=args.method,
        max_epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        width=args.width,
        random_state=args.seed,
        resume=args.resume,
        force=args.force,
        progress=_progress,
    )
    _progress(f"trained in {time.perf_counter() - started:.0f} s")
    print(f"model: {args.out}")
    return 0


def cmd_evaluate(args):
    import numpy as np
    from sklearn.metrics import accuracy_score, classification_report, f1_score

    from .datasets import load_ct_kidney
    from .persistence import load
    from .workflows import final_classifier

    model = load(args.model)
    classifier = final_classifier(model)
    size = classifier.image_shape_[-1]
    classes = [str(c) for c in classifier.classes_]
    _progress(f"loading {args.data} at {size} px (classes {classes}) ...")
    dataset = load_ct_kidney(args.data, image_size=size, classes=classes, on_error=args.on_error)
    y = np.asarray(dataset.target_names)[dataset.target]
    predictions = model.predict(dataset.data)
    scores = {
        "n_images": int(len(y)),
        "accuracy": float(accuracy_score(y, predictions)),
        "macro_f1": float(f1_score(y, predictions, average="macro")),
    }
    if args.format == "json":
        print(json.dumps(scores, indent=2))
    else:
        print(classification_report(y, predictions, digits=3, zero_division=0))
        print(f"accuracy {scores['accuracy']:.3f}   macro-F1 {scores['macro_f1']:.3f}")
    return 0


def cmd_predict(args):
    from .persistence import load
    from .workflows import find_image_files, predict_files

    model = load(args.model)
    rows = predict_files(model, find_image_files(args.inputs), _progress)
    if args.format == "json":
        text = json.dumps(rows, indent=2) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    if args.output:
        from ._files import atomic_write_bytes

        atomic_write_bytes(Path(args.output), text.encode(), overwrite=args.force)
        _progress(f"wrote {len(rows)} predictions to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_explain(args):
    from .persistence import load
    from .workflows import explain_images, find_image_files

    model = load(args.model)
    written = explain_images(
        model,
        find_image_files(args.inputs),
        args.out,
        method=args.method,
        target=args.target,
        force=args.force,
        progress=_progress,
    )
    print(f"wrote {len(written) - 1} overlays and {written[-1]}")
    return 0


def cmd_audit(args):
    import numpy as np
    from sklearn.model_selection import KFold, StratifiedGroupKFold

    from .model_selection import audit_cv
    from .workflows import load_labelled

    dataset = load_labelled(args.data, args.image_size, args.on_error, _progress)
    X, y, groups = dataset.data, dataset.target, dataset.groups
    _progress("auditing splits ...")
    by_series = audit_cv(X, y, groups, cv=StratifiedGroupKFold(args.folds))
    at_random = audit_cv(X, y, cv=KFold(args.folds, shuffle=True, random_state=0))
    summary = {
        "n_images": int(len(X)),
        "n_scan_series": int(len(np.unique(groups))),
        "by_scan_series": [_audit_row(r) for r in by_series],
        "random_slices": [_audit_row(r) for r in at_random],
    }
    if args.format == "json":
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['n_images']} images in {summary['n_scan_series']} inferred scan series")
    for name, reports in (("split by scan series", by_series), ("random slice split", at_random)):
        leaked = [r.leaked_fraction for r in reports]
        print(
            f"{name:>22s}: test images with a duplicate in training per fold "
            + ", ".join(f"{f:.1%}" for f in leaked)
            + f"  (exact {sum(r.n_exact for r in reports)}, near {sum(r.n_near for r in reports)})"
        )
    return 0


def _audit_row(report):
    return {
        "n_train": int(report.n_train),
        "n_test": int(report.n_test),
        "n_exact": int(report.n_exact),
        "n_near": int(report.n_near),
        "leaked_fraction": float(report.leaked_fraction),
    }


def cmd_reproduce_paper(args):
    from .paper import reproduce_paper

    result = reproduce_paper(
        args.data,
        max_epochs=args.epochs,
        n_splits=args.folds,
        default_image_size=args.image_size,
        protocols=args.protocols.split(","),
        random_state=args.seed,
        progress=_progress,
    )
    print(result)
    if args.json:
        from ._files import atomic_write_bytes

        atomic_write_bytes(
            Path(args.json), json.dumps(result.to_dict(), indent=2).encode(), overwrite=args.force
        )
    return 0


# --- parser ---------------------------------------------------------------------


def build_parser():
    """The argument parser of the ``ckdlearn`` command."""
    from . import __version__
    from .cam import CAM_METHODS
    from .workflows import METHODS

    parser = argparse.ArgumentParser(
        prog="ckdlearn",
        description="Explainable CNN classification of kidney CT slices.",
    )
    parser.add_argument("--version", action="version", version=f"ckdlearn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(func=func)
        sub.add_argument("--debug", action="store_true", help="show tracebacks on errors")
        sub.add_argument("--threads", type=int, default=None, help="torch CPU threads")
        return sub

    def force(sub):
        sub.add_argument("--force", action="store_true", help="replace existing outputs")

    def on_error(sub):
        sub.add_argument(
            "--on-error", choices=["raise", "skip"], default="raise",
            help="stop at an unreadable image (raise) or skip it with a warning",
        )

    demo = add("demo", cmd_demo, "Evaluate and fit the default pipeline on the shipped sample; write a report.")
    demo.add_argument("--out", default="ckdlearn-demo", help="report folder (default: ckdlearn-demo)")
    demo.add_argument("--epochs", type=int, default=12, help="training epochs (default: 12)")
    demo.add_argument("--folds", type=int, default=3, help="scan-series folds (default: 3)")
    force(demo)

    train_cmd = add("train", cmd_train, "Train on a labelled folder (CT KIDNEY layout or class folders).")
    train_cmd.add_argument("data", help="dataset folder")
    train_cmd.add_argument("--out", required=True, help="model file to write (.ckdl)")
    train_cmd.add_argument(
        "--image-size", type=int, default=96,
        help="pixels per side (default: 96; generalised better than 64 px to unseen scan series, see benchmarks/ACCURACY.md)",
    )
    train_cmd.add_argument("--epochs", type=int, default=20)
    train_cmd.add_argument("--lr", type=float, default=1e-3)
    train_cmd.add_argument("--batch-size", type=int, default=32)
    train_cmd.add_argument("--width", type=int, default=16, help="channels of the first block")
    train_cmd.add_argument("--method", choices=METHODS, default="smote", help="class imbalance handling")
    train_cmd.add_argument("--seed", type=int, default=0)
    train_cmd.add_argument("--resume", action="store_true", help="continue an interrupted run")
    force(train_cmd)
    on_error(train_cmd)

    evaluate_cmd = add("evaluate", cmd_evaluate, "Score a saved model on a labelled folder.")
    evaluate_cmd.add_argument("model")
    evaluate_cmd.add_argument("data")
    evaluate_cmd.add_argument("--format", choices=["text", "json"], default="text")
    on_error(evaluate_cmd)

    predict_cmd = add("predict", cmd_predict, "Label image files with a saved model.")
    predict_cmd.add_argument("model")
    predict_cmd.add_argument("inputs", nargs="+", metavar="FILES_OR_DIR")
    predict_cmd.add_argument("--format", choices=["csv", "json"], default="csv")
    predict_cmd.add_argument("--output", "-o", help="write to this file instead of stdout")
    force(predict_cmd)

    explain_cmd = add("explain", cmd_explain, "Write Grad-CAM overlays for image files.")
    explain_cmd.add_argument("model")
    explain_cmd.add_argument("inputs", nargs="+", metavar="FILES_OR_DIR")
    explain_cmd.add_argument("--out", required=True, help="output folder")
    explain_cmd.add_argument("--method", choices=sorted(CAM_METHODS), default="gradcam")
    explain_cmd.add_argument("--target", default=None, help="class to explain (default: the prediction)")
    force(explain_cmd)

    audit_cmd = add("audit", cmd_audit, "Audit a labelled folder for duplicate slices across splits.")
    audit_cmd.add_argument("data")
    audit_cmd.add_argument("--image-size", type=int, default=64)
    audit_cmd.add_argument("--folds", type=int, default=5)
    audit_cmd.add_argument("--format", choices=["text", "json"], default="text")
    on_error(audit_cmd)

    paper = add(
        "reproduce-paper", cmd_reproduce_paper,
        "Run the seed paper's protocol beside ckdlearn's on the real data.",
    )
    paper.add_argument("--data", required=True, help="CT KIDNEY dataset folder")
    paper.add_argument("--epochs", type=int, default=20)
    paper.add_argument("--folds", type=int, default=5)
    paper.add_argument("--image-size", type=int, default=64, help="image size of protocol 3")
    paper.add_argument("--seed", type=int, default=0)
    paper.add_argument("--protocols", default="1,2,3", help="which protocols to run (default: 1,2,3)")
    paper.add_argument("--json", help="also write the figures to this JSON file")
    force(paper)
    return parser


def main(argv=None):
    """Run the ``ckdlearn`` command; returns the exit status.

    Parameters
    ----------
    argv : list of str or None, default=None
        Arguments without the program name; None reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success, 1 on bad input or a failed run, 2 on usage errors,
        130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    _limit_threads(args)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"ckdlearn {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one clear line, not a traceback
        if args.debug:
            raise
        message = str(error).strip() or type(error).__name__
        print(f"ckdlearn {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
