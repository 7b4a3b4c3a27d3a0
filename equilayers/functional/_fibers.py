"""Fibers alone: field maps of no spatial size, ``(B, C, F)``.

An equivariant MLP (escnn's ``Linear`` on ``no_base_space``) works on one fiber per sample:
``(B, C, F)``, ``C`` fields of ``F`` slots (a regular field's ``|G|``, a harmonic field's
``2M+1`` or ``(M+1)^2``), with nothing to move but the fiber. Every module of equilayers that
maps field maps pointwise in space (a ``1 x 1`` group conv, the harmonic nonlinearities and
batch norms, the group pools) computes the same on a ``1 x 1`` map, so :func:`on_fibers` runs
it there: the fiber gains unit spatial dims, the module runs, and they are dropped again. On a
fiber, every element of a continuous group acts exactly (no pixels to interpolate).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import _checks as C

__all__ = ["on_fibers"]


def on_fibers(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *,
              spatial_dims: int = 2) -> torch.Tensor:
    """``f`` on fibers alone: ``x`` ``(B, C, F)`` (any rank ``>= 2``) viewed as a map of
    ``spatial_dims`` unit spatial dims, ``(B, C, F, 1, 1)`` (``(B, C, F, 1, 1, 1)`` with
    ``spatial_dims=3``, for the cube's groups and SO(3)/O(3)), and the result's unit dims
    dropped: ``(B, C', F')``, or ``(B, C')`` after a fiber pool.

    ``f`` must act on each pixel alone and keep the map's size: a ``1 x 1`` conv, a
    nonlinearity, a batch norm, a fiber pool. Output dims that are not the unit spatial dims
    it was given (a ``3 x 3`` conv without padding, a stride) raise a ``ValueError``.

    Example:
        >>> import torch
        >>> from equilayers.nn import GroupConv2d
        >>> conv = GroupConv2d(3, 5, 1, group="p4m")
        >>> on_fibers(conv, torch.randn(2, 3, 8)).shape
        torch.Size([2, 5, 8])
    """
    what = "on_fibers"
    C.check_callable(f, "f", what, fix="a module or function of field maps")
    C.check_int(spatial_dims, "spatial_dims", what, minimum=1, maximum=3,
                fix="2 for the planar groups' modules, 3 for the cube's and SO(3)'s")
    C.check_tensor(x, "x", what, floating=False)
    if x.dim() < 2:
        raise ValueError(f"{what}: x must be (B, C, F) fibers (or (B, C)); got a {x.dim()}-D "
                         f"tensor of shape {tuple(x.shape)}: add the batch dim with "
                         "x.unsqueeze(0)")
    shaped = x.reshape(*x.shape, *(1,) * spatial_dims)
    try:
        y = f(shaped)
    except (ValueError, TypeError) as e:  # f's message quotes the 1 x 1 map: name the fibers
        raise type(e)(f"{e} [{what}: the input was the fibers {tuple(x.shape)}, run as the map "
                      f"{tuple(shaped.shape)}]") from e
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{what}: f must return a tensor; got {type(y).__name__}")
    if y.dim() < 2 + spatial_dims or any(s != 1 for s in y.shape[-spatial_dims:]):
        raise ValueError(f"{what}: f turned the {spatial_dims} unit spatial dims it was given "
                         f"(input {tuple(x.shape) + (1,) * spatial_dims}) into an output of "
                         f"shape {tuple(y.shape)}; f must act on each pixel alone and keep "
                         "the size (a 1 x 1 conv, a nonlinearity, a batch norm, a fiber pool)")
    return y.reshape(y.shape[:-spatial_dims])


def one_pixel(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
              ) -> torch.Tensor | None:
    """A ``1 x 1`` (``x 1``) filter on ``1 x 1`` (``x 1``) maps, unpadded, one group: the conv
    is one matrix product, ``F.linear`` on the flattened channels (the same map; the cost of a
    dense ``nn.Linear``, where ``F.conv2d`` / ``F.conv3d`` on a single pixel takes 2-3x as
    long: a :class:`~equilayers.nn.GroupLinear` on fibers runs here on every call). ``None``
    for any other shape."""
    if any(n != 1 for n in x.shape[2:]) or any(k != 1 for k in weight.shape[2:]):
        return None
    y = F.linear(x.flatten(1), weight.flatten(1), bias)
    return y.view(*y.shape, *(1,) * (x.dim() - 2))
