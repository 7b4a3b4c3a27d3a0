"""Pure functions on tensors: the math behind every module in :mod:`equilayers.nn`."""

__all__: list[str] = []
