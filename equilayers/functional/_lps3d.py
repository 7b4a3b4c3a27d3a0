"""Learnable polyphase sampling on volumes ``(B, C, D, H, W)`` and the cube groups' maps
``(B, C, F, D, H, W)``: :mod:`._lps` over three spatial dims.

The ``s^3`` polyphase components of ``x`` are ``x[..., a::s, b::s, c::s]``, indexed by
``a s^2 + b s + c`` (as in :func:`polyphase_pool3d`). The logit of a component ``c`` is, as in
2-D, ``v . mean_p ReLU((W *o n(c))_p + b)`` with ``n(c)`` the component (5-D volumes) or its
root mean square over the fiber ``F`` (6-D maps), ``W *o`` a correlation with circular padding
by an *isotropic* ``k x k x k`` filter: one weight per orbit of its taps under the cube's 48
symmetries (the signed permutations of the axes; an orbit is the offsets' absolute values,
sorted), so ``weight`` has shape ``(hidden, C, (r+1)(r+2)(r+3)/6)`` for ``k = 2r + 1`` (1, 4,
10, 20 for ``k`` = 1, 3, 5, 7). The filter is exactly invariant to all of O_h, and the mean
and the fiber norm to any permutation of the voxels' axes and of ``F``.

A circular shift of ``x`` by ``t`` sends component ``(a, b, c)`` to ``((a + t_d) % s, ..)``,
rolled by ``((a + t_d) // s, ..)``; on a volume whose sizes are divisible by ``s`` every cube
element (a signed permutation of the axes: a flipped axis maps phase ``a`` to ``s - 1 - a``,
a permutation of the axes permutes ``(a, b, c)``) permutes the components and moves each one
like the input. The logits follow the components, so in evaluation (the noise-free argmax)
the pool is exactly equivariant to every integer circular shift and to every element of
O_h (or O, C4z, D4z) whenever the largest logit is unique. The sizes need only be divisible by
``s``: a rotation permutes them with the dims (C4z and D4z never move the depth, which may
differ from ``H = W``). Ties go to the lowest index, as in 2-D; the training path (Gumbel
noise, straight-through or soft mixture, the generator) is the 2-D one.
"""

from __future__ import annotations

from typing import Literal, overload

import torch

from ._lps import logits_nd, pool_nd, upsample_nd

__all__ = ["polyphase_logits3d", "learnable_polyphase_pool3d", "learnable_polyphase_upsample3d"]


def polyphase_logits3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                       out_weight: torch.Tensor, stride: int = 2) -> torch.Tensor:
    """The scoring net of 3-D learnable polyphase sampling: one logit per component.

    Args:
        x: ``(B, C, D, H, W)`` or ``(B, C, F, D, H, W)``, or an unbatched ``(C, D, H, W)``;
            ``D``, ``H``, ``W`` divisible by ``stride``.
        weight: ``(hidden, C, (r+1)(r+2)(r+3)/6)``: the orbit weights of an isotropic
            ``(2r+1)^3`` filter.
        bias: ``(hidden,)`` or None.
        out_weight: ``(hidden,)``.
        stride: integer >= 2.

    Returns:
        ``(B, stride**3)`` logits in float64 (float32 on MPS), component
        ``a * stride**2 + b * stride + c`` (``(stride**3,)`` for an unbatched ``x``).

    Example:
        >>> w, b, v = torch.randn(4, 3, 4), torch.zeros(4), torch.randn(4)
        >>> polyphase_logits3d(torch.randn(2, 3, 4, 4, 4), w, b, v).shape
        torch.Size([2, 8])
    """
    return logits_nd(x, weight, bias, out_weight, stride, 3, "polyphase_logits3d")


@overload
def learnable_polyphase_pool3d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out_weight: torch.Tensor,
    stride: int = ..., *, tau: float = ..., hard: bool = ..., training: bool = ...,
    gumbel: bool = ..., generator: torch.Generator | None = ...,
    return_index: Literal[False] = ...) -> torch.Tensor: ...


@overload
def learnable_polyphase_pool3d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out_weight: torch.Tensor,
    stride: int = ..., *, tau: float = ..., hard: bool = ..., training: bool = ...,
    gumbel: bool = ..., generator: torch.Generator | None = ...,
    return_index: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def learnable_polyphase_pool3d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out_weight: torch.Tensor,
    stride: int = ..., *, tau: float = ..., hard: bool = ..., training: bool = ...,
    gumbel: bool = ..., generator: torch.Generator | None = ..., return_index: bool = ...
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


def learnable_polyphase_pool3d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out_weight: torch.Tensor,
    stride: int = 2, *, tau: float = 1.0, hard: bool = True, training: bool = False,
    gumbel: bool = True, generator: torch.Generator | None = None, return_index: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Keep the 3-D polyphase component with the largest learned logit, per sample.

    :func:`learnable_polyphase_pool2d` over ``D, H, W`` (the same arguments and rules). See
    :class:`equilayers.nn.LearnablePolyphasePool3d` and the module docstring.

    Args:
        x: ``(B, C, D, H, W)`` or ``(B, C, F, D, H, W)``, or an unbatched ``(C, D, H, W)``
            (a 5-D input is always batched); ``D``, ``H``, ``W`` divisible by ``stride``.
        weight, bias, out_weight: the scoring net (:func:`polyphase_logits3d`).
        stride: integer >= 2.
        tau, hard, training, gumbel, generator: as :func:`learnable_polyphase_pool2d`.
        return_index: also return the selection ``(B, stride**3)``, one-hot on the chosen
            component ``a * stride**2 + b * stride + c`` plus the straight-through term (or the
            mixture weights), for :func:`learnable_polyphase_upsample3d`.

    Example:
        >>> x = torch.randn(2, 3, 4, 6, 6)
        >>> w, b, v = torch.randn(4, 3, 4), torch.zeros(4), torch.randn(4)
        >>> y, index = learnable_polyphase_pool3d(x, w, b, v, return_index=True)
        >>> y.shape, index.shape
        (torch.Size([2, 3, 2, 3, 3]), torch.Size([2, 8]))
    """
    return pool_nd(x, weight, bias, out_weight, stride, tau, hard, training, gumbel, generator,
                   return_index, 3, "learnable_polyphase_pool3d")


def learnable_polyphase_upsample3d(x: torch.Tensor, index: torch.Tensor,
                                   stride: int = 2) -> torch.Tensor:
    """Put ``x`` back on the 3-D polyphase component :func:`learnable_polyphase_pool3d`
    chose: :func:`learnable_polyphase_upsample2d` over ``D, H, W``.

    ``y[b, ..., a + s p, b' + s q, c + s u] = index[b, a s^2 + b' s + c] * x[b, ..., p, q, u]``
    for a selection ``index`` ``(B, s**3)`` (one-hot in evaluation: the samples come back
    exactly, zeros elsewhere, also beside an inf or NaN sample), or the plain placement for
    an integer ``index`` ``(B,)`` of flat component indices. Output ``(B, ..., s D, s H,
    s W)``; an unbatched ``(C, D, H, W)`` takes a selection ``(s**3,)`` or a 0-d integer
    index.

    ``learnable_polyphase_upsample3d(*learnable_polyphase_pool3d(x, ..., return_index=True))``
    (evaluation) is exactly equivariant to every integer circular shift of ``x`` and, with the
    pool's conditions, to the cube's symmetries.

    Example:
        >>> index = torch.tensor([[0.0, 1, 0, 0, 0, 0, 0, 0]])
        >>> learnable_polyphase_upsample3d(torch.ones(1, 1, 2, 2, 2), index)[0, 0, 0, 0]
        tensor([0., 1., 0., 1.])
    """
    return upsample_nd(x, index, stride, 3, "learnable_polyphase_upsample3d")
