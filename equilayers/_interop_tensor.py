"""``from_escnn`` on escnn's ``TensorProductModule`` -> :class:`~equilayers.nn.
TensorProductNonlinearity`.

escnn's module maps each field's whole square ``x x^T`` (``F^2`` products) by its expanded
matrix; ours keeps the symmetric products, which carry the same function (the antisymmetric
part of a square is 0). The conversion reads escnn's matrix per field, moves it into our
slots (``ours = Q theirs`` per field: escnn's SO(3) signs, the O(2)/D_N quarter turns), keeps
its symmetric part and solves for our weights in our basis (which spans every equivariant
symmetric map, so the solve is exact: its residual is checked). Fields: one representation
per field, the irreps of orders ``0 .. L`` in order with no change of basis (escnn's
``TensorProductModule`` needs a uniform type), of SO(3)/O(3) on volumes or SO(2)/O(2)/C_N/D_N
on images.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import _interop_modules as M
from . import _interop_so2 as S2
from . import _interop_so3 as S3
from .functional import _tensor_product as TP
from .nn import TensorProductNonlinearity

__all__ = ["tensor_product"]

_WHAT = "TensorProductModule"


def _fields(ftype: Any, what: str) -> tuple[str, int, int, torch.Tensor]:
    """``(group, C, L, Q)`` of a field type of ``C`` fields ``[irrep 0 .. irrep L]``, one
    representation each; ``Q`` the ``F x F`` matrix with ``ours = Q theirs`` per field."""
    gspace = ftype.gspace
    if S3.is_so3_space(gspace):
        c, order = S3._layout(ftype, what, whole=True)
        order = 0 if order is None else order  # scalar fields: order 0 (e.g. invariant outputs)
        gname = S3._group(gspace)
        q = torch.diag(S3.escnn_field_signs(order))
    elif S2.harmonic_fields(ftype) and not S2.on_volumes(gspace):
        c, order = S2._layout(ftype, what, form="whole")
        gname = S2._group(gspace)
        q = S2.escnn_field_matrix(gname, order or 0)
    else:
        regular = all(r.name == "regular" for r in ftype.representations)
        raise ValueError(f"from_escnn: {what} on {ftype}: only SO(3)/O(3) fields of volumes "
                         "(rot3dOnR3 / flipRot3dOnR3) and SO(2)/O(2)/C_N/D_N fields of irreps "
                         "of images (rot2dOnR2 / flipRot2dOnR2) are supported" + (
                             "; TensorProductNonlinearity takes harmonic fields, not regular "
                             "ones (whose pointwise nonlinearities, nn.ReLU..., are already "
                             "equivariant)" if regular else ""))
    if order is None or len(ftype.representations) != c:
        raise ValueError(f"from_escnn: {what} on {ftype}: each field must be one "
                         "representation holding the irreps of orders 0..L (L >= 0) in order, "
                         "our harmonic field")
    return gname, c, order, q


def tensor_product(m: Any) -> nn.Module:
    """escnn's ``TensorProductModule`` -> :class:`TensorProductNonlinearity` computing the
    same map (module docstring)."""
    gname, c, m_in, q_in = _fields(m.in_type, _WHAT)
    gname_out, c_out, m_out, q_out = _fields(m.out_type, _WHAT)
    assert (gname_out, c_out) == (gname, c)  # escnn: one gspace, len(in) == len(out)
    matrix = M.expanded(m)[0].detach().to(torch.float64)  # (eval: checked against its cache)
    f_in, f_out = q_in.shape[0], q_out.shape[0]
    theirs = matrix.reshape(c, f_out, f_in, f_in)  # escnn's hidden slot i * F + j
    full = torch.einsum("oa,caij,xi,yj->coxy", q_out, theirs, q_in, q_in)
    full = (full + full.transpose(2, 3)) / 2
    pairs = TP.pair_form(full).flatten(1)  # (C, F_out * P)
    grp, _, _ = TP.check_orders(gname, m_in, m_out, "from_escnn")
    basis = TP.pair_basis(grp, m_in, m_out).flatten(1)  # (K, F_out * P)
    weight = torch.linalg.lstsq(basis.T, pairs.T).solution.T  # (C, K)
    residual = float((weight @ basis - pairs).norm()) / max(float(pairs.norm()), 1e-300)
    if residual > 1e-6:
        raise ValueError(f"from_escnn: {_WHAT} on {m.in_type}: escnn's map is not in our "
                         f"basis (relative residual {residual:.2e}); its fields' conventions "
                         "differ from ours")
    param = next(m.parameters())
    ours = TensorProductNonlinearity(c, gname, m_in, m_out if m_out != m_in else None,
                                     device=param.device, dtype=param.dtype)
    with torch.no_grad():
        ours.weight.copy_(weight)
    return ours
