"""Test-session settings shared by the tests and the docstring examples."""

import matplotlib
import torch

matplotlib.use("Agg")
# Two cores on the CI machine: one torch thread per test process keeps runs
# repeatable and leaves room for the other core.
torch.set_num_threads(1)
