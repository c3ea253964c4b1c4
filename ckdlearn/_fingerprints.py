"""Image fingerprints, and the duplicate pairs they reveal.

One rule decides which CT slices count as copies of each other, for the
leakage audit (:mod:`ckdlearn.model_selection`) and for the scan-series
groups the loaders infer: *exact* duplicates have equal float32 pixels;
*near* duplicates have normalised 16x16 block-mean thumbnails within
``near_threshold`` of each other, after shifting one image by up to
``max_shift`` pixels. Thumbnails are summed in float64 image by image and
screened with matrix products, then every candidate pair's distance is
computed again from the two thumbnails alone in float64, so a pair gets
the same distance in any search and on any CPU (0 for equal thumbnails).
"""

import hashlib

import numpy as np
from threadpoolctl import threadpool_limits

__all__ = [
    "DEFAULT_NEAR_THRESHOLD",
    "Fingerprints",
    "duplicate_pairs",
    "duplicate_pairs_within",
]

#: Default largest thumbnail distance counted as a near duplicate; see the
#: Notes of :func:`ckdlearn.model_selection.audit_leakage`.
DEFAULT_NEAR_THRESHOLD = 0.15

# Pixels per chunk when hashing and shrinking images, so that work arrays
# stay a few MiB (they are float64) whatever the image size.
_CHUNK_PIXELS = 1 << 15


def _chunks(images):
    """Slices of ``images`` of about ``_CHUNK_PIXELS`` pixels each."""
    step = max(1, _CHUNK_PIXELS // int(np.prod(images.shape[1:])))
    return (slice(start, start + step) for start in range(0, len(images), step))
# Candidate pairs are refined this many at a time (x shifts x 256 float64).
_REFINE_CHUNK = 1 << 4
# Shifted thumbnails of a block of test images, searched at once: at most
# this many values (256 KiB of float32).
_BLOCK_VALUES = 1 << 16
# Candidates are gathered a little beyond the threshold: float32 products
# round correlations by about 1e-6, the refinement computes in float64.
_SEARCH_SLACK = 1e-3


def _block_means(images, size, offsets):
    """Block means of shifted copies of a few images: (n_offsets, n, h, w), float64.

    A shift by (dy, dx) with edge pixels repeated moves the block edges over
    the edge-padded image, so every shift is read off one table of sums
    per image (the sums above and left of each block corner); each image's
    means depend on that image alone.
    """
    n_images, n_channels, height, width = images.shape
    rows = np.round(np.linspace(0, height, min(size, height) + 1)).astype(np.intp)
    cols = np.round(np.linspace(0, width, min(size, width) + 1)).astype(np.intp)
    pad = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    grey = np.pad(images.sum(axis=1, dtype=np.float64), ((0, 0), (pad, pad), (pad, pad)), "edge")
    # Sums of the padded rows above each corner row any shift needs, then
    # running sums of those along the columns.
    edges = np.unique(np.concatenate([[0, grey.shape[1]], *(rows - dy + pad for dy, _ in offsets)]))
    bands = np.add.reduceat(grey, edges[:-1], axis=1)
    table = np.zeros((n_images, len(edges), grey.shape[2] + 1))
    np.cumsum(np.cumsum(bands, axis=1), axis=2, out=table[:, 1:, 1:])
    areas = np.outer(np.diff(rows), np.diff(cols)) * n_channels
    areas = areas * (255 if images.dtype == np.uint8 else 1)
    means = np.empty((len(offsets), n_images, len(rows) - 1, len(cols) - 1))
    for k, (dy, dx) in enumerate(offsets):
        corners = table[:, np.searchsorted(edges, rows - dy + pad)][:, :, cols - dx + pad]
        means[k] = (corners[:, 1:, 1:] - corners[:, :-1, 1:] - corners[:, 1:, :-1]
                    + corners[:, :-1, :-1]) / areas
    return means


def _normalise(means):
    """Zero-mean, unit-norm thumbnails (..., h*w) from block means (..., h, w), float32.

    The dot product of two is their Pearson correlation, so brightness and
    contrast drop out. Flat thumbnails (no contrast) are all zeros.
    """
    means = means.reshape(*means.shape[:-2], -1)
    # Contrast is judged relative to the pixel scale, so that rounding in
    # the sums of a constant image does not count as structure.
    scale = np.maximum(np.abs(means).max(axis=-1, keepdims=True), np.finfo(float).tiny)
    centred = means - means.mean(axis=-1, keepdims=True)
    norms = np.linalg.norm(centred, axis=-1, keepdims=True)
    flat = norms <= 1e-9 * scale
    return np.where(flat, 0.0, centred / np.where(flat, 1.0, norms)).astype(np.float32)


def _thumbnails(images, size, offsets, means=None):
    """Normalised thumbnails (n_offsets, n, h*w) of shifted images, float32.

    Computed a few images at a time; ``means``, if given, receives the
    unshifted block means.
    """
    n_values = min(size, images.shape[2]) * min(size, images.shape[3])
    thumbnails = np.empty((len(offsets), len(images), n_values), dtype=np.float32)
    for chunk in _chunks(images):
        block = _block_means(images[chunk], size, offsets)
        if means is not None:
            means[chunk] = block[len(offsets) // 2]
        thumbnails[:, chunk] = _normalise(block)
    return thumbnails


def _image_hashes(images):
    """64-bit hash of each image's float32 bytes (-0.0 made +0.0)."""
    canonical = np.add(images, np.float32(0.0), dtype=np.float32).reshape(len(images), -1)
    digests = (hashlib.blake2b(image, digest_size=8).digest() for image in canonical)
    return np.array([int.from_bytes(digest, "little") for digest in digests], dtype=np.uint64)


def _shift_offsets(max_shift):
    steps = range(-max_shift, max_shift + 1)
    return [(dy, dx) for dy in steps for dx in steps]


class Fingerprints:
    """What the duplicate search compares for a stack of images.

    Parameters
    ----------
    images : ndarray of shape (n, C, H, W)
        Validated images (see :func:`ckdlearn.utils.input_checks.check_images`),
        any real dtype; kept by reference to confirm exact matches.
    max_shift : int
        Shifted thumbnails are made for offsets up to this many pixels.
    thumbnail_size : int
        Side of the thumbnails.
    shifted : bool, default=True
        Also keep the shifted thumbnails (needed on the test side of a
        search between two sets).

    Attributes
    ----------
    hashes : ndarray of shape (n,), uint64
        Hash of each image's float32 pixels.
    means : ndarray of shape (n, h, w), float32
        Block means on the image's own scale (``uint8`` divided by 255).
    thumbnails : ndarray of shape (n, h * w), float32
        Normalised unshifted thumbnails.
    shifted : ndarray of shape (n_shifts, n, h * w) or None
        Normalised thumbnails of each shift, the unshifted ones in the middle.

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn._fingerprints import Fingerprints
    >>> fingerprints = Fingerprints(np.random.rand(3, 1, 32, 32), max_shift=1, thumbnail_size=16)
    >>> fingerprints.thumbnails.shape, fingerprints.shifted.shape
    ((3, 256), (9, 3, 256))
    """

    def __init__(self, images, *, max_shift, thumbnail_size, shifted=True):
        self.images, self.thumbnail_size = images, thumbnail_size
        self.rows = np.arange(len(images))
        self.offsets = _shift_offsets(max_shift)
        offsets = self.offsets if shifted else [(0, 0)]
        height, width = (min(thumbnail_size, side) for side in images.shape[2:])
        self.hashes = np.concatenate(
            [_image_hashes(images[chunk]) for chunk in _chunks(images)] or [np.zeros(0, np.uint64)]
        )
        self.means = np.empty((len(images), height, width), dtype=np.float32)
        thumbnails = _thumbnails(images, thumbnail_size, offsets, self.means)
        self.thumbnails = thumbnails[len(offsets) // 2]
        self.shifted = thumbnails if shifted else None

    def __len__(self):
        return len(self.rows)

    def take(self, rows):
        """The fingerprints of ``images[rows]``, without copying the images."""
        part = object.__new__(Fingerprints)
        part.images, part.offsets, part.thumbnail_size = self.images, self.offsets, self.thumbnail_size
        part.rows, part.hashes, part.means = self.rows[rows], self.hashes[rows], self.means[rows]
        part.thumbnails = self.thumbnails[rows]
        part.shifted = None if self.shifted is None else self.shifted[:, rows]
        return part


def _exact_pairs(train, test):
    """``[train, test]`` positions of images with equal float32 pixels."""
    positions = {}
    for position, value in enumerate(train.hashes.tolist()):
        positions.setdefault(value, []).append(position)
    pairs = [
        (i, j)
        for j, value in enumerate(test.hashes.tolist())
        for i in positions.get(value, ())
        if np.array_equal(
            np.add(train.images[train.rows[i]], np.float32(0), dtype=np.float32),
            np.add(test.images[test.rows[j]], np.float32(0), dtype=np.float32),
        )
    ]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _blocks(n_images, n_shifts, n_values):
    """Slices of test images whose shifted thumbnails fit in ``_BLOCK_VALUES``."""
    step = max(1, _BLOCK_VALUES // (n_shifts * n_values))
    return (slice(start, start + step) for start in range(0, n_images, step))


# Not NearestNeighbors(radius=...).radius_neighbors: on the same float64 thumbnails it
# found the same pairs 9.3x (3,879 synthetic) and 13.4x (3,879 real slices) slower,
# one thread (benchmarks/bench_audit.py --neighbors), having no pruning by shift.
def _near_pairs(train_thumbs, test_blocks, near_threshold, symmetric=False):
    """``[train, test]`` positions within ``near_threshold``, and the distances.

    ``test_blocks`` yields ``(rows, shifted)``: a slice of test positions and
    their thumbnails once per shift, ``(n_shifts, n_rows, n_values)`` with the
    unshifted ones in the middle. A pair's distance is its smallest over
    shifts; flat thumbnails match nothing. ``symmetric`` (one set against
    itself) keeps each pair once, as ``[i, j]`` with ``i < j``.

    Candidates are found with float32 products, far more loosely than
    float32 rounding could matter: first the training thumbnails within
    ``near_threshold + spread`` of a test image's unshifted one (its shifted
    thumbnails lie within ``spread`` of it, so no other can match), then
    those within the threshold at any shift. Each candidate's distances are
    then computed from the two thumbnails alone, in float64: the result does
    not depend on the blocks, the other images or the BLAS.
    """
    found = [np.zeros((0, 3))]
    reach = near_threshold + _SEARCH_SLACK
    usable = train_thumbs.any(axis=1)
    # Many small products: on several BLAS threads each would cost more in
    # synchronisation (milliseconds once torch's OpenMP runtime is loaded)
    # than it computes.
    with threadpool_limits(limits=1, user_api="blas"):
        for rows, shifted in test_blocks:
            found.append(_block_pairs(train_thumbs, usable, rows, shifted, reach, near_threshold, symmetric))
    found = np.concatenate(found)
    # The smallest distance of each pair: sort by pair, then distance.
    found = found[np.lexsort((found[:, 2], found[:, 0], found[:, 1]))]
    first = np.ones(len(found), dtype=bool)
    first[1:] = np.any(found[1:, :2] != found[:-1, :2], axis=1)
    return found[first, :2].astype(np.int64), found[first, 2]


def _block_pairs(train_thumbs, usable, rows, shifted, reach, near_threshold, symmetric):
    """``[train, test, distance]`` rows of one block of test images (see _near_pairs)."""
    found = [np.zeros((0, 3))]
    n_shifts, n_rows, _ = shifted.shape
    anchor = shifted[n_shifts // 2]
    spread = np.sqrt(((shifted - anchor) ** 2).sum(axis=2).max(axis=0))
    # Unit-norm thumbnails: distance**2 = 2 - 2 * correlation.
    bound = 1 - (reach + spread) ** 2 / 2
    bound[~anchor.any(axis=1)] = np.inf  # flat: matches nothing
    columns = np.flatnonzero(usable & (anchor @ train_thumbs.T >= bound[:, None]).any(axis=0))
    similarity = (shifted.reshape(-1, shifted.shape[2]) @ train_thumbs[columns].T)
    best = similarity.reshape(n_shifts, n_rows, -1).max(axis=0)
    test_index, column = np.nonzero(best >= 1 - reach**2 / 2)
    train_index = columns[column]
    if symmetric:
        keep = train_index != rows.start + test_index
        test_index, train_index = test_index[keep], train_index[keep]
    for start in range(0, len(test_index), _REFINE_CHUNK):
        i = train_index[start : start + _REFINE_CHUNK]
        j = test_index[start : start + _REFINE_CHUNK]
        difference = shifted[:, j].astype(np.float64) - train_thumbs[i]
        distance = np.sqrt(np.einsum("sij,sij->si", difference, difference)).min(axis=0)
        keep = distance <= near_threshold
        i, j = i[keep], rows.start + j[keep]
        if symmetric:
            i, j = np.minimum(i, j), np.maximum(i, j)
        found.append(np.column_stack([i, j, distance[keep]]))
    return np.concatenate(found)


def duplicate_pairs(train, test, *, near_threshold=DEFAULT_NEAR_THRESHOLD):
    """Exact and near duplicates between two fingerprinted sets.

    Parameters
    ----------
    train, test : Fingerprints
        ``test`` must have its shifted thumbnails.
    near_threshold : float, default=0.15
        Largest thumbnail distance of a near pair.

    Returns
    -------
    exact_pairs : ndarray of shape (n_exact, 2), int64
        ``[train position, test position]``, sorted by test, then train.
    near_pairs : ndarray of shape (n_near, 2), int64
        The same for near pairs that are not exact pairs.
    near_distances : ndarray of shape (n_near,), float64

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn._fingerprints import Fingerprints, duplicate_pairs
    >>> images = np.random.default_rng(0).random((4, 1, 32, 32))
    >>> train = Fingerprints(images[:3], max_shift=1, thumbnail_size=16, shifted=False)
    >>> test = Fingerprints(images[2:], max_shift=1, thumbnail_size=16)
    >>> duplicate_pairs(train, test)[0]
    array([[2, 0]])
    """
    exact = _exact_pairs(train, test)
    blocks = ((rows, test.shifted[:, rows]) for rows in _blocks(len(test), *test.shifted.shape[::2]))
    near, distances = _near_pairs(train.thumbnails, blocks, near_threshold)
    if len(exact) and len(near):
        is_exact = np.isin(near[:, 0] * len(test) + near[:, 1], exact[:, 0] * len(test) + exact[:, 1])
        near, distances = near[~is_exact], distances[~is_exact]
    return exact[np.lexsort((exact[:, 0], exact[:, 1]))], near, distances


def duplicate_pairs_within(fingerprints, *, near_threshold=DEFAULT_NEAR_THRESHOLD):
    """Every pair of images in one set that :func:`duplicate_pairs` would flag.

    A pair counts whichever of its two images is on the test side (the
    shifted one); each is reported once, as ``[i, j]`` with ``i < j``, at
    the smaller of its two distances. Shifted thumbnails are made for a
    block of images at a time, so memory stays the fingerprints beside the
    pairs found (this runs on every ``load_ct_kidney`` call).

    Parameters
    ----------
    fingerprints : Fingerprints
        Of the whole set; shifted thumbnails are not needed.
    near_threshold : float, default=0.15

    Returns
    -------
    exact_pairs : ndarray of shape (n_exact, 2), int64
    near_pairs : ndarray of shape (n_near, 2), int64
    near_distances : ndarray of shape (n_near,), float64
        Pairs sorted by ``i``, then ``j``.

    Examples
    --------
    >>> import numpy as np
    >>> from ckdlearn._fingerprints import Fingerprints, duplicate_pairs_within
    >>> images = np.random.default_rng(0).random((3, 1, 32, 32))
    >>> fingerprints = Fingerprints(images[[0, 1, 0, 2]], max_shift=1, thumbnail_size=16,
    ...                             shifted=False)
    >>> duplicate_pairs_within(fingerprints)[0]
    array([[0, 2]])
    """
    images, offsets, n = fingerprints.images, fingerprints.offsets, len(fingerprints)
    exact = _exact_pairs(fingerprints, fingerprints)
    blocks = (
        (rows, _thumbnails(images[fingerprints.rows[rows]], fingerprints.thumbnail_size, offsets))
        for rows in _blocks(n, len(offsets), fingerprints.thumbnails.shape[1])
    )
    near, distances = _near_pairs(fingerprints.thumbnails, blocks, near_threshold, symmetric=True)
    exact = exact[exact[:, 0] < exact[:, 1]]
    order = np.lexsort((near[:, 1], near[:, 0]))
    near, distances = near[order], distances[order]
    is_exact = np.isin(near[:, 0] * n + near[:, 1], exact[:, 0] * n + exact[:, 1])
    return exact[np.lexsort((exact[:, 1], exact[:, 0]))], near[~is_exact], distances[~is_exact]
