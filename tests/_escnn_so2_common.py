"""Shared by the ``from_escnn`` tests on SO(2)/O(2) and C_N/D_N fields of irreps
(``tests/test_escnn_so2*.py``): escnn's gspace and irreps by our group names, field types of
orders 0..L (whole or as separate irreps), and the change of basis between escnn's tensors and
ours. Skips (as its importers do) where escnn is missing."""

import pytest
import torch
from _peers import ESCNN_MISSING

pytest.importorskip("escnn", reason=ESCNN_MISSING)
from escnn import gspaces  # noqa: E402
from escnn import nn as esc  # noqa: E402

from equilayers.interop import escnn_field_matrix  # noqa: E402


def _space(space: str):
    """escnn's gspace and its irreps of orders 0..3 in our order (``"so2"``, ``"o2"``,
    ``"cN"``, ``"dN"``; N > 6)."""
    if space in ("so2", "o2"):
        n = -1
        kw = {"maximum_frequency": 8}
    else:
        n, kw = int(space[1:]), {}
    if space[0] in "sc":
        gs = gspaces.rot2dOnR2(n, **kw)
        return gs, [gs.fibergroup.irrep(m) for m in range(4)]
    gs = gspaces.flipRot2dOnR2(n, **kw)
    return gs, [gs.fibergroup.irrep(0, 0)] + [gs.fibergroup.irrep(1, m) for m in range(1, 4)]


def _fields(gs, irreps, c: int, order: int, whole: bool):
    if whole:
        rep = gs.fibergroup.spectral_regular_representation(*[r.id for r in irreps[:order + 1]])
        return esc.FieldType(gs, c * [rep])
    return esc.FieldType(gs, c * irreps[:order + 1])


def _to_ours(t: torch.Tensor, space: str, c: int, order: int) -> torch.Tensor:
    """escnn's ``(B, C F, H, W)`` -> our ``(B, C, F, H, W)`` (``ours = Q theirs`` per field)."""
    q = escnn_field_matrix(space, order).to(t)
    return torch.einsum("ij,bcjyx->bciyx", q, t.unflatten(1, (c, 2 * order + 1)))


def _to_theirs(y: torch.Tensor, space: str, order: int) -> torch.Tensor:
    q = escnn_field_matrix(space, order).to(y)
    return torch.einsum("ji,bcjyx->bciyx", q, y).flatten(1, 2)
