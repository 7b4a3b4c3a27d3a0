"""Subgroup cases: restriction of regular and harmonic fields (input acted on by the group,
output by the subgroup, for every subgroup element) and pooling over cosets (exact for every
group element on the grid), with wrong slot permutations as negative controls."""

from __future__ import annotations

import torch
from torch import nn

from .._interop_so2 import EscnnRestrictedBasis
from ..groups import Element, PlanarGroup, get
from ..groups._subgroups import embed
from ..nn import CosetPool, Restrict
from ._case import Case


class _LeftCosetRestrict(nn.Module):
    """A negative control: "restriction" of D4 to its flips through the left cosets ``t_j H``
    (slot ``t_j h``) instead of the right cosets ``H t_j``: for a non-normal subgroup these are
    not regular ``H`` fields."""

    in_rep = out_rep = "regular"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grp, sub = get("d4"), get("d1")
        assert isinstance(grp, PlanarGroup)
        reps: list[Element] = [grp.element(j) for j in range(4)]
        idx = torch.tensor([(t * embed(h, grp)).index for t in reps for h in sub.elements()],
                           device=x.device)
        return x.index_select(2, idx).reshape(x.shape[0], -1, 2, *x.shape[-2:])


class _UnpermutedRestrict(nn.Module):
    """A negative control: C8 -> C4 as a plain reshape of the 8 slots into two halves (the
    halves r^0..r^3 and r^4..r^7 are not C4 orbits: r^2 is the C4 generator)."""

    in_rep = out_rep = "regular"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1, 4, *x.shape[-2:])


class _RightCosetPool(nn.Module):
    """A negative control: D4 pooled over the right cosets ``K r^j = {r^j, r^-j m}`` of the
    flips instead of the left ones ``{r^j, r^j m}``."""

    in_rep = "regular"
    out_rep = "quotient:d1"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = torch.tensor([[j, 4 + (-j) % 4] for j in range(4)], device=x.device).reshape(-1)
        return x.index_select(2, idx).reshape(*x.shape[:2], 4, 2, *x.shape[-2:]).amax(3)


class _FlippedBasis(nn.Module):
    """A negative control for :class:`EscnnRestrictedBasis`: a fixed per-order reflection
    ``diag(1, -1)`` in place of its quarter turns (a basis change that does not commute with
    the rotations, so the result is not a C_N field)."""

    in_rep = out_rep = "harmonic"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        signs = torch.ones(x.shape[2], dtype=x.dtype, device=x.device)
        signs[2::2] = -1
        return x * signs.view(-1, 1, 1)


def _grid(*degs: float) -> tuple[float, ...]:
    return degs or (0.0, 90.0, 180.0, 270.0)


CASES = [
    # --- restriction: the harness acts on the input with G (in_group), on the output with H
    Case("subgroup/restrict-d4-c4", lambda: Restrict("d4", "c4"), (2, 3, 8, 7, 7), "c4",
         in_group="d4"),
    Case("subgroup/restrict-d4-d1-flips", lambda: Restrict("d4", "d1"), (2, 3, 8, 7, 7), "d1",
         in_group="d4"),
    Case("subgroup/restrict-d4-d2", lambda: Restrict("d4", "d2"), (2, 3, 8, 7, 7), "d2",
         in_group="d4"),
    Case("subgroup/restrict-d8-d4", lambda: Restrict("d8", "d4"), (2, 2, 16, 7, 7), "d4",
         in_group="d8"),
    Case("subgroup/restrict-c8-c4", lambda: Restrict("c8", "c4"), (2, 3, 8, 7, 7), "c4",
         in_group="c8"),
    Case("subgroup/restrict-d8-c2", lambda: Restrict("d8", "c2"), (2, 2, 16, 7, 7), "c2",
         in_group="d8"),
    Case("subgroup/restrict-d6-d3-all-elements", lambda: Restrict("d6", "d3"),
         (2, 2, 12, 9, 9), "d3", in_group="d6"),
    Case("subgroup/restrict-o2-so2-harmonic", lambda: Restrict("o2", "so2", rep="harmonic"),
         (2, 3, 5, 7, 7), "so2", in_group="o2", in_rep="harmonic", out_rep="harmonic"),
    Case("subgroup/restrict-d8-c8-harmonic", lambda: Restrict("d8", "c8", rep="harmonic"),
         (2, 3, 7, 7, 7), "c8", in_group="d8", in_rep="harmonic", out_rep="harmonic",
         elements=_grid()),
    # escnn's basis of restricted D_N / O(2) fields (from_escnn puts it after the restriction)
    Case("subgroup/escnn-restricted-basis-d8-c8", lambda: EscnnRestrictedBasis("d8", 3),
         (2, 3, 7, 7, 7), "c8", in_rep="harmonic", out_rep="harmonic", elements=_grid()),
    Case("subgroup/escnn-restricted-basis-o2-so2", lambda: EscnnRestrictedBasis("o2", 2),
         (2, 3, 5, 7, 7), "so2", in_rep="harmonic", out_rep="harmonic"),
    Case("subgroup/escnn-restricted-basis-flipped-fails", _FlippedBasis, (2, 3, 5, 7, 7),
         "c8", in_rep="harmonic", out_rep="harmonic", elements=_grid(), expect="fail"),
    Case("subgroup/restrict-d4-d1-left-cosets-fails", _LeftCosetRestrict, (2, 3, 8, 7, 7),
         "d1", in_group="d4", expect="fail"),
    Case("subgroup/restrict-c8-c4-unpermuted-fails", _UnpermutedRestrict, (2, 3, 8, 7, 7),
         "c4", in_group="c8", expect="fail"),
    # --- coset pooling: every element of G (on the grid), quotient:K out
    Case("subgroup/cosetpool-d4-over-flips", lambda: CosetPool("d4", "d1"), (2, 3, 8, 7, 7),
         "d4"),
    Case("subgroup/cosetpool-d4-over-rotations-mean", lambda: CosetPool("d4", "c4", "mean"),
         (2, 3, 8, 7, 7), "d4"),
    Case("subgroup/cosetpool-d4-over-c2", lambda: CosetPool("d4", "c2"), (2, 3, 8, 7, 7),
         "d4"),
    Case("subgroup/cosetpool-d8-over-d2-on-d4", lambda: CosetPool("d8", "d2"),
         (2, 2, 16, 7, 7), "d8", elements=_grid()),
    Case("subgroup/cosetpool-c8-over-c2-on-c4", lambda: CosetPool("c8", "c2", "mean"),
         (2, 2, 8, 7, 7), "c8", elements=_grid()),
    Case("subgroup/cosetpool-d4-right-cosets-fails", _RightCosetPool, (2, 3, 8, 7, 7), "d4",
         expect="fail"),
]
