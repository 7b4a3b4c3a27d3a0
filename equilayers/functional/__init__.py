"""Pure functions on tensors: the math behind every module in :mod:`equilayers.nn`."""

from ._heads import fiber_pool, fiber_pose, invariant_head, spatial_pool

__all__: list[str] = [
    "invariant_head",
    "fiber_pool",
    "fiber_pose",
    "spatial_pool",
]
