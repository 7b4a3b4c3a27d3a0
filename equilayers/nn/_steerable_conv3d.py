"""Steerable convolutions on voxels for SO(3) and O(3) as an ``nn.Conv3d`` look-alike (the
math is :mod:`equilayers.functional._steerable3d`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .. import _checks as C
from ..functional import _axial3d as AX
from ..functional import _basis_settings as BS
from ..functional import _gconv3d as G3
from ..functional import _gconv_transpose as GT
from ..functional import _grid_law as GL
from ..functional import _steerable3d as S3
from ..groups import FieldType, GroupLike
from ..groups._fields import field_type
from ..groups._planar import PlanarGroup
from ._derived import (
    BasisRecorded,
    _conv_options_repr,
    _WeightDerived,
    in_weight_dtype,
    normal_tensors,
    parametrized_once,
)
from ._eval_filter import EvalFilterMixin, eval_filter
from ._exactness import _quiet, warn_at_user
from ._padding import ResolvedPadding
from ._param_shapes import checked
from ._typed import Typed

__all__ = ["SteerableConv3d"]


class SteerableConv3d(BasisRecorded, ResolvedPadding, EvalFilterMixin, _WeightDerived, Typed,
                      nn.Module):
    """Steerable convolution of volumes or SO(3)/O(3) harmonic fields to harmonic fields:
    ``(B, C_in, [F_in,] D, H, W) -> (B, C_out, (L+1)^2, D', H', W')``; with a planar group,
    of its harmonic fields ``(B, C, 2L+1, D, H, W)``, turned about the depth axis.

    ``out[o] = sum_c in[c] (*) K[o, c] + b[o] e_0`` with ``K[o, c] = sum_j w[o, c, j] B_j``,
    ``B_j`` the steerable basis of :func:`~equilayers.functional.steerable_basis3d`, which obeys
    ``K(R q) = D_out(R) K(q) D_in(R)^T`` (Gaussian shells x real spherical harmonics x
    Clebsch-Gordan coefficients; Weiler et al. 2018), and the bias on the order-0 slot only. A
    harmonic field of orders ``0 .. L`` has ``(L + 1)^2`` slots, order ``l`` in slots ``l^2 ..
    (l+1)^2 - 1`` (:mod:`equilayers.groups._so3`; O(3): parity ``(-1)^l``). Each ``B_j`` is
    non-zero only in the ``(2 l_out + 1, 2 l_in + 1)`` block of its pair of orders, so the
    buffer ``filter_basis`` holds those blocks alone, packed in one flat tensor (about 12x
    smaller than the dense basis at ``L = 3``), and the filter is expanded one matmul per
    pair; :func:`~equilayers.functional.steerable_basis3d` gives the dense basis. In eval
    mode without autograd, on the CPU, the last expanded filter is reused while the weight,
    the bias and the basis still equal what it was made from (checked on every call, so never
    stale: :mod:`equilayers.nn._eval_filter`).

    Functional twin: :func:`~equilayers.functional.steerable_conv3d`.

    Args:
        in_channels, out_channels, kernel_size, stride, padding: as ``nn.Conv3d`` (channels
            count fields; the kernel is cubic, for a planar group also ``(k_d, k, k)`` with any
            depth ``k_d``, e.g. ``(1, 5, 5)`` for thick slices; an even ``k`` is sampled
            around the point between the middle voxels, as escnn's; ``padding`` also
            ``"same"``/``"valid"``).
        dilation, groups, bias, padding_mode, device, dtype: as ``nn.Conv3d``.
        group: ``"so3"`` (default) or ``"o3"``; or a planar group, ``"so2"``, ``"o2"``,
            ``"cN"``, ``"dN"`` (escnn's ``rot2dOnR3`` / ``conicalOnR3``): rotations (and the
            flip of ``x``) of every depth slice about the depth axis, which is never moved
            (anisotropic scans), on planar harmonic fields ``(B, C, 2L+1, D, H, W)``
            (:mod:`equilayers.groups._planar`, :mod:`equilayers.functional._axial3d`).
        basis: ``"shells"`` (default): the filters on Gaussian shells times spherical
            harmonics, for a planar group those that its turns about ``z`` allow (escnn's
            ``R3Conv`` space for these fields: the same elements, so ``from_escnn`` converts
            escnn's ``rot2dOnR3()`` convs); ``"slices"`` (planar groups): the planar basis of
            ``LiftingConv2d`` / ``GroupConv2d`` (``basis="harmonic"``, the planar settings) on
            each of the ``k`` depth slices, a larger space (1.7-2.9x the coefficients at k3-k5)
            whose filters change freely from slice to slice. With a planar group, both warn
            at construction, as the 2-D convs, when an output order is reached only through
            frequencies above their ring's alias-free cap (an even in-plane ``k >= 6``, or a
            raised ``frequencies_cutoff``: :func:`~equilayers.functional._basis_settings.
            aliasing_warning`).
        max_order: ``L_out`` of the output fields (default 1).
        in_max_order: ``L_in`` of harmonic input fields ``(B, C_in, (L_in+1)^2, D, H, W)``, or
            ``None`` (default) for volumes ``(B, C_in, D, H, W)`` (a lifting conv).
        sigma, frequencies_cutoff, rings: the shells of the basis, with escnn's ``R3Conv``
            meaning (:mod:`equilayers.functional._basis_settings`; the cap bounds the order
            ``J`` of the harmonics on each shell).

    Shape:
        Output ``(B, C_out, (L+1)^2, D', H', W')`` with, per dim,
        ``n' = floor((n + 2 p - dilation (k - 1) - 1) / stride) + 1``.

    Equivariance:
        Exact for the cube's 24 rotations (48 symmetries with ``"o3"``), composed with the
        Wigner-D action on the fibers: ``f(g . x) = g . f(x)`` to float rounding (measured
        at most 1.4e-15 in float64, 8.9e-7 in float32, ``tests/test_so3_conv.py`` and orders
        up to 2 on 7-9 voxel volumes) under the
        conditions of :class:`~equilayers.nn.GroupConv3d` (windows that tile the input from
        both ends, equal options on the dims traded; the module warns once otherwise). Other
        rotations: approximate
        (the filters are sampled on the grid). Measured on a Gaussian-smoothed (sigma 2
        voxels) random 21^3 volume, trilinear rotation, inside the inscribed ball (2 voxels
        margin), worst of 5 random rotations, float64, seeds 0 / 1 / 2
        (``tests/test_so3_conv.py``, ``OFF_GRID``; 2026-12-01, the even sizes 2026-12-06,
        ``padding=k // 2``):

        ====================  =====================  =====================
        fields, kernel        relative error         interpolation floor
        ====================  =====================  =====================
        volume -> L=1, k=3    0.023 / 0.016 / 0.022  0.093 / 0.074 / 0.080
        volume -> L=2, k=5    0.014 / 0.020 / 0.022  0.069 / 0.080 / 0.093
        L=1 -> L=1, k=3       0.015 / 0.018 / 0.022  0.075 / 0.085 / 0.091
        L=1 -> L=2, k=5       0.024 / 0.019 / 0.018  0.092 / 0.083 / 0.082
        volume -> L=1, k=4    0.014 / 0.014 / 0.018  0.070 / 0.068 / 0.086
        L=1 -> L=1, k=2       0.018 / 0.018 / 0.016  0.078 / 0.079 / 0.073
        ====================  =====================  =====================

        (the floor rotates the output forth and back, two interpolations; a plain
        ``nn.Conv3d`` read as the same fields is off by more than twice the error). escnn
        1.0.11's ``R3Conv`` of the same shape (its default rings, widths and caps, which are
        ours), float32, mean over 3 seeds: volume -> L=1, k=3: ours 0.0204, escnn 0.0197;
        k=5, L=1: 0.0152 / 0.0169; k=5, L=2: 0.0186 / 0.0184 (``tests/test_escnn_so3.py``).
        The init draws every output order with second moment about 1 on unit-variance
        input (each input order an equal share).

        Planar groups: exact for the quarter turns (and flips) of every depth slice under the
        planar convs' window conditions on ``H, W`` (the depth takes any stride and size),
        measured at most 6e-16 in float64 (``equilayers/testing/_cases_axial.py``); other
        angles approximate: a 3-conv stack on a smooth 9x35x35 volume (a cylinder of radius
        12), worst of 17-137 degrees, seeds 0 / 1 / 2 (``tests/test_axial3d.py``;
        2026-12-06), against an interpolation floor of 0.053-0.099 and 1.2-1.8 for a plain
        ``nn.Conv3d`` stack:

        ==================  =====================  =====================
        group, kernel, L    ``"shells"``           ``"slices"``
        ==================  =====================  =====================
        so2, k=3, L=1       0.020 / 0.015 / 0.021  0.031 / 0.026 / 0.020
        so2, k=5, L=2       0.021 / 0.027 / 0.033  0.042 / 0.019 / 0.023
        o2, k=3, L=1        0.016 / 0.018 / 0.025  0.034 / 0.029 / 0.033
        o2, k=5, L=2        0.029 / 0.019 / 0.017  0.020 / 0.026 / 0.019
        ==================  =====================  =====================

    Example:
        >>> import torch
        >>> from equilayers.nn import SteerableConv3d
        >>> SteerableConv3d(2, 4, 3, padding=1, max_order=1)(torch.randn(1, 2, 5, 5, 5)).shape
        torch.Size([1, 4, 4, 5, 5, 5])
        >>> SteerableConv3d(4, 3, 3, padding=1, in_max_order=1, max_order=2)(
        ...     torch.randn(1, 4, 4, 5, 5, 5)).shape
        torch.Size([1, 3, 9, 5, 5, 5])
        >>> SteerableConv3d(2, 4, 3, padding=1, group="so2", max_order=2)(
        ...     torch.randn(1, 2, 4, 7, 7)).shape  # turned about the depth axis
        torch.Size([1, 4, 5, 4, 7, 7])
    """

    #: ``gain**2`` of the init (the planar steerable convs' 1).
    init_gain2: float = 1.0
    _records_basis = True  # "shells" and "slices" share weight shapes at kernel (1, k, k)
    in_type: FieldType  # set in __init__
    out_type: FieldType
    filter_basis: torch.Tensor
    transposed = False  # (as torch's _ConvNd; True in SteerableConvTranspose3d)
    #: what the basis and the weight's shape are built from: fixed at construction
    #: (:class:`~._derived.FixedArgs`); stride, padding, dilation, padding_mode stay assignable
    _fixed_args = ("group", "basis", "max_order", "in_max_order", "sigma", "frequencies_cutoff",
                   "rings", "kernel_size", "in_channels", "out_channels", "groups", "transposed")
    _fixed_reason = "the weight's shape and the derived basis are built from it"

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, *, group: GroupLike = "so3", max_order: int = 1,
                 in_max_order: int | None = None,
                 sigma: float | Sequence[float] | None = None,
                 frequencies_cutoff: BS.Cutoff | None = None,
                 rings: Sequence[float] | None = None, basis: str = "shells") -> None:
        super().__init__()
        name = type(self).__name__
        in_channels, out_channels, groups = C.check_conv_channels(
            in_channels, out_channels, groups, name, C.FIELD_CONV_FIXES)
        grp = AX.check_steerable3d_group(group, name)
        if isinstance(grp, PlanarGroup):  # the depth is never turned: any depth extent
            kd, k = AX.check_axial_kernel(kernel_size, name)
        else:
            kd = k = S3.check_kernel_size3d(kernel_size, name)
        self.stride = C.check_triple(stride, "stride", name, minimum=1)
        self.dilation = C.check_triple(dilation, "dilation", name, minimum=1)
        C.check_padding_mode(padding_mode, "padding_mode", name, G3.PADDING_MODES)
        G3.resolve_padding3d(padding, (kd, k, k), dilation, self.stride, name)  # (early; set below)
        C.check_flag(bias, "bias", name)
        C.check_float_dtype(dtype, "dtype", name)
        self.out_type = field_type(grp, "harmonic", max_order, 3, what=name,
                                   order_required=True)
        self.in_type = (field_type(grp, "trivial", spatial_dims=3, what=name)
                        if in_max_order is None else
                        field_type(grp, "harmonic", in_max_order, 3, what=name,
                                   order_required=True, order_name="in_max_order"))
        out_order = self.out_type.max_order
        assert out_order is not None  # field_type(order_required=True) raised on None
        self.max_order: int = out_order
        self.in_max_order = self.in_type.max_order
        self.basis = AX.check_basis3d(basis, grp, name)
        dims = 2 if self.basis == "slices" else 3  # slices: the planar settings
        self.sigma, self.frequencies_cutoff, self.rings = BS.normalize_settings(
            k, sigma, frequencies_cutoff, rings, name, spatial_dims=dims)
        self._basis_spec = BS.resolve_settings(k, self.sigma, self.frequencies_cutoff,
                                              self.rings, name, spatial_dims=dims)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kd, k, k)
        self.padding, self.groups, self.padding_mode = padding, groups, padding_mode
        self.group = grp
        self.fiber_in = self.in_type.fiber_size or 1
        self.fiber_out = self.out_type.fiber_size or 1
        cached = self._cached()
        orders_out = cached.l_out
        self._num_basis = len(orders_out)
        self._pairs = getattr(cached, "pairs", None)  # None: a planar group's basis
        if self._num_basis == 0:
            given = BS.settings_repr(self.sigma, self.frequencies_cutoff, self.rings)[2:]
            if self.basis == "shells" and kd != k:  # shells of the k x k plane off its depth
                spec = self._basis_spec or BS.default_spec(k)
                raise ValueError(
                    f"{name}: the steerable basis is empty for kernel_size={self.kernel_size} "
                    f"({given or 'default settings'}): the shells of the {k}x{k} plane (radii "
                    f"{[round(r, 3) for r, _, _ in spec]}, sigma "
                    f"{[round(sg, 3) for _, sg, _ in spec]}) vanish on every voxel of depth "
                    f"{kd}; pass a wider sigma (e.g. sigma=0.5), an odd depth, "
                    "basis='slices' or a larger kernel_size")
            raise ValueError(f"{name}: the steerable basis is empty for kernel_size={k} "
                             f"({given or 'default settings'}): raise frequencies_cutoff, add "
                             "rings or use a larger kernel_size")
        dead = sorted(set(range(self.max_order + 1)) - set(orders_out.tolist()))
        if dead:
            warn_at_user(f"{name}: no basis function of kernel_size={k} reaches output "
                          f"order(s) {dead} of {grp.name} (max_order={self.max_order}): those "
                          "slots are always 0. Use a larger kernel_size or a lower max_order")
        if isinstance(grp, PlanarGroup):  # both bases carry the planar frequencies per ring
            self._warn_aliased_orders(dead)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups,
                                               self._num_basis, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.register_buffer("filter_basis", torch.empty(0, **factory), persistent=False)
        self.reset_parameters()

    def _warn_aliased_orders(self, dead: Sequence[int]) -> None:
        """A planar group's output orders reached only through frequencies above their ring's
        alias-free cap in the plane (``BS.aliasing_warning``, as the 2-D convs): ``"slices"``
        is the planar basis on each depth slice, and a shell's frequency ``f`` about ``z``
        reaches its planar radius ``r`` (``k_d = 1``) or less; both measured as the 2-D convs
        (so2, order 3 of ``(1, 6, 6)``: 0.45 slices and shells, of ``(6, 6, 6)`` shells 0.31;
        odd controls 0.1)."""
        kd, k = self.kernel_size[:2]
        if alias := BS.aliasing_warning(
                type(self).__name__, self.group, k, self._basis_spec,
                "trivial" if self.in_max_order is None else "harmonic", "harmonic",
                self.in_max_order or 0, self.max_order, dead,
                kernel_repr=lambda n: n if kd == k else (kd, n, n)):
            warn_at_user(alias)

    # --- parameters and derived buffers ----------------------------------------------------
    def _cached(self) -> S3.Basis3d | AX.AxialBasis | AX.ShellBasis:
        kd, k = self.kernel_size[:2]
        if self.basis == "slices":
            return AX.axial_basis(self.group, self.in_max_order, self.max_order, k,
                                  self._basis_spec, kd)
        if isinstance(self.group, PlanarGroup):
            return AX.shell_basis(self.group, self.in_max_order, self.max_order, k,
                                  self._basis_spec, kd)
        return S3.basis3d_blocks(self.group, self.in_max_order or 0, self.max_order,
                                 self.kernel_size[0], self._basis_spec)

    def reset_parameters(self) -> None:
        """Fill the basis and draw the weight, ``N(0, std_j^2)`` per basis element: an element
        of the block ``l_in -> l_out`` (unit norm, energy about ``1 / (2 l_out + 1)`` per output
        slot) gets ``Var = gain^2 (2 l_out + 1) / (C_in/groups * N_out * c)``, ``c`` the
        elements of its block and ``N_out`` the input orders that reach ``l_out``: on unit
        i.i.d. input every output order has second moment ``gain^2 = init_gain2 = 1``, each
        input order an equal share (the planar steerable convs' rule). The basis elements have
        norm ``sqrt(2 l_out + 1)`` (divided out here). The bias starts at 0."""
        self._fill_derived(self.weight.device)
        with torch.no_grad():
            with torch.device("cpu"):
                std = self._init_std()
            self.weight.normal_().mul_(std.to(self.weight.device, self.weight.dtype))
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def _init_std(self) -> torch.Tensor:
        cached = self._cached()
        c_in = self.in_channels // self.groups
        if not isinstance(cached, S3.Basis3d):  # a planar group's (its own rule)
            return cached.init_std(c_in, self.init_gain2)
        _, lo, _, pairs = cached
        reached = [lo_ for lo_, _, n in pairs if n]  # one entry per input order reaching lo_
        # per element: the elements of its block and the input orders that reach its l_out
        count = torch.tensor([n for *_, n in pairs for _ in range(n)], dtype=torch.float64)
        reach = torch.tensor([reached.count(lo_) for lo_, _, n in pairs for _ in range(n)],
                             dtype=torch.float64)
        var = self.init_gain2 * (2 * lo + 1).double() / (c_in * reach * count)
        return var.sqrt() / (2 * lo + 1).double().sqrt()

    @normal_tensors
    def _fill_derived(self, device: torch.device) -> None:
        """(Re)build the basis buffer on ``device`` in the weight's dtype (the state dict's
        after ``load_state_dict(..., assign=True)``; after ``reset_parameters``,
        ``.to()``, ``to_empty()`` and ``load_state_dict``; on the meta device too, with its real
        shape, so that a meta forward gives the output's shape): the blocks of orders, packed
        (:class:`~equilayers.functional._steerable3d.Basis3d`; the dense basis is mostly
        zeros)."""
        self.filter_basis = self._cached().packed.flatten().to(
            device=device, dtype=self.weight.dtype, copy=True)

    def _basis_block(self, l_out: int, l_in: int) -> torch.Tensor | None:
        """The ``(n, 2 l_out + 1, 2 l_in + 1, k, k, k)`` view of the basis buffer's block
        ``l_in -> l_out`` (``None`` if it has no element; SO(3)/O(3) only)."""
        if self._pairs is None:
            raise ValueError(f"{self.group.name} fields have no SO(3) blocks of orders")
        for lo, li, block in S3.block_views(self.filter_basis, self._pairs, self.kernel_size[0]):
            if (lo, li) == (l_out, l_in):
                return block
        return None

    # --- forward ---------------------------------------------------------------------------
    def expanded_filter(self) -> torch.Tensor:
        """The dense ``(C_out * F_out, C_in * F_in // groups, k, k, k)`` filter of the current
        weight (one matmul per block of orders; differentiable; nothing cached; the basis in
        the weight's dtype: :func:`._derived.in_weight_dtype`). The weight must have the shape
        the layer was built with, ``(C_out, C_in // groups, num_basis)`` (``ValueError``
        otherwise: the basis reads it in that shape)."""
        kd, k = self.kernel_size[:2]
        w = checked(self, "weight", self.weight,
                    (self.out_channels, self.in_channels // self.groups, self._num_basis))
        basis = in_weight_dtype(self).filter_basis
        if self.basis == "slices":  # a planar group: its planar basis on every depth slice
            return AX.expand_axial(w, basis, self.fiber_out, self.fiber_in, k, kd)
        if self._pairs is None:  # a planar group on shells: the dense basis
            return S3.expand_steerable3d(w, basis.view(
                -1, self.fiber_out, self.fiber_in, kd, k, k))
        return S3.expand_blocks3d(w, basis, self._pairs, self.kernel_size[0])

    @parametrized_once  # (a parametrized weight: evaluated once per call)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        self._forward_checks(x)
        self._check_exact(x)
        weight, bias = self._filter_and_bias()
        return G3.conv3d_expanded(x, weight, bias, self.fiber_out,
                                  self.stride, self._pad, self.dilation, self.groups,
                                  self.padding_mode, what=name)

    def _filter_and_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The expanded filter and the bias per output slot: in eval mode without autograd,
        the pair kept from the last such call while the weight, the bias and the basis are
        unchanged (checked on every call: :mod:`equilayers.nn._eval_filter`)."""
        return eval_filter(self, (self.groups, self.basis), (self.weight, self.bias),
                           lambda: (self.expanded_filter(), S3.order0_bias(checked(
                               self, "bias", self.bias, (self.out_channels,)), self.fiber_out)))

    def _forward_checks(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        self.in_type.check(x, "x", name)
        C.check_channels(x, self.in_channels, name, unit="fields")
        C.check_tensor(x, "x", name)  # floating point
        C.check_dtype_match(x, self.weight, name)
        if self.weight.is_meta and not x.is_meta:
            raise RuntimeError(f"{name}: the weight is on the meta device; materialize the "
                               "model first (load_state_dict(..., assign=True), or to_empty() "
                               "then reset_parameters())")

    _warned: bool = False

    def _check_exact(self, x: torch.Tensor, output_padding: tuple[int, ...] | None = None
                     ) -> None:
        """Warn once per module at the first input size where the window grid breaks exact
        equivariance on the cube's rotations (``output_padding``: a transposed conv's)."""
        if self._warned or _quiet() or torch.compiler.is_compiling() or torch.jit.is_tracing():
            return
        size = (int(x.shape[-3]), int(x.shape[-2]), int(x.shape[-1]))
        if min(size) < 1:  # an empty volume: nothing to be exact on (the conv names the size)
            return
        window = (self.kernel_size[-1], self.stride, self._pad, self.dilation)
        op = output_padding
        exact = self.__dict__.setdefault("_exact_sizes", set())
        if (size, window, op) in exact:  # the options too: one set after construction is seen
            return
        sub = self.group.grid_subgroup()
        if isinstance(sub, PlanarGroup):  # it moves (H, W) of every depth slice
            k, stride, pad, dilation = window
            problems = GL.exactness_problems(sub, size[1:], k, stride[1:], pad[:4], dilation[1:],
                                             output_padding=None if op is None else op[1:])
        else:
            problems = G3.exactness_problems3d(sub, size, *window, output_padding=op)
        if not problems:
            exact.add((size, window, op))
            return
        self._warned = True
        warn_at_user(f"{type(self).__name__} ({self.group.name}) is not exactly equivariant "
                     f"on its grid elements ({sub.name}) on input of size "
                     f"{'x'.join(map(str, size))}: "
                     + "; ".join(problems) + " (warned once per module)")

    def _resolve_padding(self, padding) -> tuple[int, ...]:
        """``F.pad``'s 6-tuple for ``padding`` at the current kernel, dilation and stride."""
        if getattr(self, "transposed", False):
            GT.transposed_padding(padding, type(self).__name__, 3)  # it crops: no string
        return G3.resolve_padding3d(padding, self.kernel_size, self.dilation, self.stride,
                                    type(self).__name__)

    def extra_repr(self) -> str:
        kd, k = self.kernel_size[:2]
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size="
             f"{k if kd == k else self.kernel_size}, "
             f"group={self.group.name!r}, max_order={self.max_order}")
        if self.in_max_order is not None:
            s += f", in_max_order={self.in_max_order}"
        if self.stride != (1, 1, 1):
            s += f", stride={self.stride}"
        if self.padding != 0:
            s += f", padding={self.padding!r}"
        s += _conv_options_repr(self, 3)
        if self._basis_spec is not None:
            s += BS.settings_repr(self.sigma, self.frequencies_cutoff, self.rings)
        if self.basis != "shells":
            s += f", basis={self.basis!r}"
        return s

