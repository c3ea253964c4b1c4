"""Per-example setup for the sphinx-gallery build of the ckdlearn docs.

Referred to by its qualified name in ``conf.py`` (``reset_modules``), so
that the Sphinx configuration stays picklable.
"""

import os
import random
import warnings

# Threads per example; the examples themselves leave torch's default, as a
# user's script would. The sanity checks train many small networks, where a
# second thread costs more in hand-overs than it gains.
_THREADS = {"plot_09_sanity_checks.py": 1}


def reset_torch(gallery_conf, fname, when=None):
    """Start every example from the same threads, seeds and warning filters.

    The docs are built on small shared machines: two threads (one for
    some examples, :data:`_THREADS`) keep the examples' timings honest,
    and fixed seeds make the rendered figures and numbers reproducible
    from one build to the next.
    """
    threads = _THREADS.get(os.path.basename(str(fname)), 2)
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(threads)
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    # Progress bars would end up in the rendered output.
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.resetwarnings()
    warnings.simplefilter("default")
