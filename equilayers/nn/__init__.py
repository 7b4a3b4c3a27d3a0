"""Modules: thin shells that own parameters and buffers and call :mod:`equilayers.functional`."""

from ._harmonic import (
    GatedNonlinearity,
    HarmonicBatchNorm,
    HarmonicToRegular,
    NormNonlinearity,
    NormPool,
    RegularToHarmonic,
    SteerableConv2d,
)

__all__: list[str] = [
    "SteerableConv2d",
    "NormNonlinearity",
    "GatedNonlinearity",
    "HarmonicBatchNorm",
    "NormPool",
    "RegularToHarmonic",
    "HarmonicToRegular",
]
