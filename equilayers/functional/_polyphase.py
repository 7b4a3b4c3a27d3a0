"""Adaptive polyphase sampling (Chaman & Dokmanic 2021) and its inverse placement.

The ``s x s`` polyphase components of ``x`` are ``x[..., i::s, j::s]``, indexed by the flat
index ``i * s + j``. :func:`polyphase_pool2d` keeps, per sample, the component with the largest
norm (taken over every non-batch dim, so on 5-D group maps the choice does not depend on the
fiber order). A circular shift of the input permutes the components cyclically (and shifts
them), so the same samples are kept: circular convolutions, polyphase pools and a global pool
make an exactly shift-invariant model.

Rotations and flips (``H`` and ``W`` divisible by ``s``; a quarter turn maps ``H x W`` to
``W x H``): ``rot90`` maps component ``(a, b)`` to
``(s-1-b, a)``, rotated; the horizontal flip maps ``(a, b)`` to ``(a, s-1-b)``, flipped.
Norms are preserved, so when the largest norm is unique the choice commutes with every element
of D4 and the pooled map transforms like the input. Ties go to the lowest flat index; no rule
can commute with D4 on tied inputs (e.g. a rot90-invariant image whose components have equal
norms), so exactness holds for inputs whose largest norm is unique (random inputs, almost
surely). The norms are accumulated in float64 so that rounding cannot reorder near ties of
float32 inputs differently for a transformed input (except on MPS, which lacks float64).

Measured pitfall: at stride 2 every binomial blur (``blur_size >= 2``) gives each phase half of
the total mass, so with ``criterion="l1"`` on non-negative inputs (after a ReLU) all components
tie exactly and the choice is decided by rounding; use ``"l2"`` (the default) with a blur.

``polyphase_pool2d`` dispatches (:mod:`equilayers.kernels`, whose op table holds its reference
and argument spec): on CUDA the Triton kernels (float64
partial norms in a fixed order, the argmax, the gather; the blur, if any, by the blur_pool2d
kernel at stride 1), on CPU in float32/float64 a fast PyTorch path (the same float64 norms
summed by row chunks: 0.35-0.55x ``MaxPool2d(2)`` where ``vector_norm`` made the reference
1.0-1.6x, ``benchmarks/results/cpu-antialias-kernels.md``), the reference otherwise;
``equilayers.kernels.explain("polyphase_pool2d", x, stride=2)`` says which. All pick the same
component up to the order of the float64 sums (a choice can differ only between components whose
norms agree to ~1e-16; with a float32 blur first, ``blur_size > 1``, the paths' blurs round
apart by ~1e-7 relative, so components that tie up to that can be chosen differently).
"""

from __future__ import annotations

import math
from typing import Literal, cast, overload

import torch

from .. import _checks as C
from .. import kernels
from ..kernels._reference import CRITERIA, kept_channels_last
from ._blur import binomial_filter, blur_nd

__all__ = ["polyphase_pool2d", "polyphase_upsample2d", "place_components", "check_index",
           "CRITERIA"]


#: The layouts the polyphase ops take: batched, or one unbatched plain map.
_LAYOUT = "(B, C, H, W), (B, C, F, H, W) (any dims between B and H) or an unbatched (C, H, W)"


def _check_input(x: torch.Tensor, what: str) -> None:
    C.check_tensor(x, "x", what, min_ndim=3, layout=_LAYOUT)


@overload
def polyphase_pool2d(x: torch.Tensor, stride: int = ..., *, criterion: str = ...,
                     blur_size: int = ..., padding_mode: str = ...,
                     return_index: Literal[False] = ...) -> torch.Tensor: ...


@overload
def polyphase_pool2d(x: torch.Tensor, stride: int = ..., *, criterion: str = ...,
                     blur_size: int = ..., padding_mode: str = ...,
                     return_index: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def polyphase_pool2d(x: torch.Tensor, stride: int = ..., *, criterion: str = ...,
                     blur_size: int = ..., padding_mode: str = ..., return_index: bool = ...
                     ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


def polyphase_pool2d(x: torch.Tensor, stride: int = 2, *, criterion: str = "l2",
                     blur_size: int = 1, padding_mode: str = "circular",
                     return_index: bool = False
                     ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Keep the polyphase component of largest norm, per sample.

    Optionally blurs first (``blur_size > 1``: a binomial blur at stride 1 with
    ``padding_mode``). See :class:`equilayers.nn.PolyphasePool2d` and the module docstring.

    Args:
        x: ``(B, C, H, W)`` or ``(B, C, F, H, W)``, or an unbatched ``(C, H, W)`` (as torch's
            pools: the same as ``x[None]`` with the batch dim dropped from the results; a 4-D
            input is always batched); ``H`` and ``W`` divisible by ``stride``.
        stride: integer >= 2.
        criterion: ``"l2"``, ``"l1"`` or ``"linf"`` norm of a component.
        blur_size: binomial blur before sampling, 1..7 (1 = none).
        padding_mode: padding of the blur (``"circular"`` keeps exact shift invariance).
        return_index: also return the chosen flat index ``i * stride + j`` per sample,
            shape ``(B,)`` (int64; a 0-d tensor for an unbatched ``x``), for
            :func:`polyphase_upsample2d`.

    Example:
        >>> y, idx = polyphase_pool2d(torch.randn(2, 3, 8, 8), return_index=True)
        >>> y.shape, idx.shape
        (torch.Size([2, 3, 4, 4]), torch.Size([2]))
    """
    unbatched = isinstance(x, torch.Tensor) and x.dim() == 3  # (C, H, W), as torch's pools
    out = kernels.dispatch("polyphase_pool2d", x[None] if unbatched else x, stride=stride,
                           criterion=criterion, blur_size=blur_size, padding_mode=padding_mode,
                           return_index=return_index)
    if not unbatched:
        return out
    return (out[0][0], out[1][0]) if isinstance(out, tuple) else out[0]


def polyphase_upsample2d(x: torch.Tensor, index: torch.Tensor, stride: int = 2, *,
                         blur_size: int = 1, padding_mode: str = "circular") -> torch.Tensor:
    """Put ``x`` back on the polyphase component it came from; zeros elsewhere.

    ``y[b, ..., i + s p, j + s q] = x[b, ..., p, q]`` with ``i * s + j = index[b]`` (the index
    returned by :func:`polyphase_pool2d` with ``return_index=True``). With ``blur_size > 1`` the
    result is then blurred at stride 1 with the binomial filter scaled by ``s**2`` (keeps the
    mean, as :func:`blur_upsample2d`). Output ``(B, ..., s H, s W)``. An unbatched ``x``
    ``(C, H, W)`` takes a 0-d ``index`` (as :func:`polyphase_pool2d` returns for it) and gives
    ``(C, s H, s W)``.

    ``polyphase_upsample2d(*polyphase_pool2d(x, s, return_index=True), s)`` keeps the chosen
    samples of ``x`` in place and is exactly equivariant to every integer circular shift.
    """
    what = "polyphase_upsample2d"
    s = C.check_stride(stride, "stride", what, minimum=2)
    C.check_blur_size(blur_size, "blur_size", what, "polyphase")
    C.check_padding_mode(padding_mode, "padding_mode", what)
    _check_input(x, what)
    unbatched = x.dim() == 3  # (C, H, W), with a 0-d index
    b = x.shape[0]
    want = () if unbatched else (b,)
    per = ("a 0-d tensor for an unbatched x (C, H, W)" if unbatched
           else "one flat component index i*stride+j per sample")
    check_index(index, want, per, "polyphase_pool2d", what)
    if unbatched:
        return polyphase_upsample2d(x[None], index[None], s, blur_size=blur_size,
                                    padding_mode=padding_mode)[0]
    return place_components(x, index, s, 2, blur_size, padding_mode, what)


def check_index(index: object, want: tuple[int, ...], per: str, pool: str, what: str) -> None:
    """``index`` an integer tensor of shape ``want`` (``per`` says what it holds, ``pool`` the
    function that returns it); ``TypeError`` for another type or dtype, ``ValueError`` for
    another shape."""
    wrong_type = (not isinstance(index, torch.Tensor) or index.is_floating_point()
                  or index.is_complex() or index.dtype == torch.bool)
    if wrong_type or cast(torch.Tensor, index).shape != want:
        raise (TypeError if wrong_type else ValueError)(
            f"{what}: index must be an integer tensor of shape {want} ({per}, from "
            f"{pool}(..., return_index=True)); got {index!r}"[:600])


def place_components(x: torch.Tensor, index: torch.Tensor, s: int, nd: int, blur_size: int,
                     padding_mode: str, what: str) -> torch.Tensor:
    """The inverse placement of the polyphase pools on the last ``nd`` dims (2 or 3): the
    samples of ``x`` on component ``index[b]`` (row-major flat index over the ``nd`` phases) of
    an ``s``-times larger map, zeros elsewhere, then the optional binomial blur scaled by
    ``s**nd`` (``blur_size > 1``). ``x`` batched, ``index`` of shape ``(B,)`` (checked)."""
    # (no range check where it would be data-dependent control flow: compiling, tracing, a
    # meta index, or one wrapped by torch.func, as in a U-Net under vmap or vmap(grad))
    C.check_component_index(index, s**nd, what, nd)
    b = x.shape[0]
    sizes = x.shape[-nd:]
    lead = x.shape[1:-nd]
    xr = x.reshape(b, math.prod(lead), *sizes)
    # one-hot placement (no in-place indexing: differentiable; a comparison with an arange,
    # not F.one_hot, which reads the index's values: torch.func.vmap batches it)
    # (a select, not a product: inf or NaN samples do not leak into the zero components)
    onehot = index.to(x.device)[:, None] == torch.arange(s**nd, device=x.device)
    spread = (Ellipsis,) + (slice(None), None) * nd  # (a tuple: 3.10 has no * in [])
    y = torch.where(onehot.view(b, 1, *(1, s) * nd), xr[spread], 0.0)
    y = y.reshape(b, *lead, *(n * s for n in sizes))
    fmt = kept_channels_last(x, nd)
    if fmt is not None:
        y = y.contiguous(memory_format=fmt)  # the input's layout (the blur keeps it), as
        # nn.Upsample gives it
    if blur_size > 1:
        filt = binomial_filter(blur_size, dtype=x.dtype, device=x.device) * s  # s**nd in all
        y = blur_nd(y, filt, 1, padding_mode, nd, what, "blur_size")
    return y
