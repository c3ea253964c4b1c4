"""Old names that still work, with a warning that says where to go.

For modules that moved (:func:`warn_moved`, :func:`alias_submodules`) and
keyword arguments that were renamed (:func:`renamed_keyword`).
"""

import functools
import sys
import warnings
from importlib import import_module

__all__ = ["alias_submodules", "renamed_keyword", "warn_moved"]


def warn_moved(old, new):
    """Warn, from a deprecated module's body, that ``old`` moved to ``new``.

    The warning points at the user's import line (import machinery frames
    are skipped by :func:`warnings.warn`).

    Parameters
    ----------
    old, new : str
        The module's former and present dotted names.
    """
    warnings.warn(
        f"{old} is deprecated: it moved to {new}; import from {new} instead. "
        "The old path will be removed in a future release.",
        FutureWarning,
        stacklevel=3,
    )


def alias_submodules(old_package, new_package, renamed):
    """Make ``old_package.<old>`` import ``new_package.<new>`` for each pair.

    A module found in :data:`sys.modules` is what ``import`` returns, so the
    old dotted paths keep working without a file per module.

    Parameters
    ----------
    old_package, new_package : str
        The package's former and present dotted names.
    renamed : dict of str to str
        Each former module name to its present one.
    """
    for old, new in renamed.items():
        module = import_module(f"{new_package}.{new}")
        sys.modules[f"{old_package}.{old}"] = module
        setattr(sys.modules[old_package], old, module)


def renamed_keyword(old, new):
    """Let a function take its keyword ``new`` under its old name ``old`` too, warning.

    Parameters
    ----------
    old : str
        The keyword's former name: still accepted, with a ``FutureWarning``.
    new : str
        The keyword's name now; passing both is a ``TypeError``.

    Returns
    -------
    decorate : callable
        A decorator for the function.

    Examples
    --------
    >>> import warnings
    >>> from ckdlearn.utils.deprecation import renamed_keyword
    >>> @renamed_keyword("force", "overwrite")
    ... def write(path, *, overwrite=False):
    ...     return overwrite
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     write("x", force=True), caught[0].category.__name__
    (True, 'FutureWarning')
    """

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{function.__qualname__}() got both {old}= and {new}=; pass {new}= only.")
                warnings.warn(
                    f"{function.__qualname__}({old}=...) is deprecated; pass {new}= instead. "
                    f"The old name will be removed in a future release.",
                    FutureWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper

    return decorate
