"""Pure functions on tensors: the math behind every module in :mod:`equilayers.nn`."""

from ._harmonic import (
    fourier_matrix,
    gated_nonlinearity,
    harmonic_batch_norm,
    harmonic_conv2d,
    harmonic_lifting_conv2d,
    harmonic_to_regular,
    norm_nonlinearity,
    norm_pool,
    regular_to_harmonic,
    steerable_conv2d,
)
from ._steerable import expand_steerable, steerable_basis

__all__: list[str] = [
    "steerable_basis",
    "expand_steerable",
    "steerable_conv2d",
    "harmonic_lifting_conv2d",
    "harmonic_conv2d",
    "norm_nonlinearity",
    "gated_nonlinearity",
    "harmonic_batch_norm",
    "norm_pool",
    "regular_to_harmonic",
    "harmonic_to_regular",
    "fourier_matrix",
]
