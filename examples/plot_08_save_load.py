"""
============================================
Saving and loading a pipeline without pickle
============================================

:func:`ckdlearn.persistence.save` writes a fitted SMOTE + CNN pipeline to
one file, a ZIP archive of a skops description of the pipeline and the
network weights in safetensors format; :func:`ckdlearn.persistence.load`
rebuilds it without unpickling anything. This example saves a pipeline, looks inside the
file, loads it back and checks that predictions and explanations are
unchanged.

.. rst-class:: attribution

CT slices: CT KIDNEY DATASET (Normal-Cyst-Tumor-Stone), Islam M. N. et al.,
*Scientific Reports* 12:11440 (2022), CC BY 4.0.
"""

# %%
# Train a small pipeline
# ----------------------
import matplotlib.pyplot as plt
import numpy as np
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import make_pipeline
from sklearn.model_selection import StratifiedGroupKFold

from ckdlearn import CKDNetClassifier
from ckdlearn.datasets import load_ct_kidney_sample

ATTRIBUTION = "CT KIDNEY DATASET, Islam et al. 2022, CC BY 4.0"

dataset = load_ct_kidney_sample()
X, y, groups = dataset.data, dataset.target_names[dataset.target], dataset.groups
train, test = next(StratifiedGroupKFold(4, shuffle=True, random_state=0).split(X, y, groups))

pipe = make_pipeline(
    SMOTE(random_state=0),
    CKDNetClassifier(max_epochs=2, lr=3e-3, batch_size=64, module__width=8,
                     module__depth=3, random_state=0),
)
pipe.fit(X[train], y[train])

# %%
# Save it
# -------
import tempfile
from pathlib import Path

from ckdlearn.persistence import load, save

folder = tempfile.TemporaryDirectory()
path = save(pipe, Path(folder.name) / "kidney-pipeline.ckdl")
print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB")

# %%
# Look inside
# -----------
#
# The file is an ordinary ZIP archive: ``model.json`` names the format and
# the library versions that wrote it, ``schema.json`` and the ``.npy``
# arrays are a skops archive of the pipeline (the classifier stands there
# as its parameters, fitted attributes and training history), and
# ``weights.safetensors`` holds the network's tensors.
import json
import zipfile

import skops.io

with zipfile.ZipFile(path) as archive:
    for member in archive.infolist():
        print(f"{member.filename:<22s}{member.file_size:>10,d} bytes")
    header = json.loads(archive.read("model.json"))

print("format:", header["format"], header["format_version"])
print("written by:", {k: header["versions"][k] for k in ("ckdlearn", "torch", "scikit-learn")})

# %%
# skops lists every type the file names; ``load`` refuses a file naming
# anything outside :func:`~ckdlearn.persistence.supported_classes`.
for name in skops.io.get_untrusted_types(file=path):
    print(name)

# %%
# Load it and compare
# -------------------
#
# ``load`` refuses pickles and any class outside its allow-list. The loaded
# pipeline predicts, and explains, exactly as the saved one.
import ckdlearn

loaded = load(path, device="cpu")
print([(name, type(step).__name__) for name, step in loaded.steps])

same_proba = np.array_equal(loaded.predict_proba(X[test]), pipe.predict_proba(X[test]))
print("identical probabilities:", same_proba)

shown = test[:: max(1, len(test) // 4)][:4]
before = ckdlearn.explain(pipe, X[shown])
after = ckdlearn.explain(loaded, X[shown])
print("largest heatmap difference:", float(np.abs(before - after).max()))

# %%
# The heatmaps of the saved and the loaded pipeline, one row each:
from ckdlearn.plotting import overlay_heatmap

fig, axes = plt.subplots(2, len(shown), figsize=(2 * len(shown), 4.3))
for column, index in enumerate(shown):
    for row, (maps, label) in enumerate([(before, "saved"), (after, "loaded")]):
        axes[row, column].imshow(overlay_heatmap(dataset.images[index], maps[column]))
        axes[row, column].set_title(f"{label}: {y[index]}", fontsize=9)
        axes[row, column].axis("off")
fig.text(0.5, 0.01, ATTRIBUTION, ha="center", fontsize=7, color="0.4")
fig.tight_layout(rect=(0, 0.04, 1, 1))

folder.cleanup()
