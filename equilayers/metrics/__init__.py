"""Metrics: how invariant or equivariant a model actually is, on a batch, on its device.

Every function takes any ``nn.Module`` (or callable) and a batch, documents its formula and its
source, and raises ``ValueError`` naming a bad value. ``invariance_error`` and
``equivariance_error`` are the harness's own definitions (:mod:`equilayers.testing`), re-exported.

A metric runs the model in the mode it is in and leaves an ``nn.Module``'s buffers as it found
them (a train-mode BatchNorm's running statistics are put back after the measurement), its
parameters and their ``.grad`` untouched. It warns when the model is in training mode with
layers that draw noise on every forward (dropout): the error would be mostly that noise.
"""

from ._consistency import TRANSFORMS, consistency
from ._deformation import DeformationStability, deformation_stability, random_deformation
from ._dense import pixel_consistency, pixel_equivariance_error
from ._geed import DISTANCES, equivariance_error, geed, invariance_error
from ._layerwise import (
    LayerRow,
    capture_outputs,
    layerwise_equivariance,
    layerwise_shift_equivariance,
)
from ._lie import GENERATORS, lie_derivative

__all__ = [
    "consistency",
    "TRANSFORMS",
    "pixel_consistency",
    "pixel_equivariance_error",
    "invariance_error",
    "equivariance_error",
    "geed",
    "DISTANCES",
    "lie_derivative",
    "GENERATORS",
    "deformation_stability",
    "DeformationStability",
    "random_deformation",
    "layerwise_equivariance",
    "layerwise_shift_equivariance",
    "LayerRow",
    "capture_outputs",
]
