"""Equivariant linear layers on fibers alone ``(B, C, F)`` (``GroupLinear``, the layers of an
equivariant MLP) against their floor, a dense ``nn.Linear`` on the flattened fibers with the
same sizes (``C_in*F_in -> C_out*F_out``), and escnn's ``Linear`` on ``no_base_space`` when
importable.

Rows, batch 256, 64 fields in and out (32 for the cube's 24-slot fields): regular fields of
``"p4m"`` (8 slots) and ``"o"`` (24), harmonic fields of ``"so2"`` (orders ``0..3``, 7 slots)
and ``"so3"`` (orders ``0..2``, 9 slots); training mode (forward and forward+backward, the
matrix expanded from the coefficients in every forward, as escnn's) and eval inference under
``torch.no_grad`` (``ours exported``: the layer after ``equilayers.export``, a plain
``nn.Linear``; escnn caches its matrix in eval mode).

Run: ``python -m benchmarks --family linear [--quick]``.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from benchmarks._core import BenchCase, layer_rows
from benchmarks._core import module_maker as _make

FAMILY = "linear"
#: peer libraries whose rows this family has only where they are installed (the runner
#: names each one missing)
OPTIONAL_PEERS = ("escnn",)
B = 256
#: (group, max_order, fields, fiber)
_ROWS = (("p4m", None, 64, 8), ("o", None, 32, 24), ("so2", 3, 64, 7), ("so3", 2, 64, 9))


def _ours(group: str, max_order: int | None, c: int):
    from equilayers.nn import GroupLinear

    return lambda: GroupLinear(c, c, group=group, max_order=max_order)


def _exported(builder):
    import equilayers

    return lambda: equilayers.export(builder())


class _Flat(nn.Module):
    """The floor: ``nn.Linear`` on the flattened fibers, in the fibers' layout."""

    def __init__(self, c: int, f: int) -> None:
        super().__init__()
        self.linear, self.shape = nn.Linear(c * f, c * f), (c, f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)).unflatten(1, self.shape)


def _escnn(group: str, max_order: int | None, c: int):
    """``(build, wrap)`` of escnn's ``Linear`` between the same fields (regular, or the
    direct sum of the irreps ``0..M`` per field)."""
    from escnn import group as eg
    from escnn import gspaces
    from escnn import nn as esc

    from benchmarks.bench_gconv3d import escnn_sklearn_shim

    escnn_sklearn_shim()
    fg = {"p4m": lambda: eg.dihedral_group(4), "o": eg.octa_group,
          "so2": lambda: eg.so2_group(max_order), "so3": lambda: eg.so3_group(max_order)}[group]()
    gs = gspaces.no_base_space(fg)
    if max_order is None:
        rep = fg.regular_representation
    else:
        rep = eg.directsum([fg.irrep(m) for m in range(max_order + 1)])
    t = esc.FieldType(gs, c * [rep])

    def build():
        return esc.Linear(t, t)

    def wrap(m):
        return lambda x: m(esc.GeometricTensor(x.flatten(1), t)).tensor
    return build, wrap


def cases(quick: bool) -> list[BenchCase]:
    peer = importlib.util.find_spec("escnn") is not None
    rows = _ROWS[:1] + _ROWS[3:] if quick else _ROWS
    out: list[BenchCase] = []
    for group, order, c, f in rows:
        for mode in ("train", "infer"):
            tag = f"{group}{'' if order is None else f' M{order}'} {mode} b{B} c{c} F{f}"
            params = dict(group=group, max_order=order, fields=c, fiber=f, mode=mode, batch=B)
            shape = (B, c, f)
            ours = _ours(group, order, c)
            found = layer_rows(FAMILY, tag, shape, mode, params,
                               lambda c=c, f=f: _Flat(c, f), ours,
                               ("escnn", *_escnn(group, order, c)) if peer else None)
            if mode == "infer":  # the exported layer after ours
                found.insert(2, BenchCase(f"ours exported {tag}", FAMILY,
                                          _make(_exported(ours), shape, mode),
                                          floor=f"floor {tag}", backward=False, params=params))
            out += found
    return out
