"""Modules: thin shells that own parameters and buffers and call :mod:`equilayers.functional`."""

__all__: list[str] = []
