"""Norm and gated nonlinearities and norm pooling of SO(3)/O(3) harmonic fields
``(B, C, (L+1)^2, D, H, W)`` (order ``l`` in slots ``l^2 .. (l+1)^2 - 1``,
:mod:`equilayers.groups._so3`): the 3-D layout of :mod:`._harmonic`'s maps, reached through
their ``group=`` argument. A rotation acts on each order's ``2l + 1`` slots by an orthogonal
Wigner-D matrix (and the inversion by ``(-1)^l``), so each map here acts on the norm
``|v_l|`` of an order (or on the order-0 slot as a signed scalar) and commutes with both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .. import _checks as C
from . import _gated, _norm_map3d  # (_gated: a module, each imports the other)

__all__ = ["check_harmonic3d", "norm_nonlinearity3d", "gated_nonlinearity3d", "norm_pool3d"]


def check_harmonic3d(x: torch.Tensor, max_order: int, what: str) -> None:
    """``x`` is a floating ``(B, C, (L+1)^2, D, H, W)`` harmonic field of SO(3)/O(3)."""
    C.check_order(max_order, "max_order", what, fix="fiber (max_order+1)^2")
    C.check_tensor(x, "x", what)
    f = (max_order + 1) ** 2
    if x.dim() != 6 or x.shape[2] != f:
        raise ValueError(f"{what} expects an SO(3) harmonic field (B, C, (max_order+1)^2, D, H, "
                         f"W) = (B, C, {f}, D, H, W) for max_order={max_order}; got shape "
                         f"{tuple(x.shape)}")


def order_blocks(x: torch.Tensor, max_order: int) -> tuple[torch.Tensor, ...]:
    """``x`` ``(B, C, (L+1)^2, ...)`` as its orders' blocks ``(a_0, v_1, ..., v_L)`` (``2l + 1``
    slots each), by one ``split``: its backward joins the blocks' gradients in one ``cat``,
    where a slice per order each gave autograd a gradient of ``x``'s full size, mostly zeros,
    to add up. Training step at (8, 16, 9, 16^3), 2 threads, against the slices in the same
    run (``benchmarks/bench_harmonic.py``; ``benchmarks/results/so3-order-blocks/``): norm-ReLU
    26.5 -> 18.7 ms, harmonic batch norm 21.9 -> 17.5 ms (a run before it: 26.7 -> 19.5 and
    36.7 -> 27.2 ms); forwards unchanged."""
    return x.split([2 * l + 1 for l in range(max_order + 1)], dim=2)


def _order_sq(blocks: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(B, C, L, D, H, W)``: ``|v_l|^2`` of the blocks ``v_1 .. v_L`` (float32 for half
    inputs), summed slot by slot in slot order, as the norm-ReLU's one-buffer path sums them
    (:mod:`._norm_map3d`): both paths give the same bits (a compiled or exported model takes
    this one)."""
    out = []
    for v in blocks:
        slots = (v if v.dtype in (torch.float32, torch.float64) else v.float()).unbind(2)
        sq = slots[0] * slots[0]
        for t in slots[1:]:
            sq = torch.addcmul(sq, t, t)
        out.append(sq)
    return torch.stack(out, dim=2)


def norm_nonlinearity3d(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    max_order: int,
    function: Callable[[torch.Tensor], torch.Tensor],
    eps: float = 1e-6,
    order0: str = "function",
) -> torch.Tensor:
    """``v_l -> v_l function(|v_l| + b_l) / |v_l|`` (``l >= 1``, ``|v_l| = sqrt(sum v^2 +
    eps)``), ``a_0 -> function(a_0 + b_0)`` (or ``sign(a_0) function(|a_0| + b_0)`` with
    ``order0="norm"``); ``bias`` ``(C, L + 1)`` or ``None``."""
    what = "norm_nonlinearity"
    check_harmonic3d(x, max_order, what)
    C.check_order_bias(bias, x, max_order, what)

    def plain(t: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return _norm_map3d_plain(t, b, max_order, function, eps, order0)

    fast = _norm_map3d.norm_relu3d(x, bias, max_order, function, eps, order0, plain)
    return plain(x, bias) if fast is None else fast


def _norm_map3d_plain(x: torch.Tensor, bias: torch.Tensor | None, max_order: int,
                      function: Callable[[torch.Tensor], torch.Tensor], eps: float,
                      order0: str) -> torch.Tensor:
    """:func:`norm_nonlinearity3d`'s map as plain differentiable ops (arguments checked)."""
    c = x.shape[1]
    view = (1, c, 1, 1, 1, 1)
    a0, *blocks = order_blocks(x, max_order)
    b0 = None if bias is None else bias[:, 0].view(view)
    if order0 == "norm":
        out0 = torch.sign(a0) * function(a0.abs() if b0 is None else a0.abs() + b0)
    else:
        out0 = function(a0 if b0 is None else a0 + b0)
    if max_order == 0:
        return out0
    # (B, C, L, D, H, W); float32 for half inputs up to the product (a float16 norm, and the
    # scale's gradient, can pass 65504 while every entry is below it: inf / inf = NaN)
    norm = (_order_sq(blocks) + eps).sqrt()
    arg = norm if bias is None else norm + bias[:, 1:].reshape(1, c, max_order, 1, 1, 1)
    scales = (function(arg) / norm).split(1, dim=2)  # (one cat in backward, as above)
    return torch.cat([out0, *((v * s).to(x.dtype) for v, s in zip(blocks, scales, strict=True))],
                     dim=2)


def gate_product(gate: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``sigmoid(gate) * v``, in float32 for a float16 ``v`` and cast back: the gate's
    gradient sums ``v * grad`` over the field's slots, which passes 65504 for entries of
    about 2e4 (then ``inf * sigmoid'(gate)`` is inf, or NaN where ``sigmoid'`` rounds to 0)
    while the output and the true gradient fit; bfloat16 has float32's range."""
    if v.dtype != torch.float16:
        return torch.sigmoid(gate) * v
    return (torch.sigmoid(gate.float()) * v.float()).to(v.dtype)


def gated_nonlinearity3d(x: torch.Tensor, max_order: int,
                         function: Callable[[torch.Tensor], torch.Tensor],
                         gates: str = "own") -> torch.Tensor:
    """``v_l -> sigmoid(g) v_l`` (``l >= 1``), ``a_0 -> function(a_0)``; the gate ``g`` is the
    field's own ``a_0`` (``"own"``) or that of gate field ``i`` for field ``C + i``
    (``"first_half"``, the gates dropped)."""
    check_harmonic3d(x, max_order, "gated_nonlinearity")
    return gated_map(x, max_order, function, gates)


def gated_map(x: torch.Tensor, max_order: int,
              function: Callable[[torch.Tensor], torch.Tensor], gates: str) -> torch.Tensor:
    """The gated nonlinearity of checked planar or volume fields: the one-buffer ReLU path on
    the CPU where it applies (:mod:`._gated`), the plain ops otherwise."""
    fast = _gated.gated_relu(x, max_order, function, gates)
    return gated_plain(x, max_order, function, gates) if fast is None else fast


def gated_plain(x: torch.Tensor, max_order: int,
                function: Callable[[torch.Tensor], torch.Tensor], gates: str) -> torch.Tensor:
    """The gated nonlinearity as plain differentiable ops (also the one-buffer path's second
    derivative)."""
    gate, a0, v = gated_parts(x, gates)
    out0 = function(a0)
    if max_order == 0:
        return out0
    return torch.cat([out0, gate_product(gate, v)], dim=2)


def gated_parts(x: torch.Tensor, gates: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(gate, a_0, v)`` of a gated nonlinearity's input ``(B, C, F, ...)``: the gates (each
    field's own ``a_0``, or the first half's), the gated fields' order 0 and their other
    slots, as ``split`` views (``"first_half"`` with an odd C: a ValueError). Slices would each
    give autograd a backward that writes the slice's gradient into zeros of the sliced
    tensor's full size: three such for ``"own"``, 58 of the 140 ms of a (16, 32, 5, 64, 64)
    forward+backward (1 thread, ``/tmp`` profile); one ``split`` joins its pieces' gradients
    in one ``cat``. GatedNonlinearity's training step there, 2 threads: 76 -> 41 ms
    (``benchmarks/bench_harmonic.py``, its ``sliced views`` row the former code in the same
    run)."""
    f = x.shape[2]
    if gates == "own":
        a0, v = x.split([1, f - 1], dim=2)
        return a0, a0, v
    c = x.shape[1]
    if c % 2:
        raise ValueError(f"gated_nonlinearity(gates='first_half') expects an even number of "
                         f"fields (C gate fields, then the C gated fields); got C={c} in shape "
                         f"{tuple(x.shape)}")
    gate_fields, gated = x.split([c // 2, c - c // 2], dim=1)
    a0, v = gated.split([1, f - 1], dim=2)
    return gate_fields.split([1, f - 1], dim=2)[0], a0, v


def norm_pool3d(x: torch.Tensor, max_order: int) -> torch.Tensor:
    """``(B, C, (L+1)^2, D, H, W) -> (B, C (L+1), D, H, W)``: channel ``c (L+1) + l`` is
    ``|v_l|`` of field ``c`` (``|a_0|`` for order 0), invariant to the fiber action; the
    gradient at an exactly zero norm is 0."""
    check_harmonic3d(x, max_order, "norm_pool")
    b, c = x.shape[:2]
    a0, *blocks = order_blocks(x, max_order)
    a0 = a0.abs()
    if max_order == 0:
        return a0.reshape(b, c, *x.shape[3:])
    sq = _order_sq(blocks)
    zero = sq == 0  # not ``sq > 0``: a NaN must stay NaN, not become a norm of 0
    norms = torch.where(zero, 0.0, torch.where(zero, 1.0, sq).sqrt()).to(x.dtype)
    return torch.cat([a0, norms], dim=2).reshape(b, c * (max_order + 1), *x.shape[3:])
