"""``from_escnn`` on SO(3)/O(3) fields of volumes (escnn's ``rot3dOnR3`` / ``flipRot3dOnR3``):
``R3Conv`` -> :class:`~equilayers.nn.SteerableConv3d`, ``NormNonLinearity`` ->
:class:`~equilayers.nn.NormNonlinearity` (``order0="norm", bias_form="exp"``), ``GNormBatchNorm`` ->
:class:`~equilayers.nn.HarmonicBatchNorm`, ``NormPool`` -> :class:`~equilayers.nn.NormPool`,
``QuotientFourierELU`` on the sphere -> :class:`EscnnSphereFourier` (escnn's samples).

Fields: escnn's field type must repeat ``[irrep 0, irrep 1, ..., irrep L]`` (O(3): escnn's
``irrep(l % 2, l)``, our order ``l`` with parity ``(-1)^l``), which is our harmonic field of
orders ``0 .. L``, ``(L + 1)^2`` slots, field-major, the same real Wigner matrices
(tests/test_escnn_so3.py). escnn's volume axes are ours turned by a half turn about the depth
axis, so the same rotation moves a field's slots by ``D(R_z(pi)) D(R) D(R_z(pi))``: a
field's slots in escnn's tensor are ours times the signs :func:`escnn_field_signs` (``D_l``
of that half turn is diagonal). Scalars (order 0) and every norm keep their sign, so a
converted model from volumes to invariants (norms, order-0 fields) computes escnn's outputs
as they are; a harmonic field in between is escnn's times the signs (found by the filter
fit: escnn's filter with the signs lies in our basis, without them it does not).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import _checks as C
from . import _interop_modules as M
from . import _interop_tools as T
from .functional import fourier_nonlinearity, steerable_basis3d
from .groups import get, wigner_d
from .groups._fields import field_type
from .nn import HarmonicBatchNorm, NormPool, SteerableConv3d, SteerableConvTranspose3d
from .nn import _checks as NC
from .nn._typed import Typed

__all__ = ["escnn_field_signs", "is_so3_space", "conv", "norm_nonlinearity", "norm_pool",
           "batch_norm", "EscnnSphereFourier", "quotient_fourier"]


def is_so3_space(gspace: Any) -> bool:
    from escnn.group import O3, SO3

    return getattr(gspace, "dimensionality", 0) == 3 and isinstance(gspace.fibergroup,
                                                                     (SO3, O3))


def _group(gspace: Any) -> str:
    from escnn.group import O3

    return "o3" if isinstance(gspace.fibergroup, O3) else "so3"


def escnn_field_signs(max_order: int) -> torch.Tensor:
    """The signs ``s`` (float64, ``((L + 1)^2,)``, +-1) that turn our harmonic field of orders
    ``0 .. L`` into escnn's (``rot3dOnR3`` / ``flipRot3dOnR3`` fields ``[irrep 0, ..., irrep
    L]``) and back: ``theirs = ours * s``, ``ours = theirs * s`` per slot (the diagonal of
    ``D_l`` of a half turn about the depth axis; module docstring). On ``C`` fields ``(B, C,
    (L + 1)^2, D, H, W)``: one sign per channel of escnn's ``(B, C (L + 1)^2, D, H, W)``.

    Example:
        >>> s = escnn_field_signs(1)
        >>> s.tolist()
        [1.0, -1.0, 1.0, -1.0]
        >>> ours = torch.randn(2, 3, 4, 5, 5, 5)  # 3 fields of orders 0..1
        >>> theirs = ours.flatten(1, 2) * s.repeat(3).to(ours).view(-1, 1, 1, 1)
        >>> theirs.shape, theirs.dtype
        (torch.Size([2, 12, 5, 5, 5]), torch.float32)
    """
    half_turn = torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64))
    return torch.cat([wigner_d(ell, half_turn).diagonal() for ell in range(max_order + 1)]
                     ).round()


def _irreps_of(ftype: Any) -> list:
    """The irreps of ``ftype`` field by field: a representation that is a direct sum of irreps
    with no change of basis (escnn's ``spectral_quotient_representation`` of the sphere, what
    its ``QuotientFourierELU`` takes) is listed as its irreps, in order (the same channels as
    the irreps given one by one); any other representation as itself."""
    fg = ftype.gspace.fibergroup
    out = []
    for r in ftype.representations:
        if len(r.irreps) > 1 and torch.allclose(
                torch.as_tensor(r.change_of_basis, dtype=torch.float64),
                torch.eye(r.size, dtype=torch.float64)):
            out += [fg.irrep(*i) for i in r.irreps]
        else:
            out.append(r)
    return out


def _layout(ftype: Any, what: str, whole: bool = False) -> tuple[int, int | None]:
    """``(C, L)`` of a field type that repeats ``[irrep 0, ..., irrep L]``; ``(C, None)`` for
    trivial fields only (volumes)."""
    reps = _irreps_of(ftype) if whole else ftype.representations
    if all(r.is_trivial() for r in reps):
        return len(reps), None
    fg = ftype.gspace.fibergroup
    o3 = _group(ftype.gspace) == "o3"

    def name(ell: int) -> str:
        return (fg.irrep(ell % 2, ell) if o3 else fg.irrep(ell)).name

    block = 1  # the length of one repeat: up to the next scalar
    while block < len(reps) and not reps[block].is_trivial():
        block += 1
    order = block - 1
    if len(reps) % block or any(r.name != name(i % block) for i, r in enumerate(reps)):
        wanted = ", ".join(name(ell) for ell in range(max(order, 1) + 1))
        raise ValueError(f"from_escnn: {what} on {ftype}: the fields must repeat [{wanted}] "
                         "(irreps of orders 0..L in order, our harmonic fields); other field "
                         "types are not supported")
    return len(reps) // block, order


def conv(m: Any) -> nn.Module:
    """escnn's ``R3Conv`` on SO(3)/O(3) fields (to such fields, or to scalars: our fields of
    order 0) -> :class:`SteerableConv3d` (``R3ConvTransposed`` ->
    :class:`SteerableConvTranspose3d`, its forward-layout filter) with escnn's
    filter (times the field signs) fitted in our basis by least squares (float64) and the
    expanded filter checked elementwise. The basis: our default settings when they give
    escnn's parameter count and hold its filter, else escnn's own settings
    (:func:`T.escnn_shell_settings`: its shells and widths, per shell the largest harmonic
    order ``J`` of its elements; this covers its ``sigma``, ``rings``, ``frequencies_cutoff``
    and dilation), checked the same way."""
    what = type(m).__name__
    k = T.conv_kernel_size(m, what)
    gspace = m.out_type.gspace
    c_out, out_order = _layout(m.out_type, f"{what} output", whole=True)
    order = out_order or 0  # scalar outputs: our fields of order 0, (B, C, 1, D, H, W)
    c_in, in_order = _layout(m.in_type, f"{what} input", whole=True)
    gname = _group(gspace)
    filt, bias = M.expanded(m)  # what escnn's forward uses (checked in eval mode)
    if T.is_transposed(m):
        filt = filt.transpose(0, 1)  # escnn's forward kernel (out, in, k, k, k)
    f_out = (order + 1) ** 2
    s_out = escnn_field_signs(order).to(filt).repeat(c_out)
    s_in = escnn_field_signs(in_order or 0).to(filt).repeat(c_in)
    filt = filt * s_out.view(-1, 1, 1, 1, 1) * s_in.view(1, -1, 1, 1, 1)
    T.check_scalar_bias(m, bias, c_out, f_out)
    for settings in ({}, T.escnn_shell_settings(m)):
        if settings is None:
            continue
        ours = fit_conv3d(m, settings, gname, filt, bias, (c_in, in_order), (c_out, order), k)
        if ours is not None:
            return ours
    raise ValueError(f"from_escnn: escnn's filter for {m} is not in SteerableConv3d's basis "
                     f"(group={gname!r}) with our default basis settings or with escnn's "
                     "(its shells, their widths and the largest harmonic order J on each): "
                     "a basis_filter that keeps other elements has no equivalent here")


def fit_conv3d(m: Any, settings: dict, gname: str, filt: torch.Tensor,
               bias: torch.Tensor | None, fields_in: tuple[int, int | None],
               fields_out: tuple[int, int], k: int) -> SteerableConv3d | None:
    """A :class:`SteerableConv3d` (for ``R3ConvTransposed`` a
    :class:`SteerableConvTranspose3d`) of ``gname`` (SO(3)/O(3), or a planar group on volumes:
    :mod:`._interop_harmonic_conv`) with these basis settings holding escnn's filter (in our
    field basis and the forward conv's layout), or ``None`` when its parameter count is not
    escnn's or the filter is not in its span."""
    cls = SteerableConvTranspose3d if T.is_transposed(m) else SteerableConv3d
    (c_in, in_order), (c_out, order) = fields_in, fields_out
    fiber = get(gname).harmonic_size
    f_out, f_in = fiber(order), 1 if in_order is None else fiber(in_order)
    try:  # dead output orders dropped (escnn's layer has them too), aliasing kept
        ours, caught = T.build_candidate(lambda: cls(
            c_in, c_out, k, bias=bias is not None, device=filt.device, dtype=filt.dtype,
            group=gname, max_order=order, in_max_order=in_order, **T.conv_options(m),
            **settings))
    except ValueError:  # settings we refuse (e.g. an empty basis)
        return None
    if ours.weight.numel() != m.weights.numel():
        return None
    basis = steerable_basis3d(gname, k, in_order=in_order, out_order=order,
                              dtype=torch.float64, device=filt.device, **settings)
    fit = T.load_harmonic_fit(ours, basis, filt, bias, (c_out, f_out), (c_in, f_in))
    if fit is not None:
        T.warn_kept(caught)
    return fit


def norm_nonlinearity(m: Any) -> nn.Module:
    """escnn's ``NormNonLinearity`` (``"n_relu"``, each irrep its own field) ->
    :class:`NormNonlinearity` with ``order0="norm"`` and ``bias_form="exp"``: both compute
    ``relu(|v| - exp(log_bias))`` from the same parameter, so the converted layer also trains
    as escnn's (the same gradient and optimizer step on ``log_bias``)."""
    if not is_so3_space(m.in_type.gspace):
        raise ValueError(f"from_escnn: NormNonLinearity on {m.in_type}: only SO(3)/O(3) fields "
                         "of volumes (rot3dOnR3 / flipRot3dOnR3) are supported")
    T.check_norm_relu(m)
    c, order = _layout(m.in_type, "NormNonLinearity")
    order = order or 0
    # escnn orders its biases by field size (all order-0 fields, then order 1, ...)
    return T.norm_relu(m, c, order, _group(m.in_type.gspace),
                       lambda lb: lb.reshape(order + 1, c).T)


def norm_pool(m: Any) -> nn.Module:
    """escnn's ``NormPool`` on fields ``[irrep 0, ..., irrep L]`` repeated -> our
    :class:`NormPool` (channel ``c (L + 1) + l`` in both; a norm ignores the signs)."""
    _, order = _layout(m.in_type, "NormPool")
    return NormPool(order or 0, group=_group(m.in_type.gspace))


def batch_norm(m: Any) -> nn.Module:
    """escnn's ``GNormBatchNorm`` (or ``IIDBatchNorm3d``: the same state and eval-mode map;
    its training-mode variances about the batch mean, ``statistics="order_centred"``)
    on fields ``[irrep 0, ..., irrep L]`` repeated ->
    :class:`HarmonicBatchNorm` with its state: escnn keeps one buffer (and weight) of shape
    ``(C, 1)`` per irrep name, in field order; ours ``running_var`` / ``weight`` ``(C, L + 1)``,
    ``running_mean`` / ``bias`` ``(C,)`` (order 0). The same normalization in eval mode. In
    training mode escnn applies Bessel's correction ``N / (N - 1)`` (``N`` the samples of a
    statistic, batch x voxels) to every order's variance, ours to order 0's running value only
    (as ``nn.BatchNorm``): the outputs differ by ``sqrt(N / (N - 1))`` on orders >= 1 and the
    running variances of orders >= 1 by ``N / (N - 1)``. escnn also detaches its batch
    statistics from the gradient, ours (as ``nn.BatchNorm``) do not; in the tetris benchmark's
    SO(3) model on pentacubes, detached statistics changed no accuracy by more than the seed
    spread (one-off probe, 3 seeds, 2026-12-02)."""
    gspace, what = m.in_type.gspace, type(m).__name__
    if not is_so3_space(gspace):
        raise ValueError(f"from_escnn: {what} on {m.in_type}: only SO(3)/O(3) fields "
                         "of volumes (rot3dOnR3 / flipRot3dOnR3) are supported")
    c, order = _layout(m.in_type, what)
    order = order or 0
    names = [r.name for r in m.in_type.representations[:order + 1]]
    ours = HarmonicBatchNorm(c, order, eps=m.eps, momentum=m.momentum, affine=m.affine,
                             group=_group(gspace), statistics=T.gnorm_statistics(m))

    T.copy_gnorm_state(m, ours, names, c)
    return ours


class EscnnSphereFourier(Typed, nn.Module):
    """escnn's Fourier nonlinearity on the sphere (``QuotientFourierELU`` /
    ``QuotientFourierPointwise`` on ``SO(3) / SO(2)``, ``O(3)``'s cone quotient) with escnn's
    own samples: ``y = A^+ function(A x)`` on every SO(3)/O(3) harmonic field of orders
    ``0 .. L`` (:func:`~equilayers.functional.fourier_nonlinearity` with these matrices).

    ``A`` ``(S, (L + 1)^2)`` evaluates a field at escnn's ``S`` sphere points and ``A^+`` fits it
    back (escnn's regularized pseudo-inverse), both in our slot basis (escnn's matrices times
    :func:`escnn_field_signs`): so the outputs are escnn's, and the layer is as equivariant as
    escnn's (approximate: it depends on escnn's grid, as escnn's docstring says; our own
    :class:`~equilayers.nn.FourierNonlinearity` samples cube-symmetric quadratures instead).
    The matrices are persistent buffers (they are the layer: no formula rebuilds them).

    Args:
        a: ``A``, ``(S, (L + 1)^2)``.
        a_inv: ``A^+``, ``((L + 1)^2, S)``.
        function: applied to every sample (escnn's ``p_elu``: ``F.elu``).
        group: ``"so3"`` or ``"o3"``.

    Shape: ``(B, C, (L + 1)^2, D, H, W)``, unchanged.
    """

    a: torch.Tensor  # buffer
    a_inv: torch.Tensor  # buffer

    def __init__(self, a: torch.Tensor, a_inv: torch.Tensor,
                 function: Callable[[torch.Tensor], torch.Tensor] = F.elu,
                 group: str = "so3") -> None:
        super().__init__()
        what = "EscnnSphereFourier"
        C.check_tensor(a, "a", what, ndim=2)
        C.check_tensor(a_inv, "a_inv", what, ndim=2)
        order = round(a.shape[1] ** 0.5) - 1
        if (order + 1) ** 2 != a.shape[1] or tuple(a_inv.shape) != (a.shape[1], a.shape[0]):
            raise ValueError(f"{what}: a must be (S, (L + 1)^2) and a_inv ((L + 1)^2, S); got "
                             f"{tuple(a.shape)} and {tuple(a_inv.shape)}")
        if group not in ("so3", "o3"):
            raise ValueError(f"{what}: group must be 'so3' or 'o3'; got {group!r}")
        self.group, self.max_order = get(group), order  # a Group: no lookup per forward
        self.function = NC.function(function, what)
        self.register_buffer("a", a.detach().clone())
        self.register_buffer("a_inv", a_inv.detach().clone())
        self.in_type = self.out_type = field_type(self.group, "harmonic", order, what=what)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fourier_nonlinearity(x, self.group, self.max_order, self.function,
                                    matrices=(self.a.to(x), self.a_inv.to(x)))

    def extra_repr(self) -> str:
        name = getattr(self.function, "__name__", type(self.function).__name__)
        return (f"group={self.group.name!r}, max_order={self.max_order}, "
                f"samples={self.a.shape[0]}, function={name}")


def quotient_fourier(m: Any) -> nn.Module:
    """escnn's ``QuotientFourierPointwise`` (``QuotientFourierELU``) on the sphere ->
    :class:`EscnnSphereFourier` with escnn's matrices and function: its fields are one
    representation each, irreps ``0 .. L`` with no change of basis, our harmonic fields (with
    escnn's signs). Other quotients and ``out_irreps`` other than the input's raise."""
    what = type(m).__name__
    if not is_so3_space(m.in_type.gspace):
        raise ValueError(f"from_escnn: {what} on {m.in_type.gspace.name}: only the sphere of "
                         "rot3dOnR3 / flipRot3dOnR3 converts")
    if m.out_type != m.in_type:
        raise ValueError(f"from_escnn: {what} with out_irreps other than its input's has no "
                         "equivalent (our fields keep their orders)")
    _, order = _layout(m.in_type, what, whole=True)
    if order is None or len(m.in_type.representations[0].irreps) != order + 1:
        raise ValueError(f"from_escnn: {what} on {m.in_type}: only fields of irreps 0..L on "
                         "the sphere (escnn's SO(2) subgroup of SO(3), the cone of O(3)) convert")
    by_name: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "elu": F.elu, "elu_": F.elu, "relu": F.relu, "relu_": F.relu,
               "sigmoid": torch.sigmoid, "sigmoid_": torch.sigmoid, "tanh": torch.tanh,
               "tanh_": torch.tanh}
    name = getattr(m._function, "__name__", "")
    if name not in by_name:
        raise ValueError(f"from_escnn: {what} with function {name!r}: only p_relu, p_elu, "
                         "p_sigmoid and p_tanh convert")
    signs = escnn_field_signs(order).to(m.A)
    return EscnnSphereFourier(m.A * signs, signs[:, None] * m.Ainv, by_name[name],
                              _group(m.in_type.gspace))
