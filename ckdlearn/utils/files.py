"""Writing outputs safely: never half-written, never replacing unasked.

Every file ckdlearn writes (model files, reports, overlays, prediction
tables) goes through :func:`atomic_write_bytes`: the bytes land in a
temporary file beside the target, are flushed to disk and renamed into
place, so an interruption leaves the old file or the new one. Folders are
never replaced or emptied: :func:`write_files` writes its named files into
a folder and leaves everything else there as it was. :func:`check_outputs`
runs before the work, so a run that cannot save its result fails at once.
"""

import os
import tempfile
from contextlib import suppress
from pathlib import Path

__all__ = ["atomic_write_bytes", "check_outputs", "write_files"]


def _exists_error(path):
    # No errno: str() of an OSError built with one reads "[Errno 17] ...: 'path'".
    return FileExistsError(
        f"{os.fspath(path)!r} already exists; pass overwrite=True to replace it, "
        "or choose another name"
    )


def _probe_folder(folder):
    """Why files cannot be created in the existing ``folder``, or None if they can.

    A real file is created and removed: ``os.access`` says yes to root
    on read-only file systems such as ``/sys`` and ``/proc``.
    """
    if not folder.is_dir():
        return "is a file, not a folder"
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".ckdlearn-probe.", dir=folder)
    except OSError as error:
        return f"is not a writable folder ({(error.strerror or str(error)).lower()})"
    os.close(descriptor)
    with suppress(OSError):
        os.unlink(probe)
    return None


def check_outputs(paths, *, overwrite=False):
    """Check, before any work, that ``paths`` can be written.

    Parameters
    ----------
    paths : iterable of str or path-like
        The files about to be written.
    overwrite : bool, default=False
        Whether existing files may be replaced.

    Returns
    -------
    paths : list of pathlib.Path

    Raises
    ------
    FileExistsError
        If a file exists and ``overwrite`` is False.
    IsADirectoryError
        If a path names a folder.
    PermissionError
        If the folder that would hold a file, or the nearest existing
        folder above it, cannot be written to; NotADirectoryError if that
        is a file. Both name the path asked for.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from ckdlearn.utils.files import check_outputs
    >>> folder = Path(tempfile.mkdtemp())
    >>> [path.name for path in check_outputs([folder / "new" / "model.ckdl"])]
    ['model.ckdl']
    """
    checked, probed = [], {}
    for path in map(lambda p: Path(os.fspath(p)), paths):
        if path.is_dir():
            raise IsADirectoryError(f"{os.fspath(path)!r} is a folder; name a file to write")
        if os.path.lexists(path) and not overwrite:
            raise _exists_error(path)
        existing = path.parent
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if existing not in probed:  # many outputs share one folder
            probed[existing] = _probe_folder(existing)
        if probed[existing] is not None:
            error = NotADirectoryError if existing.is_file() else PermissionError
            raise error(f"cannot write {os.fspath(path)!r}: {os.fspath(existing)!r} {probed[existing]}")
        checked.append(path)
    return checked


def atomic_write_bytes(path, data, *, overwrite=False):
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same folder, which is flushed
    to disk and then renamed onto ``path``: a crash or an error leaves
    either the old file or the new one, never a partial file, and no
    temporary file behind. A new file gets the permissions of the umask.

    Parameters
    ----------
    path : str or path-like
        The file to write; its folder must exist.
    data : bytes
        The complete contents.
    overwrite : bool, default=False
        Replace an existing file.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    FileNotFoundError
        If the folder of ``path`` does not exist.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from ckdlearn.utils.files import atomic_write_bytes
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = atomic_write_bytes(Path(folder) / "notes.txt", b"hello")
    ...     print(path.read_bytes())
    b'hello'
    """
    path = Path(os.fspath(path))
    if not overwrite and os.path.lexists(path):
        raise _exists_error(path)
    directory = path.parent
    if not directory.is_dir():
        raise FileNotFoundError(
            f"No folder {os.fspath(directory)!r} to write {path.name!r} in; create it first"
        )
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as error:  # name the file asked for, not the temporary one
        raise type(error)(f"cannot write {os.fspath(path)!r}: {error.strerror or error}") from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, _file_mode(path))
        if overwrite:
            os.replace(temporary, path)
        else:
            _publish_new(temporary, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)
    return path


def write_files(folder, files, *, overwrite=False):
    """Write named files into ``folder``, leaving everything else there alone.

    Parameters
    ----------
    folder : str or path-like
        Created (with its parents, normal permissions) if missing.
    files : dict of str to bytes
        File name inside ``folder`` to contents.
    overwrite : bool, default=False
        Replace files of these names; other files in ``folder`` are never
        touched either way.

    Returns
    -------
    written : list of pathlib.Path
        In the order of ``files``.

    Raises
    ------
    FileExistsError
        If one of the files exists and ``overwrite`` is False; then nothing
        is written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from ckdlearn.utils.files import write_files
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "thesis.txt").write_text("mine")
    >>> [p.name for p in write_files(folder, {"a.txt": b"1"})]
    ['a.txt']
    >>> sorted(p.name for p in folder.iterdir())
    ['a.txt', 'thesis.txt']
    """
    folder = Path(os.fspath(folder))
    targets = check_outputs([folder / name for name in files], overwrite=overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    return [
        atomic_write_bytes(target, data, overwrite=overwrite)
        for target, data in zip(targets, files.values())
    ]


def _publish_new(temporary, path):
    """Move ``temporary`` to ``path`` unless a file appeared there meanwhile."""
    try:
        # A hard link fails if the target exists, with no window in which
        # another writer's file could be replaced.
        os.link(temporary, path)
    except FileExistsError:
        raise _exists_error(path) from None
    except OSError:  # the file system has no hard links
        if os.path.lexists(path):
            raise _exists_error(path) from None
        os.replace(temporary, path)
        return
    os.unlink(temporary)


def _file_mode(path):
    with suppress(OSError):
        return os.stat(path).st_mode & 0o777
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory):
    # Makes the rename itself durable; not possible on every platform.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
