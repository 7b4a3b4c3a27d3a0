"""The gated nonlinearity with ReLU on order 0 (the default ``function``), written into one
buffer each way on the CPU.

The plain formulation (:func:`._harmonic.gated_nonlinearity`) computes ``relu(a_0)`` and
``sigmoid(g) v`` as two tensors and joins them with ``cat``; its backward splits the gradient,
sums ``g . v`` over the slots from a full-size product, and joins the pieces' gradients with
another ``cat``. Here the output and the input's gradient are each written once into one
buffer (``out=`` views), and the gate's gradient is summed slot by slot (no full-size
product). GatedNonlinearity at (16, 32, 5, 64, 64), 2 threads, against the plain formulation
in the same run (``benchmarks/bench_harmonic.py``, its ``cat formulation`` row;
``benchmarks/results/gated-relu/cpu-harmonic.md``): training step 47.6 -> 23.5 ms, eval 21.5 ->
12.1 ms (``nn.ReLU`` on the tensor: 14.7 and 10.5 ms), peak memory 128 -> 104 and 80 -> 48 MiB;
a run before it, 47.7 -> 21.9 and 20.3 -> 11.5 ms. Per forward+backward it takes 32 aten ops
against 27 (the slot-by-slot sum; ``python -m benchmarks.host_harmonic``).

Taken for ``function`` in (``F.relu``, ``torch.relu``), orders ``M >= 1``, float32/float64
inputs on the CPU under plain eager autograd (:func:`._autograd.plain_autograd`: not under
``torch.func``, forward-mode AD, ``torch.compile``, tracing or autocast); ``create_graph=True``
differentiates the plain ops (second derivatives). Other devices keep the plain formulation
(fewer ops; a GPU runs these models bound by the host, per op: not measured there).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..kernels._autodiff import batched_grad
from . import _harmonic3d as H3  # (a module: each imports the other)
from ._norm_map import cpu_relu_path, slot_sum

__all__ = ["gated_relu"]


def gated_relu(x: torch.Tensor, max_order: int,
               function: Callable[[torch.Tensor], torch.Tensor],
               gates: str) -> torch.Tensor | None:
    """The gated nonlinearity of ``x`` (planar or volume fields, checked by the caller) on
    the one-buffer path, or ``None`` where that path does not apply (then the caller runs the
    plain ops)."""
    if not cpu_relu_path(x, function, max_order):
        return None
    if torch.is_grad_enabled() and x.requires_grad:
        return _GatedReLU.apply(x, gates)
    return _forward(x, gates)[0]  # no graph to record


def _forward(x: torch.Tensor, gates: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(output, sigmoid(gate))``: ``relu(a_0)`` and ``sigmoid(g) v`` written into one
    buffer (``x``'s layout where the output has ``x``'s shape)."""
    gate, a0, v = H3.gated_parts(x, gates)
    y = torch.empty_like(x) if gates == "own" else x.new_empty((*a0.shape[:2], *x.shape[2:]))
    s = torch.sigmoid(gate)
    torch.clamp_min(a0, 0, out=y[:, :, :1])
    torch.mul(v, s, out=y[:, :, 1:])
    return y, s


class _GatedReLU(torch.autograd.Function):
    """With ``s = sigmoid(g)``: ``dv = gy_v s``, ``dg = s (1 - s) sum_slots gy_v . v``,
    ``da_0 = gy_0 1[a_0 > 0]`` (added to ``dg`` where the gate is the field's own ``a_0``;
    the gate fields' other slots get 0 with ``gates="first_half"``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, gates: str) -> torch.Tensor:
        y, s = _forward(x, gates)
        ctx.save_for_backward(x, s)
        ctx.gates = gates
        return y

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        x, s = ctx.saved_tensors
        gates = ctx.gates
        if torch.is_grad_enabled() or batched_grad(gy):
            # create_graph=True, or a batch of gradients: the plain ops, differentiable
            with torch.enable_grad():
                (gx,) = torch.autograd.grad(H3.gated_plain(x, 1, F.relu, gates), x, gy,
                                            create_graph=True)  # (any order past 0)
            return gx, None
        f = x.shape[2]
        _, a0, v = H3.gated_parts(x, gates)
        g0, gv = gy.split([1, f - 1], dim=2)
        dg = torch.ops.aten.sigmoid_backward(slot_sum(gv, v), s)
        da0 = torch.ops.aten.threshold_backward(g0, a0, 0)  # ReLU's backward
        if gates == "own":
            gx = torch.empty_like(x)
            torch.add(da0, dg, out=gx[:, :, :1])
            torch.mul(gv, s, out=gx[:, :, 1:])
            return gx, None
        gx = torch.zeros_like(x)  # the gate fields' slots past order 0 get no gradient
        gate_fields, gated = gx.split([x.shape[1] // 2, x.shape[1] - x.shape[1] // 2], dim=1)
        gate_fields[:, :, :1].copy_(dg)
        gated[:, :, :1].copy_(da0)
        torch.mul(gv, s, out=gated[:, :, 1:])
        return gx, None
