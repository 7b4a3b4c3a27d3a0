"""``from_escnn`` for escnn's toolbox modules: ``MaskModule``, ``RestrictionModule``,
``NormPool``, and the fields a restriction produces.

escnn keeps a restricted tensor as it is and changes its type: a regular ``G`` field becomes
one field of ``G``'s regular representation restricted to ``H`` (named ``"<G>:regular"``, still
``|G|`` channels). We relay those slots into ``|G| / |H|`` regular ``H`` fields
(:class:`~equilayers.nn.Restrict`), so layers after a restriction take our layout:
``(B, C * |G|/|H|, |H|, H, W)``, escnn's channels permuted per field by
:func:`~equilayers.groups._subgroups.restriction_index`. Every conversion re-checks that
permutation against escnn's representation matrices.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ._interop_modules import relative_close
from .functional._gaussian import disk_mask_weights
from .functional._gaussian3d import ball_mask_weights
from .groups import get
from .groups._subgroups import check_subgroup, restriction_index
from .nn import (
    BallMask,
    DiskMask,
    ExpandedGroupConv2d,
    GroupBatchNorm2d,
    GroupBatchNorm3d,
    GroupConv2d,
    GroupConvTranspose2d,
    LiftingConv2d,
    LiftingConvTranspose2d,
    NormNonlinearity,
    NormPool,
    Restrict,
)

__all__ = ["mask", "mask_sigma", "restriction", "norm_pool", "restricted_fields",
           "field_bias", "expanded_conv", "inner_batch_norm"]


def import_escnn(what: str) -> Any:
    """escnn itself (``import escnn``), or an ``ImportError`` naming ``what`` and the install
    command (escnn is an optional extra, never imported before a conversion needs it)."""
    try:
        import escnn.gspaces
        import escnn.nn
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"{what} needs escnn: pip install 'equilayers[escnn]' (py3nj needs "
                          "gfortran: apt-get install gfortran)") from e
    return escnn


def mask(m: Any) -> DiskMask | BallMask:
    """escnn's ``MaskModule`` stores ``S``, ``margin`` and the mask: ``sigma`` read back from
    the mask outside the disk (ball) (:func:`mask_sigma`), then the mask checked: a
    :class:`DiskMask` on images, a :class:`BallMask` on volumes."""
    dim = int(getattr(m, "dim", 2))
    if dim not in (2, 3):
        raise ValueError(f"from_escnn: MaskModule on a {dim}-D space; only 2-D and 3-D are "
                         "supported")
    size, margin = int(m.S), float(m.margin)
    theirs = m.mask.detach().double().cpu().reshape((size,) * dim)
    c = (size - 1) / 2
    t = (c - margin / 100.0 * c) ** 2
    q = (torch.arange(size, dtype=torch.float64) - c) ** 2
    r = (q[:, None] + q[None, :] if dim == 2
         else q[:, None, None] + q[None, :, None] + q[None, None, :])
    sigma = mask_sigma(theirs[r > t], r[r > t] - t)
    ours = (DiskMask if dim == 2 else BallMask)(size, margin, sigma)
    weights = disk_mask_weights if dim == 2 else ball_mask_weights
    if not torch.allclose(weights(size, margin, sigma, dtype=torch.float64), theirs,
                          rtol=1e-5, atol=1e-6):
        raise ValueError("from_escnn: MaskModule's mask does not follow escnn's formula; "
                         "cannot convert")
    return ours


def mask_sigma(values: torch.Tensor, excess: torch.Tensor) -> float:
    """``sigma`` of escnn's mask from its ``values`` outside the disk, ``exp(-excess /
    sigma^2)`` (``excess = d^2 - t > 0``), float64 copies of escnn's float32 values: read
    from the value that gives it most precisely (a float32 spacing, ``2^-24`` of the value or
    ``2^-149``, over ``value |log value|``; a value near 1 gives ``log`` badly). Where escnn's
    float32 mask holds no such value:

    - every value 0 (``sigma`` below ~0.1 px: a hard mask), a ``sigma`` small enough that
      ``exp`` gives 0 in float64 too, so ours is escnn's mask exactly, in any dtype;
    - every value 1 (``sigma`` above ~1e4 px: no mask), a ``sigma`` large enough that ``exp``
      gives 1 in float64;
    - no pixel outside, escnn's default 2 (the mask is 1 everywhere for any ``sigma``).

    Anything else (a mix of 0 and 1) gives 2, which the caller's check refuses."""
    inside = (values > 0) & (values < 1)
    if inside.any():
        v, e = values[inside], excess[inside]
        spacing = torch.clamp_min(v * 2.0 ** -24, 2.0 ** -149)
        i = int(torch.argmin(spacing / (v * -torch.log(v))))
        return math.sqrt(float(e[i] / -torch.log(v[i])))
    if values.numel() and bool((values == 0).all()):
        return math.sqrt(float(excess.min()) / 800.0)  # exp(-800) == 0.0 in float64
    if values.numel() and bool((values == 1).all()):
        return math.sqrt(float(excess.max()) * 1e17)  # exp(-1e-17) == 1.0 in float64
    return 2.0


def _subgroup_name(gname: str, sid: Any) -> str:
    """Our subgroup for escnn's id on ``gname``'s gspace (``(None, M)``, ``(0, M)``, ``M``)."""
    grp = get(gname)
    if grp.has_reflections:
        if not (isinstance(sid, tuple) and len(sid) == 2 and isinstance(sid[1], int)):
            raise ValueError(f"from_escnn: restriction id {sid!r} of {gname}: expected "
                             "(None, M) or (0, M)")
        axis, n = sid
        if axis is None:
            return f"c{n}"
        if axis == 0:
            return f"d{n}"
        raise ValueError(f"from_escnn: restriction {sid!r} keeps the flip r^{axis} m, not ours "
                         f"(m, x -> -x): only (None, M) and (0, M) are supported")
    if isinstance(sid, int) and not isinstance(sid, bool):
        return f"c{sid}"
    raise ValueError(f"from_escnn: restriction id {sid!r} of {gname}: expected an int M")


def _check_layout(rep: Any, gname: str, hname: str, elements: list) -> None:
    """Our slot permutation turns escnn's restricted representation into ``|G|/|H|`` copies
    of ``H``'s regular representation, for every element."""
    idx = restriction_index(gname, hname)
    sub = get(hname)
    n = int(get(gname).order) // int(sub.order)
    for e, h in zip(elements, sub.elements(), strict=True):
        mat = torch.as_tensor(rep(e), dtype=torch.float64)[idx][:, idx]
        block = torch.zeros(int(sub.order), int(sub.order), dtype=torch.float64)
        block[torch.arange(int(sub.order)), sub.regular_permutation(h)] = 1.0
        if not torch.allclose(mat, torch.block_diag(*[block] * n), atol=1e-6):
            raise ValueError(f"from_escnn: escnn's {gname} regular fields restricted to "
                             f"{hname} do not match our layout at {h!r}; the conventions differ")


def restricted_fields(ftype: Any, probed: dict, group_name) -> tuple[str, str, int] | None:
    """``(G, H, number of escnn fields)`` when every field of ``ftype`` is ``G``'s regular
    representation restricted to ``ftype``'s group ``H`` (checked), else ``None``."""
    reps = ftype.representations
    names = {r.name for r in reps}
    if len(names) != 1 or not next(iter(names)).endswith(":regular"):
        return None
    hname = group_name(ftype.gspace, probed)
    parent = next(iter(names)).split(":", 1)[0].lower()
    try:
        grp, sub = check_subgroup(parent, hname, "from_escnn")
    except ValueError:
        return None
    if not grp.is_finite or reps[0].size != grp.order:
        return None
    key = ("restricted", id(ftype.gspace), parent)
    if key not in probed:
        _check_layout(reps[0], grp.name, sub.name, list(ftype.fibergroup.elements))
        probed[key] = True
    return grp.name, sub.name, len(reps)


def restriction(m: Any, probed: dict, regular_fields, group_name) -> Restrict:
    """escnn's ``RestrictionModule`` on regular fields -> :class:`Restrict` (our layout)."""
    gname, _ = regular_fields(m.in_type, "RestrictionModule", probed)
    hname = _subgroup_name(gname, m._id)
    if group_name(m.out_type.gspace, probed) != hname:
        raise ValueError(f"from_escnn: escnn's restriction {m._id!r} of {gname} is not our "
                         f"{hname}")
    ours = Restrict(gname, hname)
    restricted_fields(m.out_type, probed, group_name)  # checks the layout
    return ours


def norm_pool(m: Any) -> NormPool:
    """escnn's ``NormPool`` (one norm per field) on fields ``[psi_0, psi_1, ..., psi_M]``
    repeated (``psi_0`` trivial, ``psi_m`` 2-D of frequency ``m``): our :class:`NormPool`
    on harmonic fields ``x.view(B, C, 2M+1, H, W)`` of escnn's tensor (channel ``c (M+1) + m``
    in both; a norm does not depend on the basis within a field)."""
    reps = m.in_type.representations
    block: list[int] = []  # the frequencies of one repeat
    for r in reps:
        freq = _frequency(r)
        if freq is None or (freq == 0) != (r.size == 1) or (freq and r.size != 2) or (
                freq == 0 and not r.is_trivial()):
            raise ValueError(f"from_escnn: NormPool on {m.in_type}: only fields of one trivial "
                             "irrep or one 2-D irrep of frequency m (harmonic fields "
                             "[psi_0, ..., psi_M], repeated) map to our NormPool")
        if freq == 0 and block:
            break
        block.append(freq)
    order = len(block) - 1
    if block != list(range(order + 1)) or len(reps) % len(block) or any(
            _frequency(r) != block[i % len(block)] for i, r in enumerate(reps)):
        raise ValueError(f"from_escnn: NormPool on {m.in_type}: the fields must repeat "
                         "[psi_0, psi_1, ..., psi_M] (frequencies 0..M in order) to map to our "
                         "NormPool(M)")
    return NormPool(order)


def _frequency(r: Any) -> int | None:
    """The frequency of an irrep of C_N, or of a representation that is one irrep (escnn's
    restriction of a D_N irrep to C_N, ``D8:irrep_1,1``, carries no attributes: the irrep it
    restricts to does; a norm does not depend on the orthogonal change of basis)."""
    freq = getattr(r, "attributes", {}).get("frequency")
    irreps = getattr(r, "irreps", [])
    if freq is None and len(irreps) == 1:
        freq = getattr(r.group.irrep(*irreps[0]), "attributes", {}).get("frequency")
    return freq


def field_bias(bias: torch.Tensor, c_out: int, n: int) -> torch.Tensor:
    """escnn's bias per slot ``(C_out * |G|,)`` -> ours per field ``(C_out,)``; it must be
    constant over each regular field."""
    fields = bias.view(c_out, n)
    if not torch.allclose(fields, fields[:, :1].expand(-1, n)):
        raise ValueError("from_escnn: the conv's bias (R2Conv or R3Conv) is not constant over "
                         "each regular field; cannot convert")
    return fields[:, 0]


def conv_kernel_size(m: Any, what: str) -> int:
    """The kernel size of an escnn ``R2Conv`` / ``R3Conv`` (``what``) after the checks every
    conversion of one makes: one gspace for its input and output, ``groups=1``."""
    if m.in_type.gspace != m.out_type.gspace:  # equal ones made separately convert
        raise ValueError(f"from_escnn: {what} between different gspaces is not supported")
    if getattr(m, "groups", 1) != 1:
        raise ValueError(f"from_escnn: {what} with groups={m.groups} is not supported; only "
                         "groups=1")
    return m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]


def escnn_basis_settings(m: Any, frequency: Callable[[dict], int]) -> dict:
    """escnn's basis settings of an ``R2Conv`` / ``R3Conv`` in our terms: its rings (shells)
    and widths divided by the dilation (escnn samples at dilated offsets, we in filter taps)
    and, per ring, the largest frequency its basis holds (``frequency`` of each basis
    element's attributes: the angular frequency in 2-D, the harmonic order ``J`` in 3-D; -1
    for a ring without elements), which is where its ``frequencies_cutoff`` (a float, a
    callable or its default policy) cut."""
    d = m.dilation if isinstance(m.dilation, int) else m.dilation[0]
    rings = [float(r) / d for r in m._rings]
    caps = [-1] * len(rings)
    be = m.basisexpansion
    for pair in be._representations_pairs:
        block = getattr(be, f"block_expansion_{be._escape_pair(pair)}")
        for attr in block.get_basis_info():
            i = min(range(len(rings)), key=lambda j: abs(rings[j] * d - attr["radius"]))
            caps[i] = max(caps[i], frequency(attr))
    return {"rings": rings, "sigma": [float(s) / d for s in m._sigma],
            "frequencies_cutoff": caps}


def escnn_shell_settings(m: Any) -> dict | None:
    """:func:`escnn_basis_settings` of an ``R3Conv`` (a shell's frequency: the harmonic order
    ``J``, the last entry of its elements' ``j``), or ``None`` where another escnn version's
    internals do not read as expected."""
    try:
        return escnn_basis_settings(m, lambda attr: int(attr["j"][-1]))
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


def copy_gnorm_state(m: Any, ours: Any, names: list[str], c: int) -> None:
    """escnn's ``GNormBatchNorm`` state into our ``HarmonicBatchNorm`` ``ours``: escnn keeps
    one buffer (and weight) of shape ``(C, 1)`` per irrep name (``names``: order 0 first), in
    field order; ours ``running_var`` / ``weight`` ``(C, L + 1)``, ``running_mean`` / ``bias``
    ``(C,)`` (order 0)."""
    def state(name: str, what: str) -> torch.Tensor:
        return getattr(m, f"{m._escape_name(name)}_{what}").detach().reshape(c)

    with torch.no_grad():
        assert ours.running_mean is not None and ours.running_var is not None  # tracked
        ours.running_mean.copy_(state(names[0], "running_mean"))
        for ell, name in enumerate(names):
            ours.running_var[:, ell].copy_(state(name, "running_var"))
            if m.affine:
                assert ours.weight is not None  # affine
                ours.weight[:, ell].copy_(state(name, "weight"))
        if m.affine:
            assert ours.bias is not None  # affine
            ours.bias.copy_(state(names[0], "bias"))
        assert ours.num_batches_tracked is not None  # tracked
        ours.num_batches_tracked.copy_(m.num_batches_tracked)


#: The steerable convs' warning of output orders no basis function reaches (2-D and 3-D):
#: escnn's layer has those always-0 slots too, so a conversion drops it.
DEAD_ORDERS = re.compile(r".*: no basis function of kernel_size=\S+ reaches output")


def build_candidate(make: Callable[[], Any]) -> tuple[Any, list[warnings.WarningMessage]]:
    """``make()`` (a candidate layer of a conversion) with its construction warnings held:
    the dead-orders one (:data:`DEAD_ORDERS`) dropped, the others returned for
    :func:`warn_kept` once the conversion keeps the layer (the aliasing warning of
    :func:`~equilayers.functional._basis_settings.aliasing_warning` says the same of a
    converted layer as of a native one; a rejected candidate stays quiet)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = make()
    return out, [w for w in caught if not DEAD_ORDERS.match(str(w.message))]


def warn_kept(caught: list[warnings.WarningMessage]) -> None:
    """Raise again the warnings :func:`build_candidate` held, at the conversion's caller."""
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)


def load_harmonic_fit(ours: Any, basis: torch.Tensor, filt: torch.Tensor,
                      bias: torch.Tensor | None, fields_out: tuple[int, int],
                      fields_in: tuple[int, int]) -> Any:
    """Fit escnn's expanded filter ``filt`` ``(C_out F_out, C_in F_in, *k)`` (already in our
    field basis) in ``basis`` ``(J, F_out, F_in, *k)`` by least squares (float64), load the
    coefficients and escnn's order-0 bias into the harmonic conv ``ours``, and return it, or
    ``None`` when its expanded filter is not escnn's elementwise (the filter is not in the
    span)."""
    (c_out, f_out), (c_in, f_in) = fields_out, fields_in
    target = (filt.double().view(c_out, f_out, c_in, f_in, *filt.shape[2:]).transpose(1, 2)
              .reshape(c_out * c_in, -1))
    coef = torch.linalg.lstsq(basis.reshape(len(basis), -1).T, target.T).solution
    with torch.no_grad():
        ours.weight.copy_(coef.T.reshape(ours.weight.shape))
        if bias is not None:
            assert ours.bias is not None  # built with bias=True
            ours.bias.copy_(bias.view(c_out, f_out)[:, 0])
        expanded = forward_filter(ours)
    if not relative_close(expanded, filt, 1e-5):
        return None
    return ours


def check_norm_relu(m: Any) -> None:
    """escnn's ``NormNonLinearity`` computes norm-ReLU (``function="n_relu"``), the one we
    have."""
    if getattr(m, "_function", None) is None or getattr(m._function, "__name__", "") != "relu":
        raise ValueError("from_escnn: NormNonLinearity: only function='n_relu' maps to "
                         "NormNonlinearity (norm-ReLU)")


def check_reproduced(m: Any, ours: Any, group: str, expanded: torch.Tensor,
                     target: torch.Tensor, atol: float) -> None:
    """Our converted conv's expanded filter equals escnn's (relative to its largest entry, to
    ``atol``: escnn samples in float32); a convention mismatch is an O(1) error."""
    if not relative_close(expanded, target, atol):
        raise ValueError(f"from_escnn: escnn's filter for {m} is not reproduced by "
                         f"{type(ours).__name__}(group={group!r}); the conventions differ")


def check_scalar_bias(m: Any, bias: torch.Tensor | None, c_out: int, f_out: int) -> None:
    """escnn's bias of harmonic fields is zero off the order-0 slot (ours has none there)."""
    if bias is not None and f_out > 1 and bias.view(c_out, f_out)[:, 1:].abs().max() > 0:
        raise ValueError(f"from_escnn: escnn's bias for {m} is not zero on the non-scalar "
                         "slots; the conventions differ")


def norm_relu(m: Any, c: int, order: int, group: str,
              arrange: Callable[[torch.Tensor], torch.Tensor],
              spatial_dims: int | None = None) -> NormNonlinearity:
    """escnn's ``NormNonLinearity`` (``"n_relu"``) on ``c`` fields of orders ``0 .. order``
    -> our :class:`NormNonlinearity` with ``order0="norm"`` and ``bias_form="exp"`` holding
    escnn's ``log_bias``, flattened and put in our ``(C, order + 1)`` order by ``arrange``.
    Call :func:`check_norm_relu` first (before reading the fields' layout). ``spatial_dims``:
    3 for planar fields on volumes (escnn's ``rot2dOnR3()``)."""
    check_norm_relu(m)
    has_bias = m.log_bias is not None
    ours = NormNonlinearity(c, order, bias=has_bias, order0="norm", bias_form="exp",
                            group=group, spatial_dims=spatial_dims)
    if has_bias:
        assert ours.log_bias is not None  # built with bias=True
        with torch.no_grad():
            ours.log_bias.copy_(arrange(m.log_bias.detach().reshape(-1)))
    return ours


def pointwise(m: Any, enn: Any) -> nn.Module:
    """escnn's pointwise modules (on regular or trivial fields, checked by the caller) -> the
    ``torch.nn`` module computing the same elementwise function: ``ReLU``, ``ELU`` (its
    ``alpha``), ``LeakyReLU`` (its slope), ``PointwiseNonLinearity`` (``p_relu``, ``p_elu``,
    ``p_sigmoid``, ``p_tanh``), ``PointwiseDropout`` (its ``p``; a fresh mask per element in
    both)."""
    if isinstance(m, enn.ReLU):
        return nn.ReLU()
    if isinstance(m, enn.ELU):
        return nn.ELU(alpha=float(m.alpha))
    if isinstance(m, enn.LeakyReLU):
        return nn.LeakyReLU(negative_slope=float(m._negative_slope))
    if isinstance(m, enn.PointwiseDropout):
        return nn.Dropout(p=float(m.p))
    by_name = {"relu": nn.ReLU, "elu": nn.ELU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
    name = getattr(m._function, "__name__", "")
    if name not in by_name:
        raise ValueError(f"from_escnn: PointwiseNonLinearity with function {name!r}: only "
                         "p_relu, p_elu, p_sigmoid and p_tanh map to torch.nn modules")
    return by_name[name]()


def is_transposed(m: Any) -> bool:
    """Whether ``m`` is escnn's transposed conv (``R2ConvTransposed`` / ``R3ConvTransposed``:
    it has an ``output_padding``)."""
    return hasattr(m, "output_padding")


def conv_class(lifting: bool, transposed: bool) -> type:
    """Our planar conv class for escnn's conv: lifting or group, forward or transposed."""
    if transposed:
        return LiftingConvTranspose2d if lifting else GroupConvTranspose2d
    return LiftingConv2d if lifting else GroupConv2d


def conv_options(m: Any) -> dict:
    """The ``nn.Conv2d`` / ``nn.ConvTranspose2d`` options of escnn's ``R2Conv`` /
    ``R2ConvTransposed`` ``m`` (or the 3-D ones of ``R3Conv`` / ``R3ConvTransposed``) as
    keyword arguments of ours (``groups`` is checked to be 1 by :func:`conv_kernel_size`)."""
    opts = {"stride": m.stride, "padding": m.padding, "dilation": m.dilation}
    if is_transposed(m):
        opts["output_padding"] = m.output_padding
    else:
        opts["padding_mode"] = m.padding_mode
    return opts


def forward_filter(ours: Any) -> torch.Tensor:
    """Our conv's expanded filter in the forward conv's layout ``(C_out F_out, C_in F_in, k,
    k[, k])`` (a transposed conv's, ``conv_transpose2d``'s / ``conv_transpose3d``'s layout,
    transposed back; groups=1)."""
    f = ours.expanded_filter()
    return f.transpose(0, 1) if getattr(ours, "transposed", False) else f


def expanded_conv(m: Any, gname: str, filt: torch.Tensor, bias: torch.Tensor | None,
                  lifting: bool) -> nn.Module:
    """An :class:`~equilayers.nn.ExpandedGroupConv2d` holding escnn's expanded filter (groups
    with rotations off the pixel grid, whose escnn filters our bases cannot represent)."""
    n = int(get(gname).order)  # regular fields: a finite group
    if bias is not None:
        bias = field_bias(bias, bias.shape[0] // n, n)
    ours = ExpandedGroupConv2d.from_filter(filt, bias, m.stride, m.padding, m.dilation, 1,
                                           m.padding_mode, group=gname, lifting=lifting)
    err = ours.grid_equivariance_error()
    if not err <= 1e-5:
        raise ValueError(f"from_escnn: escnn's filter for {m} is not equivariant under "
                         f"equilayers' {gname} grid elements (relative error {err:.3g}); the "
                         "conventions differ")
    return ours


def inner_batch_norm(m: Any, c: int) -> nn.Module:
    """escnn's ``InnerBatchNorm`` on ``c`` regular fields (statistics per field over its
    slots and space) -> :class:`GroupBatchNorm2d`, or :class:`GroupBatchNorm3d` on volumes:
    the same statistics, so the same state (the slot order does not enter)."""
    (bn,) = [mod for name, mod in m.named_children() if name.startswith("batch_norm_")]
    ref = next(iter(bn.state_dict().values()), None)
    cls = GroupBatchNorm3d if m.in_type.gspace.dimensionality == 3 else GroupBatchNorm2d
    ours = cls(c, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
               device=None if ref is None else ref.device,
               dtype=None if ref is None or not ref.is_floating_point() else ref.dtype)
    ours.load_state_dict(bn.state_dict())
    return ours


def gnorm_statistics(m: Any) -> str:
    """Our ``statistics`` for escnn's ``GNormBatchNorm`` (``"order"``: each order's ``E|v|^2``)
    or ``IIDBatchNorm`` on fields listed irrep by irrep (``"order_centred"``: escnn takes
    every irrep's variance about its batch mean)."""
    return "order" if type(m).__name__ == "GNormBatchNorm" else "order_centred"
