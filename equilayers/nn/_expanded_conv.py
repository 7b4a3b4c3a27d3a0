"""A group convolution that holds a given expanded filter as-is (no basis, no weight sharing):
the target of :func:`equilayers.interop.from_escnn` for groups whose rotations leave the pixel
grid (c3, c8, d8, c16, ...)."""

from __future__ import annotations

import torch
from torch import nn

from .. import _checks as C
from .._checks import check_flag, check_float_dtype
from ..functional import _expanded_conv as E
from ..functional import _gconv as G
from ..groups import FieldType, GroupLike, get
from ._derived import parametrized_once
from ._group_conv import _ExactConvMixin
from ._param_shapes import checked
from ._typed import Typed

__all__ = ["ExpandedGroupConv2d"]


class ExpandedGroupConv2d(Typed, _ExactConvMixin):
    """Lifting or group convolution on regular fields of ``cN`` / ``dN`` (any N) whose
    *expanded* filter is stored densely, the form escnn's ``R2Conv.expand_parameters()`` (and
    ``export()``) produces.

    ``out[o, g] = sum_c in[c] (*) W[o, g, c] + b[o]``: one ``F.conv2d`` of the input viewed as
    ``(B, C_in * F_in, H, W)`` with ``W`` ``(C_out * |G|, C_in * F_in // groups, k, k)`` (fields
    major, slots minor on both sides, slot ``i`` = ``group.elements()[i]``), then the output
    viewed as ``(B, C_out, |G|, H', W')``. ``F_in`` is 1 for a lifting conv (``lifting=True``,
    images in) and ``|G|`` otherwise. The bias is one value per output field, added to every
    slot.

    Nothing ties ``W``'s slots to each other here: the layer is exactly as equivariant as the
    filter it is given, so it is meant to be *loaded* (by
    :func:`~equilayers.interop.from_escnn`, ``load_state_dict`` or :meth:`from_filter`), not
    trained from scratch. ``reset_parameters`` sets ``W = 0`` and ``b = 0`` (trivially
    equivariant), and ``weight`` / ``bias`` are created with ``requires_grad=False``; enabling
    gradients lets an optimizer move every entry of ``W`` freely, which keeps no symmetry: for
    training, use :class:`~equilayers.nn.GroupConv2d` (weight sharing by construction).
    :meth:`grid_equivariance_error` measures how far a filter is from exact on the grid.

    Functional twin: :func:`~equilayers.functional.expanded_group_conv2d`.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups: as
            ``nn.Conv2d`` (square ``kernel_size``; ``padding`` an int, a pair, ``"same"`` or
            ``"valid"``). Channels count *fields*.
        bias, padding_mode, device, dtype: as ``nn.Conv2d``.
        group: ``"cN"`` or ``"dN"`` (any N), or a finite :class:`~equilayers.groups.Group`.
        lifting: ``True``: images ``(B, C_in, H, W)`` in (``in_rep = "trivial"``); ``False``
            (default): regular fields ``(B, C_in, |G|, H, W)`` in.

    Shape:
        ``H' = floor((H + pad_top + pad_bottom - dilation * (k - 1) - 1) / stride) + 1`` (as
        ``nn.Conv2d``), the same for ``W'``; output fiber ``|G|``.

    Equivariance:
        Exactly that of the filter. For escnn's filters (:func:`~equilayers.interop.from_escnn`):
        exact, to float rounding (measured 5e-7 relative in float32), on the grid subgroup (c4 of
        c8/c16, d4 of d8, c2 of c6, c1 of c3) under the same conditions as
        :class:`~equilayers.nn.GroupConv2d` (see
        :func:`equilayers.functional.exactness_problems`; the first inexact forward warns);
        approximate off the grid, because the filter is sampled on pixels: measured for
        converted escnn ``R2Conv`` s (k=5, 2 -> 3 fields, c8 / d8 / c16) at 45 degrees on a
        41 x 41 input, 5.4-6.5% relative error on Gaussian-smoothed noise (sigma 1 px;
        the interpolation floor of rotating the output forth and back is 15-17%), 1.2-1.7% at
        sigma 2 px, 0.4-0.9% (lifting) on skimage's camera image resized to 41 x 41 and
        smoothed with sigma 1 px (escnn's init, seeds 0-2).

    Example:
        >>> import torch
        >>> from equilayers.nn import ExpandedGroupConv2d
        >>> conv = ExpandedGroupConv2d(2, 3, 5, padding=2, group="c8")
        >>> conv(torch.randn(1, 2, 8, 9, 9)).shape
        torch.Size([1, 3, 8, 9, 9])
    """

    in_type: FieldType  # set in __init__ (regular, or trivial when lifting)
    out_type: FieldType
    #: what the field types and the filter's fiber layout are built from (fixed at
    #: construction: :class:`~._derived.FixedArgs`); the rest as ``nn.Conv2d``'s
    _fixed_args = ("group", "lifting", "transposed")
    _fixed_reason = "the field types and the filter's fiber layout are built from it"

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, *, group: GroupLike = "c8",
                 lifting: bool = False) -> None:
        super().__init__()
        name = type(self).__name__
        self._set_conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation,
                            groups, padding_mode)
        check_flag(bias, "bias", name)
        check_float_dtype(dtype, "dtype", name)
        lifting = check_flag(lifting, "lifting", name,
                             fix="True for images in, False for regular fields in")
        grp = E.check_expanded_group(group, name)
        self.group, self.lifting = grp, lifting
        self.out_type = FieldType.regular(grp)
        self.in_type = FieldType.trivial(grp) if self.lifting else self.out_type
        self.fiber_out = int(grp.order)
        self.fiber_in = 1 if self.lifting else self.fiber_out
        factory = {"device": device, "dtype": dtype}
        k = self.kernel_size[0]
        shape = (out_channels * self.fiber_out, in_channels // groups * self.fiber_in, k, k)
        self.weight = nn.Parameter(torch.empty(shape, **factory), requires_grad=False)
        self.bias = (nn.Parameter(torch.empty(out_channels, **factory), requires_grad=False)
                     if bias else None)
        self.reset_parameters()

    @classmethod
    def from_filter(cls, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1,
                    padding=0, dilation=1, groups: int = 1, padding_mode: str = "zeros", *,
                    group: GroupLike, lifting: bool = False) -> ExpandedGroupConv2d:
        """The layer holding a copy of ``weight`` ``(C_out * |G|, C_in * F_in // groups, k, k)``
        and ``bias`` (``(C_out,)`` per field, or ``(C_out * |G|,)`` constant over each
        field's slots)."""
        grp = get(group)
        n = int(grp.order) if grp.is_finite else 0
        f_in = 1 if lifting else n
        if (not isinstance(weight, torch.Tensor) or weight.dim() != 4 or n == 0
                or weight.shape[0] % n or weight.shape[1] % f_in):
            shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else weight
            raise ValueError(f"ExpandedGroupConv2d.from_filter: weight must be (C_out * |G|, "
                             f"C_in * F_in // groups, k, k) with |G| = {grp.order} of "
                             f"{grp.name!r} and F_in = {'1 (lifting)' if lifting else '|G|'}; "
                             f"got {shape}")
        c_out = weight.shape[0] // n
        if bias is not None:
            if bias.shape == (c_out * n,):
                fields = bias.view(c_out, n)
                if not torch.equal(fields, fields[:, :1].expand(-1, n)):
                    raise ValueError("ExpandedGroupConv2d.from_filter: a per-slot bias must be "
                                     "constant over each regular field (else it breaks "
                                     "equivariance)")
                bias = fields[:, 0]
            elif bias.shape != (c_out,):
                raise ValueError(f"ExpandedGroupConv2d.from_filter: bias must be (C_out,) = "
                                 f"({c_out},) or (C_out * |G|,); got {tuple(bias.shape)}")
        m = cls(weight.shape[1] // f_in * groups, c_out, weight.shape[-1], stride, padding,
                dilation, groups, bias is not None, padding_mode, device=weight.device,
                dtype=weight.dtype, group=grp, lifting=lifting)
        with torch.no_grad():
            m.weight.copy_(weight)
            if bias is not None:
                assert m.bias is not None  # built with bias=True
                m.bias.copy_(bias)
        return m

    def reset_parameters(self) -> None:
        """Zero filter and bias (the layer is meant to be loaded; see the class docs)."""
        with torch.no_grad():
            if self.weight.device.type != "meta":
                self.weight.zero_()
                if self.bias is not None:
                    self.bias.zero_()

    def grid_equivariance_error(self) -> float:
        """``max |W[o, u g, c] - (u . W[o, g, c])| / max |W|`` over the grid subgroup's
        elements ``u`` (:meth:`~equilayers.groups.Group.grid_subgroup`): 0 (to float
        rounding) exactly when the filter gives an exactly equivariant layer on the grid
        subgroup."""
        with torch.no_grad():
            n, f_in = self.fiber_out, self.fiber_in
            c_in = self.weight.shape[1] // f_in
            w = self.weight.view(self.out_channels, n, c_in, f_in, *self.kernel_size)
            if self.lifting:
                w = w[:, :, :, 0]
            scale = w.abs().max()
            if scale == 0:
                return 0.0
            elements = self.group.elements()
            index = {g: i for i, g in enumerate(elements)}
            worst = 0.0
            for u in (g for g in elements if g.is_grid):
                moved = self.in_type.act(u, w.movedim(1, 0).flatten(0, 1)).unflatten(
                    0, (n, self.out_channels)).movedim(0, 1)
                target = torch.stack([w[:, index[u * g]] for g in elements], 1)
                worst = max(worst, float((moved - target).abs().max() / scale))
            return worst

    @parametrized_once  # (a parametrized weight: evaluated once per call)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:func:`~equilayers.functional.expanded_group_conv2d` with this layer's filter and
        options: the arguments were checked in ``__init__`` and the input is checked here
        (named as this module), then the functional's computation runs without its checks."""
        name = type(self).__name__
        G.check_conv_input(x, 4 if self.lifting else 5, self.in_channels,
                       None if self.lifting else self.fiber_in, name)
        C.check_dtype_match(x, self.weight, name)
        # (an int assigned after construction, as nn.Conv2d and GroupConv2d take it)
        dilation = C.check_pair(self.dilation, "dilation", name)
        G.check_conv_fits(x, self.kernel_size[0], self._pad, dilation, self.padding_mode, name)
        self._check_exact(x)
        # the filter and bias of the built shapes (the fiber layout, the exactness check's k)
        k, c_in = self.kernel_size[0], self.in_channels // self.groups * self.fiber_in
        weight = checked(self, "weight", self.weight, (self.out_channels * self.fiber_out, c_in,
                                                        k, k))
        bias = checked(self, "bias", self.bias, (self.out_channels,))
        return E.expanded_conv_checked(x, weight, bias, self.fiber_out, self.stride,
                                       self._pad, dilation, self.groups, self.padding_mode, name)

    def extra_repr(self) -> str:
        return self._conv_repr(", lifting=True" if self.lifting else "")
