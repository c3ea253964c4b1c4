"""Scale-out: model selection over a SMOTE + CKDNetClassifier pipeline on Dask.

scikit-learn parallelises ``GridSearchCV`` and ``cross_validate`` through
joblib; joblib's ``"dask"`` backend sends each fit to a Dask cluster. These
tests run a local cluster of two worker processes with one thread each and
check that the search finds what the same search finds locally. They skip
when the optional ``dask`` extra (dask, distributed) is not installed.
"""

import logging

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
# A local cluster of worker processes: seconds to start, beyond the fast loop.
pytestmark = pytest.mark.slow

from imblearn.over_sampling import SMOTE  # noqa: E402
from imblearn.pipeline import make_pipeline  # noqa: E402
from joblib import parallel_config  # noqa: E402
from sklearn.model_selection import (  # noqa: E402
    GridSearchCV,
    StratifiedGroupKFold,
    cross_validate,
)

from helpers import tiny_classifier  # noqa: E402


def _torch_threads():
    import torch

    return torch.get_num_threads()


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    with cluster, distributed.Client(cluster) as dask_client:
        yield dask_client


def _pipeline():
    return make_pipeline(
        SMOTE(k_neighbors=3, random_state=0),
        tiny_classifier(max_epochs=3),
    )


def _search():
    # Learning rates far apart, so that the best one is clear-cut rather
    # than decided by float rounding of a particular thread count.
    grid = {"ckdnetclassifier__lr": [1e-5, 3e-2], "smote__k_neighbors": [2, 3]}
    return GridSearchCV(_pipeline(), grid, cv=StratifiedGroupKFold(3))


def test_workers_run_one_torch_thread_each(client):
    # One thread per worker process: two processes on two cores, no
    # oversubscription (the nanny sets OMP_NUM_THREADS=1, which torch reads).
    assert set(client.run(_torch_threads).values()) == {1}
    assert len(client.scheduler_info()["workers"]) == 2


def test_grid_search_on_dask_matches_local_run(client, blob_data):
    X, y = blob_data
    groups = np.arange(len(X)) // 3
    local = _search().fit(X, y, groups=groups)
    with distributed.get_task_stream(client) as tasks, parallel_config(backend="dask"):
        on_dask = _search().fit(X, y, groups=groups)
    assert len(tasks.data) > 0, "no fit ran on the cluster"
    assert on_dask.best_params_ == local.best_params_
    assert on_dask.best_params_["ckdnetclassifier__lr"] == 3e-2
    np.testing.assert_allclose(
        on_dask.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"], atol=0.1
    )
    # The refit best model is a working pipeline.
    assert on_dask.predict(X).shape == (len(X),)


def test_cross_validate_on_dask(client, blob_data):
    X, y = blob_data
    groups = np.arange(len(X)) // 3
    with parallel_config(backend="dask"):
        scores = cross_validate(
            _pipeline(), X, y, groups=groups, cv=StratifiedGroupKFold(3), n_jobs=-1
        )
    assert scores["test_score"].shape == (3,)
    assert np.all((0 <= scores["test_score"]) & (scores["test_score"] <= 1))
