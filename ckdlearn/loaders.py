"""The batch iterator of :class:`~ckdlearn.CKDNetClassifier`."""

from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

__all__ = ["batch_loader"]


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
