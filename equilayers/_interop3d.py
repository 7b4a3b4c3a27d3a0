"""``from_escnn`` on volumes: escnn's ``R3Conv`` and ``R3ConvTransposed`` on regular fields of
the cube's rotations (``octaOnR3``, our ``"o"``), of its full group (``fullOctaOnR3``, our
``"oh"``), of its subgroups for anisotropic scans, the quarter turns about the depth axis
(``rot2dOnR3(4)``, ``"c4z"``) and those with the mirrors through it (``conicalOnR3(4)``,
``"d4z"``), and of the icosahedral group (``icoOnR3``, ``"ico"``; ``fullIcoOnR3``, ``"ih"``:
its filters sampled turned, as ours, so they match to float rounding).

escnn lists the cube's elements in another order than :mod:`equilayers.groups._cubic`, so a
regular field's slots are permuted between the two libraries: :func:`escnn_slot_order` gives
the permutation, found for every gspace by matching each escnn element's action on a voxel
probe (exact: both act by permuting voxels) with one of ours (``icoOnR3``: by its matrix,
:func:`_ico_slots`), and checked on the regular representations, so a convention mismatch
raises instead of converting silently.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import _interop_modules as M
from . import _interop_tools as T
from .functional._basis_settings import BasisSpec
from .functional._voxel_basis import voxel_basis
from .groups import act, get
from .nn import GroupConv3d, GroupConvTranspose3d, LiftingConv3d, LiftingConvTranspose3d

__all__ = ["escnn_slot_order", "cube_group_name", "conv3d"]

#: our group for an escnn 3-D gspace, by its order: ``octaOnR3`` ("o"), ``fullOctaOnR3``
#: ("oh"), ``rot2dOnR3(4)`` ("c4z": the quarter turns about the depth axis) and
#: ``conicalOnR3(4)`` ("d4z": those and the mirrors through planes containing it); the probe
#: checks that the gspace is that group on the voxels (escnn's ``dihedralOnR3(4)``, of order 8,
#: has half turns in place of the mirrors and is refused)
_CANDIDATES = {24: "o", 48: "oh", 4: "c4z", 8: "d4z", 60: "ico", 120: "ih"}
_SUPPORTED3D = ("octaOnR3 ('o'), fullOctaOnR3 ('oh'), rot2dOnR3(4) ('c4z'), "
                "conicalOnR3(4) ('d4z'), icoOnR3 ('ico') and fullIcoOnR3 ('ih') are "
                "supported (rot2dOnR3(N) / conicalOnR3(N) on fields of irreps of orders "
                "below N/2, not regular ones: SteerableConv3d(..., group='cN' / 'dN'))")
_Conv3d = LiftingConv3d | GroupConv3d | LiftingConvTranspose3d | GroupConvTranspose3d
_CLASSES: dict[tuple[bool, bool], type[_Conv3d]] = {  # (lifting, transposed) -> our class
    (True, False): LiftingConv3d, (False, False): GroupConv3d,
    (True, True): LiftingConvTranspose3d, (False, True): GroupConvTranspose3d}


def escnn_slot_order(gspace: Any, probed: dict | None = None) -> torch.Tensor:
    """The permutation ``perm`` (int64, ``(|G|,)``) with which escnn's regular fields of the
    cube gspace ``gspace`` become ours: ``ours = theirs.view(B, C, |G|, D, H, W)[:, :, perm]``
    (``theirs`` an escnn ``GeometricTensor``'s ``.tensor`` ``(B, C * |G|, D, H, W)``), and
    ``theirs = ours[:, :, perm.argsort()].flatten(1, 2)``."""
    return _probe(gspace, {} if probed is None else probed)[1]


def cube_group_name(gspace: Any, probed: dict) -> str:
    """Our cube group for an escnn 3-D gspace (``"o"`` or ``"oh"``), after the probe of
    :func:`escnn_slot_order`."""
    return _probe(gspace, probed)[0]


def _probe(gspace: Any, probed: dict) -> tuple[str, torch.Tensor]:
    key = ("cube", id(gspace))
    if key in probed:
        return probed[key]
    escnn = T.import_escnn("escnn_slot_order")
    gspaces, enn = escnn.gspaces, escnn.nn

    if not isinstance(gspace, gspaces.GSpace):
        raise TypeError(f"escnn_slot_order expects an escnn gspace (e.g. "
                        f"escnn.gspaces.octaOnR3()); got gspace={gspace!r}")
    fg = gspace.fibergroup
    if fg.elements is None:  # a continuous group that is not SO(3)/O(3) (checked before)
        raise ValueError(
            f"from_escnn: gspace {gspace.name} is a continuous group that is neither "
            "SO(3)/O(3) nor SO(2)/O(2) about z (escnn's fullCylindricalOnR3(), ...): not "
            f"supported. from_escnn converts these 3-D gspaces: {_SUPPORTED3D}, rot3dOnR3 / "
            "fullRot3dOnR3, rot2dOnR3() and conicalOnR3() (SteerableConv3d)")
    elements = list(fg.elements)
    name = _CANDIDATES.get(len(elements)) if getattr(gspace, "dimensionality", 0) == 3 else None
    if name is None:
        raise ValueError(f"from_escnn: gspace {gspace.name} is not one of the cube's groups on "
                         f"volumes; only {_SUPPORTED3D}")
    grp = get(name)
    ours = grp.elements()
    ft = enn.FieldType(gspace, [gspace.trivial_repr])
    x = torch.randn(1, 1, 5, 5, 5, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)  # no symmetry
    moved = [act(x, g) for g in ours]

    def voxel_match(e: Any) -> list[int]:  # our elements that move the probe as escnn's e
        theirs = enn.GeometricTensor(x.float(), ft).transform(e).tensor.double()
        return [j for j, y in enumerate(moved) if torch.allclose(theirs, y, atol=1e-6)]

    mine = []  # our index of escnn's element i
    turned = name in ("ico", "ih")
    if turned:  # most elements leave the grid: by matrix, the frame from the grid ones
        mine = _ico_slots(gspace, elements, grp, voxel_match)
    for e in elements if not turned else ():
        hits = voxel_match(e)
        if len(hits) != 1:
            raise ValueError(f"from_escnn: escnn's element {e} of {gspace.name} moves voxels "
                             f"unlike any one element of equilayers' {name}: another group or "
                             f"other conventions; only {_SUPPORTED3D}")
        mine.append(hits[0])
    order = torch.tensor(mine)
    if sorted(mine) != list(range(len(ours))):
        raise ValueError(f"from_escnn: escnn's {gspace.name} elements do not map one-to-one "
                         f"onto equilayers' {name}")
    # the regular representations must agree under the relabelling: escnn's slot i is our
    # slot mine[i], and both move slots as (g . f)[h] = f[g^-1 h]
    for e, j in zip(elements, mine, strict=True):
        theirs = torch.as_tensor(fg.regular_representation(e)).argmax(1)  # slot -> source
        want = grp.regular_permutation(ours[j])
        if not torch.equal(order[theirs], want[order].to(order.dtype)):
            raise ValueError(f"from_escnn: escnn's regular representation of {gspace.name} "
                             f"permutes slots unlike equilayers' {name}; the conventions "
                             "differ")
    perm = order.argsort()  # our slot j holds escnn's slot perm[j]
    probed[key] = (name, perm)
    return name, perm


def _ico_slots(gspace: Any, elements: list, grp: Any, voxel_match: Any) -> list[int]:
    """Our slot of each of escnn's icosahedral elements: the element with escnn's matrix
    (its ``basespace_action``) in our axes (escnn's ``x, y`` are ours turned by a half turn
    about ``z``, ``P M P``; tried with and without that turn, kept where every grid element
    moves the voxel probe as ours does)."""
    import numpy as np

    ours = torch.stack([grp.matrix(g) for g in grp.elements()])
    mats = [torch.as_tensor(np.asarray(gspace.basespace_action(e)), dtype=torch.float64)
            for e in elements]
    for turn in (torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64)),
                 torch.eye(3, dtype=torch.float64)):
        dist = torch.stack([(ours - turn @ m @ turn).abs().amax((1, 2)) for m in mats])
        best = dist.min(1)
        if float(best.values.max()) > 1e-6:  # another orientation of the icosahedron
            continue
        slots = best.indices.tolist()
        if all(voxel_match(e) == [j] for e, j, m in zip(elements, slots, mats, strict=True)
               if float((m - m.round()).abs().max()) < 1e-9):
            return slots
    raise ValueError(f"from_escnn: escnn's {gspace.name} is not equilayers' {grp.name!r} in "
                     "its axes (its elements' matrices or voxel moves differ); another "
                     f"orientation or other conventions; only {_SUPPORTED3D}")


def conv3d(m: Any, probed: dict) -> nn.Module:
    """escnn's ``R3Conv`` or ``R3ConvTransposed`` (trivial or regular fields in, regular fields
    out, one cube gspace) -> :class:`LiftingConv3d` / :class:`GroupConv3d` or
    :class:`LiftingConvTranspose3d` / :class:`GroupConvTranspose3d` with the same filter,
    checked: in ``basis="harmonic"`` when escnn's filters lie in it with escnn's parameter
    count, with our default basis settings or else with escnn's own
    (:func:`T.escnn_shell_settings`: its shells, widths and per-shell harmonic orders, which
    covers its ``sigma``, ``rings``, ``frequencies_cutoff`` and dilation), else as free voxel
    filters (the same function). A transposed conv's filter is escnn's forward kernel between
    the same fields, transposed for ``conv_transpose3d``, as ours: it is fitted as the forward
    conv's, and only the class and its options (``output_padding``) differ."""
    what = type(m).__name__
    transposed = T.is_transposed(m)
    k = T.conv_kernel_size(m, what)
    name, perm = _probe(m.out_type.gspace, probed)
    n = int(get(name).order)

    def fields(ftype: Any, where: str) -> tuple[bool, int]:
        reps = ftype.representations
        if all(r.is_trivial() for r in reps):
            return True, len(reps)
        bad = sorted({r.name for r in reps if r.name != "regular"})
        if bad:
            raise ValueError(f"from_escnn: {what} {where} on {ftype} has fields {bad}; only "
                             f"trivial inputs and regular fields are supported for {what}")
        return False, len(reps)

    trivial_out, c_out = fields(m.out_type, "output")
    if trivial_out:
        raise ValueError(f"from_escnn: {what} output {m.out_type} is trivial; only regular "
                         "output fields are supported")
    lifting, c_in = fields(m.in_type, "input")
    f_in = 1 if lifting else n
    filt, bias = M.expanded(m)  # what escnn's forward uses (checked in eval mode)
    if transposed:
        filt = filt.transpose(0, 1)  # escnn's forward kernel (out, in, k, k, k)
    # escnn's slots -> ours, on the output (and the input) fields
    filt = filt.reshape(c_out, n, c_in, f_in, k, k, k)[:, perm.to(filt.device)]
    if not lifting:
        filt = filt[:, :, :, perm.to(filt.device)]
    cls = _CLASSES[lifting, transposed]

    def build(basis: str, **settings: Any) -> _Conv3d:
        return cls(c_in, c_out, k, bias=bias is not None, device=filt.device, dtype=filt.dtype,
                   group=name, basis=basis, **T.conv_options(m), **settings)

    voxels = filt[:, 0]  # slot 0: the identity's filter, (c_out, c_in, f_in, k, k, k)
    ours, weight = None, voxels
    for settings in ({}, T.escnn_shell_settings(m)):  # ours, then escnn's basis settings
        if settings is None:
            continue
        try:
            candidate = build("harmonic", **settings)
        except ValueError:  # settings we refuse
            continue
        if candidate.weight.numel() != m.weights.numel():  # another space than escnn's
            continue
        coef = _harmonic_coefficients(voxels, k, candidate._basis_spec)
        if coef is not None:
            ours, weight = candidate, coef
            break
    if ours is None and name in ("ico", "ih"):  # filters turn off the grid: harmonic only
        raise ValueError(f"from_escnn: {what} on {m.out_type.gspace.name}: escnn's filters "
                         "are not in our "
                         "harmonic basis with its parameter count (with our default shells or "
                         "escnn's own settings); port the layer by hand")
    if ours is None:
        ours = build("voxel")
    with torch.no_grad():
        # one slot per element -> the group axis in the Fourier basis (a lifting: as it is)
        ours.weight.copy_(ours._to_fourier(weight.reshape(ours.weight.shape)))
        if bias is not None:
            assert ours.bias is not None  # built with bias=True
            ours.bias.copy_(T.field_bias(bias, c_out, n))
        expanded = T.forward_filter(ours)
    T.check_reproduced(m, ours, name, expanded, filt.reshape(expanded.shape), atol=1e-6)
    return ours


def _harmonic_coefficients(voxels: torch.Tensor, k: int, spec: BasisSpec | None
                           ) -> torch.Tensor | None:
    """The coefficients ``(..., n)`` of ``voxels`` ``(..., k, k, k)`` in the harmonic voxel
    basis of ``spec`` (``None``: the default, escnn's default ``R3Conv`` basis on the cube's
    gspaces) when every filter lies in its span (least squares in float64, residual at
    float32 rounding), else ``None``."""
    rows = voxel_basis(k, spec).to(voxels.device)  # (n, k^3), float64
    flat = voxels.detach().double().reshape(-1, k ** 3)
    coef = torch.linalg.lstsq(rows.T, flat.T).solution  # (n, N)
    scale = flat.abs().max().clamp_min(1e-30)
    if ((rows.T @ coef - flat.T).abs().max() / scale) > 1e-5:
        return None
    return coef.T.reshape(*voxels.shape[:-3], len(rows)).to(voxels.dtype)
