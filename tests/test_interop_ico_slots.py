"""``from_escnn``'s slot matching for the icosahedral groups (``_interop3d._ico_slots``): most
of their elements leave the voxel grid, so escnn's elements are matched to ours by their
matrices (escnn's axes: ours turned by a half turn about ``z``), and the 12 grid elements also
by the voxel probe. The refusals are exercised here without escnn, on stub gspaces built from
our own elements: the control (escnn's convention) maps every element to itself; another
orientation of the icosahedron, or a grid element that moves the voxels otherwise, is
refused by name."""

from __future__ import annotations

import pytest
import torch

from equilayers._interop3d import _ico_slots
from equilayers.groups import get

_TURN = torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64))


class _StubSpace:
    """An escnn-like gspace whose elements are ours and whose ``basespace_action`` is a
    matrix ``frame @ g @ frame^T`` of each (``frame = _TURN``: escnn's axes)."""

    name = "stub_icoOnR3"

    def __init__(self, frame: torch.Tensor) -> None:
        self.frame = frame

    def basespace_action(self, g):
        return (self.frame @ get("ico").matrix(g) @ self.frame.T).numpy()


def _grid(m: torch.Tensor) -> bool:
    return float((m - m.round()).abs().max()) < 1e-9


def test_escnns_frame_maps_every_element_to_itself():
    grp = get("ico")
    elements = grp.elements()
    slots = _ico_slots(_StubSpace(_TURN), elements, grp,
                       lambda e: [elements.index(e)])  # the probe agrees
    assert slots == list(range(60))
    # our own frame is tried too (the identity in place of the half turn)
    assert _ico_slots(_StubSpace(torch.eye(3, dtype=torch.float64)), elements, grp,
                      lambda e: [elements.index(e)]) == list(range(60))
    assert sum(_grid(grp.matrix(g)) for g in elements) == 12  # the probe's elements


def test_another_orientation_is_refused():
    """The icosahedron turned by a generic rotation about z: no element's matrix is ours."""
    grp = get("ico")
    elements = grp.elements()
    c, s = torch.cos(torch.tensor(0.3, dtype=torch.float64)), torch.sin(
        torch.tensor(0.3, dtype=torch.float64))
    turn = torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float64)
    with pytest.raises(ValueError, match="is not equilayers' 'ico' in its axes"):
        _ico_slots(_StubSpace(turn @ _TURN), elements, grp, lambda e: [elements.index(e)])


def test_a_grid_element_that_moves_the_voxels_otherwise_is_refused():
    """The matrices agree but the voxel probe puts one grid element elsewhere (another
    convention for moving volumes): refused, in both frames."""
    grp = get("ico")
    elements = grp.elements()
    odd = next(g for g in elements[1:] if _grid(grp.matrix(g)))

    def probe(e):
        return [] if e == odd else [elements.index(e)]
    with pytest.raises(ValueError, match="its elements' matrices or voxel moves differ"):
        _ico_slots(_StubSpace(_TURN), elements, grp, probe)
