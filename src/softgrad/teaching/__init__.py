"""Teaching layer: derivations of the softmax family and a diagnoser of hand-written derivatives."""

from .diagnose import CATALOG, Diagnosis, Finding, diagnose

__all__ = ["CATALOG", "Diagnosis", "Finding", "diagnose"]
