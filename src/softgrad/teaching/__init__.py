"""Teaching layer: derivations step by step (``derive``), checked by SymPy, and a diagnoser of
hand-written derivatives that names the mistake and the step it gets wrong (``diagnose``).

Layer 3, beside ``models``: it may import ``core`` and ``losses``. SymPy loads only when a
derivation is written out or checked (``concrete()``, ``verify()``), never on import.
"""

from .derive import TOPICS, Derivation, Step, derive
from .diagnose import CATALOG, Diagnosis, Finding, diagnose

__all__ = ["CATALOG", "TOPICS", "Derivation", "Diagnosis", "Finding", "Step", "derive", "diagnose"]
