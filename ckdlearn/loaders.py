"""The batch iterator of :class:`~ckdlearn.CKDNetClassifier`, and batches BatchNorm can use."""

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

__all__ = ["batch_loader", "join_lone_batches"]


def batch_loader(dataset, batch_size, *, shuffle=False, drop_last=False, **kwargs):
    """A DataLoader that fetches each batch with one indexing of the dataset.

    PyTorch's default DataLoader indexes the dataset once per image and
    stacks the images again; skorch's in-memory datasets can return a whole
    batch for a list of indices, which is several times faster for small
    images. The default ``iterator_train`` and ``iterator_valid`` of
    :class:`CKDNetClassifier`. Randomness comes from torch's global
    generator, which the classifier seeds.

    Parameters
    ----------
    dataset : skorch.dataset.Dataset
    batch_size : int
    shuffle : bool, default=False
        Draw a new order every pass. Then a last batch of a single image is
        left out of that pass (BatchNorm cannot train on it).
    drop_last : bool, default=False
    **kwargs
        Other :class:`torch.utils.data.DataLoader` arguments
        (``num_workers``, ``pin_memory``, ...).

    Returns
    -------
    loader : torch.utils.data.DataLoader

    Examples
    --------
    >>> import numpy as np
    >>> from skorch.dataset import Dataset
    >>> from ckdlearn.loaders import batch_loader
    >>> data = Dataset(np.zeros((5, 1, 4, 4), dtype=np.float32), np.arange(5))
    >>> [len(y) for _, y in batch_loader(data, batch_size=2)]
    [2, 2, 1]
    >>> [len(y) for _, y in batch_loader(data, batch_size=2, shuffle=True)]
    [2, 2]
    """
    sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    drop_last = drop_last or (shuffle and len(dataset) > 1 and len(dataset) % batch_size == 1)
    return DataLoader(
        dataset, sampler=BatchSampler(sampler, batch_size, drop_last), batch_size=None, **kwargs
    )


def join_lone_batches(batches):
    """The batches, with each batch of one image joined to the next (the last to the one before).

    BatchNorm in training mode cannot normalise one image whose feature
    map has shrunk to 1 x 1 ("Expected more than 1 value per channel"):
    33 images in batches of 32 leave such a batch at the end. The
    classifier's BatchNorm refresh after training passes its batches
    through this.

    Parameters
    ----------
    batches : iterable of torch.Tensor
        Batches along the first dimension.

    Yields
    ------
    batch : torch.Tensor
        The same images in the same order, in batches of at least two; a
        single image with no neighbour at all is left out.

    Examples
    --------
    >>> import torch
    >>> from ckdlearn.loaders import join_lone_batches
    >>> batches = [torch.zeros(2, 3), torch.zeros(1, 3), torch.zeros(2, 3), torch.zeros(1, 3)]
    >>> [len(batch) for batch in join_lone_batches(batches)]
    [2, 4]
    """
    ready = lone = None
    for batch in batches:
        if lone is not None:
            batch, lone = torch.cat([lone, batch]), None
        if len(batch) < 2:
            lone = batch
            continue
        if ready is not None:
            yield ready
        ready = batch
    if lone is not None and ready is not None:
        ready = torch.cat([ready, lone])
    if ready is not None:
        yield ready
