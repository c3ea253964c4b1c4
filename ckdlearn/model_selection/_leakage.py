"""Leakage audit: duplicated images on both sides of a train/test split.

Adjacent CT slices of one scan series look almost identical. When a split
puts them on both sides, a classifier is tested on images it has, in
effect, already seen, and its score says little about new patients. This
module finds such pairs, exact and near, so that a split can be checked
before its score is believed.
"""

import hashlib
import html
import numbers
import warnings

import numpy as np
from scipy import sparse
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    check_cv,
)

__all__ = ["LeakageWarning", "LeakageReport", "audit_leakage", "audit_cv"]

#: Default largest thumbnail distance counted as a near duplicate; see the
#: Notes of :func:`audit_leakage` for how it was chosen.
DEFAULT_NEAR_THRESHOLD = 0.15

# Images are processed in chunks of this many, so that memory stays
# bounded (a chunk's integral images are a few tens of MiB at 128 px).
_IMAGES_PER_CHUNK = 256
# Upper bound on the similarity block (test chunk x all training images)
# held at once: 8 Mi float32 values, 32 MiB.
_SIMILARITY_BLOCK_VALUES = 8 * 1024 * 1024
# A search within one set (infer_scan_groups, run by every load_ct_kidney
# call) holds one unshifted thumbnail per image (1 KiB at 16x16) and small
# work arrays, so that loading stays the output plus a small constant: its
# products and blocks of shifted thumbnails hold at most this many values
# (256 KiB of float32)...
_LEAN_BLOCK_VALUES = 64 * 1024
# ...and its images are hashed and shrunk to thumbnails in chunks of this
# many pixels (512 KiB of float32; the float64 sums take about 2.5 times
# that).
_LEAN_CHUNK_VALUES = 128 * 1024
# Slack on squared thumbnail distances when a search rules pairs out before
# comparing shifts: far above float32 rounding (about 1e-6 here), far below
# the distances that matter (0.15**2 = 0.0225).
_PRUNE_TOLERANCE = 1e-3


class LeakageWarning(UserWarning):
    """Warning about an evaluation whose score may be overstated by leakage.

    Raised when information about the test images reaches the model during
    training, typically because slices of one scan series land on both
    sides of a split, because no scan-series groups were given, or because
    an audit found duplicated images across a split.
    """


class LeakageReport:
    """Duplicated images found across a training and a test set.

    Returned by :func:`audit_leakage` and :func:`audit_cv`; not meant to be
    built by hand.

    Parameters
    ----------
    n_train, n_test : int
        Number of images in the training and the test set.
    exact_pairs : ndarray of shape (n_exact, 2)
        ``[train_index, test_index]`` pairs of byte-identical images
        (after casting to float32).
    near_pairs : ndarray of shape (n_near, 2)
        ``[train_index, test_index]`` pairs of near duplicates that are not
        exact duplicates.
    near_distances : ndarray of shape (n_near,)
        Thumbnail distance of each near pair, 0 for identical thumbnails.
    near_threshold : float
        Largest thumbnail distance counted as a near duplicate.
    max_shift : int
        Largest shift, in pixels, tolerated between near duplicates.
    thumbnail_size : int
        Side of the thumbnails that were compared.

    Attributes
    ----------
    n_exact : int
        Number of exact-duplicate pairs.
    n_near : int
        Number of near-duplicate pairs (exact pairs not included).
    leaked_test_indices : ndarray of int
        Sorted indices of the test images that have at least one exact or
        near duplicate in the training set.
    n_leaked_test : int
        ``len(leaked_test_indices)``.
    leaked_fraction : float
        Fraction of test images with a duplicate in the training set.
    has_leakage : bool
        Whether any duplicate was found.
    """

    def __init__(
        self,
        *,
        n_train,
        n_test,
        exact_pairs,
        near_pairs,
        near_distances,
        near_threshold,
        max_shift,
        thumbnail_size,
    ):
        self.n_train = int(n_train)
        self.n_test = int(n_test)
        self.exact_pairs = np.asarray(exact_pairs, dtype=np.int64).reshape(-1, 2)
        self.near_pairs = np.asarray(near_pairs, dtype=np.int64).reshape(-1, 2)
        self.near_distances = np.asarray(near_distances, dtype=np.float64).ravel()
        self.near_threshold = float(near_threshold)
        self.max_shift = int(max_shift)
        self.thumbnail_size = int(thumbnail_size)

    @property
    def n_exact(self):
        return len(self.exact_pairs)

    @property
    def n_near(self):
        return len(self.near_pairs)

    @property
    def leaked_test_indices(self):
        return np.unique(
            np.concatenate([self.exact_pairs[:, 1], self.near_pairs[:, 1]])
        )

    @property
    def n_leaked_test(self):
        return len(self.leaked_test_indices)

    @property
    def leaked_fraction(self):
        return self.n_leaked_test / self.n_test if self.n_test else 0.0

    @property
    def has_leakage(self):
        return self.n_exact > 0 or self.n_near > 0

    def to_dict(self):
        """Return the report as plain Python types (JSON-serialisable).

        Returns
        -------
        report : dict
            Counts, settings and the index pairs as lists.
        """
        return {
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_exact": self.n_exact,
            "n_near": self.n_near,
            "n_leaked_test": self.n_leaked_test,
            "leaked_fraction": self.leaked_fraction,
            "exact_pairs": self.exact_pairs.tolist(),
            "near_pairs": self.near_pairs.tolist(),
            "near_distances": self.near_distances.tolist(),
            "near_threshold": self.near_threshold,
            "max_shift": self.max_shift,
            "thumbnail_size": self.thumbnail_size,
        }

    def _example_pairs(self, limit):
        """The closest pairs first: exact ones, then near ones by distance."""
        rows = [(int(i), int(j), "exact", 0.0) for i, j in self.exact_pairs[:limit]]
        order = np.argsort(self.near_distances, kind="stable")[: limit - len(rows)]
        rows += [
            (int(self.near_pairs[k, 0]), int(self.near_pairs[k, 1]), "near",
             float(self.near_distances[k]))
            for k in order
        ]
        return rows

    def _settings_text(self):
        return (
            f"thumbnail distance <= {self.near_threshold:g}, "
            f"shifts up to {self.max_shift} px"
        )

    def __repr__(self):
        return (
            f"LeakageReport(n_train={self.n_train}, n_test={self.n_test}, "
            f"n_exact={self.n_exact}, n_near={self.n_near}, "
            f"leaked_fraction={self.leaked_fraction:.3f})"
        )

    def __str__(self):
        if not self.has_leakage:
            return (
                f"LeakageReport: no exact or near duplicates between "
                f"{self.n_train} training and {self.n_test} test images "
                f"({self._settings_text()})."
            )
        lines = [
            f"LeakageReport: {self.n_leaked_test} of {self.n_test} test images "
            f"({self.leaked_fraction:.1%}) have a duplicate among the "
            f"{self.n_train} training images.",
            f"  exact duplicates: {self.n_exact} pairs",
            f"  near duplicates:  {self.n_near} pairs ({self._settings_text()})",
            "  closest pairs (train index, test index, kind, distance):",
        ]
        lines += [
            f"    {i:>6d} {j:>6d}  {kind:<5s}  {distance:.3f}"
            for i, j, kind, distance in self._example_pairs(5)
        ]
        lines.append(
            "  Fix: keep each scan series on one side of the split (pass "
            "groups, e.g. StratifiedGroupKFold) and drop exact duplicates "
            "before splitting."
        )
        return "\n".join(lines)

    def _repr_html_(self):
        summary = (
            f"{self.n_leaked_test} of {self.n_test} test images "
            f"({self.leaked_fraction:.1%}) have a duplicate among "
            f"{self.n_train} training images"
            if self.has_leakage
            else f"No duplicates between {self.n_train} training and "
            f"{self.n_test} test images"
        )
        rows = "".join(
            f"<tr><td>{i}</td><td>{j}</td><td>{kind}</td><td>{d:.3f}</td></tr>"
            for i, j, kind, d in self._example_pairs(10)
        )
        pairs_table = (
            "<table><thead><tr><th>train index</th><th>test index</th>"
            f"<th>kind</th><th>distance</th></tr></thead><tbody>{rows}</tbody>"
            "</table>"
            if rows
            else ""
        )
        return (
            "<div><strong>LeakageReport</strong>: "
            f"{html.escape(summary)}<br>"
            f"exact pairs: {self.n_exact}, near pairs: {self.n_near} "
            f"({html.escape(self._settings_text())}){pairs_table}</div>"
        )


# --------------------------------------------------------------------------
# Input validation


def _validate_image_shape(image_shape):
    if image_shape is None:
        return None
    try:
        shape = () if isinstance(image_shape, str) else tuple(int(side) for side in image_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) not in (2, 3) or min(shape, default=0) < 1:
        raise ValueError(
            f"image_shape must be (height, width) or (channels, height, width) "
            f"with positive sides; got {image_shape!r}."
        )
    return shape if len(shape) == 3 else (1,) + shape


def _as_image_array(X, image_shape, name):
    """View X as (n, channels, height, width) without copying or casting."""
    if sparse.issparse(X):
        raise TypeError(
            f"{name} is a sparse matrix; images must be a dense array. "
            f"Convert it with {name}.toarray()."
        )
    images = np.asarray(X)
    if images.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold numbers (pixel values); got dtype "
            f"{images.dtype}. Convert it with np.asarray({name}, dtype=np.float32)."
        )
    if images.ndim not in (2, 3, 4):
        hint = (
            f" For a single image, add the sample axis: {name}[np.newaxis]."
            if images.ndim == 1
            else ""
        )
        raise ValueError(
            f"{name} must be 2-D (n_images, height*width), 3-D "
            f"(n_images, height, width) or 4-D (n_images, channels, height, "
            f"width); got a {images.ndim}-D array of shape {images.shape}.{hint}"
        )
    if images.shape[0] == 0:
        raise ValueError(
            f"{name} is empty (0 images); an audit needs at least one image "
            "on each side of the split."
        )
    if images.ndim == 2:
        n_features = images.shape[1]
        if image_shape is None:
            side = int(round(np.sqrt(n_features)))
            if side * side != n_features:
                raise ValueError(
                    f"{name} has {n_features} features per image, which is not "
                    "a square number, so the image shape cannot be inferred. "
                    "Pass image_shape=(height, width)."
                )
            image_shape = (1, side, side)
        if int(np.prod(image_shape)) != n_features:
            raise ValueError(
                f"image_shape={image_shape[1:] if image_shape[0] == 1 else image_shape} "
                f"holds {int(np.prod(image_shape))} pixels but {name} has "
                f"{n_features} features per image; pass the shape the images "
                "were flattened from."
            )
        return images.reshape((images.shape[0],) + image_shape)
    if images.ndim == 3:
        images = images[:, np.newaxis]
    if image_shape is not None and images.shape[1:] != image_shape:
        if not (image_shape[0] == 1 and images.shape[2:] == image_shape[1:]):
            raise ValueError(
                f"{name} holds images of shape {images.shape[1:]} but "
                f"image_shape={image_shape} was given; leave image_shape=None "
                "for 3-D and 4-D input, or make it match."
            )
    return images


def _check_finite(images, name):
    if images.dtype.kind != "f":
        return
    for start in range(0, len(images), _IMAGES_PER_CHUNK):
        chunk = images[start : start + _IMAGES_PER_CHUNK]
        finite = np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)
        if not finite.all():
            bad = start + np.flatnonzero(~finite)
            raise ValueError(
                f"{name} contains NaN or infinity (image index "
                f"{', '.join(map(str, bad[:5]))}{', ...' if len(bad) > 5 else ''}). "
                "Drop or repair these images before auditing."
            )


def _check_near_threshold(near_threshold):
    if not isinstance(near_threshold, numbers.Real) or not 0 <= near_threshold <= 2:
        raise ValueError(
            f"near_threshold must be a number in [0, 2] (a distance between "
            f"unit-norm thumbnails); got {near_threshold!r}. The default is "
            f"{DEFAULT_NEAR_THRESHOLD}."
        )


def _check_max_shift(max_shift):
    if isinstance(max_shift, bool) or not isinstance(max_shift, numbers.Integral) or max_shift < 0:
        raise ValueError(
            f"max_shift must be a non-negative integer (pixels); got {max_shift!r}."
        )


def _check_params(near_threshold, max_shift, thumbnail_size):
    _check_near_threshold(near_threshold)
    _check_max_shift(max_shift)
    if (
        isinstance(thumbnail_size, bool)
        or not isinstance(thumbnail_size, numbers.Integral)
        or thumbnail_size < 2
    ):
        raise ValueError(
            f"thumbnail_size must be an integer >= 2; got {thumbnail_size!r}."
        )


# --------------------------------------------------------------------------
# Fingerprints: a hash per image for exact duplicates, normalised thumbnails
# (optionally of shifted copies) for near duplicates.


def _shift_offsets(max_shift):
    steps = range(-max_shift, max_shift + 1)
    return [(dy, dx) for dy in steps for dx in steps]


def _exact_hashes(images, chunk_size=_IMAGES_PER_CHUNK):
    """64-bit hash of each image's bytes after casting to float32.

    Adding 0.0 turns -0.0 into +0.0, so that equal pixel values always have
    equal bytes. np.add always returns a new array: the input is never
    written to.
    """
    hashes = np.empty(len(images), dtype=np.uint64)
    for start in range(0, len(images), chunk_size):
        chunk = images[start : start + chunk_size]
        canonical = np.add(chunk.reshape(len(chunk), -1), np.float32(0.0), dtype=np.float32)
        for offset, row in enumerate(canonical):
            digest = hashlib.blake2b(row, digest_size=8).digest()
            hashes[start + offset] = int.from_bytes(digest, "little")
    return hashes


def _thumbnails(images, thumbnail_size, shifts, chunk_size=_IMAGES_PER_CHUNK):
    """Normalised area-averaged thumbnails of shifted copies of each image.

    Returns an array of shape (len(shifts), n_images, n_thumbnail_pixels),
    float32, each thumbnail with zero mean and unit norm, so that the dot
    product of two thumbnails is their Pearson correlation. Flat thumbnails
    (no contrast) are all zeros: they carry no structure to compare.

    Blocks are taken between arbitrary edges, so sides that are not
    multiples of the thumbnail size need no special case. Shifted copies
    replicate the edge pixels; their block sums are derived from the
    unshifted ones (see _shift_block_sums), so the pixels are summed once
    whatever the number of shifts.
    """
    n_images, n_channels, height, width = images.shape
    thumb_height = min(thumbnail_size, height)
    thumb_width = min(thumbnail_size, width)
    row_edges = np.round(np.linspace(0, height, thumb_height + 1)).astype(np.intp)
    col_edges = np.round(np.linspace(0, width, thumb_width + 1)).astype(np.intp)
    block_areas = np.outer(np.diff(row_edges), np.diff(col_edges)).ravel()
    shift_index = {shift: k for k, shift in enumerate(shifts)}

    out = np.empty((len(shifts), n_images, thumb_height * thumb_width), dtype=np.float32)
    for start in range(0, n_images, chunk_size):
        chunk = images[start : start + chunk_size]
        n_chunk = len(chunk)
        grey = chunk[:, 0] if n_channels == 1 else chunk.mean(axis=1, dtype=np.float64)
        flat_pixels = grey.reshape(n_chunk, -1)
        # Relative to the pixel scale, so uint8 and [0, 1] images agree.
        scale = np.maximum(
            np.abs(flat_pixels.max(axis=1).astype(np.float64)),
            np.abs(flat_pixels.min(axis=1).astype(np.float64)),
        )
        flat_tolerance = 1e-6 * np.maximum(scale, np.finfo(np.float64).tiny)
        unshifted_bands = _sum_between(grey, row_edges, axis=1)
        for dy in sorted({dy for dy, _ in shifts}):
            bands = _shift_block_sums(grey, unshifted_bands, row_edges, dy, axis=1)
            unshifted_blocks = _sum_between(bands, col_edges, axis=2)
            for dx in sorted({dx for shift_dy, dx in shifts if shift_dy == dy}):
                block_sums = _shift_block_sums(bands, unshifted_blocks, col_edges, dx, axis=2)
                thumbs = block_sums.reshape(n_chunk, -1) / block_areas
                thumbs -= thumbs.mean(axis=1, keepdims=True)
                norms = np.linalg.norm(thumbs, axis=1)
                flat = norms <= flat_tolerance
                np.divide(thumbs, norms[:, None], out=thumbs, where=~flat[:, None])
                thumbs[flat] = 0.0
                out[shift_index[(dy, dx)], start : start + n_chunk] = thumbs
    return out


def _sum_between(values, edges, axis):
    """Sums of values over [edges[i], edges[i + 1]) along axis, in float64.

    np.add.reduceat is several times faster here than a cumulative sum
    along a non-last axis. Its last segment runs to the end of the axis.
    """
    if edges[-1] < values.shape[axis]:
        sums = np.add.reduceat(values, edges, axis=axis, dtype=np.float64)
        return np.delete(sums, -1, axis=axis)
    return np.add.reduceat(values, edges[:-1], axis=axis, dtype=np.float64)


def _shift_block_sums(values, block_sums, edges, shift, axis):
    """Block sums of values shifted by ``shift`` along axis, edges replicated.

    Shifting with edge replication reads values at clip(i - shift). Each
    block [a, b) of the shifted copy then holds the unshifted block plus
    the ``shift`` positions before a, minus the ``shift`` positions before
    b (mirrored for negative shifts): a few gathered rows instead of a
    pass over every pixel.
    """
    if shift == 0:
        return block_sums
    last = values.shape[axis] - 1

    def rows_at(offset):
        # float64 first: differences of uint8 rows would wrap around.
        rows = np.take(values, np.clip(edges + offset, 0, last), axis=axis)
        return rows.astype(np.float64)

    shifted = block_sums.copy()
    if shift > 0:
        for k in range(1, shift + 1):
            shifted -= np.diff(rows_at(-k), axis=axis)
    else:
        for k in range(-shift):
            shifted += np.diff(rows_at(k), axis=axis)
    return shifted


def _prepare(images, name, image_shape, near_threshold, max_shift, thumbnail_size):
    _check_params(near_threshold, max_shift, thumbnail_size)
    images = _as_image_array(images, _validate_image_shape(image_shape), name)
    _check_finite(images, name)
    return images


# --------------------------------------------------------------------------
# Matching


def _exact_pairs(train_hashes, test_hashes, train_images, test_images):
    """All [train, test] pairs with equal hashes, verified pixel by pixel.

    ``train_images[k]`` and ``test_images[k]`` must be the images whose
    hashes are ``train_hashes[k]`` and ``test_hashes[k]``; they are only
    read for the few candidate pairs.
    """
    order = np.argsort(train_hashes, kind="stable")
    sorted_hashes = train_hashes[order]
    first = np.searchsorted(sorted_hashes, test_hashes, side="left")
    last = np.searchsorted(sorted_hashes, test_hashes, side="right")
    counts = last - first
    test_index = np.repeat(np.arange(len(test_hashes)), counts)
    # Position k of each run of matches: first[test] + (k - start of run).
    run_starts = np.repeat(np.cumsum(counts) - counts, counts)
    train_index = order[np.repeat(first, counts) + np.arange(counts.sum()) - run_starts]
    verified = np.array(
        [
            np.array_equal(
                np.add(train_images[i], np.float32(0.0), dtype=np.float32),
                np.add(test_images[j], np.float32(0.0), dtype=np.float32),
            )
            for i, j in zip(train_index, test_index)
        ],
        dtype=bool,
    )
    pairs = np.column_stack([train_index, test_index]).astype(np.int64)
    return pairs[verified]


class _Rows:
    """Lazy ``images[rows[k]]``: a fold's images without copying them all."""

    def __init__(self, images, rows):
        self.images, self.rows = images, rows

    def __getitem__(self, k):
        return self.images[self.rows[k]]


class _LazyThumbnails:
    """Shifted thumbnails of a stack of images, computed a block at a time.

    Stands in for the (n_shifts, n_images, n_pixels) array of _thumbnails
    in _near_pairs, so that a search within one set never holds the
    shifted thumbnails of all images.
    """

    def __init__(self, images, thumbnail_size, shifts, chunk_size):
        self.images, self.thumbnail_size = images, thumbnail_size
        self.shifts, self.chunk_size = shifts, chunk_size
        height, width = images.shape[2:]
        n_pixels = min(thumbnail_size, height) * min(thumbnail_size, width)
        self.shape = (len(shifts), len(images), n_pixels)

    def block(self, start, stop):
        return _thumbnails(
            self.images[start:stop], self.thumbnail_size, self.shifts, self.chunk_size
        )


def _test_block(test_thumbs_shifted, start, stop):
    if isinstance(test_thumbs_shifted, _LazyThumbnails):
        return test_thumbs_shifted.block(start, stop)
    return test_thumbs_shifted[:, start:stop]


def _near_pairs(
    train_thumbs,
    test_thumbs_shifted,
    near_threshold,
    margin=0.0,
    prune=False,
    block_values=_SIMILARITY_BLOCK_VALUES,
):
    """[train, test] pairs whose best-aligned thumbnails are close.

    For unit-norm thumbnails, distance**2 = 2 - 2 * correlation, so the
    search keeps, per pair, the highest correlation over shifts and never
    forms a full distance matrix: it works through blocks of test images
    (``test_thumbs_shifted`` is an array or a _LazyThumbnails). All shifts
    of a block go through one matrix product, because each BLAS call has a
    fixed cost (tens of milliseconds once torch's OpenMP runtime is loaded
    beside numpy's OpenBLAS). ``margin`` lowers the correlation a pair
    needs by that much.

    ``prune`` (used within one set) rules most pairs out before the shifts
    are compared: by the triangle inequality, a test image's shifted
    thumbnails lie within its ``spread`` (their largest distance from the
    middle, unshifted one) of that one, so a training thumbnail farther
    than ``reach + spread`` from it matches no shift. One product with the
    unshifted thumbnails finds the training images within that bound of
    any image of the block; the shifted products are formed for those
    columns only, in pieces of at most ``block_values`` values. The bound
    is exact (with a tolerance far above float32 rounding), so the same
    pairs are found, but products of other shapes may round a correlation
    differently in its last bits (distances of near-identical pairs move by
    up to about 1e-4): the audit does not prune, so that its reports stay
    as they were.
    """
    n_shifts, n_test, n_features = test_thumbs_shifted.shape
    n_train = train_thumbs.shape[0]
    min_similarity = 1.0 - near_threshold**2 / 2.0 - margin
    # A match needs a positive correlation, hence two unit-norm thumbnails
    # (flat ones are all zeros) at most ``reach`` apart. Without shifts
    # there is nothing to save.
    prune = prune and min_similarity > 0 and n_shifts > 1
    found_train, found_test, found_distance = [], [], []

    def keep(similarity, train_index_of, start):
        test_index, column = np.nonzero(similarity >= min_similarity)
        distance = np.sqrt(
            np.clip(2.0 - 2.0 * similarity[test_index, column].astype(np.float64), 0.0, None)
        )
        found_train.append(train_index_of(column))
        found_test.append(test_index + start)
        found_distance.append(distance)

    if not prune:
        block = max(1, block_values // max(n_shifts * n_train, 1))
        train_t = np.ascontiguousarray(train_thumbs.T)
        for start in range(0, n_test, block):
            stop = min(start + block, n_test)
            stacked = _test_block(test_thumbs_shifted, start, stop).reshape(-1, n_features)
            similarity = (stacked @ train_t).reshape(n_shifts, stop - start, n_train).max(axis=0)
            keep(similarity, lambda column: column, start)
    else:
        reach = np.sqrt(2.0 - 2.0 * min_similarity)
        train_squares = np.einsum("ij,ij->i", train_thumbs, train_thumbs)
        # Rows per block: the unshifted product (rows x n_train) and the
        # block's shifted thumbnails both within block_values.
        block = max(
            1, min(block_values // max(n_train, 1), block_values // (n_shifts * n_features))
        )
        for start in range(0, n_test, block):
            stop = min(start + block, n_test)
            shifted = _test_block(test_thumbs_shifted, start, stop)
            anchor = shifted[n_shifts // 2]
            away = shifted - anchor
            spread = np.sqrt(np.einsum("sij,sij->si", away, away).max(axis=0))
            del away
            # Squared distances to the training thumbnails, less the
            # block's own squared norms (taken off the limit instead).
            squared = anchor @ train_thumbs.T
            squared *= -2.0
            squared += train_squares
            limit = (reach + spread) ** 2 + _PRUNE_TOLERANCE
            limit -= np.einsum("ij,ij->i", anchor, anchor)
            kept = np.flatnonzero(np.any(squared <= limit[:, None], axis=0))
            del squared
            stacked = shifted.reshape(-1, n_features)
            piece = max(1, block_values // stacked.shape[0])
            for first in range(0, len(kept), piece):
                columns = kept[first : first + piece]
                product = stacked @ train_thumbs[columns].T
                similarity = product.reshape(n_shifts, stop - start, -1).max(axis=0)
                keep(similarity, lambda column, columns=columns: columns[column], start)
    if not found_train:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float64)
    pairs = np.column_stack([np.concatenate(found_train), np.concatenate(found_test)])
    return pairs.astype(np.int64), np.concatenate(found_distance)


def _match(
    train_images,
    test_images,
    train_hashes,
    test_hashes,
    train_thumbs,
    test_thumbs_shifted,
    near_threshold,
    margin=0.0,
    prune=False,
    block_values=_SIMILARITY_BLOCK_VALUES,
):
    """Exact pairs, near pairs and near distances between two fingerprinted sets.

    The one matching rule of the module: ``[train, test]`` pairs (positions
    in the given arrays), exact pairs excluded from the near ones, both
    sorted by test index, then training index.
    """
    exact = _exact_pairs(train_hashes, test_hashes, train_images, test_images)
    near, distances = _near_pairs(
        train_thumbs, test_thumbs_shifted, near_threshold, margin, prune, block_values
    )
    if len(exact) and len(near):
        n_test = len(test_hashes)
        is_exact = np.isin(near[:, 0] * n_test + near[:, 1], exact[:, 0] * n_test + exact[:, 1])
        near, distances = near[~is_exact], distances[~is_exact]
    exact = exact[np.lexsort((exact[:, 0], exact[:, 1]))]
    order = np.lexsort((near[:, 0], near[:, 1]))
    return exact, near[order], distances[order]


def _duplicate_pairs(
    images,
    other=None,
    *,
    near_threshold=DEFAULT_NEAR_THRESHOLD,
    max_shift=1,
    thumbnail_size=16,
    margin=0.0,
):
    """All exact and near duplicate pairs between two sets or within one.

    The criterion of :func:`audit_leakage`, shared by the audit and by
    :func:`~ckdlearn.model_selection.infer_scan_groups` (which merges the
    scan series such pairs connect). Inputs must already be validated
    ``(n, channels, height, width)`` arrays (see _prepare); the parameters
    are not checked here.

    Parameters
    ----------
    images : ndarray of shape (n, channels, height, width)
        The training set, or the only set.
    other : ndarray of shape (m, channels, height, width), default=None
        The test set. None searches within ``images``.
    near_threshold, max_shift, thumbnail_size
        As in :func:`audit_leakage`.
    margin : float, default=0.0
        Correlation below the threshold still counted as near, to absorb
        float32 rounding: a matrix product of other shapes (another fold,
        another block) may round a pair's correlation differently in its
        last bits.

    Returns
    -------
    exact_pairs : ndarray of shape (n_exact, 2), int64
    near_pairs : ndarray of shape (n_near, 2), int64
    near_distances : ndarray of shape (n_near,), float64
        Between two sets: ``[index in images, index in other]`` pairs, as
        the audit reports them (``other`` shifted by up to ``max_shift``
        px), from the full comparison. Within one set: ``[i, j]`` with
        ``i < j``, sorted, for every pair the audit flags in either
        direction (whichever of the two is the test image), with the
        smaller of the two distances; an image is not paired with itself.
        This search is pruned and holds little memory (it runs on every
        load_ct_kidney call): the same pairs as the full comparison, but
        correlations may round differently in their last float32 bits, so
        pass a ``margin`` where a pair at the threshold must not be missed.
    """
    shifts = _shift_offsets(max_shift)
    if other is not None:
        return _match(
            images,
            other,
            _exact_hashes(images),
            _exact_hashes(other),
            _thumbnails(images, thumbnail_size, [(0, 0)])[0],
            _thumbnails(other, thumbnail_size, shifts),
            near_threshold,
            margin,
        )
    # Within one set, memory stays one thumbnail per image plus small work
    # arrays: small chunks of images, shifted thumbnails computed a block
    # at a time, products of at most _LEAN_BLOCK_VALUES values.
    chunk_size = max(1, _LEAN_CHUNK_VALUES // int(np.prod(images.shape[1:])))
    hashes = _exact_hashes(images, chunk_size)
    exact, near, distances = _match(
        images,
        images,
        hashes,
        hashes,
        _thumbnails(images, thumbnail_size, [(0, 0)], chunk_size)[0],
        _LazyThumbnails(images, thumbnail_size, shifts, chunk_size),
        near_threshold,
        margin,
        prune=True,
        block_values=_LEAN_BLOCK_VALUES,
    )
    # Exact equality is symmetric: keep each pair once, not the diagonal.
    exact = exact[exact[:, 0] < exact[:, 1]]
    exact = exact[np.lexsort((exact[:, 1], exact[:, 0]))]
    # A near pair may be found in one direction only (the shifted image is
    # the test one); keep it once, at its smaller distance.
    near = np.sort(near, axis=1)
    keep = near[:, 0] < near[:, 1]
    near, distances = near[keep], distances[keep]
    order = np.lexsort((distances, near[:, 1], near[:, 0]))
    near, distances = near[order], distances[order]
    first = np.ones(len(near), dtype=bool)
    first[1:] = np.any(near[1:] != near[:-1], axis=1)
    return exact, near[first], distances[first]


def _compare(
    train_images,
    test_images,
    train_hashes,
    test_hashes,
    train_thumbs,
    test_thumbs_shifted,
    *,
    near_threshold,
    max_shift,
    thumbnail_size,
    train_rows=None,
    test_rows=None,
):
    """Build a LeakageReport; *_rows map local positions to reported indices."""
    exact, near, distances = _match(
        train_images,
        test_images,
        train_hashes,
        test_hashes,
        train_thumbs,
        test_thumbs_shifted,
        near_threshold,
    )
    if train_rows is not None:
        exact = np.column_stack([train_rows[exact[:, 0]], test_rows[exact[:, 1]]])
        near = np.column_stack([train_rows[near[:, 0]], test_rows[near[:, 1]]])
    return _report(len(train_hashes), len(test_hashes), exact, near, distances,
                   near_threshold, max_shift, thumbnail_size)


def _report(n_train, n_test, exact, near, distances, near_threshold, max_shift, thumbnail_size):
    """The LeakageReport of matched pairs, with the settings that found them."""
    return LeakageReport(
        n_train=n_train,
        n_test=n_test,
        exact_pairs=exact,
        near_pairs=near,
        near_distances=distances,
        near_threshold=near_threshold,
        max_shift=max_shift,
        thumbnail_size=thumbnail_size,
    )


# --------------------------------------------------------------------------
# Public functions


def audit_leakage(
    X_train,
    X_test,
    *,
    image_shape=None,
    near_threshold=DEFAULT_NEAR_THRESHOLD,
    max_shift=1,
    thumbnail_size=16,
):
    """Find training images that are exact or near copies of test images.

    A test image with a duplicate in the training set does not measure how
    the model does on unseen data. In CT slice data this happens whenever
    adjacent slices of one scan series are split apart.

    Parameters
    ----------
    X_train : array-like of shape (n_train, height*width), \
            (n_train, height, width) or (n_train, channels, height, width)
        Training images. Any numeric dtype and value range; the two sets
        must share the image shape.
    X_test : array-like, same layout as X_train
        Test images.
    image_shape : tuple of int, default=None
        ``(height, width)`` or ``(channels, height, width)`` of the
        flattened images in 2-D input. None infers a square single-channel
        shape from the number of features.
    near_threshold : float, default=0.15
        Largest distance between normalised thumbnails counted as a near
        duplicate: 0 for thumbnails that agree up to brightness and
        contrast, about 1.41 for unrelated ones. The distance relates to the
        thumbnails' Pearson correlation r by ``sqrt(2 * (1 - r))``, so 0.15
        means r >= 0.989.
    max_shift : int, default=1
        Largest translation, in pixels in each direction, still matched as
        a near duplicate. The cost grows as ``(2 * max_shift + 1) ** 2``;
        0 turns the shift search off.
    thumbnail_size : int, default=16
        Side of the thumbnails that are compared (smaller for smaller
        images). ``near_threshold`` was calibrated for 16.

    Returns
    -------
    report : LeakageReport
        Counts (``n_exact``, ``n_near``, ``leaked_fraction``), the
        ``[train_index, test_index]`` pairs (``exact_pairs``,
        ``near_pairs``) and the near pairs' distances.

    Raises
    ------
    ValueError
        If a set is empty, holds NaN or infinity, is not 2-, 3- or 4-D, has
        a non-square feature count and no ``image_shape``, or if the two
        sets hold images of different shapes.
    TypeError
        If a set is sparse or not numeric.

    See Also
    --------
    audit_cv : The same audit for each fold of a cross-validation.

    Notes
    -----
    *Exact duplicates* are images whose bytes are equal after casting to
    float32 (and turning -0.0 into 0.0): each image is hashed and matching
    hashes are confirmed pixel by pixel.

    *Near duplicates* are found on 16x16 area-averaged thumbnails, each
    shifted to zero mean and scaled to unit norm, which removes brightness
    and contrast changes, averages away pixel noise and makes the test
    independent of the value range. The distance between a training and a
    test image is the smallest over shifts of the test image by up to
    ``max_shift`` pixels (edges replicated), because a 1-pixel offset
    moves sharp body outlines across thumbnail blocks. All pairs are
    compared with matrix products in blocks, never at full resolution:
    3,879 x 3,879 images of 128x128 take about a second or two. Images
    without contrast (constant images) are matched only as exact
    duplicates. Pairs found as exact are not repeated as near.

    The default threshold of 0.15 was chosen on the 3,879 slices of the
    CT KIDNEY dataset (at 64 and 128 px). Adjacent slices of one series lie
    at distances 0.03 (median) to 0.09 (99th percentile); copies with
    Gaussian noise of standard deviation 0.05, a 1-pixel shift or a
    brightness change stay below 0.13; while no slice is closer than 0.22
    to any slice of a different class (and so of a different series). The
    threshold sits in that gap. Random noise images carry little structure
    at thumbnail scale, so noisy copies of *them* are harder to match.

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn.model_selection import audit_leakage
    >>> rng = np.random.default_rng(0)
    >>> images = rng.random((6, 32, 32)).astype(np.float32)
    >>> X_train = images[:4].reshape(4, -1)
    >>> X_test = np.stack([images[1], images[4], images[5]]).reshape(3, -1)
    >>> report = audit_leakage(X_train, X_test)
    >>> report.n_exact, report.n_near
    (1, 0)
    >>> report.exact_pairs  # [train index, test index]
    array([[1, 0]])
    >>> round(report.leaked_fraction, 3)
    0.333
    """
    train_images = _prepare(
        X_train, "X_train", image_shape, near_threshold, max_shift, thumbnail_size
    )
    test_images = _prepare(
        X_test, "X_test", image_shape, near_threshold, max_shift, thumbnail_size
    )
    if train_images.shape[1:] != test_images.shape[1:]:
        raise ValueError(
            f"X_train holds images of shape {train_images.shape[1:]} "
            f"(channels, height, width) but X_test holds {test_images.shape[1:]}. "
            "Both sets must be prepared the same way; resize them to one "
            "image size (e.g. load_ct_kidney(..., image_size=...))."
        )
    exact, near, distances = _duplicate_pairs(
        train_images,
        test_images,
        near_threshold=near_threshold,
        max_shift=max_shift,
        thumbnail_size=thumbnail_size,
    )
    return _report(len(train_images), len(test_images), exact, near, distances,
                   near_threshold, max_shift, thumbnail_size)


def _resolve_cv(cv, y, groups):
    """A splitter that keeps groups whole when there are groups.

    An integer becomes StratifiedGroupKFold with groups (GroupKFold without
    labels), StratifiedKFold without groups (KFold without labels). Other
    values go through sklearn's check_cv.
    """
    if cv is None:
        cv = 5
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        if groups is not None:
            return StratifiedGroupKFold(n_splits=cv) if y is not None else GroupKFold(n_splits=cv)
        return StratifiedKFold(n_splits=cv) if y is not None else KFold(n_splits=cv)
    return check_cv(cv, y, classifier=y is not None)


def _split_indices(cv, X, y, groups):
    n_samples = len(X)
    with warnings.catch_warnings():
        # Splitters that ignore groups still accept them; say so ourselves.
        warnings.simplefilter("ignore", UserWarning)
        splits = [
            (np.asarray(train, dtype=np.intp), np.asarray(test, dtype=np.intp))
            for train, test in cv.split(np.zeros((n_samples, 1)), y, groups)
        ]
    if not splits:
        raise ValueError(f"cv={cv!r} produced no train/test splits.")
    return splits


def audit_cv(
    X,
    y=None,
    groups=None,
    *,
    cv=5,
    image_shape=None,
    near_threshold=DEFAULT_NEAR_THRESHOLD,
    max_shift=1,
    thumbnail_size=16,
):
    """Audit every train/test split of a cross-validation for duplicates.

    Each image is fingerprinted once; each fold then compares its test
    images with its training images as :func:`audit_leakage` does.

    Parameters
    ----------
    X : array-like of shape (n_images, height*width), \
            (n_images, height, width) or (n_images, channels, height, width)
        All images.
    y : array-like of shape (n_images,), default=None
        Class labels, used by stratified splitters.
    groups : array-like of shape (n_images,), default=None
        Scan-series id of each image, used by group-aware splitters.
    cv : int, cross-validation generator or iterable, default=5
        An integer gives ``StratifiedGroupKFold`` when ``groups`` is given
        and ``StratifiedKFold`` otherwise (the ``KFold`` variants without
        ``y``). Splitters and iterables of ``(train, test)`` index arrays
        are used as they are.
    image_shape, near_threshold, max_shift, thumbnail_size
        As in :func:`audit_leakage`.

    Returns
    -------
    reports : list of LeakageReport
        One report per fold. Their index pairs are row indices of ``X``
        (not positions within the fold).

    Raises
    ------
    ValueError, TypeError
        As :func:`audit_leakage`, and if ``y`` or ``groups`` do not have one
        entry per image.

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn.model_selection import audit_cv
    >>> rng = np.random.default_rng(0)
    >>> series = rng.random((4, 16, 16))               # 4 scan series...
    >>> X = np.tile(series, (3, 1, 1)).reshape(12, -1)  # ...of 3 identical slices
    >>> groups = np.tile([0, 1, 2, 3], 3)
    >>> from sklearn.model_selection import KFold
    >>> [report.n_exact for report in audit_cv(X, cv=KFold(3))]  # series split
    [8, 8, 8]
    >>> [report.n_exact for report in audit_cv(X, groups=groups, cv=4)]
    [0, 0, 0, 0]
    """
    images = _prepare(X, "X", image_shape, near_threshold, max_shift, thumbnail_size)
    n_images = len(images)
    for name, values in (("y", y), ("groups", groups)):
        if values is not None and len(values) != n_images:
            raise ValueError(
                f"{name} has {len(values)} entries but X has {n_images} images; "
                "give one entry per image."
            )
    y = None if y is None else np.asarray(y)
    groups = None if groups is None else np.asarray(groups)
    splits = _split_indices(_resolve_cv(cv, y, groups), images, y, groups)
    return _audit_splits(images, splits, near_threshold, max_shift, thumbnail_size)


def _audit_splits(images, splits, near_threshold, max_shift, thumbnail_size):
    """Reports for validated images and explicit (train, test) index arrays."""
    hashes = _exact_hashes(images)
    shifts = _shift_offsets(max_shift)
    thumbs_shifted = _thumbnails(images, thumbnail_size, shifts)
    unshifted = thumbs_shifted[shifts.index((0, 0))]
    reports = []
    for train, test in splits:
        if len(train) == 0 or len(test) == 0:
            raise ValueError(
                "A cross-validation split has an empty training or test set; "
                "check the cv splitter and the number of groups."
            )
        reports.append(
            _compare(
                _Rows(images, train),
                _Rows(images, test),
                hashes[train],
                hashes[test],
                unshifted[train],
                thumbs_shifted[:, test],
                near_threshold=near_threshold,
                max_shift=max_shift,
                thumbnail_size=thumbnail_size,
                train_rows=train,
                test_rows=test,
            )
        )
    return reports
