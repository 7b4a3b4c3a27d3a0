"""The tensor-product nonlinearity (``TensorProductNonlinearity``) against its floor, the same
quadratic map with an unconstrained weight (the products ``x_i x_j``, ``i <= j``, of each
field and one batched matmul by a fixed ``(C, F_out, P)`` matrix: what is left is the cost of
expanding the weight from the basis), and escnn's ``TensorProductModule`` on the same fields
when importable (it maps the whole square ``x x^T``, ``F^2`` products per field).

Rows, training mode (forward and forward+backward) and eval under ``torch.no_grad``: SO(2)
fields of orders ``0..3`` (7 slots) on images, batch 8, 32 fields, 32x32; SO(3) fields of
orders ``0..2`` (9 slots) on volumes, batch 4, 16 fields, 12^3.

Run: ``python -m benchmarks --family tensor_product [--quick]``.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from benchmarks._core import BenchCase, layer_rows

FAMILY = "tensor_product"
#: peer libraries whose rows this family has only where they are installed (the runner
#: names each one missing)
OPTIONAL_PEERS = ("escnn",)
#: (group, max_order, shape)
_ROWS = (("so2", 3, (8, 32, 7, 32, 32)), ("so3", 2, (4, 16, 9, 12, 12, 12)))


def _ours(group: str, order: int, c: int):
    from equilayers.nn import TensorProductNonlinearity

    return lambda: TensorProductNonlinearity(c, group, order)


class _Fixed(nn.Module):
    """The floor: the same products and matmul, by a fixed matrix (nothing to expand)."""

    def __init__(self, group: str, order: int, c: int) -> None:
        super().__init__()
        from equilayers.functional._tensor_product import pair_basis
        from equilayers.groups import get

        basis = pair_basis(get(group), order, order)
        w = torch.randn(c, basis.shape[0], dtype=torch.float64)
        self.register_buffer("matrix", (w @ basis.flatten(1)).view(c, *basis.shape[1:]).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i, j = torch.triu_indices(x.shape[2], x.shape[2], device=x.device)
        t = x.index_select(2, i) * x.index_select(2, j)
        y = torch.matmul(self.matrix, t.flatten(3))
        return y.view(*y.shape[:3], *x.shape[3:])


def _escnn(group: str, order: int, c: int):
    """``(build, wrap)`` of escnn's ``TensorProductModule`` on ``c`` fields of the irreps
    ``0..order`` (a direct sum per field, escnn's order of slots is ours)."""
    from escnn import group as eg
    from escnn import gspaces
    from escnn import nn as esc

    from benchmarks.bench_gconv3d import escnn_sklearn_shim

    escnn_sklearn_shim()
    if group == "so2":
        gs = gspaces.rot2dOnR2(N=-1, maximum_frequency=2 * order)
    else:
        gs = gspaces.rot3dOnR3(maximum_frequency=2 * order)
    rep = eg.directsum([gs.fibergroup.irrep(m) for m in range(order + 1)])
    t = esc.FieldType(gs, c * [rep])

    def build():
        return esc.TensorProductModule(t, t)

    def wrap(m):
        return lambda x: m(esc.GeometricTensor(x.flatten(1, 2), t)).tensor
    return build, wrap


def cases(quick: bool) -> list[BenchCase]:
    peer = importlib.util.find_spec("escnn") is not None
    out: list[BenchCase] = []
    for group, order, shape in _ROWS[:1] if quick else _ROWS:
        c = shape[1]
        size = "x".join(map(str, shape[3:]))
        for mode in ("train", "infer"):
            tag = f"{group} M{order} {mode} b{shape[0]} c{c} {size}"
            params = dict(group=group, max_order=order, fields=c, mode=mode, shape=shape)
            out += layer_rows(FAMILY, tag, shape, mode, params,
                              lambda g=group, o=order, c=c: _Fixed(g, o, c),
                              _ours(group, order, c),
                              ("escnn", *_escnn(group, order, c)) if peer else None)
    return out
