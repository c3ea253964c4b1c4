"""Placeholder: being written (Grad-CAM engine)."""


def compute_heatmaps(*args, **kwargs):
    raise NotImplementedError


def faithfulness_scores(*args, **kwargs):
    raise NotImplementedError


def explain(*args, **kwargs):
    raise NotImplementedError
