"""Shared fixtures: tiny synthetic CT-like images and the real data folder."""

from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits

from helpers import REAL_DATA, make_blob_images, skip_message

@pytest.fixture(scope="session")
def real_data_root():
    """The shared real CT KIDNEY folder; skips the test where it is absent."""
    if REAL_DATA is None or not REAL_DATA.is_dir():
        pytest.skip(skip_message())
    return REAL_DATA


@pytest.fixture(scope="session")
def blob_data():
    return make_blob_images()


@pytest.fixture(autouse=True)
def _one_thread_where_bitwise(request):
    """Run tests marked ``bitwise`` on one torch thread and one BLAS thread.

    They compare floats bit for bit, and kernels on another number of
    threads sum in another order, so each result must come from the same
    single-threaded kernels however the suite was started.
    """
    if request.node.get_closest_marker("bitwise") is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)


# --- hypothesis profiles ----------------------------------------------------
# "ci" (the default) keeps the fuzzing suite to seconds per test; the larger
# run: pytest tests/test_fuzz.py --hypothesis-profile=fuzz
from hypothesis import HealthCheck, settings  # noqa: E402

_QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=12, deadline=None, suppress_health_check=_QUIET)
settings.register_profile("fuzz", max_examples=250, deadline=None, suppress_health_check=_QUIET)
settings.load_profile("ci")


def pytest_sessionfinish(session, exitstatus):
    from fuzzing import write_report

    write_report()


@pytest.fixture(scope="session")
def full_and_raw_roots(real_data_root):
    """The complete data's CLAHE copy and the raw subset; skips where absent."""
    full = real_data_root.parents[1] / "ct-kidney-full" / real_data_root.name
    if not full.is_dir():
        pytest.skip(f"the complete data (ct-kidney-full) not found at {full}")
    return full, real_data_root
