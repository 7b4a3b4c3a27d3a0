"""``from_escnn`` on escnn's ``Linear`` between fields on ``no_base_space`` (equivariant MLPs)
-> :class:`~equilayers.nn.GroupLinear`.

The fibers are escnn's moved into our slots as on images and volumes, so a converted MLP
takes the tensors a converted conv trunk gives: regular fields of C_N/D_N as they are, of the
cube's and the icosahedron's groups through :func:`~equilayers.interop.escnn_slot_order` of
``octaOnR3`` / ``fullOctaOnR3`` / ``icoOnR3`` / ``fullIcoOnR3`` (escnn's group objects are
those gspaces' fiber groups); harmonic fields (the irreps of orders ``0 .. L`` field after
field, separate or one representation each) of SO(2)/C_N as they are, of O(2)/D_N through
:func:`~equilayers.interop.escnn_field_matrix`, of SO(3)/O(3) times
:func:`~equilayers.interop.escnn_field_signs`. escnn's matrix and bias (its cached ones in
eval mode, checked) are solved for in our layer's weights: the map from one pair of fields'
weights to their block is the same for every pair, so it is read off a one-field layer and
the blocks are fitted at once; the whole matrix is then checked against escnn's.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from . import _interop3d as I3
from . import _interop_modules as M
from . import _interop_so2 as S2
from . import _interop_so3 as S3
from .nn import GroupLinear

__all__ = ["linear"]

_WHAT = "Linear"
_CUBE_SPACES = {24: "octaOnR3", 48: "fullOctaOnR3", 60: "icoOnR3", 120: "fullIcoOnR3"}


def _group(fg: Any) -> tuple[str, bool]:
    """Our group's name for escnn's fiber group ``fg`` and whether it is finite."""
    from escnn.group import O2, O3, SO2, SO3, CyclicGroup, DihedralGroup

    if isinstance(fg, CyclicGroup):
        return f"c{fg.order()}", True
    if isinstance(fg, DihedralGroup):
        return f"d{fg.rotation_order}", True
    for cls, name in ((SO2, "so2"), (O2, "o2"), (SO3, "so3"), (O3, "o3")):
        if isinstance(fg, cls):
            return name, False
    if fg.elements is not None and fg.order() in _CUBE_SPACES:
        return "", True  # named by the probe of its 3-D gspace
    raise ValueError(f"from_escnn: {_WHAT} on {fg.name}: only C_N, D_N, the cube's and the "
                     "icosahedron's groups (regular or harmonic fields) and SO(2), O(2), "
                     "SO(3), O(3) (harmonic fields) are supported")


def _cube(fg: Any) -> tuple[str, torch.Tensor]:
    """Our name and escnn's slot order for a cube or icosahedral group, from its 3-D gspace."""
    from escnn import gspaces

    gspace = getattr(gspaces, _CUBE_SPACES[fg.order()])()
    if gspace.fibergroup is not fg:
        raise ValueError(f"from_escnn: {_WHAT} on {fg.name}: not the fiber group of escnn's "
                         f"{_CUBE_SPACES[fg.order()]}(), whose slot order ours follows")
    probed: dict = {}
    return I3.cube_group_name(gspace, probed), I3.escnn_slot_order(gspace, probed)


def _harmonic_layout(ftype: Any, gname: str) -> tuple[int, int]:
    """``(C, L)`` of fields that repeat the irreps of orders ``0 .. L``."""
    fg = ftype.gspace.fibergroup
    flips = gname == "o2" or gname.startswith("d")
    spherical = gname in ("so3", "o3")

    def irrep(ell: int) -> Any:
        if spherical:
            return fg.irrep(ell % 2, ell) if gname == "o3" else fg.irrep(ell)
        return (fg.irrep(0, 0) if ell == 0 else fg.irrep(1, ell)) if flips else fg.irrep(ell)

    names = [fg.irrep(*i).name for r in ftype.representations for i in r.irreps]
    if any(len(r.irreps) > 1 and not torch.allclose(
            torch.as_tensor(r.change_of_basis, dtype=torch.float64),
            torch.eye(r.size, dtype=torch.float64)) for r in ftype.representations):
        names = []
    block = 1
    while block < len(names) and names[block] != irrep(0).name:
        block += 1
    want = [irrep(ell).name for ell in range(block)]
    if not names or len(names) % block or names != want * (len(names) // block):
        raise ValueError(f"from_escnn: {_WHAT} on {ftype}: the fields must be regular or "
                         "repeat the irreps of orders 0..L in order (our harmonic fields), "
                         "with no change of basis; other field types are not supported")
    n = int(gname[1:]) if gname[0] in "cd" and gname[1:].isdigit() else None
    if n is not None and 2 * (block - 1) >= n:
        raise ValueError(f"from_escnn: {_WHAT} on {ftype}: orders 0..{block - 1} of C{n}/D{n} "
                         f"reach order N/2 = {n / 2:g}, a 1-D irrep of escnn's where our "
                         "harmonic fields hold a pair")
    return len(names) // block, block - 1


def _fields(ftype: Any) -> tuple[str, int, int | None, torch.Tensor]:
    """``(group, C, L or None for regular fields, Q)``: ``Q`` ``(F, F)`` with ``ours = Q
    theirs`` per field."""
    fg = ftype.gspace.fibergroup
    if getattr(ftype.gspace, "dimensionality", None) != 0:
        raise ValueError(f"from_escnn: {_WHAT} on {ftype}: only fields on no_base_space "
                         "(fibers alone) are supported")
    gname, finite = _group(fg)
    if finite and all(r.name == "regular" for r in ftype.representations):
        size = fg.order()
        if gname:
            perm = torch.arange(size)
        else:
            gname, perm = _cube(fg)
        q = torch.zeros(size, size, dtype=torch.float64)
        q[torch.arange(size), perm] = 1.0  # our slot j holds escnn's slot perm[j]
        return gname, len(ftype.representations), None, q
    if not gname:
        raise ValueError(f"from_escnn: {_WHAT} on {ftype}: only regular fields of the cube's "
                         "and the icosahedron's groups are supported")
    c, order = _harmonic_layout(ftype, gname)
    if gname in ("so3", "o3"):
        return gname, c, order, torch.diag(S3.escnn_field_signs(order))
    return gname, c, order, S2.escnn_field_matrix(gname, order)


def _response(layer: GroupLinear, f_in: int) -> torch.Tensor:
    """The layer's map, ``(C_out * F_out, C_in * F_in)``, bias removed."""
    eye = torch.eye(layer.in_features * f_in, dtype=torch.float64)
    with torch.no_grad():
        y = layer(eye.view(-1, layer.in_features, f_in))
        zero = layer(torch.zeros(1, layer.in_features, f_in, dtype=torch.float64))
    return (y - zero).flatten(1).T


def linear(m: Any) -> nn.Module:
    """escnn's ``Linear`` on ``no_base_space`` -> :class:`GroupLinear` computing the same map
    (module docstring)."""
    gname, c_in, l_in, q_in = _fields(m.in_type)
    gname_out, c_out, l_out, q_out = _fields(m.out_type)
    if (l_in is None) != (l_out is None) or gname_out != gname:
        raise ValueError(f"from_escnn: {_WHAT} from {m.in_type} to {m.out_type}: regular to "
                         "harmonic fields (or back) have no GroupLinear; convert between them "
                         "with RegularToHarmonic / HarmonicToRegular")
    matrix, bias = M.expanded(m)
    f_in, f_out = q_in.shape[0], q_out.shape[0]
    theirs = matrix.detach().double().view(c_out, f_out, c_in, f_in)
    want = torch.einsum("oa,pajb,qb->pojq", q_out, theirs, q_in)  # (C_out, F_out, C_in, F_in)
    kw: dict = {"group": gname, "max_order": l_out, "in_max_order": l_in}
    with warnings.catch_warnings():  # (an unreached order warns once, for the layer below)
        warnings.simplefilter("ignore")
        one = GroupLinear(1, 1, bias=bias is not None, dtype=torch.float64, **kw)
    w = one.conv.weight
    basis = []
    for k in range(w.numel()):  # one pair of fields: the block of each unit weight
        with torch.no_grad():
            w.zero_().view(-1)[k] = 1.0
        basis.append(_response(one, f_in).flatten())
    jac = torch.stack(basis, 1)  # (F_out * F_in, K)
    blocks = want.permute(0, 2, 1, 3).reshape(c_out * c_in, f_out * f_in).T
    sol = torch.linalg.lstsq(jac, blocks).solution.T  # (C_out * C_in, K)
    ref = next(m.parameters())
    ours = GroupLinear(c_in, c_out, bias=bias is not None, dtype=torch.float64, **kw)
    with torch.no_grad():
        ours.conv.weight.copy_(sol.view(c_out, c_in, *w.shape[2:]))
        if bias is not None and ours.conv.bias is not None:
            # our bias per output field, spread over its slots as a unit bias spreads
            slots = (q_out @ bias.detach().double().view(c_out, f_out).T).T  # (C_out, F_out)
            ours.conv.bias.fill_(1.0)
            per = ours(torch.zeros(1, c_in, f_in, dtype=torch.float64))[0]  # (C_out, F_out)
            ours.conv.bias.copy_((slots * per).sum(1) / per.square().sum(1).clamp_min(1e-30))
    with torch.no_grad():
        got = _response(ours, f_in).view(c_out, f_out, c_in, f_in)
        scale = float(want.abs().max()) or 1.0
        err = float((got - want).abs().max()) / scale
        if bias is not None:
            b_got = ours(torch.zeros(1, c_in, f_in, dtype=torch.float64))[0]
            b_want = (q_out @ bias.detach().double().view(c_out, f_out).T).T
            err = max(err, float((b_got - b_want).abs().max())
                      / max(float(b_want.abs().max()), scale))
    if err > 1e-6:
        raise ValueError(f"from_escnn: {_WHAT} from {m.in_type} to {m.out_type}: escnn's "
                         f"matrix is not one of GroupLinear's (relative error {err:.2e}); its "
                         "fields' conventions differ from ours")
    return ours.to(device=ref.device, dtype=ref.dtype)
