"""The hint of the rank checks for one unbatched sample: torch's convs take ``(C, H, W)``,
equilayers' layers need the batch dim."""

from __future__ import annotations

import torch

__all__ = ["UNBATCHED_HINT", "looks_unbatched"]

UNBATCHED_HINT = (": one unbatched sample? equilayers' layers need the batch dim (torch's "
                  "unbatched form is not supported): pass x.unsqueeze(0) and take y[0]")


def looks_unbatched(x: torch.Tensor, ndim: int, channels: int, fiber: int | None,
                    fiber_dim: int) -> bool:
    """Whether ``x``, of the wrong rank for an ``ndim``-D batched input, is one sample of it:
    one dim fewer, ``channels`` in dim 0 (and ``fiber`` slots in ``fiber_dim``)."""
    return (x.dim() == ndim - 1 and x.shape[0] == channels
            and (fiber is None or x.shape[fiber_dim] == fiber))
