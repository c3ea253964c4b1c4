"""The ``ckdlearn`` command: parse the arguments, run a workflow, print its result.

Sub-commands: ``demo``, ``train``, ``evaluate``, ``predict``, ``explain``,
``audit`` and ``reproduce-paper``; what each does lives in
:mod:`ckdlearn.app`. Progress and warnings go to stderr, results to
stdout. Outputs are checked before any work and never replaced without
``--force``. Bad input is one line on stderr and exit status 1
(``--debug`` shows the traceback); usage errors exit 2, as argparse does;
Ctrl-C exits 130. Nothing heavy is imported before a command runs, so
``--help``, ``--version`` and usage errors answer at once.
"""

import argparse
import csv
import difflib
import io
import json
import os
import signal
import sys
import threading
import warnings

from ..exceptions import TrainingInterrupted

__all__ = ["build_parser", "main"]

# The library's messages name Python arguments; here they are options.
_CLI_SPELLING = {
    "overwrite=True": "--force",
    "force=True": "--force",
    "resume=True": "--resume",
    "on_error='skip'": "--on-error skip",
    "or pass classes=[...] naming the classes you mean to load.":
        "or move the folders of classes you do not mean to load out of the data folder.",
    "or leave the class out with classes=[...].": "or move that class folder out of the data folder.",
}


def _for_cli(message):
    for python, option in _CLI_SPELLING.items():
        message = message.replace(python, option)
    return message


def _message_of(error):
    """An error's text without ``[Errno N]`` or a repeated file name."""
    if isinstance(error, OSError) and error.strerror:
        message, filename = error.strerror, error.filename
        if filename is not None and str(filename) not in message:
            message += f": {filename}"  # an OS error says what failed, not where
        return message.strip()
    return str(error).strip() or type(error).__name__


def _say(message):
    print(_for_cli(str(message)), file=sys.stderr, flush=True)


# --- commands: call a workflow, print what it returns ---------------------------


def cmd_demo(args):
    from .demo import run_demo

    demo = run_demo(args.out, epochs=args.epochs, folds=args.folds, overwrite=args.force, progress=_say)
    print(f"report: {demo.report}")
    print(f"model:  {demo.model}")


def cmd_train(args):
    from .training import train_folder

    train_folder(
        args.data, args.out, image_size=args.image_size, on_error=args.on_error,
        input_domain=args.input_domain, groups=args.groups,
        method=args.method, max_epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        width=args.width, random_state=args.seed, validation=args.validation, resume=args.resume,
        overwrite=args.force, progress=_say,
    )
    print(f"model: {args.out}")


def cmd_evaluate(args):
    from .scoring import evaluate_model

    scores = evaluate_model(args.model, args.data, on_error=args.on_error, progress=_say,
                            groups=args.groups, input_domain=args.input_domain)
    if args.format == "json":
        print(json.dumps({key: value for key, value in scores.items() if key != "report"}, indent=2))
        return
    print(scores.report)
    print(f"{'':20s} {'accuracy':>9s} {'macro-F1':>9s}")
    for name, row in {"model": scores, **scores.baselines}.items():
        print(f"{name:20s} {row['accuracy']:9.3f} {row['macro_f1']:9.3f}")
    series = scores.series
    print(f"{'model, per scan':20s} {series['accuracy']:9.3f} {series['macro_f1']:9.3f}"
          f"   ({series['n_series']} {_series_kind(scores.scan_groups)}, one answer each)")
    print(f"uncertainty: AUROC for wrong slices {scores.selective['auroc']:.3f}, "
          f"accuracy on the surest 80% {scores.selective['accuracy_at_80']:.3f}")


def cmd_predict(args):
    from ..utils.files import check_outputs
    from .image_files import predict_files

    if args.output:
        check_outputs([args.output], overwrite=args.force)
    rows, scans = predict_files(
        args.model, args.inputs, progress=_say, on_error=args.on_error,
        abstain_below=args.abstain_below, groups=args.groups, input_domain=args.input_domain,
    )
    # A summary only: a line per scan drowns the terminal on a folder of
    # slices; every scan's answer is in the output's scan_label column.
    _say(f"predicted {len(rows)} slices in {len(scans)} inferred scan series; "
         f"slices: {_tally(row['label'] for row in rows)}; "
         f"scans: {_tally(scan['label'] for scan in scans)} "
         "(each scan's answer in the scan_label column)")
    if args.format == "json":
        text = json.dumps(rows, indent=2) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    _emit(text, args.output, args.force)
    if args.output:
        _say(f"wrote {len(rows)} predictions to {args.output}")


def _tally(labels):
    """``"Cyst 3, Normal 5"``: how often each label occurs, most frequent first."""
    from collections import Counter

    return ", ".join(f"{label} {count}" for label, count in Counter(labels).most_common())


def _emit(text, output, force):
    """Print a result, or write it to the file ``output`` (its folder created if need be)."""
    if not output:
        sys.stdout.write(text)
        return
    from pathlib import Path

    from ..utils.files import write_files

    write_files(Path(output).parent, {Path(output).name: text.encode()}, overwrite=force)


def cmd_explain(args):
    from .image_files import explain_images

    written = explain_images(
        args.model, args.inputs, args.out, method=args.method, target=args.target,
        overwrite=args.force, overlay_size=args.overlay_size, on_error=args.on_error, progress=_say,
        input_domain=args.input_domain,
    )
    from .image_files import GRID_SIZE

    n_overlays = len(written) - 1
    shown = f" (showing {GRID_SIZE} of them)" if n_overlays > GRID_SIZE else ""
    print(f"wrote {n_overlays} overlays and {written[-1]}{shown}")


def cmd_audit(args):
    from .audit import audit_folder

    summary = audit_folder(
        args.data, image_size=args.image_size, folds=args.folds, on_error=args.on_error, progress=_say,
        groups=args.groups,
    )
    if args.format == "json":
        print(json.dumps(summary, indent=2))
        return
    print(f"{summary['n_images']} images in {summary['n_scan_series']} "
          f"{_series_kind(summary['scan_groups'])}")
    for name, key in (("split by scan series", "by_scan_series"), ("random slice split", "random_slices")):
        folds = summary[key]
        print(
            f"{name:>22s}: test images with a duplicate in training per fold "
            + ", ".join(f"{fold['leaked_fraction']:.1%}" for fold in folds)
            + f"  (duplicate pairs: {sum(f['n_exact'] for f in folds)} exact, "
            f"{sum(f['n_near'] for f in folds)} near)"
        )


def _series_kind(diagnostics):
    """'inferred scan series', 'scan series from --groups', ... with a caveat."""
    sources = diagnostics["source"]
    if set(sources) == {"explicit"}:
        return "scan series from --groups"
    kinds = [name.replace("dicom:", "DICOM ") for name in sources]
    text = "scan series (" + ", ".join(kinds) + ")" if kinds != ["inferred"] else "inferred scan series"
    return text + ("" if diagnostics["reliable"] else "; unreliable, see the warning above")


def cmd_reproduce_paper(args):
    from ..utils.files import check_outputs
    from ..paper import reproduce_paper

    if args.json:
        check_outputs([args.json], overwrite=args.force)
    result = reproduce_paper(
        args.data, max_epochs=args.epochs, n_splits=args.folds,
        default_image_size=args.image_size, protocols=args.protocols.split(","),
        random_state=args.seed, progress=_say,
    )
    print(result)
    if args.json:
        _emit(json.dumps(result.to_dict(), indent=2), args.json, args.force)


# --- parser ---------------------------------------------------------------------


def _number(kind=int, minimum=1, above=False):
    """An argparse type: a ``kind`` of at least (or above) ``minimum``."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (value > minimum if above else value >= minimum):  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be {'above' if above else 'at least'} {minimum}, got {text}")
        return value

    return parse


_POSITIVE, _SIZE, _AT_LEAST_2 = _number(), _number(minimum=8), _number(minimum=2)
_POSITIVE_REAL = _number(float, 0.0, above=True)


def _share(text):
    """An argparse type: a share strictly between 0 and 1."""
    value = _POSITIVE_REAL(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be below 1 (a share of the scan series), got {text}")
    return value


class _DefaultsShown(argparse.HelpFormatter):
    def _get_help_string(self, action):
        # By identity: a default of 0 (--seed) is shown, unlike False.
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            return action.help
        return f"{action.help} (default: %(default)s)"


def _choice(*options):
    """An argparse type: one of ``options``, with the closest one suggested for a typo."""

    def parse(text):
        if text not in options:
            close = difflib.get_close_matches(text, options, n=1)
            suggestion = f"; did you mean '{close[0]}'?" if close else ""
            raise argparse.ArgumentTypeError(
                f"invalid choice: {text!r} (choose from {', '.join(options)}){suggestion}"
            )
        return text

    return parse


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that suggests the closest command for a typo."""

    #: Set on the top-level parser: the command names.
    command_names = ()

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        # The first word that is not an option names the command (the
        # top-level options take no value); checked here because argparse
        # reports an unknown command only in its own words.
        command = next((arg for arg in args if not arg.startswith("-")), None)
        if self.command_names and command is not None:
            try:
                _choice(*self.command_names)(command)
            except argparse.ArgumentTypeError as error:
                self.error(f"argument COMMAND: {error}")
        return super().parse_known_args(args, namespace)


_GROUPS_HELP = (
    "CSV of filename,group rows giving each image's scan (or patient) group, "
    "instead of grouping DICOM files by PatientID and inferring the rest from file numbers"
)


_INPUT_DOMAIN_HELP = (
    "what the image files are: 'raw' slices as exported (JPEG/PNG, or DICOM after windowing), "
    "equalised (CLAHE) at full resolution for the model, or 'clahe' slices already equalised "
    "like the complete dataset's copy, used as they are"
)
_MODEL_HELP = "model file, or 'pretrained' for the reference model that ships with ckdlearn"


def _groups_file(text):
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"groups file {text} does not exist")
    return text


def _demo_arguments(demo):
    demo.add_argument("--out", default="ckdlearn-demo", help="report folder")
    demo.add_argument("--epochs", type=_POSITIVE, default=12, help="training epochs")
    demo.add_argument("--folds", type=_AT_LEAST_2, default=3, help="scan-series folds")


def _train_arguments(train):
    from .recipe import METHODS

    train.add_argument("data", help="dataset folder")
    train.add_argument("--out", required=True, help="model file to write (.ckdl)")
    train.add_argument("--image-size", type=_SIZE, default=96, help="pixels per side; 96 generalised "
                       "better than 64 to unseen scan series (the docs' accuracy page)")
    train.add_argument("--epochs", type=_POSITIVE, default=20, help="training epochs")
    train.add_argument("--lr", type=_POSITIVE_REAL, default=1e-3, help="learning rate")
    train.add_argument("--batch-size", type=_AT_LEAST_2, default=32, help="images per batch")
    train.add_argument("--width", type=_POSITIVE, default=16, help="channels of the first block")
    train.add_argument("--method", type=_choice(*METHODS), default="smote", metavar="{" + ",".join(METHODS) + "}",
                       help="class imbalance handling")
    train.add_argument("--seed", type=int, default=0, help="seeds SMOTE and the network")
    train.add_argument("--validation", type=_share, metavar="SHARE",
                       help="share of the scan series (e.g. 0.2) held out before SMOTE to stop "
                       "early, keep the best epoch and calibrate on")
    train.add_argument("--groups", metavar="FILE", type=_groups_file,
                       help=_GROUPS_HELP + "; the scan groups --validation holds out")
    train.add_argument("--resume", action="store_true",
                       help="continue the interrupted run in OUT.checkpoint (same settings only)")


def _evaluate_arguments(evaluate):
    evaluate.add_argument("model", help=_MODEL_HELP)
    evaluate.add_argument("data", help="labelled folder")
    evaluate.add_argument("--format", type=_choice("text", "json"), default="text", metavar="{text,json}",
                          help="a table for people, or JSON with every figure")
    evaluate.add_argument("--groups", metavar="FILE", type=_groups_file, help=_GROUPS_HELP)


def _predict_arguments(predict):
    predict.add_argument("model", help=_MODEL_HELP)
    predict.add_argument("inputs", nargs="+", metavar="FILES_OR_DIR",
                         help="image files and/or folders (searched recursively)")
    predict.add_argument("--format", type=_choice("csv", "json"), default="csv", metavar="{csv,json}",
                         help="one row per image, as CSV or a JSON list")
    predict.add_argument("--output", "-o", help="write to this file instead of stdout")
    predict.add_argument("--groups", metavar="FILE", type=_groups_file, help=_GROUPS_HELP)
    predict.add_argument("--abstain-below", type=_POSITIVE_REAL, default=None, metavar="P",
                         help="answer 'uncertain' for slices and scans whose top probability is below P")


def _explain_arguments(explain):
    from ._method_names import CAM_METHOD_NAMES

    explain.add_argument("model", help=_MODEL_HELP)
    explain.add_argument("inputs", nargs="+", metavar="FILES_OR_DIR",
                         help="image files and/or folders (searched recursively)")
    explain.add_argument("--out", required=True, help="output folder")
    explain.add_argument("--method", type=_choice(*CAM_METHOD_NAMES), default="gradcam",
                         metavar="METHOD", help=f"CAM method: {', '.join(CAM_METHOD_NAMES)}")
    explain.add_argument("--target", help="class to explain (default: the prediction)")
    explain.add_argument("--overlay-size", type=_SIZE, default=256,
                         help="pixels per side of the overlays, drawn on the slice as read")


def _audit_arguments(audit):
    audit.add_argument("data", help="labelled folder")
    audit.add_argument("--image-size", type=_SIZE, default=64, help="pixels per side")
    audit.add_argument("--folds", type=_AT_LEAST_2, default=5, help="folds of each split")
    audit.add_argument("--format", type=_choice("text", "json"), default="text", metavar="{text,json}",
                       help="a summary for people, or JSON with every fold")
    audit.add_argument("--groups", metavar="FILE", type=_groups_file, help=_GROUPS_HELP)


def _paper_arguments(paper):
    paper.add_argument("--data", required=True, help="CT KIDNEY dataset folder")
    paper.add_argument("--epochs", type=_POSITIVE, default=20, help="training epochs")
    paper.add_argument("--folds", type=_AT_LEAST_2, default=5, help="scan-series folds")
    paper.add_argument("--image-size", type=_SIZE, default=64, help="image size of protocol 3")
    paper.add_argument("--seed", type=int, default=0, help="random seed")
    paper.add_argument("--protocols", default="1,2,3", help="which protocols to run")
    paper.add_argument("--json", help="also write the figures to this JSON file")


# name, what it runs, help, its arguments, and which shared options it takes.
_COMMANDS = [
    ("demo", cmd_demo, "Evaluate and fit the default pipeline on the shipped sample; write a report.",
     _demo_arguments, {"force"}),
    ("train", cmd_train, "Train on a labelled folder (CT KIDNEY layout or class folders).",
     _train_arguments, {"force", "on_error", "input_domain"}),
    ("evaluate", cmd_evaluate, "Score a saved model on a labelled folder, beside trivial baselines.",
     _evaluate_arguments, {"on_error", "input_domain"}),
    ("predict", cmd_predict, "Label image files with a saved model.",
     _predict_arguments, {"force", "on_error", "input_domain"}),
    ("explain", cmd_explain, "Write Grad-CAM overlays for image files.",
     _explain_arguments, {"force", "on_error", "input_domain"}),
    ("audit", cmd_audit, "Audit a labelled folder for duplicate slices across splits.",
     _audit_arguments, {"on_error"}),
    ("reproduce-paper", cmd_reproduce_paper, "Run the seed paper's protocol beside ckdlearn's on the real data.",
     _paper_arguments, {"force"}),
]


def _shared_arguments(sub, shared):
    sub.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub.add_argument("--threads", type=_POSITIVE, help="torch CPU threads")
    if "force" in shared:
        sub.add_argument("--force", action="store_true", help="replace ckdlearn's own outputs of these names")
    if "on_error" in shared:
        sub.add_argument("--on-error", type=_choice("raise", "skip"), default="raise", metavar="{raise,skip}",
                         help="stop at an unreadable image, or skip it with a warning")
    if "input_domain" in shared:
        sub.add_argument("--input-domain", type=_choice("raw", "clahe"), default="raw", metavar="{raw,clahe}",
                         help=_INPUT_DOMAIN_HELP)


def build_parser():
    """The argument parser of the ``ckdlearn`` command."""
    from .. import __version__

    parser = _Parser(
        prog="ckdlearn", description="Explainable CNN classification of kidney CT slices. "
        "Run 'ckdlearn COMMAND --help' for a command's options.",
    )
    parser.command_names = tuple(name for name, *_ in _COMMANDS)
    parser.add_argument("--version", action="version", version=f"ckdlearn {__version__}")
    # Also accepted before the command; a separate dest, because a
    # subcommand's own default would overwrite this one's value.
    parser.add_argument("--debug", action="store_true", dest="debug_any",
                        help="show tracebacks on errors (also accepted after the command)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, func, help_text, add_arguments, shared in _COMMANDS:
        sub = commands.add_parser(name, help=help_text, description=help_text, formatter_class=_DefaultsShown)
        sub.set_defaults(func=func)
        _shared_arguments(sub, shared)
        add_arguments(sub)
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
    args = build_parser().parse_args(argv)
    args.debug = args.debug or args.debug_any
    name = f"ckdlearn {args.command}"

    def on_interrupt(signum, frame):
        raise TrainingInterrupted

    def show_warning(message, category, filename, lineno, file=None, line=None):
        _say(f"{name}: warning: {message}")

    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:  # elsewhere Ctrl-C stays a KeyboardInterrupt
        previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            if args.threads:
                import torch

                torch.set_num_threads(args.threads)
            args.func(args)
        return 0
    except (KeyboardInterrupt, TrainingInterrupted) as error:
        _say(f"{name}: interrupted" + (f": {error}" if str(error) else ""))
        return 130
    except Exception as error:
        if args.debug:
            raise
        message = _message_of(error)
        _say(f"{name}: error: {message}")
        return 1
    finally:
        if in_main_thread and previous is not None:  # None: set outside Python
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
