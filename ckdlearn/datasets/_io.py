"""Decoding slice files (JPEG, PNG, DICOM) into one preallocated array.

Decoding is the cost of loading a dataset, so files are decoded straight
at the output scale (JPEG DCT scaling), by a pool of threads (Pillow and
NumPy release the GIL while they work), into rows of an output array that
is allocated once.
"""

import os
import re
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from joblib import effective_n_jobs
from PIL import Image
from tqdm import tqdm

from ..preprocessing import clahe, conversion
from ._dicom import DEFAULT_WINDOW_LEVEL, DEFAULT_WINDOW_WIDTH, read_dicom_hounsfield, window
from ._validation import check_image_size, check_on_error, check_verbose, check_window
from ..utils._stack import external_stacklevel

# DICOM exports often have no extension at all.
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ""})
RASTER_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
SLICE_SUFFIXES = DICOM_SUFFIXES | RASTER_SUFFIXES

# Files per task: large enough to amortise scheduling, small enough for a
# smooth progress bar and an early stop on errors.
_CHUNK = 64
# In the automatic mode the bar appears only once a load has lasted this
# long, so quick loads stay silent.
_PROGRESS_DELAY_S = 1.0


def is_slice_file(path):
    """Whether a file looks like a slice this module can read.

    Decided by the suffix; a file without one counts only when it starts
    as DICOM does (:func:`looks_like_dicom`), so a stray ``README`` or
    ``LICENSE`` in a class folder is not taken for a slice.
    """
    name = os.path.basename(path)
    if name.startswith("."):
        return False
    suffix = os.path.splitext(name)[1].lower()
    return suffix in SLICE_SUFFIXES if suffix else looks_like_dicom(path)


def is_dicom_file(path):
    """Whether a file is read as DICOM: a DICOM suffix, or none and DICOM's marker."""
    suffix = os.path.splitext(str(path))[1].lower()
    return suffix in DICOM_SUFFIXES and (bool(suffix) or looks_like_dicom(path))


def looks_like_dicom(path):
    """Whether a file holds DICOM's ``DICM`` marker after the 128-byte
    preamble, or starts with the tag of a group-0002 or -0008 element, as
    DICOM files exported without the preamble do."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM" or head[:2] in (b"\x02\x00", b"\x08\x00")


def read_images(
    paths,
    image_size=96,
    *,
    window_level=DEFAULT_WINDOW_LEVEL,
    window_width=DEFAULT_WINDOW_WIDTH,
    domain="clahe",
    input_domain="raw",
    on_error="raise",
    n_jobs=None,
    verbose=None,
    return_skipped=False,
    bit_depth=None,
):
    """Read CT slices from JPEG, PNG or DICOM files into one float array.

    Parameters
    ----------
    paths : sequence of str or path-like
        The slice files. ``.dcm``, ``.dicom`` and extension-less files
        that start as DICOM does are read as DICOM (needs the ``dicom``
        extra: ``pip install 'ckdlearn[dicom]'``); ``.jpg``, ``.jpeg``,
        ``.png``, ``.bmp``, ``.tif`` and ``.tiff`` as greyscale images.
        8-bit images are divided by 255. 16-bit ones are divided by the
        full scale of their bit depth, decided from what the file says (its
        mode, a PNG ``sBIT`` chunk, TIFF ``BitsPerSample``) and what its
        values show: 65535 for 16 bits, 4095 when no pixel exceeds it (a
        12-bit CT slice in a 16-bit file), and 255, with a warning, when
        every pixel fits in 0-255 (8-bit values saved without scaling,
        which would otherwise read about 16x too dark); see
        ``bit_depth``. Floating-point TIFFs are taken as they are in
        [0, 1], divided by 255 in [0, 255], and refused otherwise.

    image_size : int, default=96
        Side of the square output images in pixels. Images are shrunk by
        area averaging and enlarged bilinearly; non-square images are
        stretched.

    window_level, window_width : float, default=40, 400
        Display window, in Hounsfield units, applied to DICOM slices after
        their rescale slope and intercept: ``level - width / 2`` maps to 0,
        ``level + width / 2`` to 1. The default is the soft-tissue / abdomen
        window. JPEG and PNG files are already windowed; it does not apply.

    domain : {"clahe", "raw"}, default="clahe"
        The domain of the returned slices (:mod:`ckdlearn.preprocessing`):
        ``"clahe"``, contrast-equalised as the CT KIDNEY DATASET is (the
        domain of the default recipe and of the reference model), or
        ``"raw"``, as the files hold them.

    input_domain : {"raw", "clahe"}, default="raw"
        The domain the files are in. Raw slices are equalised at full
        resolution, before resizing, when ``domain="clahe"``; slices
        declared ``"clahe"`` are never equalised twice.

    on_error : {'raise', 'skip'}, default='raise'
        What to do with an unreadable, truncated or non-image file: raise
        an error naming it, or leave it out with a warning listing every
        skipped file.

    n_jobs : int, default=None
        Threads decoding in parallel. ``None`` means 1 unless in a
        :func:`joblib.parallel_config` context; ``-1`` means all CPUs.

    verbose : bool, default=None
        Progress bar on stderr. ``None`` shows it only on a terminal and only
        once the load has lasted a second; ``True`` always; ``False`` never.

    return_skipped : bool, default=False
        If True, also return the list of skipped files.

    bit_depth : {8, 12, 16} or None, default=None
        Significant bits of integer images with more than 8 bits per pixel:
        their values are divided by ``2 ** bit_depth - 1``, whatever the
        file and its values suggest. ``None`` decides per file as described
        under ``paths``.

    Returns
    -------
    images : ndarray of shape (n_read, image_size, image_size), dtype float32
        The slices in the order of ``paths``, scaled to [0, 1].

    skipped : list of (str, str)
        Only if ``return_skipped`` is True: ``(path, reason)`` of every file
        left out (always empty with ``on_error='raise'``).

    Raises
    ------
    FileNotFoundError
        If a file does not exist and ``on_error='raise'``.
    ValueError
        If a file cannot be decoded and ``on_error='raise'``, or a parameter
        is invalid.
    ImportError
        If a DICOM file is read and pydicom is not installed.

    Examples
    --------
    >>> import pydicom.data
    >>> from ckdlearn.datasets import read_images
    >>> path = pydicom.data.get_testdata_file("CT_small.dcm")
    >>> images = read_images([path], image_size=64)
    >>> images.shape, images.dtype
    ((1, 64, 64), dtype('float32'))
    >>> bool(images.min() >= 0 and images.max() <= 1)
    True

    A 16-bit PNG holding 8-bit values reads as the 8-bit image, with a
    warning:

    >>> import tempfile, warnings
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint16), (64, 1))
    >>> path = Path(tempfile.mkdtemp()) / "ramp16.png"
    >>> Image.fromarray(ramp).save(path)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     image = read_images([path], image_size=64, domain="raw")[0]
    >>> round(float(image.max()), 3), "read as 8-bit images" in str(caught[0].message)
    (0.988, True)
    """
    image_size = check_image_size(image_size)
    check_on_error(on_error)
    window_level, window_width = check_window(window_level, window_width)
    check_verbose(verbose)
    if bit_depth is not None and bit_depth not in (8, 12, 16):
        raise ValueError(f"bit_depth must be 8, 12, 16 or None, got {bit_depth!r}.")
    step = conversion(input_domain, domain)
    if isinstance(paths, (str, os.PathLike)):
        raise ValueError(
            f"paths must be a sequence of file paths, got the single path "
            f"{str(paths)!r}; wrap it in a list: read_images([path])."
        )
    paths = [os.fspath(path) for path in paths]
    images = np.empty((len(paths), image_size, image_size), dtype=np.float32)
    failures = decode_into(
        paths,
        images,
        window_level=window_level,
        window_width=window_width,
        on_error=on_error,
        n_jobs=n_jobs,
        verbose=verbose,
        bit_depth=bit_depth,
        preprocessing=step,
    )
    images = drop_rows(images, [index for index, _, _ in failures])
    skipped = [(path, reason) for _, path, reason in failures]
    if skipped:
        warn_skipped(skipped)
    if return_skipped:
        return images, skipped
    return images


def decode_into(
    paths,
    out,
    *,
    window_level=DEFAULT_WINDOW_LEVEL,
    window_width=DEFAULT_WINDOW_WIDTH,
    on_error="raise",
    n_jobs=None,
    verbose=None,
    bit_depth=None,
    sizes=None,
    preprocessing=None,
):
    """Decode ``paths[i]`` into ``out[i]``; return ``(index, path, reason)`` failures.

    ``sizes``, an int array of shape (n, 2), receives each file's own
    ``(height, width)``. ``preprocessing="clahe"`` equalises each slice at
    full resolution before it is resized (:func:`ckdlearn.preprocessing.clahe`).

    With ``on_error='raise'`` every file is still tried, and one error
    then names the unreadable ones (up to :data:`_LISTED_FAILURES`, in path
    order), so that one run finds them all; the rows of failed files are
    left undefined. Files whose bit depth was guessed against what they
    say are named in one warning.
    """
    n_files = len(paths)
    image_size = out.shape[1]
    failures = []
    # Written from the threads, warned about once from this one: a warning
    # per file (and from a worker thread) would flood or be lost.
    eight_bit_values = []
    missing_dependency = []
    lock = threading.Lock()

    def decode_chunk(start):
        for index in range(start, min(start + _CHUNK, n_files)):
            if missing_dependency:
                return
            try:
                note, size = _read_slice_into(
                    paths[index], out[index], image_size, window_level, window_width, bit_depth,
                    preprocessing,
                )
                if sizes is not None:
                    sizes[index] = size
                if note is not None:
                    eight_bit_values.append((index, note))
            except ImportError as exc:
                # A missing optional dependency is not a property of one
                # file: skipping would silently drop every DICOM slice.
                missing_dependency.append(exc)
                return
            except Exception as exc:  # any decoder failure is reported per file
                with lock:
                    failures.append((index, paths[index], exc))

    def stopped():
        return bool(missing_dependency)

    starts = range(0, n_files, _CHUNK)
    n_threads = max(1, min(effective_n_jobs(n_jobs), len(starts)))
    if verbose is None:
        # sys.stderr is None under pythonw; never draw a bar into a log file.
        show = bool(getattr(sys.stderr, "isatty", lambda: False)())
    else:
        show = verbose
    with tqdm(
        total=n_files,
        unit="slice",
        desc="Reading slices",
        disable=not show or n_files == 0,
        delay=_PROGRESS_DELAY_S if verbose is None else 0,
        leave=False,
    ) as progress:
        if n_threads == 1:
            for start in starts:
                decode_chunk(start)
                progress.update(min(_CHUNK, n_files - start))
                if stopped():
                    break
        else:
            # Not joblib's threading backend: with return_as="generator" it
            # decoded 1,030, 1,059 and 1,237 slices/s in three runs where this
            # pool did 1,220 and 1,249 (n_jobs=2, bench_loading.py, Dec 7).
            with ThreadPoolExecutor(n_threads, thread_name_prefix="ckdlearn-read") as pool:
                futures = [pool.submit(decode_chunk, start) for start in starts]
                for start, future in zip(starts, futures):
                    future.result()
                    progress.update(min(_CHUNK, n_files - start))
                    if stopped():
                        # Chunks not started yet all lie after the failure;
                        # leaving the block waits for the running ones.
                        for pending in futures:
                            pending.cancel()
                        break

    if missing_dependency:
        raise missing_dependency[0]
    if eight_bit_values:
        _warn_eight_bit_values(sorted(eight_bit_values), [paths[i] for i, _ in sorted(eight_bit_values)])
    failures.sort(key=lambda failure: failure[0])
    if on_error == "raise" and failures:
        raise _read_errors(failures) from failures[0][2]
    return [(index, path, _reason(exc, path)) for index, path, exc in failures]


def drop_rows(images, indices):
    """Remove rows in place (no second copy) and return the shortened view."""
    if not len(indices):
        return images
    keep = np.ones(len(images), dtype=bool)
    keep[list(indices)] = False
    # Shift the kept rows down one by one: a fancy-indexed copy would need a
    # second array as large as the output.
    write = 0
    for read in np.flatnonzero(keep):
        if read != write:
            images[write] = images[read]
        write += 1
    return images[:write]


def warn_skipped(skipped, *, root=None, limit=20):
    """Warn once, listing the skipped files and why (called by public functions)."""
    lines = [f"  {path}: {reason}" for path, reason in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more")
    where = f" in {root}" if root is not None else ""
    warnings.warn(
        f"Left out {len(skipped)} slice file(s){where}:\n" + "\n".join(lines),
        UserWarning,
        stacklevel=external_stacklevel(),
    )


def _warn_eight_bit_values(notes, paths, limit=5):
    shown = ", ".join(f"{path} ({note})" for path, (_, note) in zip(paths[:limit], notes))
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    warnings.warn(
        f"{len(paths)} image file(s) stored with more than 8 bits per pixel hold "
        f"only values 0-255: {shown}{more}. They were read as 8-bit images "
        "(divided by 255); read at their stored depth they would be about 16x "
        "(12-bit) or 256x (16-bit) too dark. If they really are that dark, read "
        "them with read_images(..., bit_depth=16) (or 12) in Python; to silence "
        "this, save 8-bit images as 8-bit files.",
        UserWarning,
        stacklevel=external_stacklevel(),
    )


def _read_slice_into(path, row, image_size, window_level, window_width, bit_depth=None,
                     preprocessing=None):
    """Decode one file into ``row``; return a note if its bit depth was read
    against what the file says (8-bit values in a 16-bit file), and the
    file's own ``(height, width)``."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix == "" and not looks_like_dicom(path):
        raise ValueError("no file name extension and no DICOM marker: not a slice file")
    if suffix in DICOM_SUFFIXES:
        windowed = window(read_dicom_hounsfield(path), window_level, window_width)
        row[...] = resize_float(_preprocess(windowed, preprocessing), image_size)
        return None, windowed.shape
    with Image.open(path) as image:
        size = image.size[::-1]
        if preprocessing is None:
            # JPEG decodes directly at 1/2, 1/4 or 1/8 scale and only the
            # luminance channel: most of the loading speed. Other formats ignore it.
            image.draft("L", (image_size, image_size))
        if image.mode.startswith("I") or image.mode == "F":
            pixels = np.asarray(image, dtype=np.float32)
            scaled, note = _unit_range(pixels, image.mode, _declared_bits(image, path), bit_depth)
            row[...] = resize_float(_preprocess(scaled, preprocessing), image_size)
            return note, size
        if image.mode != "L":
            image = image.convert("L")
        if preprocessing is not None:
            pixels = np.asarray(image, dtype=np.float32) / np.float32(255)
            row[...] = resize_float(_preprocess(pixels, preprocessing), image_size)
            return None, size
        if image.size != (image_size, image_size):
            image = image.resize((image_size, image_size), _resampling(image.size, image_size))
        # Division (not multiplication by 1/255) keeps 255 exactly at 1.0.
        np.divide(np.asarray(image), np.float32(255), out=row)
    return None, size


def _preprocess(pixels, preprocessing):
    # The domain step runs on the full-resolution slice: CLAHE's tiles are
    # a grid over the slice, so equalising after the resize gives another image.
    return pixels if preprocessing is None else clahe(pixels)


def _declared_bits(image, path):
    """Significant bits the file declares for its integer pixels, or None.

    A PNG ``sBIT`` chunk (Pillow does not parse it) or TIFF
    ``BitsPerSample``; otherwise 16 for Pillow's 16-bit modes, and None
    for 32-bit integers, whose depth the file does not say.
    """
    if image.format == "PNG":
        significant = _png_significant_bits(path)
        if significant is not None:
            return significant
    tags = getattr(image, "tag_v2", None)
    if tags is not None and 258 in tags:  # TIFF BitsPerSample
        bits = tags[258]
        return int(bits[0] if isinstance(bits, tuple) else bits)
    return 16 if image.mode.startswith("I;16") or image.format == "PNG" else None


def _png_significant_bits(path):
    """The greyscale entry of a PNG's ``sBIT`` chunk (which comes before the
    image data), or None."""
    try:
        with open(path, "rb") as handle:
            handle.seek(8)
            while True:
                header = handle.read(8)
                if len(header) < 8:
                    return None
                length, kind = int.from_bytes(header[:4], "big"), header[4:]
                if kind == b"sBIT":
                    return handle.read(1)[0] or None
                if kind in (b"IDAT", b"IEND"):
                    return None
                handle.seek(length + 4, os.SEEK_CUR)  # the data and its CRC
    except (OSError, IndexError):
        return None


def _unit_range(pixels, mode, declared_bits=None, bit_depth=None):
    """Integer or float pixels scaled to [0, 1] by the range they were stored in.

    Returns the scaled pixels and a note when the values contradict the
    depth the file declares (8-bit values in a 16-bit file), else None.
    """
    low, high = float(pixels.min(initial=0)), float(pixels.max(initial=0))
    if mode == "F":
        if 0 <= low and high <= 1:
            return pixels, None
        if 0 <= low and high <= 255:
            return pixels / np.float32(255), None
        raise ValueError(
            f"floating-point image with values in [{low:g}, {high:g}]; expected "
            "intensities in [0, 1] or [0, 255] (export CT values as DICOM)"
        )
    if low < 0:
        raise ValueError(
            f"signed integer image with values down to {low:g}; expected stored "
            "values from 0 (export CT values in Hounsfield units as DICOM)"
        )
    note = None
    if bit_depth is not None:
        bits = bit_depth
    elif high <= 255:
        # No 12- or 16-bit image worth reading keeps every pixel below 1/16
        # of its range: these are 8-bit values saved without scaling.
        bits = 8
        if declared_bits is None or declared_bits > 8:
            note = f"stored as {declared_bits or 'more than 8'}-bit, values up to {high:g}"
    elif declared_bits is not None and 8 < declared_bits < 16 and high < 2**declared_bits:
        bits = declared_bits  # a PNG sBIT or TIFF tag saying e.g. 10 or 12 bits
    elif high <= 4095:
        # CT scanners store 12 bits: a 12-bit slice in a 16-bit file divided
        # by 65535 would read near-black.
        bits = 12
    else:
        bits = 16
    return np.clip(pixels / np.float32(2**bits - 1), 0, 1), note


def resize_float(pixels, image_size):
    if pixels.shape == (image_size, image_size):
        return pixels
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32))
    resized = image.resize((image_size, image_size), _resampling(image.size, image_size))
    return np.clip(np.asarray(resized), 0, 1)


def _resampling(size, image_size):
    # Shrinking averages the covered area (like OpenCV's INTER_AREA), so an
    # image loaded small matches a large one averaged down: thumbnails, and
    # the scan-series groups inferred from them, do not depend on image_size.
    if max(size) > image_size:
        return Image.Resampling.BOX
    return Image.Resampling.BILINEAR


def _reason(exc, path=None):
    message = str(exc) or "no details"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if path is not None:  # said beside the reason already (Pillow repeats it)
        message = message.replace(f" {os.fspath(path)!r}", "").replace(f" '{os.fspath(path)}'", "")
    return f"{type(exc).__name__}: {message}"


#: How many unreadable files an error names; the rest are counted.
_LISTED_FAILURES = 20


def _read_errors(failures):
    """One error naming every unreadable file (up to a limit), on one line."""
    if len(failures) == 1:
        _, path, exc = failures[0]
        return _read_error(path, exc)
    listed = "; ".join(f"{path}: {_reason(exc, path)}" for _, path, exc in failures[:_LISTED_FAILURES])
    if len(failures) > _LISTED_FAILURES:
        listed += f"; and {len(failures) - _LISTED_FAILURES} more"
    missing = all(isinstance(exc, FileNotFoundError) for _, _, exc in failures)
    return (FileNotFoundError if missing else ValueError)(
        f"Cannot read {len(failures)} slice files: {listed}. Expected readable image or DICOM "
        "files. Replace or remove them, or pass on_error='skip' to leave unreadable files out."
    )


def _read_error(path, exc):
    if isinstance(exc, FileNotFoundError):
        return FileNotFoundError(
            f"Slice file {path} does not exist. Check the path, or pass "
            "on_error='skip' to leave missing files out."
        )
    kind = "DICOM" if Path(path).suffix.lower() in DICOM_SUFFIXES else "JPEG/PNG image"
    return ValueError(
        f"Cannot read slice file {path}: {_reason(exc, path)}. Expected a readable "
        f"{kind}. Replace or remove the file, or pass on_error='skip' to "
        "leave unreadable files out."
    )


def natural_key(name):
    """Sort key putting "Cyst- (2).jpg" before "Cyst- (10).jpg"."""
    parts = re.split(r"(\d+)", name)
    return [int(part) if part.isdigit() else part.lower() for part in parts], name


def find_slice_files(paths):
    """Expand files and folders (searched recursively) into slice files.

    Parameters
    ----------
    paths : list of str or Path
        Image files and/or folders.

    Returns
    -------
    files : list of Path
        In a deterministic order: as given, each folder's files in natural
        order (``slice2`` before ``slice10``).

    Raises
    ------
    FileNotFoundError
        If a path does not exist or no image file is found.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from ckdlearn.datasets import find_slice_files
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ["slice10.png", "slice2.png", "notes.txt"]:
    ...     _ = (folder / name).write_bytes(b"")
    >>> [path.name for path in find_slice_files([folder])]
    ['slice2.png', 'slice10.png']
    """
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = (p for p in path.rglob("*") if p.is_file() and is_slice_file(p))
            files.extend(sorted(found, key=lambda p: natural_key(os.fspath(p))))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"No such file or folder: {path}")
    if not files:
        suffixes = ", ".join(sorted(s for s in SLICE_SUFFIXES if s))
        raise FileNotFoundError(
            "No image files found in " + ", ".join(map(str, paths))
            + f" (looked for {suffixes} and DICOM files without an extension)."
        )
    return files
