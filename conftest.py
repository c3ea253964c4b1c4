"""Test-session settings shared by the tests and the docstring examples."""

import matplotlib
import torch
from threadpoolctl import threadpool_limits

matplotlib.use("Agg")
# Two cores on the CI machine: one torch thread per test process keeps runs
# repeatable and leaves room for the other core.
torch.set_num_threads(1)
# numpy's BLAS pool and torch's OpenMP pool fight over the cores once both
# are loaded; small matrix products then cost milliseconds each.
threadpool_limits(1)
