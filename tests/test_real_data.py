"""The core workflow as users write it, on real CT slices at 64 px.

A subset of whole scan series keeps it to a minute on two cores; the code
is the README's / issue's snippet, unchanged apart from the epoch counts.
"""

import numpy as np
import pytest
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import make_pipeline
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold

from ckdlearn import CKDNetClassifier, explain
from ckdlearn.datasets import load_ct_kidney

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_subset(real_data_root):
    """Three whole scan series per class, at most 20 slices of each."""
    data = load_ct_kidney(real_data_root, image_size=64)
    keep = []
    for label in range(len(data.target_names)):
        series = np.unique(data.groups[data.target == label])[:3]
        for group in series:
            keep.extend(np.flatnonzero(data.groups == group)[:20])
    keep = np.sort(keep)
    names = np.asarray(data.target_names)
    return data.data[keep], names[data.target[keep]], data.groups[keep], data.images[keep]


def test_issue_snippet_runs_on_real_images(real_subset):
    X, y, groups, images = real_subset
    test_series = np.isin(groups, [g for label in np.unique(y) for g in np.unique(groups[y == label])[:1]])
    X_train, y_train, X_test, y_test = X[~test_series], y[~test_series], X[test_series], y[test_series]

    pipe = make_pipeline(SMOTE(random_state=0), CKDNetClassifier(max_epochs=2, random_state=0))
    pipe.fit(X_train, y_train)
    assert set(pipe.predict(X_test)) <= {"Cyst", "Normal", "Stone", "Tumor"}
    proba = pipe.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert 0 <= pipe.score(X_test, y_test) <= 1

    heatmaps = pipe[-1].explain(images[test_series])
    assert heatmaps.shape == (int(test_series.sum()), 64, 64)
    assert heatmaps.dtype == np.float32 and heatmaps.min() >= 0 and heatmaps.max() <= 1
    stone = explain(pipe, X_test, method="gradcam++", target="Stone")
    assert stone.shape == heatmaps.shape
    assert not np.allclose(stone, heatmaps)

    search = GridSearchCV(
        pipe,
        {
            "ckdnetclassifier__lr": [1e-3, 3e-4],
            "ckdnetclassifier__module__width": [16, 32],
            "smote__k_neighbors": [3, 5],
        },
        cv=StratifiedGroupKFold(3),
    )
    search.set_params(estimator__ckdnetclassifier__max_epochs=1)
    search.fit(X, y, groups=groups)
    assert len(search.cv_results_["params"]) == 8
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
