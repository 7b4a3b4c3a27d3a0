"""Shared by the ``from_escnn`` tests (``tests/test_interop_*.py``): escnn or a skip, escnn's
gspaces by our group names, field types, a seeded randomisation, and the control for a filter or
bias no escnn conv builds."""

import pytest
import torch
from _peers import ESCNN_MISSING

from equilayers.groups import get
from equilayers.interop import from_escnn


def _escnn():
    return pytest.importorskip("escnn", reason=ESCNN_MISSING)


def _space(name):
    from escnn import gspaces
    return {"c1": lambda: gspaces.rot2dOnR2(1), "c2": lambda: gspaces.rot2dOnR2(2),
            "c4": lambda: gspaces.rot2dOnR2(4), "d1": lambda: gspaces.flip2dOnR2(),
            "d1r": lambda: gspaces.flipRot2dOnR2(1), "d2": lambda: gspaces.flipRot2dOnR2(2),
            "d4": lambda: gspaces.flipRot2dOnR2(4), "c8": lambda: gspaces.rot2dOnR2(8),
            "c3": lambda: gspaces.rot2dOnR2(3), "c6": lambda: gspaces.rot2dOnR2(6),
            "d3": lambda: gspaces.flipRot2dOnR2(3), "d8": lambda: gspaces.flipRot2dOnR2(8),
            "c16": lambda: gspaces.rot2dOnR2(16)}[name]()


def _grid(name):
    """The elements of our group that map the pixel grid onto itself (its grid subgroup)."""
    return [g for g in get(name).elements() if g.is_grid]


def _randomize(module):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(generator=gen)
    return module


def _refused_when_broken(conv, monkeypatch, match: str, *, filt_slot: int | None = None,
                         bias_at: tuple[int, float, bool] | None = None) -> None:
    """``conv`` converts as escnn built it (the control); with its expanded filter's output
    slot ``filt_slot`` negated, or its expanded bias at ``bias_at = (index, value, add)`` set
    (or raised by) ``value`` (a filter or bias no escnn conv builds), it is refused with
    ``match``."""
    from_escnn(conv)
    filt, bias = conv.expand_parameters()
    filt = filt.detach().clone()
    bias = None if bias is None else bias.detach().clone()
    if filt_slot is not None:
        filt[filt_slot] = -filt[filt_slot]
    if bias_at is not None:
        i, value, add = bias_at
        bias[i] = bias[i] + value if add else value
    monkeypatch.setattr(conv, "expand_parameters", lambda: (filt, bias))
    with pytest.raises(ValueError, match=match):
        from_escnn(conv)


def _ftype(gs, c, rep):
    from escnn import nn as enn
    return enn.FieldType(gs, c * [gs.regular_repr if rep == "regular" else gs.trivial_repr])


def _run_escnn(m, x, in_type):
    from escnn import nn as enn
    with torch.no_grad():
        return m(enn.GeometricTensor(x.flatten(1, 2) if x.dim() == 5 else x, in_type)).tensor


def _so3_space(space: str):
    """escnn's gspace for ``"so3"`` / ``"o3"`` (maximum frequency 2) and its irreps of
    orders 0..2 (O(3): ``irrep(l % 2, l)``, our parity ``(-1)^l``)."""
    from escnn import gspaces

    if space == "so3":
        gs = gspaces.rot3dOnR3(maximum_frequency=2)
        return gs, [gs.fibergroup.irrep(ell) for ell in range(3)]
    gs = gspaces.flipRot3dOnR3(maximum_frequency=2)
    return gs, [gs.fibergroup.irrep(ell % 2, ell) for ell in range(3)]
