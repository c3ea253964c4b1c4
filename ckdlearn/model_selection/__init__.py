"""Honest evaluation of CT slice classifiers.

Scan-series groups, leakage audits and grouped evaluation: the tools that
keep near-identical slices of one scan from landing on both sides of a
split.
"""

from ._evaluate import EvaluationResult, evaluate
from ._leakage import LeakageReport, LeakageWarning, audit_cv, audit_leakage
from ._groups import ScanGroupingWarning, infer_scan_groups

__all__ = [
    "EvaluationResult",
    "LeakageReport",
    "LeakageWarning",
    "audit_cv",
    "audit_leakage",
    "evaluate",
    "ScanGroupingWarning",
    "infer_scan_groups",
]
