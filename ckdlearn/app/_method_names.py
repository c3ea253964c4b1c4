"""Names of the CAM methods, importable without torch.

The command line lists these as the choices of ``explain --method``
without importing :mod:`ckdlearn.explanation` (and so torch and pytorch-grad-cam),
which keeps ``ckdlearn explain --help`` instant. A test checks that they
match the keys of :data:`ckdlearn.explanation.CAM_METHODS`.
"""

__all__ = ["CAM_METHOD_NAMES"]

#: The keys of :data:`ckdlearn.explanation.CAM_METHODS`, in its order.
CAM_METHOD_NAMES = (
    "gradcam",
    "gradcam++",
    "hirescam",
    "xgradcam",
    "layercam",
    "eigencam",
    "eigengradcam",
    "gradcamelementwise",
    "scorecam",
    "ablationcam",
    "fullgrad",
)
