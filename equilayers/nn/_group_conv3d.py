"""Lifting and group convolutions on voxels as ``nn.Conv3d`` look-alikes, for the cube's
groups O, O_h, C4z and D4z (full ``k x k x k`` filters, or band-limited ones with
``basis="harmonic"``; the math is :mod:`equilayers.functional._gconv3d` and
:mod:`equilayers.functional._voxel_basis`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .. import _checks as C
from ..functional import _basis_settings as BS
from ..functional import _gconv3d as G3
from ..functional import _gconv_transpose as GT
from ..functional import _ico_conv as IC
from ..functional._gconv import from_fourier, select
from ..functional._voxel_basis import rotated_voxel_basis, voxel_basis
from ..functional._white_init import white_map
from ..groups import FieldType, GroupLike, IcosahedralGroup
from ..groups._fourier_basis import fourier_row_dims, weight_basis
from . import _derived as D
from ._checks import check_input_once
from ._eval_filter import EvalFilterMixin, eval_filter
from ._exactness import warn_if_inexact3d
from ._padding import ResolvedPadding
from ._param_shapes import checked
from ._tables import check_tables, table_on
from ._typed import Typed

__all__ = ["LiftingConv3d", "GroupConv3d"]

_BASES = ("voxel", "harmonic")


class _GroupConv3dBase(D.BasisRecorded, D.PickleStamped, ResolvedPadding, EvalFilterMixin, Typed,
                       D.FixedArgs):
    """Shared machinery: validation, the weight, the gather table (a derived buffer), the init,
    the once-per-module exactness warning and ``extra_repr``."""

    lifting: bool = False
    #: ``"ico"``/``"ih"``: filters turned off the grid (set in ``__init__``; default: old pickles)
    _turned: bool = False
    #: as torch's ``_ConvNd``: ``True`` in :mod:`._group_conv_transpose3d` (output_padding too)
    transposed: bool = False
    output_padding: tuple[int, int, int] = (0, 0, 0)
    filter_basis: torch.Tensor  # basis="harmonic" only: the (n, k^3) rows, a derived buffer
    group_basis: torch.Tensor  # group convs only: the (|G|, |G|) Fourier basis, derived
    # (basis="harmonic": its rows times the element norms, _element_norms)
    # integer tables (nn/_tables.py, not buffers): the gather table, the field per slot
    expansion_table: torch.Tensor
    bias_index: torch.Tensor
    _table_names = ("expansion_table", "bias_index")
    #: what the bases, the tables and the weight's shape are built from: fixed at construction
    #: (:class:`~._derived.FixedArgs`); stride, padding, dilation, padding_mode stay assignable
    _fixed_args = ("group", "basis", "sigma", "frequencies_cutoff", "rings", "kernel_size",
                   "in_channels", "out_channels", "groups", "lifting", "transposed")
    _fixed_reason = "the weight's shape and the derived bases and tables are built from it"

    #: ``gain**2`` of the init: the output's over the input's second moment (as in 2-D)
    init_gain2: float = 1.0

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, *, group: GroupLike = "o", basis: str | None = None,
                 sigma: float | Sequence[float] | None = None,
                 frequencies_cutoff: BS.Cutoff | None = None,
                 rings: Sequence[float] | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        in_channels, out_channels, groups = C.check_conv_channels(
            in_channels, out_channels, groups, name, C.FIELD_CONV_FIXES)
        axial = isinstance(group, str) and group.lower() in ("c4z", "d4z")
        ks = (C.check_cubic(kernel_size, "kernel_size", name, axial=axial),) * 3
        self.stride = C.check_triple(stride, "stride", name, minimum=1)
        self.dilation = C.check_triple(dilation, "dilation", name, minimum=1)
        C.check_padding_mode(padding_mode, "padding_mode", name, G3.PADDING_MODES)
        G3.resolve_padding3d(padding, ks[0], dilation, self.stride, name)  # (early; set below)
        C.check_flag(bias, "bias", name)
        C.check_float_dtype(dtype, "dtype", name)
        grp = G3.check_conv3d_group(group, name)
        self._turned = isinstance(grp, IcosahedralGroup)  # filters turned off the grid
        basis = ("harmonic" if self._turned else "voxel") if basis is None else basis
        C.check_choice(basis, "basis", _BASES, name,
                       fix="'voxel': free k x k x k filters; 'harmonic': band-limited ones")
        if self._turned and basis == "voxel":
            raise ValueError(f"{name}: group={grp.name!r} turns its filters off the voxel "
                             "grid, which needs continuous filters: use basis='harmonic' (its "
                             "default); basis='voxel' filters can only be permuted (the cube's "
                             "groups)")
        settings = {"sigma": sigma, "frequencies_cutoff": frequencies_cutoff, "rings": rings}
        given = [f"{arg}={v!r}" for arg, v in settings.items() if v is not None]
        if basis == "voxel" and given:
            raise ValueError(f"{name}: {given[0]} sets the harmonic basis, but basis='voxel' "
                             f"has free k x k x k filters: drop it or use basis='harmonic'")
        self.basis = basis
        self.sigma, self.frequencies_cutoff, self.rings = BS.normalize_settings(
            ks[0], sigma, frequencies_cutoff, rings, name, spatial_dims=3)
        self._basis_spec = BS.resolve_settings(ks[0], self.sigma, self.frequencies_cutoff,
                                              self.rings, name, spatial_dims=3)
        self._num_basis = (len(voxel_basis(ks[0], self._basis_spec)) if basis == "harmonic"
                           else ks[0] ** 3)
        if self._num_basis == 0:
            raise ValueError(f"{name}: the harmonic basis is empty for kernel_size={ks[0]} "
                             f"({', '.join(given)}): raise frequencies_cutoff, add rings or "
                             "use basis='voxel'")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, ks
        self.padding, self.groups, self.padding_mode = padding, groups, padding_mode
        self.group = grp
        self.in_type = FieldType.trivial(grp) if self.lifting else FieldType.regular(grp)
        self.out_type = FieldType.regular(grp)
        self.fiber_in = 1 if self.lifting else int(grp.order)
        self.fiber_out = int(grp.order)
        factory = {"device": device, "dtype": dtype}
        k, c_in = ks[0], in_channels // groups
        per_filter = (k, k, k) if basis == "voxel" else (self._num_basis,)
        shape = ((out_channels, c_in, *per_filter) if self.lifting
                 else (out_channels, c_in, self.fiber_in, *per_filter))
        self.weight = nn.Parameter(torch.empty(shape, **factory))
        if basis == "harmonic":  # (n, k^3), filled by reset_parameters
            self.register_buffer("filter_basis", torch.empty(0, **factory), persistent=False)
        if not self.lifting:  # (|G|, |G|), filled by reset_parameters
            self.register_buffer("group_basis", torch.empty(0, **factory), persistent=False)
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        # integer tables, plain attributes (nn/_tables.py: not buffers)
        self.expansion_table = torch.empty(0, dtype=torch.long, device=device)
        self.bias_index = torch.empty(0, dtype=torch.long, device=device)
        self.reset_parameters()

    # --- parameters and derived buffers ----------------------------------------------------
    def reset_parameters(self) -> None:
        """Fill the derived buffers and tables, draw the weight and zero the bias.

        The weight is drawn from ``N(0, std^2)``, ``std = sqrt(init_gain2 / fan_in)`` with
        ``fan_in = C_in/groups * F_in * k^3``: every output slot sums ``fan_in`` distinct
        weights times inputs (the expanded filter permutes one filter), so on unit-variance
        input each slot has second moment ``init_gain2 = 1``, the rule of the planar group
        convs (``nn.init.kaiming_normal_``'s for ``nn.Conv3d`` with gain 1). With
        ``basis="harmonic"`` the ``n`` coefficients of each voxel filter (unit-norm basis
        rows) are drawn with ``k^3 / n`` times that variance, so that every voxel filter has
        the same expected squared norm. The group axis of a group conv's weight is in the
        group's Fourier basis (orthonormal: the same distribution as one slot per element).

        Then the response to a slot-constant input (a lifting filter; a group conv's constant
        Fourier row) is made white over the output fiber's irreps
        (:mod:`equilayers.functional._white_init`: its invariant part shrinks to the share
        an i.i.d. regular field has, ``1/|G|``, with the expected energy unchanged), as
        escnn's init does; without it the 3-D U-Nets started from mostly invariant features
        and trained slower (docs/training.md, "3-D init and parametrization").

        With ``basis="harmonic"`` a group conv's Fourier coefficients are escnn's, of element
        norm ``sqrt(d / |G|)`` (:meth:`_element_norms`): the draw is divided by it, so the
        filters' distribution is the one above."""
        self._fill_derived(self.weight.device)
        with torch.no_grad():
            nn.init.normal_(self.weight, 0.0, math.sqrt(self.init_gain2 / self._fan_in()))
            if not self.weight.is_meta:
                m = (IC.ico_white_map(self.group, self.kernel_size[0], self._basis_spec)
                     if self._turned else white_map(self.group, self.kernel_size[0],
                                                    self._basis_spec, self.basis == "harmonic")
                     ).to(self.weight)
                part = self.weight if self.lifting else self.weight[:, :, 0]
                if self._turned and not self.lifting:  # the other rows: the turned energy
                    self.weight[:, :, 1:].mul_(IC.ico_energy_scale(
                        self.group, self.kernel_size[0], self._basis_spec))
                part.copy_((part.flatten(2) @ m).view_as(part))
            if not self.lifting and self.basis == "harmonic":
                self.weight.div_(self._norms_on(self.weight).to(self.weight.dtype))
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def _fan_in(self) -> float:
        """The number of weights times inputs an output slot sums, on average."""
        return self.in_channels // self.groups * self.fiber_in * self._num_basis

    @D.normal_tensors
    def _fill_derived(self, device: torch.device) -> None:
        """(Re)build the bases, in the weight's dtype (the state dict's after ``load_state_dict(
        ..., assign=True)``, as ``nn.Conv3d`` runs in it), the gather table and the bias index
        on ``device``: after ``reset_parameters``, ``.to()``, ``to_empty()`` and
        ``load_state_dict`` (so meta-device init gets real tables), and on the meta device
        itself (tables of their real shapes, so that a meta forward gives the output's shape,
        as ``nn.Conv3d``'s does).
        ``bias_index[j]`` is the field of output slot ``j``: the bias per slot is one
        ``index_select`` (cheaper in a training step than ``repeat_interleave``, and than
        adding the per-field bias by broadcasting: C4z 4 -> 4 k3 at 8^3, ~4% and ~1-2% of the
        conv's forward+backward, shuffled one-off timings)."""
        if self.basis == "harmonic":
            rows = (rotated_voxel_basis(self.group, self.kernel_size[0], self._basis_spec)
                    if self._turned else voxel_basis(self.kernel_size[0], self._basis_spec))
            self.filter_basis = rows.to(device=device, dtype=self.weight.dtype, copy=True)
        if not self.lifting:
            rows = weight_basis(self.group, dtype=torch.float64) * self._element_norms()[:, None]
            self.group_basis = rows.to(device=device, dtype=self.weight.dtype)
        for name, table in self._index_tables(device).items():
            setattr(self, name, table)

    def _index_tables(self, device) -> dict[str, torch.Tensor]:
        """The integer tables built afresh (what :func:`._tables.check_tables` compares)."""
        if self._turned:  # "ico": the slot table g^-1 h (a lifting conv needs none)
            table = (torch.empty(0, dtype=torch.long, device=device) if self.lifting
                     else IC.ico_slot_table(self.group, device))
            return {"expansion_table": table, "bias_index": torch.arange(
                self.out_channels, device=device).repeat_interleave(self.fiber_out)}
        return {"expansion_table": G3.expansion_table(
                    self.group, self.kernel_size[0], lifting=self.lifting,
                    in_channels=self.in_channels // self.groups, device=device),
                "bias_index": torch.arange(self.out_channels, device=device)
                .repeat_interleave(self.fiber_out)}

    def _apply(self, fn, recurse=True):
        # ``.to(memory_format=torch.channels_last)`` fails on 5-D tensors (nn.Conv3d's too): a
        # lifting weight (C_out, C_in, k, k, k) goes as its (C_out, C_in * k, k, k) view
        out = super()._apply(D._five_d_as_four_d(fn), recurse)
        if not self.weight.is_meta:
            self._fill_derived(self.weight.device)
        return out

    #: 3: a harmonic group conv's Fourier coefficients have escnn's element norms (version 2,
    #: 2026-12-05, had unit ones; 1, before that, one slot per element on the group axis).
    #: Older checkpoints are converted on load, as the planar group convs' are: only a state
    #: dict whose metadata says an older version (one without metadata is taken as this one's).
    _version = 3

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        if D.newer_checkpoint(self, prefix, local_metadata, error_msgs):
            return
        key = prefix + "weight"
        version = local_metadata.get("version", 3)
        if (not self.lifting and version < 3 and key in state_dict
                and isinstance(state_dict[key], torch.Tensor)):
            w = state_dict[key]
            state_dict[key] = (self._to_fourier(w) if version < 2 else
                               (w.double() / self._norms_on(w)).to(w.dtype))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if not self.weight.is_meta:
            self._fill_derived(self.weight.device)

    def _to_fourier(self, weight: torch.Tensor) -> torch.Tensor:
        """A weight with one slot per element on the group axis (version 1; escnn's filters
        read back) in this version's coordinates: the inverse of :meth:`voxel_filter`'s
        first step, ``v[k] = sum_h F[k, h] w[h] / s[k]`` (``s``: :meth:`_element_norms`). A
        lifting weight has no group axis."""
        if self.lifting:
            return weight
        fourier = weight_basis(self.group, dtype=torch.float64, device=weight.device)
        v = from_fourier(weight.double(), fourier.t())
        return (v / self._norms_on(v)).to(weight.dtype)

    def _element_norms(self) -> torch.Tensor:
        """``(|G|,)`` float64: the factor on each Fourier row of the group axis, ``s[k] =
        sqrt(d_k / |G|)`` (``d_k`` the dimension of row ``k``'s irrep) with
        ``basis="harmonic"``, 1 with ``basis="voxel"``. With ``s`` the expanded filter of one
        unit coefficient has norm ``sqrt(d_k)``, as escnn's ``R3Conv`` basis elements (the
        planar harmonic convs' too); with 1 it is ``sqrt(|G|)``. Adam steps each coefficient
        alike, so this sets how far a step moves the filters: with unit norms the harmonic
        O U-Net started slower than escnn's (docs/training.md, "3-D init and
        parametrization"); the voxel basis, the planar pixel convs' analogue, keeps 1 (the
        same probe found no gain for it)."""
        n = int(self.group.order)
        if self.basis != "harmonic":
            return torch.ones(n, dtype=torch.float64, device="cpu")
        return (fourier_row_dims(self.group) / n).sqrt()

    def _norms_on(self, w: torch.Tensor) -> torch.Tensor:
        """:meth:`_element_norms` shaped to divide a weight ``w`` along its group axis."""
        return self._element_norms().to(w.device).view(-1, *([1] * (w.dim() - 3)))

    # --- forward ---------------------------------------------------------------------------
    def expanded_filter(self) -> torch.Tensor:
        """The expanded filter ``(C_out * |G|, C_in * F_in // groups, k, k, k)`` of the
        current weight (one ``index_select``; differentiable). Training forwards expand the
        weight on every call; eval forwards with autograd off reuse the last expanded filter
        (and bias per slot) only while the weight and bias still equal the copies they were
        made from and the tables are the same tensors at the same versions
        (:mod:`equilayers.nn._eval_filter`), so whatever changed them is seen by the next
        forward. With ``basis="harmonic"`` the voxel filters are first the weight's
        coefficients times the basis rows (one matmul). The weight and bias must have the
        shapes the layer was built with (``ValueError`` otherwise: :meth:`_checked_params`)."""
        self._checked_params()
        check_tables(self, lambda: self._index_tables(self.weight.device))
        return D.in_weight_dtype(self)._expand()

    def _checked_params(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight and bias, their shapes checked against the built ones, which the tables
        and bases read them in (:func:`._param_shapes.checked`: ``ValueError`` otherwise)."""
        per = self.kernel_size if self.basis == "voxel" else (self._num_basis,)
        fiber = () if self.lifting else (self.fiber_in,)
        shape = (self.out_channels, self.in_channels // self.groups, *fiber, *per)
        return (checked(self, "weight", self.weight, shape),
                checked(self, "bias", self.bias, (self.out_channels,)))

    def _expand(self) -> torch.Tensor:
        """:meth:`expanded_filter` without the tables' check (the forward has run it)."""
        if self._turned:
            w = self.weight if self.lifting else from_fourier(self.weight, self.group_basis)
            return IC.ico_expand(w, self.filter_basis, None if self.lifting else table_on(
                self.expansion_table, w.device), self.kernel_size[0])
        w = self.voxel_filter()
        return G3.expand_filter3d(w, table_on(self.expansion_table, w.device))

    def voxel_filter(self) -> torch.Tensor:
        """The ``k x k x k`` filters the weight stands for, one per element on a group conv's
        group axis: the weight, its group axis first taken from the group's Fourier basis
        to one slot per element (group convs, ``w[h] = sum_k F[k, h] weight[k]``,
        :func:`~equilayers.groups.group_fourier_basis`; with ``basis="harmonic"`` row ``k``
        times its element norm ``s[k]``, :meth:`_element_norms`), then with
        ``basis="harmonic"`` its coefficients times the basis rows, ``(..., n) ->
        (..., k, k, k)`` (the rows are :func:`~equilayers.functional.harmonic_voxel_basis`
        of the layer's settings). The forward is the functional twin
        (:func:`~equilayers.functional.lifting_conv3d` /
        :func:`~equilayers.functional.group_conv3d`) of these filters. ``"ico"``: the filters
        unturned; its slots turn the continuous filters (:meth:`expanded_filter`)."""
        w: torch.Tensor = self.weight
        if not self.lifting:
            w = from_fourier(w, self.group_basis)
        if self.basis == "voxel":
            return w
        k = self.kernel_size[0]  # ("ico": the unturned rows, slot 0 of the turned basis)
        rows = self.filter_basis[0] if self._turned else self.filter_basis
        return (w @ rows).unflatten(-1, (k, k, k))

    @D.parametrized_once  # (a parametrized weight: evaluated once per call)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_once(self, x, (self.in_channels, self.kernel_size, self._pad, self.stride,
                                   self.dilation, self.padding_mode, self.group),
                         lambda: self._forward_checks(x))
        check_tables(self, lambda: self._index_tables(self.weight.device))
        weight, bias = eval_filter(self, (self.groups, self.lifting, self.basis),
                                   self._checked_params(), self._filter_and_bias)
        return G3.conv3d_expanded(x, weight, bias, self.fiber_out,
                                  self.stride, self._pad, self.dilation, self.groups,
                                  self.padding_mode, what=type(self).__name__, checked=True)

    def _filter_and_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The expanded filter and the bias per output slot."""
        bias = (None if self.bias is None
                else select(self.bias, 0, table_on(self.bias_index, self.bias.device)))
        return D.in_weight_dtype(self)._expand(), bias  # (the forward has checked the tables)

    def _forward_checks(self, x: torch.Tensor, output_padding=None) -> bool:
        """The input checks, then the exactness warning; whether both are settled for inputs
        like ``x`` (through :func:`._checks.check_input_once`, whose key holds everything they
        read, so a like input skips them)."""
        self._input_checks(x)
        return self._check_exact(x, output_padding)

    def _input_checks(self, x: torch.Tensor) -> None:
        """Rank, fields, fiber, dtype, the meta weight, the kernel fits."""
        name = type(self).__name__
        G3.check_input3d(x, self.lifting, self.in_channels, self.fiber_in, name)
        if self.weight.is_meta and not x.is_meta:
            raise RuntimeError(f"{name}: the weight is on the meta device; materialize the "
                               "model first (load_state_dict(..., assign=True), or to_empty() "
                               "then reset_parameters())")
        if self.transposed:  # (its windows fit any input that has voxels)
            GT.check_spatial(x, 3, name)
        else:
            G3.check_fits(x, self.kernel_size[0], self._pad,
                          C.check_triple(self.dilation, "dilation", name), self.padding_mode, name)

    _warned: bool = False

    def _check_exact(self, x: torch.Tensor, output_padding=None) -> bool:
        """Warn once per module at the first input size (and, transposed, output padding: the
        module's unless given) where the window grid breaks exact equivariance; whether that
        is settled for this size (:func:`._exactness.warn_if_inexact3d`)."""
        return warn_if_inexact3d(self, x, output_padding)

    def _resolve_padding(self, padding) -> tuple[int, ...]:
        """``F.pad``'s 6-tuple for ``padding`` at the current kernel, dilation and stride."""
        if getattr(self, "transposed", False):
            GT.transposed_padding(padding, type(self).__name__, 3)  # it crops: no string
        return G3.resolve_padding3d(padding, self.kernel_size, self.dilation, self.stride,
                                    type(self).__name__)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size[0]}, "
             f"group={self.group.name!r}")
        if self.stride != (1, 1, 1):
            s += f", stride={self.stride}"
        if self.padding != 0:
            s += f", padding={self.padding!r}"
        s += D._conv_options_repr(self, 3)
        if self.basis != ("harmonic" if self._turned else "voxel"):  # ("ico": harmonic only)
            s += f", basis={self.basis!r}"
        if self.basis == "harmonic":
            s += BS.settings_repr(self.sigma, self.frequencies_cutoff, self.rings)
        return s


_SHARED_DOC = """
    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device, dtype: as ``nn.Conv3d`` (channels count fields; the kernel
            is cubic, ``k x k x k``; ``padding`` also ``"same"``/``"valid"``).
        group: a cube group: ``"o"`` (24 rotations, the default), ``"oh"`` (48, with the
            inversion), ``"c4z"`` (4 rotations about the depth axis), ``"d4z"`` (8: those and
            the flip of the width axis), ``"t"`` / ``"th"`` (12, the tetrahedral rotations; 24,
            with the inversion); element order and axes in :mod:`equilayers.groups._cubic`.
            Or ``"ico"`` (60, the icosahedral rotations) or ``"ih"`` (120, with the
            inversion; :mod:`equilayers.groups._ico`; ``basis="harmonic"`` only, its
            default): their filters are continuous functions turned by each element and
            sampled (:mod:`equilayers.functional._ico_conv`).
        basis: ``"voxel"`` (the default, also ``None``): free ``k x k x k`` filters
            (``k^3`` numbers each); ``"harmonic"``: band-limited filters, Gaussian shells
            times real spherical harmonics sampled on the grid
            (:mod:`equilayers.functional._voxel_basis`; 10 numbers each for ``k = 3``, 19
            for ``k = 5``): escnn's ``R3Conv`` function space for the cube's regular
            fields, with its parameter count. Both are exact on the grid. On the
            benchmarks' small 3-D sets the harmonic basis trained better: 13.0% against
            7.4% on noisy pentacubes under random rotations (10 seeds; the plain 3-D CNN
            7.3%; level on 3-D Tetris), and its two-field O U-Net left the 300-step
            plateau on 3 seeds of 3 (94.7% mIoU with the pieces turned; the voxel one on 1
            of 3, 42.9%); ``UNet3d`` defaults to it
            (``benchmarks/results/pentacubes-seeds10/``, ``cpu-segmentation3d.md``).
        sigma, frequencies_cutoff, rings: the shells of ``basis="harmonic"``, with escnn's
            meaning and defaults (:mod:`equilayers.functional._basis_settings`: rings ``0 ..
            k // 2``, for an even ``k`` ``1 .. k/2 - 1``; only ``J = 0`` at the centre).

    Shape:
        Output ``(B, C_out, |G|, D', H', W')`` with, per dim,
        ``n' = floor((n + 2 p - dilation (k - 1) - 1) / stride) + 1``.

    Equivariance:
        Exact for every element of the group (each is a signed permutation of the voxels, so
        the expanded filter permutes one filter): ``f(g . x) = g . f(x)`` to float rounding
        when the windows tile the input from both ends, ``(n + 2 p - dilation (k - 1) - 1) %
        stride == 0`` on every dim the group moves (stride 1 always; stride 2 on odd sizes with
        odd ``k``), with symmetric padding and equal options on the dims it trades (all three
        for o/oh, height and width for c4z/d4z; their sizes may differ: a rotation permutes
        them with the dims). The module warns once otherwise.
        ``"ico"``/``"ih"``: exact as above for its 12 / 24 grid elements (``"t"``/``"th"``);
        the others leave the grid and are approximate: on smooth volumes (noise blurred by 2
        voxels, in the inscribed ball) an "ico" stack of three convs errs by 0.14-0.19 of
        the output with ``k = 3`` and 0.075-0.09 with ``k = 5``, where turning the input
        forth and back alone errs by 0.10 and plain ``nn.Conv3d`` stacks by 1.4-1.5
        (tests/test_ico.py). The init draws every output slot with second moment 1 on
        unit-variance input (``"ico"``/``"ih"``: on average over the slots).
"""


class LiftingConv3d(_GroupConv3dBase):
    __doc__ = """Lifting convolution of volumes ``(B, C_in, D, H, W)`` to regular fields of a
    cube group ``(B, C_out, |G|, D', H', W')``.

    ``out[o, g] = sum_c in[c] (*) (g . psi[o, c]) + b[o]``: slot ``g`` correlates with the
    ``k x k x k`` filter moved by ``g`` (``(*)`` is ``F.conv3d``'s cross-correlation).

    Functional twin: :func:`~equilayers.functional.lifting_conv3d`.
    """ + _SHARED_DOC + """
    Example:
        >>> import torch
        >>> from equilayers.nn import LiftingConv3d
        >>> LiftingConv3d(2, 3, 3, padding=1, group="o")(torch.randn(1, 2, 5, 5, 5)).shape
        torch.Size([1, 3, 24, 5, 5, 5])
    """
    lifting = True


class GroupConv3d(_GroupConv3dBase):
    __doc__ = """Group convolution between regular fields of a cube group
    ``(B, C_in, |G|, D, H, W) -> (B, C_out, |G|, D', H', W')``.

    ``out[o, g] = sum_{c, h} in[c, h] (*) (g . psi[o, c])[h] + b[o]`` where ``g . psi`` moves
    the filter spatially and permutes its slots, ``(g . psi)[h] = g . psi[g^-1 h]``; the
    weight ``(C_out, C_in // groups, |G|, k, k, k)`` (``(C_out, C_in // groups, |G|, n)``
    basis coefficients with ``basis="harmonic"``) holds its group axis in the group's
    Fourier basis (:func:`~equilayers.groups.group_fourier_basis`, from the irreps, as
    escnn's parametrization; the planar group convs do the same): the same filters as one
    slot per element, but the coordinates Adam scales one by one, and the 3-D U-Nets train
    much faster in them (docs/training.md, "3-D init and parametrization").
    :meth:`voxel_filter` gives the filters per element, which the functional twin takes.

    Functional twin: :func:`~equilayers.functional.group_conv3d`.
    """ + _SHARED_DOC + """
    Example:
        >>> import torch
        >>> from equilayers.nn import GroupConv3d
        >>> GroupConv3d(2, 3, 3, padding=1, group="c4z")(torch.randn(1, 2, 4, 5, 5, 5)).shape
        torch.Size([1, 3, 4, 5, 5, 5])
    """
    lifting = False
