"""Exceptions of ckdlearn that are not tied to one module.

Kept free of imports, so that the command line can catch them before it
loads anything heavy.
"""

__all__ = ["TrainingInterrupted"]


class TrainingInterrupted(BaseException):
    """An interrupt (Ctrl-C) on its way out of skorch's training loop.

    skorch ends ``fit`` quietly on a ``KeyboardInterrupt``, the way
    callbacks such as ``EarlyStopping`` stop training, which would leave a
    half-trained network looking fitted. :func:`ckdlearn.callbacks.interrupts_propagate`
    raises this instead, and :class:`~ckdlearn.CKDNetClassifier` turns it
    back into a ``KeyboardInterrupt`` once out of skorch. A
    ``BaseException``, as ``KeyboardInterrupt`` is, so that no ``except
    Exception`` swallows it; the command line raises it on Ctrl-C too.
    """
