"""Interoperability with other equivariance libraries: ``from_escnn``.

escnn (optional, imported only inside :func:`from_escnn`) stores a regular feature map of ``C``
fields as ``(B, C * |G|, H, W)``; equilayers as ``(B, C, |G|, H, W)`` with the same slot order.
escnn's ``rot2dOnR2(N)`` / ``flipRot2dOnR2(N)`` / ``flip2dOnR2()`` list their elements in our
order (rotations ``r^0..r^{N-1}``, then the flipped ones), rotate counter-clockwise by
``torch.rot90(x, 1, (-2, -1))``, flip by default with ``torch.flip(x, (-1,))`` and act on regular
fields by ``(g . f)[h] = f[g^-1 h]``, as we do; :func:`from_escnn` re-checks this for every
gspace it converts (plane matrices and regular permutations of every element, an image probe
per element on the pixel grid) and then checks the converted filter (reproduced exactly by a
pixel layer, or exactly equivariant on the grid subgroup), so a convention mismatch (e.g. a
flip axis other than escnn's default) raises instead of silently converting.

Two targets for ``R2Conv``, both trainable layers with weight sharing, exactly equivariant on
the pixel grid like escnn's. For c1, c2, c4, d1, d2, d4 every escnn filter is a full ``k x k``
pixel filter transformed by the group, so it loads into a
:class:`~equilayers.nn.LiftingConv2d` / :class:`~equilayers.nn.GroupConv2d` with
``basis="pixel"``. For other N (c3, c8, d8, c16, ...) the layer is a ``basis="harmonic"``
:class:`~equilayers.nn.LiftingConv2d` / :class:`~equilayers.nn.GroupConv2d` built with
escnn's basis settings (its rings and ring widths, divided by the dilation, and per ring the
largest frequency its basis holds: whatever ``sigma``, ``frequencies_cutoff`` and ``rings``
the ``R2Conv`` was given, and escnn's default policy at any kernel size), so our basis spans
escnn's: the weights are found by least squares (float64) and the expanded filter is checked
against escnn's elementwise. Where that check fails, the conversion holds escnn's expanded
filter densely in an :class:`~equilayers.nn.ExpandedGroupConv2d` (frozen by default; as
equivariant as escnn's: exact on the grid subgroup, approximate at other angles).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import nn

from . import _interop3d as I3
from . import _interop_harmonic_conv as HC
from . import _interop_linear as LI
from . import _interop_modules as M
from . import _interop_pools as P
from . import _interop_regular2d as R2
from . import _interop_so2 as S2
from . import _interop_so3 as S3
from . import _interop_tensor as TT
from . import _interop_tools as T
from ._rng import keeps_global_rng
from .nn import GaussianBlurPool2d, GroupPool

__all__ = ["from_escnn", "escnn_slot_order", "escnn_field_signs", "escnn_field_matrix",
           "EscnnRestrictedBasis", "EscnnSphereFourier"]

escnn_slot_order = I3.escnn_slot_order
escnn_field_signs = S3.escnn_field_signs
escnn_field_matrix = S2.escnn_field_matrix
EscnnRestrictedBasis = S2.EscnnRestrictedBasis
EscnnSphereFourier = S3.EscnnSphereFourier
# the 2-D regular fields' checks and conv (:mod:`._interop_regular2d`)
_group_name = R2.group_name
_regular_fields = R2.regular_fields
_regular_or_trivial = R2.regular_or_trivial
_conv = R2.conv

_SUPPORTED = ("R2Conv and R2ConvTransposed (trivial -> regular or regular -> regular "
              "fields of C_N / D_N, any N, groups=1), R3Conv and R3ConvTransposed "
              "(trivial -> regular or regular -> regular fields of octaOnR3 / "
              "fullOctaOnR3 / rot2dOnR3(4) / conicalOnR3(4) / icoOnR3 / fullIcoOnR3, "
              "groups=1), R3Conv and R3ConvTransposed (volumes "
              "or fields of irreps 0..L of rot3dOnR3 / flipRot3dOnR3 / rot2dOnR3() / "
              "rot2dOnR3(N) / conicalOnR3() / conicalOnR3(N) (L < N/2), "
              "groups=1), "
              "NormNonLinearity (n_relu), GNormBatchNorm, IIDBatchNorm3d and "
              "QuotientFourierELU on the sphere (SO(3)/O(3) fields); R2Conv, "
              "R2ConvTransposed, FourierELU/FourierPointwise (SO(2), C_N), IIDBatchNorm2d/3d (and "
              "on regular fields), "
              "GNormBatchNorm, NormNonLinearity on SO(2)/O(2) fields of irreps 0..L of "
              "rot2dOnR2(-1) / flipRot2dOnR2(-1) (and rot2dOnR3() on volumes) and C_N/D_N "
              "fields of irreps 0..L < N/2; "
              "NormMaxPool on these fields; "
              "ReLU, ELU, LeakyReLU, PointwiseNonLinearity, "
              "PointwiseDropout, FieldDropout, InnerBatchNorm, PointwiseMaxPool2D, "
              "PointwiseAvgPool2D, "
              "PointwiseAdaptiveAvgPool2D, PointwiseAdaptiveMaxPool2D, "
              "PointwiseMaxPoolAntialiased2D, their 3D twins and PointwiseAvgPool3D, "
              "PointwiseAvgPoolAntialiased3D (regular or trivial fields; the average pools "
              "also SO(3)/O(3) fields), R2Upsampling, R3Upsampling (any fields), "
              "PointwiseAvgPoolAntialiased2D, MaskModule (2-D and 3-D), RestrictionModule "
              "(regular fields; irreps fields D_N -> C_N, O(2) -> SO(2)), "
              "GroupPooling, NormPool (harmonic-like fields), TensorProductModule (SO(3)/O(3) "
              "and SO(2)/O(2)/C_N/D_N fields of irreps 0..L), Linear on no_base_space (regular "
              "or harmonic fields), IdentityModule, SequentialModule "
              "(and torch.nn Sequential / ModuleList / ModuleDict of these)")


@keeps_global_rng  # the built modules' initialisers draw; their weights are overwritten
def from_escnn(module: Any) -> nn.Module:
    """Convert an escnn module into equilayers modules computing the same outputs.

    Supported: ``R2Conv`` from trivial fields (-> :class:`~equilayers.nn.LiftingConv2d`) or
    regular fields (-> :class:`~equilayers.nn.GroupConv2d`) to regular fields of ``C_N`` /
    ``D_N`` (``rot2dOnR2``, ``flipRot2dOnR2``, ``flip2dOnR2``; pixel filters for N in 1, 2, 4,
    steerable ``basis="harmonic"`` filters with escnn's ``sigma``, ``frequencies_cutoff`` and
    ``rings`` for other N, and, should escnn's filter still not be reproduced,
    :class:`~equilayers.nn.ExpandedGroupConv2d` holding it, frozen); ``R2ConvTransposed`` on
    the same fields -> :class:`~equilayers.nn.LiftingConvTranspose2d` /
    :class:`~equilayers.nn.GroupConvTranspose2d` (escnn's transposed filter is its forward
    kernel transposed, as ours; even ``kernel_size`` included);
    ``ReLU``, ``ELU``, ``LeakyReLU``, ``PointwiseNonLinearity`` (``p_relu``, ``p_elu``,
    ``p_sigmoid``, ``p_tanh``) and ``PointwiseDropout`` on regular or trivial fields -> their
    ``torch.nn`` modules; ``FieldDropout`` -> :class:`~equilayers.nn.FieldDropout` (regular
    fields, and harmonic ones given as one representation per field) or ``nn.Dropout``
    (trivial fields); ``InnerBatchNorm`` on regular fields ->
    :class:`~equilayers.nn.GroupBatchNorm2d` (with its running statistics);
    ``PointwiseMaxPool2D`` / ``PointwiseAvgPool2D`` -> :class:`~equilayers.nn.GroupMaxPool2d` /
    :class:`~equilayers.nn.GroupAvgPool2d`; ``GroupPooling`` -> :class:`~equilayers.nn.GroupPool`
    (max); ``PointwiseAvgPoolAntialiased2D`` -> :class:`~equilayers.nn.GaussianBlurPool2d`
    (``sigma`` recovered from escnn's filter, with its tap count); ``MaskModule`` ->
    :class:`~equilayers.nn.DiskMask` (:class:`~equilayers.nn.BallMask` on volumes; ``sigma``
    recovered from the mask; a hard mask, all 0 outside the disk, gets one that gives its 0s);
    ``RestrictionModule`` on regular fields (ids
    ``(None, M)``, ``(0, M)`` of ``D_N``, ``M`` of ``C_N``) -> :class:`~equilayers.nn.Restrict`,
    and after it ``ReLU``, pointwise pools and ``R2Conv`` on the restricted fields;
    ``NormPool`` on fields ``[psi_0, psi_1, ..., psi_M]`` repeated (trivial, then 2-D irreps
    of frequency 1..M) -> :class:`~equilayers.nn.NormPool`; ``IdentityModule`` ->
    ``nn.Identity``; the pointwise pools on trivial fields (images, e.g. after
    ``GroupPooling``) -> ``nn.MaxPool2d`` / ``nn.AvgPool2d``;
    ``PointwiseAdaptiveAvgPool2D`` / ``PointwiseAdaptiveMaxPool2D`` ->
    ``nn.AdaptiveAvgPool3d`` / ``nn.AdaptiveMaxPool3d((None, h, w))``; ``R2Upsampling`` /
    ``R3Upsampling`` (any fields) -> :class:`~equilayers.nn.GroupUpsample2d` / ``3d``;
    ``SequentialModule`` of these -> ``nn.Sequential`` (names kept), and a ``torch.nn``
    ``Sequential`` / ``ModuleList`` / ``ModuleDict`` of them -> the same container. Each
    converted layer keeps the training flag, the device and floating dtype of escnn's, and
    its frozen parameters frozen. ``InnerBatchNorm`` and ``GroupPooling`` on restricted
    fields do not map (escnn keeps each restricted field whole) and raise.

    Layout: the converted modules take and return our layout. A trivial input is the same
    tensor as escnn's; a regular one is ``x.view(B, C, |G|, H, W)`` of escnn's
    ``(B, C * |G|, H, W)``, and a regular output ``y.flatten(1, 2)`` is escnn's ``.tensor``.
    Restricted fields (escnn leaves the tensor as it is) are ``|G|/|H|`` regular ``H`` fields
    per escnn field, escnn's channels permuted by
    :func:`~equilayers.groups._subgroups.restriction_index`. Harmonic-like fields for
    ``NormPool``: ``x.view(B, C, 2M+1, H, W)``.

    Volumes: ``R3Conv`` on ``octaOnR3()`` (our ``"o"``), ``fullOctaOnR3()`` (``"oh"``),
    ``rot2dOnR3(4)`` (``"c4z"``), ``conicalOnR3(4)`` (``"d4z"``), ``icoOnR3()`` (``"ico"``)
    or ``fullIcoOnR3()`` (``"ih"``; these two in the harmonic basis only) from
    trivial fields (-> :class:`~equilayers.nn.LiftingConv3d`) or regular fields (->
    :class:`~equilayers.nn.GroupConv3d`; ``basis="harmonic"``, escnn's function space and
    parameter count, with our default basis settings or escnn's own (its shells, widths and
    per-shell harmonic orders), else free voxel filters) to regular fields, and
    ``R3ConvTransposed`` on the same fields -> :class:`~equilayers.nn.LiftingConvTranspose3d`
    / :class:`~equilayers.nn.GroupConvTranspose3d` (its forward kernel fitted the same way;
    ``output_padding`` kept), with ``ReLU``, ``InnerBatchNorm``
    (-> :class:`~equilayers.nn.GroupBatchNorm3d`), ``GroupPooling``, ``IdentityModule``, the
    3-D pools (:mod:`equilayers._interop_pools`: ``PointwiseMaxPool3D`` /
    ``PointwiseAvgPool3D`` -> :class:`~equilayers.nn.GroupMaxPool3d` /
    :class:`~equilayers.nn.GroupAvgPool3d`, ``PointwiseAvgPoolAntialiased3D`` ->
    :class:`~equilayers.nn.GaussianBlurPool3d`, ``PointwiseMaxPoolAntialiased3D`` (and 2D) ->
    a max pool at stride 1 then a Gaussian pool with ``truncate=4``, the adaptive pools ->
    ``torch.nn``'s on the flattened fields) and ``SequentialModule`` around them. escnn lists
    the cube's elements in another order than ours, so a regular field's slots are permuted:
    ``ours = theirs.view(B, C, |G|, D, H, W)[:, :, perm]`` with ``perm =``
    :func:`escnn_slot_order` ``(gspace)`` (checked: every escnn element's voxel action and
    regular representation against ours, and the converted filter against escnn's).

    SO(3)/O(3) fields of volumes (``rot3dOnR3`` / ``flipRot3dOnR3``, fields that repeat
    ``[irrep 0, ..., irrep L]``): ``R3Conv`` -> :class:`~equilayers.nn.SteerableConv3d`
    (``R3ConvTransposed`` -> :class:`~equilayers.nn.SteerableConvTranspose3d`; escnn's filter
    fitted in our basis with its parameter count and basis settings, and checked
    elementwise), ``NormNonLinearity`` (``"n_relu"``) ->
    :class:`~equilayers.nn.NormNonlinearity` (``order0="norm", bias_form="exp"``: escnn's
    ``log_bias``), ``GNormBatchNorm`` -> :class:`~equilayers.nn.HarmonicBatchNorm`
    (its state; the same in eval mode, Bessel's correction differs in training mode),
    ``NormPool`` -> :class:`~equilayers.nn.NormPool`. escnn's volume axes
    are ours turned by a half turn about the depth axis, so a harmonic field in escnn's tensor
    is ours times :func:`escnn_field_signs` ``(L)`` per slot (``C`` fields ``(B, C, (L + 1)^2,
    D, H, W)``: ``theirs = ours.flatten(1, 2) * s.repeat(C).to(ours).view(-1, 1, 1, 1)``,
    ``s = escnn_field_signs(L)``, one sign per channel); scalars and norms are the same, so a
    model from volumes to invariants computes escnn's outputs as they are.
    SO(2)/O(2)/C_N/D_N fields of volumes (``rot2dOnR3()``, ``conicalOnR3()`` and their
    ``N``: turns about ``z`` and mirrors through planes containing it; the same field types
    as on images below): ``R3Conv`` ->
    :class:`~equilayers.nn.SteerableConv3d` (``group="so2"``, ``"o2"``, ``"cN"``, ``"dN"``,
    whose default basis is escnn's; ``R3ConvTransposed`` ->
    :class:`~equilayers.nn.SteerableConvTranspose3d`), the norms, batch norms and
    ``FourierELU`` as on images with ``spatial_dims=3``; escnn's axes are ours (its O(2)/D_N
    fields ours through :func:`escnn_field_matrix`, as on images).

    SO(2)/O(2) fields of images (``rot2dOnR2(-1)`` / ``flipRot2dOnR2(-1)``; field types
    that list the irreps of orders ``0 .. L`` field after field, as separate irreps or one
    representation per field), and the same fields of C_N/D_N (``rot2dOnR2(N)`` /
    ``flipRot2dOnR2(N)``, ``L < N/2``: escnn's irreps ``(0,), ..., (L,)`` / ``(0, 0), (1, 1),
    ..., (1, L)``, our ``group="cN"``/``"dN"`` harmonic fields): ``R2Conv`` ->
    :class:`~equilayers.nn.LiftingConv2d` / :class:`~equilayers.nn.GroupConv2d`
    (``basis="harmonic"``, escnn's parameter count; trivial outputs ``max_order=0``),
    ``FourierELU`` / ``FourierPointwise`` (SO(2); C_N sampled at its ``N`` elements) ->
    :class:`~equilayers.nn.FourierNonlinearity`,
    ``IIDBatchNorm2d`` -> :class:`~equilayers.nn.HarmonicBatchNorm` (``statistics="field"``),
    ``GNormBatchNorm``, ``NormNonLinearity``, ``NormPool`` as on SO(3), ``NormMaxPool`` ->
    :class:`~equilayers.nn.NormMaxPool`, and the average pools and mask on these fields.
    SO(2) and C_N tensors are escnn's as they are; O(2) and D_N fields are ``ours = Q
    theirs`` per field, ``Q =`` :func:`escnn_field_matrix` ``("o2", L)``
    (our pair of order ``m`` is escnn's turned by ``m`` quarter turns; escnn's abstract flip
    reflects about the first axis). ``RestrictionModule`` from such D_N (O(2)) fields to C_N
    (SO(2)) -> :class:`~equilayers.nn.Restrict` then :class:`EscnnRestrictedBasis` (the
    quarter turns undone: escnn's restricted tensor keeps its basis). Not converted: escnn's
    D_N/O(2) Fourier fields (each 2-D irrep twice), order ``N/2`` (a 1-D irrep of escnn's),
    restrictions of irreps fields to other subgroups.

    ``TensorProductModule`` on SO(3)/O(3) fields of volumes or SO(2)/O(2)/C_N/D_N fields of
    images (one representation per field, the irreps of orders ``0 .. L``) ->
    :class:`~equilayers.nn.TensorProductNonlinearity` computing the same map (escnn's matrix
    moved into our slots, its symmetric part solved for in our basis, the residual checked:
    :mod:`equilayers._interop_tensor`).

    ``Linear`` on ``no_base_space`` (equivariant MLPs: regular fields of C_N, D_N, the cube's
    and the icosahedron's groups, or harmonic fields of those and of SO(2)/O(2)/SO(3)/O(3))
    -> :class:`~equilayers.nn.GroupLinear` on fibers ``(B, C, F)``, its fibers escnn's moved
    into our slots as for images and volumes (:mod:`equilayers._interop_linear`).

    Raises:
        TypeError: ``module`` is not an escnn module, or is an escnn layer with no equivalent
            here (the message names it and lists what is supported).
        ValueError: a supported layer with unsupported settings (other field types,
            ``groups != 1``, a flip axis other than escnn's default), or an eval-mode conv
            whose filter cached at ``.eval()`` is not its weights' expansion.

    Example:
        >>> from escnn import gspaces, nn as enn  # doctest: +SKIP
        >>> gs = gspaces.rot2dOnR2(4)  # doctest: +SKIP
        >>> conv = enn.R2Conv(enn.FieldType(gs, [gs.trivial_repr]),  # doctest: +SKIP
        ...                   enn.FieldType(gs, 8 * [gs.regular_repr]), 3, padding=1)
        >>> ours = from_escnn(conv)  # doctest: +SKIP
        >>> ours  # doctest: +SKIP
        LiftingConv2d(1, 8, kernel_size=3, group='c4', padding=1)
    """
    enn = T.import_escnn("from_escnn").nn
    return _container(module, enn, {}, "module")


_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _container(m: Any, enn: Any, probed: dict, where: str) -> nn.Module:
    """An escnn module converted, or a ``torch.nn`` ``Sequential`` / ``ModuleList`` /
    ``ModuleDict`` of escnn modules (or of such containers) as the same container of
    converted ones, names kept; anything else is refused by its path ``where``."""
    if isinstance(m, enn.EquivariantModule):
        return _convert(m, enn, probed, where)
    if isinstance(m, _CONTAINERS):
        children = {name: _container(child, enn, probed, f"{where}.{name}")
                    for name, child in m.named_children()}
        out: nn.Module = (nn.ModuleDict(children) if isinstance(m, nn.ModuleDict) else
                          nn.ModuleList(children.values()) if isinstance(m, nn.ModuleList)
                          else nn.Sequential(OrderedDict(children)))
        return out.train(m.training)
    at = "" if where == "module" else f" (at {where})"
    raise TypeError(f"from_escnn expects an escnn.nn.EquivariantModule; got "
                    f"{type(m).__name__}{at}. A torch.nn Sequential / ModuleList / ModuleDict "
                    "of escnn modules converts too; for a model class of your own, convert "
                    "its escnn submodules (e.g. its SequentialModule blocks) one by one and "
                    "write its forward on plain tensors (torch.nn layers need no "
                    f"conversion). Supported: {_SUPPORTED}")


def _convert(m: Any, enn: Any, probed: dict, where: str) -> nn.Module:
    out: nn.Module
    if isinstance(m, enn.SequentialModule):  # its children's names kept (escnn: "0", "1", ...)
        return nn.Sequential(OrderedDict(
            (name, _convert(child, enn, probed, f"{where}.{name}"))
            for name, child in m.named_children())
        ).train(m.training)
    elif isinstance(m, (enn.R2Conv, enn.R2ConvTransposed)):
        out = (HC.conv(m) if S2.harmonic_fields(m.in_type, m.out_type)
               else _conv(m, probed))
    elif isinstance(m, (enn.R3Conv, enn.R3ConvTransposed)):
        space = m.out_type.gspace  # SO(3)/O(3); SO(2)/O(2) about z; the cube's groups
        out = (S3.conv(m) if S3.is_so3_space(space) else HC.conv(m)
               if S2.harmonic_fields(m.in_type, m.out_type) else I3.conv3d(m, probed))
    elif isinstance(m, enn.NormNonLinearity):
        out = (S2.norm_nonlinearity(m) if S2.harmonic_fields(m.in_type)
               else S3.norm_nonlinearity(m))
    elif isinstance(m, enn.GNormBatchNorm):
        out = (S2.batch_norm(m) if S2.harmonic_fields(m.in_type)
               else S3.batch_norm(m))
    elif isinstance(m, enn.FourierPointwise):
        out = S2.fourier(m)
    elif isinstance(m, enn.QuotientFourierPointwise):
        out = S3.quotient_fourier(m)
    elif isinstance(m, (enn.IIDBatchNorm2d, enn.IIDBatchNorm3d)):
        out = P.iid_batch_norm(m, lambda t, what: _unrestricted_fields(m, what, probed))
    elif isinstance(m, (enn.ReLU, enn.ELU, enn.LeakyReLU, enn.PointwiseNonLinearity,
                        enn.PointwiseDropout)):
        if T.restricted_fields(m.in_type, probed, _group_name) is None:
            _regular_or_trivial(m, type(m).__name__)
        out = T.pointwise(m, enn)
    elif isinstance(m, enn.InnerBatchNorm):
        _not_restricted(m, "InnerBatchNorm", probed)
        out = T.inner_batch_norm(m, _regular_fields(m.in_type, "InnerBatchNorm", probed)[1])
    elif isinstance(m, (enn.PointwiseMaxPool2D, enn.PointwiseAvgPool2D)):
        out = P.pool2d(m, enn, lambda t, what: T.restricted_fields(t, probed, _group_name)
                       is None and _regular_fields(t, what, probed))
    elif isinstance(m, (enn.PointwiseAdaptiveAvgPool2D, enn.PointwiseAdaptiveMaxPool2D)):
        if T.restricted_fields(m.in_type, probed, _group_name) is None:
            _regular_or_trivial(m, type(m).__name__)
        out = M.adaptive_pool(m, enn)
    elif isinstance(m, (enn.R2Upsampling, enn.R3Upsampling)):
        out = M.upsampling(m, enn)
    elif isinstance(m, enn.NormMaxPool):
        if not S2.harmonic_fields(m.in_type):
            raise ValueError(f"from_escnn: NormMaxPool on {m.in_type}: only SO(2)/O(2) and "
                             "C_N/D_N fields of irreps 0..L of images are supported")
        out = S2.norm_max_pool(m)
    elif isinstance(m, enn.GroupPooling):
        _not_restricted(m, "GroupPooling", probed)
        _regular_fields(m.in_type, "GroupPooling", probed)
        out = GroupPool("max")
    elif isinstance(m, enn.IdentityModule):
        out = nn.Identity()
    elif isinstance(m, enn.PointwiseAvgPoolAntialiased2D):
        out = P.gaussian_pool(m, GaussianBlurPool2d)
    elif isinstance(m, enn.FieldDropout):
        _not_restricted(m, "FieldDropout", probed)
        out = P.field_dropout(m, lambda t, what: _regular_fields(t, what, probed))
    elif isinstance(m, P.classes(enn)):  # 3-D pools, antialiased max pools
        out = P.convert(m, lambda t, what: _regular_fields(t, what, probed))
    elif isinstance(m, enn.MaskModule):
        out = T.mask(m)
    elif isinstance(m, enn.RestrictionModule):
        out = (S2.restriction(m) if S2.harmonic_fields(m.in_type)
               else T.restriction(m, probed, _regular_fields, _group_name))
    elif isinstance(m, enn.TensorProductModule):
        out = TT.tensor_product(m)
    elif isinstance(m, enn.Linear):
        out = LI.linear(m)
    elif isinstance(m, enn.NormPool):
        out = (S3.norm_pool(m) if S3.is_so3_space(m.in_type.gspace)
               else S2.norm_pool(m) if S2.is_planar_harmonic_space(m.in_type.gspace)
               or S2.on_volumes(m.in_type.gspace)
               else T.norm_pool(m))
    else:
        raise TypeError(M.unsupported(m, _SUPPORTED))
    return M.like_source(out.train(m.training), m, where)


def _unrestricted_fields(m: Any, what: str, probed: dict) -> int:
    """The number of ``m``'s input fields, all regular and none restricted (else raise)."""
    _not_restricted(m, what, probed)
    return _regular_fields(m.in_type, what, probed)[1]


def _not_restricted(m: Any, what: str, probed: dict) -> None:
    found = T.restricted_fields(m.in_type, probed, _group_name)
    if found is not None:
        g, h, _ = found
        raise ValueError(f"from_escnn: {what} on {g} regular fields restricted to {h} does not "
                         f"map: escnn treats each as one {g}-sized field, ours are "
                         f"|{g}|/|{h}| regular {h} fields (statistics, pools and dropout "
                         f"masks per {h} field)")

