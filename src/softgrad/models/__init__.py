"""Models layer: estimators and their solvers."""

__all__: list[str] = []
