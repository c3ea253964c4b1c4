"""The fuzzing suite's bookkeeping: what counts as a clear error, and the tally.

Every fuzzed call must end in a result or in an error a user can act on:
a ValueError, TypeError, NotFittedError or a file error (not found, exists,
a folder) with a message,
raised by ckdlearn itself or by scikit-learn's input validation, never an
IndexError, KeyError, RuntimeError or an exception from deep inside a
dependency. :func:`outcome` runs a call and classifies it; the tally is
written to ``$CKDLEARN_FUZZ_REPORT`` (JSON) at the end of the session.
"""

import json
import os
import traceback
from collections import Counter
from pathlib import Path

from sklearn.exceptions import NotFittedError

# File errors name the path and say what to do (another name, --force).
CLEAR_ERRORS = (
    ValueError, TypeError, NotFittedError,
    FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
)
# Where a clear error may be raised: ckdlearn, and scikit-learn's own
# validation of inputs and parameters (its messages are written for users).
_RAISED_IN = (
    f"{os.sep}ckdlearn{os.sep}",
    f"sklearn{os.sep}utils{os.sep}_param_validation.py",
    f"sklearn{os.sep}utils{os.sep}validation.py",
    f"sklearn{os.sep}utils{os.sep}multiclass.py",
    f"sklearn{os.sep}utils{os.sep}class_weight.py",
)

TALLY = Counter()


def _raised_where(error):
    frames = traceback.extract_tb(error.__traceback__)
    return frames[-1].filename if frames else ""


def outcome(area, call, *args, **kwargs):
    """Run ``call``; return ``("result", value)`` or ``("error", exception)``.

    Anything else (a crash, or an error without a message or from a
    dependency's internals) fails the test with the traceback.
    """
    try:
        value = call(*args, **kwargs)
    except CLEAR_ERRORS as error:
        where = _raised_where(error)
        assert str(error).strip(), f"{type(error).__name__} without a message"
        assert any(part in where for part in _RAISED_IN), (
            f"{type(error).__name__} raised inside a dependency ({where}), not "
            f"explained by ckdlearn: {error}"
        )
        TALLY[(area, "clear error")] += 1
        return "error", error
    except Exception:
        TALLY[(area, "crash")] += 1
        raise
    TALLY[(area, "result")] += 1
    return "result", value


def count_files_changed(area, n_changed):
    TALLY[(area, "files changed outside outputs")] += n_changed


def write_report():
    path = os.environ.get("CKDLEARN_FUZZ_REPORT")
    if not path or not TALLY:
        return
    report = {}
    for (area, kind), count in sorted(TALLY.items()):
        report.setdefault(area, {"cases": 0})[kind] = count
        if kind != "files changed outside outputs":
            report[area]["cases"] += count
    Path(path).write_text(json.dumps(report, indent=2) + "\n")
