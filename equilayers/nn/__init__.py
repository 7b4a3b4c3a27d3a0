"""Modules: thin shells that own parameters and buffers and call :mod:`equilayers.functional`."""

from ._heads import InvariantHead

__all__: list[str] = [
    "InvariantHead",
]
