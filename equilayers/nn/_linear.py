"""Equivariant MLPs: ``GroupLinear`` between fibers, and ``OnFibers`` for any field module.

A fiber alone is ``(B, C, F)`` (:mod:`equilayers.functional._fibers`): the features of an
equivariant MLP, escnn's fields on ``no_base_space``. The equivariant linear maps between two
fibers are the ``1 x 1`` group convs between the same fields (a ``1 x 1`` filter is the
centre tap alone, which no rotation moves, so its basis is the whole commutant: ``|G|`` numbers
per pair of regular fields, one per order of SO(3) fields, two per order ``m >= 1`` of SO(2)
fields), so :class:`GroupLinear` holds one and runs it on ``1 x 1`` maps (one ``F.linear``
there: :func:`equilayers.functional._fibers.one_pixel`).
"""

from __future__ import annotations

import re
import warnings

import torch
from torch import nn

from .. import _checks as C
from ..functional._fibers import on_fibers
from ..functional._gconv3d import check_conv3d_group
from ..groups import FieldType, GroupLike, get
from ._derived import FixedArgs, parametrized_once
from ._exactness import warn_at_user
from ._group_conv import GroupConv2d
from ._group_conv3d import GroupConv3d
from ._steerable_conv3d import SteerableConv3d
from ._typed import Typed

__all__ = ["GroupLinear", "OnFibers"]


def _alone(ft: object) -> FieldType | None:
    """The fiber-alone type of a module's declared type: fibered types lose their spatial
    dims, a trivial one (an image, after a fiber pool) is a vector nothing moves."""
    if not isinstance(ft, FieldType):
        return None
    if ft.rep == "invariant":
        return ft
    if ft.rep == "trivial":
        return FieldType.invariant(ft.group)
    return FieldType(ft.group, ft.rep, ft.max_order, spatial_dims=0)


class OnFibers(Typed, nn.Module):
    """Run a field module on fibers alone, ``(B, C, F)``: the harmonic nonlinearities, batch
    norms and pools of an equivariant MLP (escnn's modules on ``no_base_space``).

    The input gains unit spatial dims, ``module`` runs on the ``1 x 1`` map, and they are
    dropped again. ``module`` must act on each pixel alone and keep the size (a nonlinearity,
    a batch norm, a ``1 x 1`` conv, ``GroupPool``/``NormPool``, which return ``(B, C)``).
    Pointwise ``torch.nn`` modules (``nn.ReLU``, ``nn.BatchNorm1d`` on regular fields) need no
    wrapper: they act on ``(B, C, F)`` as they are.

    Functional twin: :func:`~equilayers.functional.on_fibers`.

    Args:
        module: the field module (its ``in_type``/``out_type`` become this module's, with no
            spatial dims).
        spatial_dims: the unit dims to add: default the module's own (its declared
            ``in_type``: 3 for the cube's groups and SO(3)/O(3), 2 for the planar groups),
            2 for an undeclared module.

    Shape:
        ``(B, C, F) -> (B, C', F')`` (``(B, C')`` after a fiber pool).

    Equivariance:
        That of ``module``, and exact for every element (a continuous group's too): a fiber
        has no pixels to interpolate.

    Example:
        >>> import torch
        >>> from equilayers.nn import NormNonlinearity
        >>> OnFibers(NormNonlinearity(4, 2))(torch.randn(8, 4, 5)).shape
        torch.Size([8, 4, 5])
    """

    def __init__(self, module: nn.Module, spatial_dims: int | None = None) -> None:
        super().__init__()
        name = "OnFibers"
        C.check_module(module, "module", name)
        declared = getattr(module, "in_type", None)
        if spatial_dims is None:
            dims = declared.spatial_dims if isinstance(declared, FieldType) else 0
            spatial_dims = dims if dims > 0 else 2
        self.spatial_dims = C.check_int(spatial_dims, "spatial_dims", name, minimum=1,
                                        maximum=3, fix="2 for the planar groups' modules, 3 "
                                        "for the cube's and SO(3)'s")
        self.module = module
        self.in_type = _alone(declared)
        self.out_type = _alone(getattr(module, "out_type", None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return on_fibers(self.module, x, spatial_dims=self.spatial_dims)

    def extra_repr(self) -> str:
        return f"spatial_dims={self.spatial_dims}"


_UNREACHED = re.compile(r"reaches output (?:rotation )?order\(s\) (\[[\d, ]*\])")


class GroupLinear(Typed, FixedArgs):
    """``nn.Linear`` for fields: the equivariant linear maps between fibers ``(B, C, F)``
    (escnn's ``Linear``; the layers of an equivariant MLP).

    Regular fields of any finite group a group conv takes (``"p4m"``, ``"c8"``, ``"d6"``, a
    registered 2-D group, the cube's ``"o"``, ``"oh"``, ``"c4z"``, ``"d4z"``, ``"ico"``,
    ``"ih"``; not yet a registered group of 3-D matrices, which the 3-D convs refuse):
    ``W[o, a, i, b] = w[o, i, a^-1 b]``,
    ``|G|`` numbers per pair of fields (the group axis stored in the group's Fourier basis, as
    in :class:`GroupConv2d`). Harmonic fields (``max_order``, and ``in_max_order`` for the
    input, default ``max_order``) of SO(2), O(2), C_N, D_N (``2M+1`` slots) and SO(3), O(3)
    (``(M+1)^2`` slots): every map Schur's lemma allows (two numbers per SO(2) order ``m >=
    1``, one per O(2) or SO(3) order, the orders C_N cannot tell apart mixed). It is the
    ``1 x 1`` group conv between the same fields (:class:`GroupConv2d`, :class:`GroupConv3d`,
    :class:`SteerableConv3d`, held as ``conv``: its weight, init, bias on the invariant part,
    checked eval filter and hooks), run on ``1 x 1`` maps, where the group convs compute one
    ``F.linear`` with their expanded filter (the cost of a dense ``nn.Linear``, not of a conv
    on one pixel). The parameters are the conv's, ``conv.weight`` and ``conv.bias``: a
    ``parametrize``, ``weight_norm`` or ``prune`` goes on ``conv``. Output orders the
    input cannot reach (order 3 from orders 0..1 of SO(2)) are always zero, and a warning says
    so at construction.

    Functional twin: :func:`~equilayers.functional.on_fibers` (running the ``1 x 1`` conv).

    Args:
        in_features: input fields ``C_in``.
        out_features: output fields ``C_out``.
        bias: a learned bias on each output field's invariant part (every slot of a regular
            field alike; a harmonic field's order-0 slot).
        group: the group (no default).
        max_order: the harmonic fields' highest order (required for SO(2), O(2), SO(3),
            O(3); ``None`` for regular fields of a finite group).
        in_max_order: the input's highest order (default ``max_order``).
        device, dtype: as ``nn.Linear``'s.

    Shape:
        ``(B, C_in, F_in) -> (B, C_out, F_out)``.

    Equivariance:
        Exact for every element: the finite groups' and every rotation (and reflection) of
        SO(2), O(2), SO(3), O(3), to float rounding (no spatial sampling).

    Example:
        >>> import torch
        >>> GroupLinear(3, 5, group="p4m")(torch.randn(2, 3, 8)).shape
        torch.Size([2, 5, 8])
        >>> GroupLinear(3, 5, group="so3", max_order=2)(torch.randn(2, 3, 9)).shape
        torch.Size([2, 5, 9])
    """

    _fixed_args = ("group", "max_order", "in_max_order")  # (:class:`~._derived.FixedArgs`)
    _fixed_reason = "the conv it holds is built from it"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 group: GroupLike, max_order: int | None = None,
                 in_max_order: int | None = None, device=None, dtype=None) -> None:
        super().__init__()
        name = "GroupLinear"
        C.check_int(in_features, "in_features", name, minimum=1, fix="the input fields")
        C.check_int(out_features, "out_features", name, minimum=1, fix="the output fields")
        C.check_flag(bias, "bias", name)
        C.check_float_dtype(dtype, "dtype", name)
        grp = get(group)
        if in_max_order is not None and max_order is None:
            raise ValueError(f"{name}: in_max_order={in_max_order!r} is the input's harmonic "
                             "order, but max_order (the output's) is None: give max_order too, "
                             "or drop in_max_order for regular fields")
        if not grp.is_finite and max_order is None:
            raise ValueError(f"{name}: group={grp.name!r} has no regular fields (infinitely "
                             "many elements): give max_order, the highest rotation order of "
                             "its harmonic fields (e.g. max_order=2)")
        if grp.is_finite and grp.spatial_dim == 3 and max_order is not None:
            raise ValueError(f"{name}: max_order={max_order!r} asks for harmonic fields, but "
                             f"group={grp.name!r} has regular fields here (|G| = {grp.order} "
                             "slots): drop max_order, or use group='so3' / 'o3' for harmonic "
                             "fields in 3-D")
        factory = {"device": device, "dtype": dtype}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.conv: GroupConv2d | GroupConv3d | SteerableConv3d
            if grp.spatial_dim == 2:
                self.conv = GroupConv2d(in_features, out_features, 1, bias=bias, group=grp,
                                        max_order=max_order, in_max_order=in_max_order,
                                        **factory)
            elif grp.is_finite:
                check_conv3d_group(grp, name)  # (its refusal names GroupLinear)
                self.conv = GroupConv3d(in_features, out_features, 1, bias=bias, group=grp,
                                        **factory)
            else:
                assert max_order is not None  # refused above for a continuous group
                self.conv = SteerableConv3d(in_features, out_features, 1, bias=bias,
                                            group=grp, max_order=max_order,
                                            in_max_order=max_order if in_max_order is None
                                            else in_max_order, **factory)
        conv_in = self.conv.in_type
        assert conv_in is not None  # every group conv declares its input type
        for w in caught:  # the conv speaks of kernel sizes; a linear map has none
            found = _UNREACHED.search(str(w.message))
            if found is None:
                warn_at_user(w.message, w.category)
                continue
            warn_at_user(f"{name}: no equivariant linear map reaches output order(s) "
                          f"{found.group(1)} of {grp.name} from input orders 0.."
                          f"{conv_in.max_order}: those slots are always 0 (Schur's "
                          "lemma). Use a lower max_order or a higher in_max_order")
        self.in_features, self.out_features, self.group = in_features, out_features, grp
        self.max_order = max_order
        self.in_max_order = conv_in.max_order
        self.in_type = _alone(conv_in)
        self.out_type = _alone(self.conv.out_type)
        self._spatial_dims = conv_in.spatial_dims  # of the 1 x 1 maps the conv runs on

    def reset_parameters(self) -> None:
        """Initialise the weight and bias again (the conv's ``reset_parameters``)."""
        self.conv.reset_parameters()

    @parametrized_once  # (the conv's parametrized weight: evaluated once per call)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.in_type is not None  # set in __init__
        self.in_type.check(x, "x", "GroupLinear")
        C.check_channels(x, self.in_features, "GroupLinear", unit="fields",
                         arg="in_features")
        # the input's dtype and device, named as this module's (not as the conv it runs)
        C.check_tensor(x, "x", "GroupLinear")
        C.check_dtype_match(x, self.conv.weight, "GroupLinear")
        C.check_device_match(x, self.conv.weight, "GroupLinear")
        return on_fibers(self.conv, x, spatial_dims=self._spatial_dims)

    def extra_repr(self) -> str:
        s = f"{self.in_features}, {self.out_features}"
        if self.conv.bias is None:
            s += ", bias=False"
        s += f", group={self.group.name!r}"
        if self.max_order is not None:
            s += f", max_order={self.max_order}"
            if self.in_max_order != self.max_order:
                s += f", in_max_order={self.in_max_order}"
        return s
