"""Lifting and group convolutions as ``nn.Conv2d`` look-alikes: pixel filters for p4, p4m and
their subgroups, steerable filters for cN, dN (any N), so2 and o2."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .. import _checks as C
from ..functional import _axial3d as AX
from ..functional import _basis_settings as BS
from ..functional import _gconv as G
from ..functional import _steerable as S
from ..functional import _steerable_expand as SE
from ..functional._conv_fields import conv_field_types
from ..groups import FieldType, GroupLike, PlanarGroup, get
from ..groups._fourier_basis import weight_basis
from . import _derived as D
from ._checks import check_input_once
from ._conv_base import _ExactConvMixin
from ._eval_filter import EvalFilterMixin, eval_filter
from ._exactness import warn_at_user
from ._group_conv_ckpt import OldCheckpoints2d
from ._group_conv_doc import SHARED_DOC as _SHARED_DOC
from ._param_shapes import checked
from ._tables import check_tables, table_on
from ._typed import Typed

__all__ = ["LiftingConv2d", "GroupConv2d"]

_BASES = ("pixel", "harmonic")


class _GroupConvNd(OldCheckpoints2d, D.BasisRecorded, D.PickleStamped, EvalFilterMixin, Typed,
                  _ExactConvMixin):
    """Shared machinery: validation, the weight (its shape decided by the basis), the derived
    buffers (basis tables, gather indices), the expanded filter (one private method
    dispatching on ``self.basis``, run by every training forward; eval forwards reuse it while
    checked unchanged, :mod:`._eval_filter`) and the exactness warning."""

    lifting: bool = False
    in_type: FieldType  # set in __init__
    out_type: FieldType
    # derived buffers (which ones a layer registers depends on its basis and reps)
    filter_basis: torch.Tensor
    group_basis: torch.Tensor
    basis_scale: torch.Tensor
    # integer tables (nn/_tables.py), not buffers: the filter's gather, the field of each slot
    expansion_index: torch.Tensor
    bias_index: torch.Tensor  # (regular output fields: the bias per slot is one gather)
    _table_names = ("expansion_index", "bias_index")
    #: what the basis, the tables and the weight's shape are built from: fixed at construction
    #: (:class:`~._derived.FixedArgs`; a later sigma was ignored, then applied by a ``.to()``)
    _fixed_args = ("group", "basis", "max_order", "in_max_order", "sigma", "frequencies_cutoff",
                   "rings", "kernel_size", "in_channels", "out_channels", "groups", "lifting",
                   "transposed")
    _fixed_reason = "the weight's shape and the derived bases and tables are built from it"

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, *, group: GroupLike = "p4", basis: str | None = None,
                 max_order: int | None = None, in_max_order: int | None = None,
                 sigma: float | Sequence[float] | None = None,
                 frequencies_cutoff: BS.Cutoff | None = None,
                 rings: Sequence[float] | None = None) -> None:
        # a transposed subclass's output_padding, set before this runs (the forward convs'
        # signature is nn.Conv2d's: no output_padding)
        output_padding = self.__dict__.pop("_output_padding_arg", 0)
        super().__init__()
        name = type(self).__name__
        self._set_conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation,
                            groups, padding_mode, output_padding)
        C.check_flag(bias, "bias", name)
        C.check_float_dtype(dtype, "dtype", name)
        grp = get(group)
        if grp.spatial_dim != 2:
            steerable = ("" if grp.is_finite else "its harmonic fields take SteerableConv"
                         f"{'Transpose' if self.transposed else ''}3d; ")
            raise ValueError(f"{name}: group={grp.name!r} acts on volumes: {steerable}use "
                             f"{name.replace('2d', '3d')} for the cube's groups")
        settings = G._settings(sigma, frequencies_cutoff, rings)
        if basis is None:
            basis = ("pixel" if grp.pixel_exact and max_order is None
                     and in_max_order is None and not settings else "harmonic")
        if basis not in _BASES:
            raise ValueError(f"{name}: unknown basis {basis!r}; use 'pixel' (c1, c2, c4, d1, d2, "
                             "d4) or 'harmonic' (any group)")
        if (basis == "harmonic" or not grp.pixel_exact) and not isinstance(grp, PlanarGroup):
            raise ValueError(  # a user's group (register_group): pixel filters only
                f"{name}: group {grp.name!r} " + ("" if grp.pixel_exact else "has elements "
                "off the pixel grid, which pixel filters cannot follow, and ") + "is not a "
                "planar group (cN, dN, so2, o2), the groups steerable filters take: " + (
                    "use basis='pixel'" if grp.pixel_exact else "use a planar cN / dN"))
        if basis == "pixel" and not grp.pixel_exact:
            raise ValueError(
                f"{name}: group {grp.name!r} has rotations off the pixel grid, so it needs "
                f"steerable filters: use basis='harmonic' (the default for it); pixel-filter "
                f"groups: {', '.join(G.PIXEL_GROUPS)} (aliases p4 = c4, p4m = d4)")
        if basis == "pixel" and (max_order is not None or in_max_order is not None):
            arg, v = (("max_order", max_order) if max_order is not None
                      else ("in_max_order", in_max_order))
            raise ValueError(f"{name}: {arg}={v!r} asks for harmonic fields, but basis='pixel' "
                             f"gives regular fields of |G| slots: drop {arg} or use "
                             "basis='harmonic'")
        if basis == "pixel" and settings:
            arg, v = next(iter(settings.items()))
            raise ValueError(f"{name}: {arg}={v!r} sets the steerable basis, but basis='pixel' "
                             f"has full k x k filters: drop {arg} or use basis='harmonic'")
        # the basis settings, validated and normalized (a callable cutoff becomes its per-ring
        # caps, so the module pickles); None where the effective basis is the default one
        self.sigma, self.frequencies_cutoff, self.rings = BS.normalize_settings(
            self.kernel_size[0], sigma, frequencies_cutoff, rings, name)
        self._basis_spec = BS.resolve_settings(self.kernel_size[0], self.sigma,
                                              self.frequencies_cutoff, self.rings, name)
        self.in_type, self.out_type = conv_field_types(grp, self.lifting, max_order,
                                                       in_max_order, name)
        self.group, self.basis = grp, basis
        self.max_order, self.in_max_order = self.out_type.max_order, self.in_type.max_order
        fiber_out, fiber_in = self.out_type.fiber_size, self.in_type.fiber_size
        # conv_field_types gives both types a group and a max_order: their sizes are known
        assert fiber_out is not None and fiber_in is not None
        self.fiber_out, self.fiber_in = fiber_out, fiber_in
        factory = {"device": device, "dtype": dtype}
        if basis == "harmonic":  # filled (once) by reset_parameters
            self._num_basis = self._basis_size()
            if self._num_basis == 0 and self._basis_spec is not None:
                given = BS.settings_repr(self.sigma, self.frequencies_cutoff, self.rings)
                raise ValueError(f"{name}: the steerable basis is empty with {given[2:]} for "
                                 f"{self.in_rep}->{self.out_rep} fields of {grp.name}: raise "
                                 "frequencies_cutoff or add rings")
            self._warn_unreached_orders()
            self.register_buffer("filter_basis", torch.empty(0, **factory), persistent=False)
        self.weight = nn.Parameter(torch.empty(self._weight_shape(), **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        # integer tables, plain attributes (nn/_tables.py: not buffers)
        self.expansion_index = self.bias_index = torch.empty(0, dtype=torch.long, device=device)
        if self._fourier_axis:  # the group axis of the weight is in the group's Fourier basis
            self.register_buffer("group_basis", torch.empty(0, **factory), persistent=False)
        if basis == "harmonic" and self.out_rep == "regular":  # sqrt(d_out) per element
            self.register_buffer("basis_scale", torch.empty(0, **factory), persistent=False)
        self.reset_parameters()

    # --- the basis decides the weight and the expansion ------------------------------------
    def _weight_shape(self) -> tuple[int, ...]:
        k = self.kernel_size[0]
        c_in = self.in_channels // self.groups
        if self.basis == "pixel":
            return ((self.out_channels, c_in, k, k) if self.lifting
                    else (self.out_channels, c_in, self.fiber_in, k, k))
        return (self.out_channels, c_in, self._num_basis)

    def _basis_size(self) -> int:
        """The number of basis elements (from the process-wide float64 cache)."""
        k = self.kernel_size[0]
        if self.out_rep == "regular":  # compact table (|G|, J, k, k); weight (h, j) or (j)
            j = S._cached(self.group, "trivial", "regular", k, 0, 0, self._basis_spec).shape[1]
            return j if self.lifting else int(self.group.order) * j
        return S._cached(self.group, self.in_rep, self.out_rep, k, self.in_max_order or 0,
                         self.max_order or 0, self._basis_spec).shape[0]

    def _warn_unreached_orders(self) -> None:
        """Warn at construction of the harmonic output orders that no basis function reaches
        (always 0: order 3 from images needs frequency 3, which a 5x5 filter's rings do not
        carry) or only aliased frequencies reach (``BS.aliasing_warning``)."""
        k, dead = self.kernel_size[0], []
        if self.out_rep == "harmonic":
            dead = AX.unreached_orders(self.group, self.in_rep, k, self.in_max_order or 0,
                                       self.max_order or 0, self._basis_spec)
        if dead:
            warn_at_user(f"{type(self).__name__}: no basis function of kernel_size={k} reaches "
                          f"output rotation order(s) {dead} of {self.group.name} (max_order="
                          f"{self.max_order}): those slots are always 0. Use a larger "
                          "kernel_size or a lower max_order")
        if alias := BS.aliasing_warning(type(self).__name__, self.group, k, self._basis_spec,
                                        self.in_rep, self.out_rep, self.in_max_order or 0,
                                        self.max_order or 0, dead):
            warn_at_user(alias)

    def _build_basis(self, device, dtype) -> torch.Tensor:
        """Regular fields: the compact table ``(|G|, J, k, k)`` of
        :func:`~equilayers.functional._steerable.regular_table` (``|G|`` times smaller than
        the dense basis; the expansion gathers the weight through ``expansion_index``, the
        slot of ``a^-1 b``). Harmonic fields: the dense ``steerable_basis``."""
        k = self.kernel_size[0]
        settings = {"sigma": self.sigma, "frequencies_cutoff": self.frequencies_cutoff,
                    "rings": self.rings}
        if self.out_rep == "regular":
            return S.regular_table(self.group, k, dtype=dtype, device=device, **settings)
        # steerable_basis without re-checking the arguments the constructor checked
        basis = S._cached(self.group, self.in_rep, self.out_rep, k, self.in_max_order or 0,
                          self.max_order or 0, self._basis_spec)
        return (basis * self._irrep_scale().view(-1, 1, 1, 1, 1)).to(dtype=dtype, device=device)

    @property
    def _fourier_axis(self) -> bool:
        """Whether the weight has a group axis (regular -> regular group convs), which is
        stored in the group's Fourier basis (:func:`~equilayers.groups.group_fourier_basis`:
        escnn's parametrization through the irreps; the same filters and the same init
        distribution as one slot per element, and measured to train better with Adam; a
        group registered by the user, whose irreps are not written here, keeps one slot per
        element: :func:`~equilayers.groups._fourier_basis.weight_basis`)."""
        return not self.lifting and self.in_rep == "regular" and self.out_rep == "regular"

    def _expand(self) -> torch.Tensor:
        """The expanded filter ``(C_out * F_out, C_in * F_in // groups, k, k)`` (the weight's
        shape checked first: the tables and bases read it in the built one)."""
        w = checked(self, "weight", self.weight, self._weight_shape())
        if self.basis == "pixel":
            if self._fourier_axis:
                w = G.from_fourier(w, self.group_basis)
            return G.gather_expanded(w, table_on(self.expansion_index, w.device))
        if self.out_rep == "regular":
            if self.lifting:
                return SE.expand_regular(w, self.filter_basis, scale=self.basis_scale)
            idx = table_on(self.expansion_index, w.device)
            return SE.expand_regular(w, self.filter_basis, idx, self.group_basis, self.basis_scale)
        return SE.expand_steerable(w, self.filter_basis, self.groups)

    def _slot_bias(self) -> torch.Tensor | None:
        """The bias per output slot ``(C_out * F_out,)``: a regular field's value on every
        slot; a harmonic field's on its order-0 slot only (the other orders rotate); the
        bias's shape checked first."""
        bias = checked(self, "bias", self.bias, (self.out_channels,))
        if bias is None or self.out_rep == "harmonic":
            return None if bias is None else G._bias_slot0(bias, self.fiber_out)
        # one index_select: fewer aten ops than repeat_interleave (results/host-conv.md)
        return G.select(bias, 0, table_on(self.bias_index, bias.device))

    #: ``gain**2`` of the init: the output's second moment over the input's. 1 (the second
    #: moment is preserved, escnn/e2cnn's choice); 2 is He et al.'s factor for a ReLU, which
    #: trained worse in the accuracy family (docs/training.md, "Init").
    init_gain2: float = 1.0

    def reset_parameters(self) -> None:
        """Fill the derived buffers (:meth:`_fill_derived`) and draw the weight (a generalized
        He init on the expanded filter) and the bias (zeros).

        The weight is drawn from ``N(0, std^2)`` with ``std`` chosen on the *expanded* filter,
        so that for an input of i.i.d. slots with unit second moment every output slot of a
        regular field, and every rotation order of a harmonic field, has second moment
        ``gain^2 = init_gain2 = 1``, whatever the group, basis or fields (escnn's and e2cnn's
        scale; He et al.'s ``gain^2 = 2`` for ReLU networks measured 1.8 points lower on the
        rotated-digit p4 model of ``benchmarks/bench_accuracy.py``, 3 seeds, with batch norm
        and Adam, where the scale sets the step size relative to the weights):

        - pixel basis: each output slot sums ``fan_in = C_in/groups * F_in * k * k`` distinct
          weights times inputs (the expanded filter permutes one filter), so
          ``std = gain / sqrt(fan_in)``, as ``nn.init.kaiming_normal_`` for ``nn.Conv2d``;
        - steerable basis: every unit-norm basis element lies in one block (input order or
          slot ``n`` -> output order ``m``) and puts energy ``1/F_m`` on each of ``m``'s
          ``F_m`` slots; a block of ``c_nm`` elements drawn with ``Var = gain^2 F_m / (C_in
          N_m c_nm)`` adds ``gain^2 / N_m`` to order ``m``, where ``N_m`` counts the input
          orders that reach ``m``: every order gets ``gain^2``, each input order an equal
          share (escnn's ``generalized_he_init`` balances its irreps the same way); regular
          fields have ``num_basis / |G|`` energy on every slot (one scalar std).

        The group axis of a regular -> regular weight is stored in the group's Fourier basis
        (orthonormal, so an i.i.d. draw has the same distribution as one per element).
        Measured on unit-variance Gaussian input (``tests/test_init.py``): every output slot
        (regular) or order (harmonic) std is within 15% of ``gain`` for every group, basis,
        field type and kernel size of the case table; not so the off-grid slots of small
        kernels, whose turned, sampled filter has more energy (C8/D8 at 45 degrees: second
        moment 1.2 at ``k = 3``, 1.4-1.6 at ``k = 4``; docs/training.md). The bias starts
        at 0."""
        self._fill_derived(self.weight.device)
        with torch.no_grad():
            with torch.device("cpu"):  # host-side arithmetic, whatever the default device
                std = self._init_std()
            if isinstance(std, torch.Tensor):
                self.weight.normal_().mul_(std.to(self.weight.device, self.weight.dtype))
            else:
                nn.init.normal_(self.weight, 0.0, std)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def _init_std(self) -> float | torch.Tensor:
        """The weight's std: a float, or one per basis element ``(num_basis,)`` (harmonic
        output fields); see :meth:`reset_parameters`."""
        k = self.kernel_size[0]
        c_in = self.in_channels // self.groups
        if self.basis == "pixel":
            return math.sqrt(self.init_gain2 / (c_in * self.fiber_in * k * k))
        # the elements have norm sqrt(d_out) (steerable_basis): divided out here, so the
        # filters' distribution is that of unit-norm elements
        scale = self._irrep_scale()
        if self.out_rep == "regular":
            return math.sqrt(self.init_gain2 * self.fiber_out
                             / (c_in * max(self._num_basis, 1))) / scale
        assert self.in_rep is not None and self.out_rep is not None  # steerable: both set
        return AX.planar_init_std(self.group, self.in_rep, k, self.in_max_order or 0,
                                  self.max_order or 0, self._basis_spec, c_in,
                                  self.init_gain2, self.out_rep)

    @D.normal_tensors
    def _fill_derived(self, device: torch.device) -> None:
        """(Re)build the non-persistent buffers, which depend only on the constructor's
        arguments, on ``device`` in the weight's dtype (which follows ``.to()``, and the state
        dict's with ``load_state_dict(..., assign=True)``: a float32 build loaded from a
        float64 checkpoint gets float64 bases, as ``nn.Conv2d`` runs in float64 there).

        Called by :meth:`reset_parameters` and after every ``load_state_dict`` (on the loaded
        weight's device), so that a model built on the meta device and then materialized by
        ``to_empty()`` + ``load_state_dict()`` or by ``load_state_dict(..., assign=True)``
        gets real buffers, not meta or uninitialized ones."""
        dtype = self.weight.dtype
        if self._fourier_axis:
            self.group_basis = weight_basis(self.group, dtype=dtype, device=device)
        for name, table in self._index_tables(device).items():
            setattr(self, name, table)
        if self.basis == "pixel":
            return
        self.filter_basis = self._build_basis(device, dtype)
        if self.out_rep == "regular":
            # copy=True: in float64 on the CPU ``.to`` would return the process-wide cached
            # tensor itself, one object shared by every such conv
            self.basis_scale = self._irrep_scale().to(device, dtype, copy=True)

    def _index_tables(self, device) -> dict[str, torch.Tensor]:
        """The integer tables built afresh (what :func:`._tables.check_tables` compares)."""
        unused = torch.empty(0, dtype=torch.long, device=device)  # (harmonic: bias on slot 0)
        slots = (torch.arange(self.out_channels, device=device).repeat_interleave(self.fiber_out)
                 if self.out_rep == "regular" else unused)
        if self.basis == "pixel":
            index = G.expansion_index(self.group, self.in_channels // self.groups,
                                      self.kernel_size[0], lifting=self.lifting, device=device)
        else:
            index = (S.inverse_cayley_index(self.group, device)
                     if self.out_rep == "regular" and not self.lifting else unused)
        return {"expansion_index": index, "bias_index": slots}

    def _irrep_scale(self) -> torch.Tensor:
        """``sqrt(d_out)`` per basis element (float64, CPU): see ``steerable_basis``."""
        return S._irrep_scale(self.group, self.in_rep, self.out_rep, self.kernel_size[0],
                              self.in_max_order or 0, self.max_order or 0, self._basis_spec)

    def _apply(self, fn, recurse=True):
        # ``model.to(memory_format=torch.channels_last)`` converts every 4-D and 5-D tensor,
        # and channels_last does not exist for 5-D ones: a pixel group conv's weight
        # ``(C_out, C_in, |G|, k, k)`` is converted as the ``(C_out, C_in * |G|, k, k)`` that
        # it is to F.conv2d (a view back to 5-D; the expansion reads it through any strides).
        out = super()._apply(D._five_d_as_four_d(fn), recurse)
        # The derived buffers are rebuilt rather than converted: ``.double()`` then gets the
        # basis computed in float64 (not a float32 basis widened), ``to_empty()`` gets real
        # buffers, not uninitialized memory.
        if not self.weight.is_meta:
            self._fill_derived(self.weight.device)
        return out

    # --- forward ---------------------------------------------------------------------------
    def expanded_filter(self) -> torch.Tensor:
        """The expanded filter ``(C_out * F_out, C_in * F_in // groups, k, k)`` of the current
        weight, as the forward computes it (differentiable).

        Training forwards expand the weight on every call. In eval mode with autograd off the
        forward reuses the last expanded filter only while the weight and bias still equal
        (``torch.equal``) the values it was made from and the derived buffers are the same
        tensors at the same version (:mod:`equilayers.nn._eval_filter`), so whatever changed
        the weight (an optimizer step, fused or not, a ``.data`` edit, ``load_state_dict``,
        a parametrization, ``torch.func.functional_call``) is seen by the next forward. For
        inference at the cost of a plain ``nn.Conv2d``, convert the trained model once with
        :func:`equilayers.export` (docs/deployment.md).
        """
        check_tables(self, lambda: self._index_tables(self.weight.device))
        return D.in_weight_dtype(self)._expand()

    def _check_forward_input(self, x: torch.Tensor) -> None:
        """The input checks (rank, fields, fiber, dtype, the meta weight, the window fits the
        padded input, the padding), skipped for an input like the last checked one
        (:func:`._checks.check_input_once`)."""
        check_input_once(self, x, (self.in_channels, self.fiber_in, self.in_max_order,
                                   self.lifting, self.transposed, self.kernel_size, self._pad,
                                   self.dilation, self.padding_mode),
                         lambda: self._input_checks(x))

    def _input_checks(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        G.check_conv_input(x, 4 if self.lifting else 5, self.in_channels,
                       None if self.lifting else self.fiber_in, name, self.in_max_order)
        if self.weight.is_meta and not x.is_meta:
            raise RuntimeError(
                f"{name}: the weight is on the meta device (built with "
                "device='meta' or under torch.device('meta')); materialize the model first: "
                "model.load_state_dict(state_dict, assign=True), or model.to_empty(device=...) "
                "then load_state_dict(...) or reset_parameters()")
        if not self.transposed:  # (a transposed conv's windows fit any input)
            G.check_conv_fits(x, self.kernel_size[0], self._pad,
                              C.check_pair(self.dilation, "dilation", name), self.padding_mode,
                              name)

    def _filter_and_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The expanded filter and per-slot bias: computed, or in eval mode with autograd off
        reused while the weight, bias and derived buffers are unchanged
        (:mod:`._eval_filter`: checked on every call, never stale)."""
        settings = (self.basis, self.fiber_out, self.groups, self.lifting, self.transposed)
        check_tables(self, lambda: self._index_tables(self.weight.device))
        return eval_filter(self, settings, (self.weight, self.bias),
                           lambda: (D.in_weight_dtype(self)._expand(), self._slot_bias()))

    @D.parametrized_once  # (a parametrized weight: evaluated once per call)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_forward_input(x)
        self._check_exact(x)
        weight, bias = self._filter_and_bias()
        return G.conv_expanded(x, weight, bias, self.fiber_out, self.stride, self._pad,
                               self.dilation, self.groups, self.padding_mode,
                               what=type(self).__name__, checked=True)

    def extra_repr(self) -> str:
        s = self._conv_repr()
        if self.basis != "pixel" and self.group.pixel_exact and self.max_order is None:
            s += f", basis={self.basis!r}"
        if self.max_order is not None:
            s += f", max_order={self.max_order}"
        if self.in_max_order is not None and self.in_max_order != self.max_order:
            s += f", in_max_order={self.in_max_order}"
        if self.basis == "harmonic" and self._basis_spec is not None:
            s += BS.settings_repr(self.sigma, self.frequencies_cutoff, self.rings)
        return s


class LiftingConv2d(_GroupConvNd):
    __doc__ = """Lifting convolution: images ``(B, C_in, H, W)`` to group feature maps
    ``(B, C_out, F, H', W')`` (regular fields, ``F = |G|``, or harmonic, ``F = 2M+1``).

    ``out[o, g] = sum_c in[c] (*) (g . psi[o, c]) + b[o]``: slot ``g`` correlates with the
    filter transformed by ``g`` (``(*)`` is ``F.conv2d``'s cross-correlation).

    Functional twin: :func:`~equilayers.functional.lifting_conv2d`.
    """ + _SHARED_DOC + """
    Example:
        >>> import torch
        >>> from equilayers.nn import LiftingConv2d
        >>> LiftingConv2d(3, 8, 3, padding=1, group="p4m")(torch.randn(2, 3, 9, 9)).shape
        torch.Size([2, 8, 8, 9, 9])
        >>> LiftingConv2d(3, 8, 5, padding=2, group="so2", max_order=2)(
        ...     torch.randn(2, 3, 9, 9)).shape
        torch.Size([2, 8, 5, 9, 9])
    """
    lifting = True


class GroupConv2d(_GroupConvNd):
    __doc__ = """Group convolution between group feature maps
    ``(B, C_in, F_in, H, W) -> (B, C_out, F_out, H', W')`` (regular or harmonic fields).

    ``out[o, g] = sum_{c, h} in[c, h] (*) (g . psi[o, c])[h] + b[o]`` where ``g . psi`` moves
    the filter spatially and permutes its slots, ``(g . psi)[h] = g . psi[g^-1 h]``. Harmonic
    fields: ``psi`` obeys ``psi(g q) = rho_out(g) psi(q) rho_in(g)^-1`` (steerable basis).

    Functional twin: :func:`~equilayers.functional.group_conv2d`.
    """ + _SHARED_DOC + """
    Example:
        >>> import torch
        >>> from equilayers.nn import GroupConv2d
        >>> GroupConv2d(8, 4, 3, padding=1, group="p4")(torch.randn(2, 8, 4, 9, 9)).shape
        torch.Size([2, 4, 4, 9, 9])
        >>> GroupConv2d(8, 4, 5, padding=2, group="c8")(torch.randn(2, 8, 8, 9, 9)).shape
        torch.Size([2, 4, 8, 9, 9])
    """
    lifting = False
