"""Teaching layer: derivations step by step (``derive``), checked by SymPy.

Layer 3, beside ``models``: it may import ``core`` and ``losses``. SymPy loads only when a
derivation is written out or checked (``concrete()``, ``verify()``), never on import.
"""

from .derive import TOPICS, Derivation, Step, derive

__all__ = ["TOPICS", "Derivation", "Step", "derive"]
