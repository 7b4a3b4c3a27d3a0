"""Modules for harmonic fields ``(B, C, 2M+1, H, W)`` (the steerable convolutions are
``LiftingConv2d``/``GroupConv2d`` with ``max_order``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import proxy_fix
from ..functional import _harmonic as H
from ..groups import FieldType, Group, GroupLike
from ..groups._fields import field_type
from . import _checks as C
from ._derived import FixedArgs
from ._typed import Typed

__all__ = [
    "NormNonlinearity",
    "GatedNonlinearity",
    "NormPool",
]


class NormNonlinearity(Typed, FixedArgs):
    """Norm nonlinearity for harmonic fields: ``v_m -> v_m * function(|v_m| + b_m) / |v_m|``.

    Orders ``m >= 1`` keep their direction and have their magnitude ``|v_m| = sqrt(c_m^2 +
    s_m^2 + 1e-6)`` mapped (smooth at 0; off the formula without the ``1e-6`` by at most 7.5e-6
    with ReLU, 2.5e-5 with ``tanh``, measured in float64 on unit-variance inputs; exactly
    equivariant), with a learnable bias ``b`` per field and order; order 0 is a signed
    invariant scalar and becomes ``function(a_0 + b_0)``, or, with ``order0="norm"``, a
    one-dimensional norm field like the others: ``sign(a_0) * function(|a_0| + b_0)`` (escnn's
    ``NormNonLinearity`` convention; both signs survive).

    The bias of every norm field starts at ``-threshold`` (default ``-1``), so the default
    norm-ReLU ``relu(|v| - 1)`` cuts weak fields from the first step, as e2cnn's ``n_relu``
    (``relu(|v| - exp(b))``, ``b = 0`` at init) does; the bias stays additive (``function(|v| +
    b)``), so checkpoints saved before this init load with the same meaning. With ``b = 0`` a
    norm-ReLU is the identity on every order ``m >= 1`` field and an SO(2) stack starts almost
    linear: on rotated MNIST such a harmonic CNN reached 54.6% against 84.7-85.1% with a
    thresholding init (measured in the project's issue). Order 0 with ``order0="function"``
    starts at ``b_0 = 0`` (a plain ReLU already cuts). ``threshold=0`` gives the former init.

    ``bias_form="exp"`` (with ``order0="norm"``) is escnn's and e2cnn's ``n_relu``: the learned
    parameter is ``log_bias`` (not ``bias``; ``(C, M + 1)``, ``log(threshold)`` at init) and
    every field maps to ``function(|v| - exp(log_bias))``: the same function at init, but the
    threshold stays positive and Adam moves it by factors rather than by steps. It is what
    :func:`~equilayers.interop.from_escnn` builds from escnn's ``NormNonLinearity``, so a
    converted model trains as escnn's. Measured on the tetris benchmark's pentacubes (SO(3)
    fields of orders 0..1, trained upright, accuracy under random rotations, 3 seeds,
    2026-12-02; ``benchmarks/results/so3-norm-relu/`` and ``cpu-tetris.md``): the defaults
    11.1% +- 1.5, ``order0="norm", bias_form="exp"`` 14.8% +- 2.6, escnn's model of that
    architecture 15.7% +- 2.2; one-off probes put most of the gain on ``order0="norm"`` (14.5%
    with the additive bias). On 3-D Tetris the defaults 29.8%, escnn's form 29.0%. The demo's
    planar SO(2) model with ``order0="norm"`` was level upright and better at any angle and
    under shifts (one-off, 2 seeds; docs/training.md): for a new model ``order0="norm"`` is
    the better start. The default stays (``order0`` is not in the state_dict: a changed
    default would change what saved checkpoints compute).

    Functional twin: :func:`~equilayers.functional.norm_nonlinearity`.

    Args:
        channels: number of fields ``C``.
        max_order: ``M``.
        function: applied to the biased magnitude (default ``F.relu``).
        bias: learn the ``(C, M + 1)`` bias (``False``: ``function(|v|)``, no threshold).
        order0: ``"function"`` (default) or ``"norm"``, see above.
        threshold: the initial cut ``-b`` of the norm fields (orders ``m >= 1``, and order 0
            when ``order0="norm"``); ``>= 0`` (``> 0`` with ``bias_form="exp"``).
        bias_form: ``"add"`` (default: ``function(|v| + b)``, parameter ``bias``) or
            ``"exp"`` (``function(|v| - exp(b))``, parameter ``log_bias``; needs
            ``order0="norm"``), see above.
        group: ``None`` (default: harmonic fields of any planar group), a planar group, or
            ``"so3"``/``"o3"`` for SO(3)/O(3) fields ``(B, C, (M+1)^2, D, H, W)`` (the norm of
            each order's ``2l+1`` slots).
        spatial_dims: ``3`` for volumes of planar fields ``(B, C, 2M+1, D, H, W)`` (a planar
            group turning every depth slice, as from ``SteerableConv3d(..., group="so2")``);
            default ``None``: 2 for planar groups and ``None``, 3 for SO(3)/O(3).

    Shape: ``(B, C, 2M+1, H, W)`` -> same (SO(3): ``(B, C, (M+1)^2, D, H, W)``).

    Equivariance: exact for every rotation and flip of the fiber (SO(2)/O(2) and subgroups):
    it only rescales each pair by a function of its magnitude.

    Example:
        >>> NormNonlinearity(4, 2)(torch.randn(1, 4, 5, 6, 6)).shape
        torch.Size([1, 4, 5, 6, 6])
    """

    group: Group | None  # set in __init__ (None: any planar group)
    _fixed_args = ("max_order",)  # (:class:`~._derived.FixedArgs`)
    _fixed_reason = "the bias's shape is built from it"

    def __init__(self, channels: int, max_order: int,
                 function: Callable[[torch.Tensor], torch.Tensor] = F.relu, bias: bool = True,
                 device=None, dtype=None, *, order0: str = "function",
                 threshold: float = 1.0, group: GroupLike | None = None,
                 bias_form: str = "add", spatial_dims: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.channels = C.positive_int(channels, "channels", name)
        self.max_order = _harmonic(self, max_order, name, required=True, group=group,
                                   spatial_dims=spatial_dims)
        self.function = C.function(function, name)
        C.flag(bias, "bias", name)
        self.order0 = C.choice(order0, "order0", name, H.ORDER0)
        self.threshold = C.nonnegative_float(threshold, "threshold", name)
        H.threshold_bias(None, bias_form, self.order0, name)  # the form and its order 0
        self.bias_form = bias_form
        if bias_form == "exp" and bias and self.threshold == 0:
            raise ValueError(f"{name}: threshold=0 has no log for bias_form='exp' (log_bias = "
                             "log(threshold) at init); pass a threshold > 0, e.g. 1.0, or "
                             "bias_form='add'")
        C.dtype(dtype, name)
        param = nn.Parameter(torch.empty(channels, max_order + 1, device=device,
                                         dtype=dtype)) if bias else None
        self.bias: nn.Parameter | None
        self.log_bias: nn.Parameter | None
        if bias_form == "exp":
            self.register_parameter("bias", None)
            self.register_parameter("log_bias", param)
        else:
            self.register_parameter("bias", param)
            self.register_parameter("log_bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``b = -threshold`` on the norm fields, ``b_0 = 0`` with ``order0="function"``
        (``bias_form="exp"``: ``log_bias = log(threshold)``)."""
        with torch.no_grad():
            if self.log_bias is not None:
                self.log_bias.fill_(math.log(self.threshold))
            if self.bias is not None:
                self.bias.fill_(-self.threshold)
                if self.order0 == "function":
                    self.bias[:, 0] = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.log_bias if self.bias_form == "exp" else self.bias  # (read once)
        C.harmonic_fiber(x, self)  # the rank and the fiber, named as this module's
        C.fields(x, self.channels, type(self).__name__, ndim=3 + _spatial(self), param=bias)
        return H.norm_nonlinearity(x, bias, self.max_order, self.function, order0=self.order0,
                                   group=self.group, bias_form=self.bias_form)

    def extra_repr(self) -> str:
        return f"{self.channels}, max_order={self.max_order}" + (
            "" if self.bias is not None or self.log_bias is not None else ", bias=False") + (
            "" if self.order0 == "function" else f", order0={self.order0!r}") + (
            "" if self.bias_form == "add" else f", bias_form={self.bias_form!r}") + (
            "" if self.threshold == 1.0 else f", threshold={self.threshold:g}") + (
            C.function_repr(self.function, F.relu)) + _group_repr(self)


class GatedNonlinearity(Typed, nn.Module):
    """Gated nonlinearity: ``v_m -> sigmoid(g) v_m`` for ``m >= 1``, ``a_0 -> function(a_0)``.

    The gate ``g`` is an invariant scalar, so rescaling by ``sigmoid(g)`` commutes with every
    rotation and flip. ``gates="own"`` (default): each field's own order-0 slot ``a_0`` gates
    its higher orders (no extra channels). ``gates="first_half"`` (escnn's
    ``GatedNonLinearity1`` default split): the input carries ``2C`` fields, the first ``C`` are
    gate fields of which only the order-0 slot is read (field ``i`` gates field ``C + i``), and
    the output drops them. A steerable conv with ``2C`` output fields feeds it directly.

    Functional twin: :func:`~equilayers.functional.gated_nonlinearity`.

    Args:
        max_order: ``M``.
        function: applied to ``a_0`` of the gated fields (default ``F.relu``).
        gates: ``"own"`` or ``"first_half"``, see above.
        group: ``None`` (any planar group), a planar group, or ``"so3"``/``"o3"`` (SO(3)/O(3)
            fields ``(B, C, (M+1)^2, D, H, W)``).
        spatial_dims: ``3`` for volumes of planar fields ``(B, C, 2M+1, D, H, W)`` (a planar
            group turning every depth slice, as from ``SteerableConv3d(..., group="so2")``);
            default ``None``: 2 for planar groups and ``None``, 3 for SO(3)/O(3).

    Shape: ``(B, C, 2M+1, H, W)`` -> same (``"own"``); ``(B, 2C, 2M+1, H, W) -> (B, C, 2M+1,
    H, W)`` (``"first_half"``); SO(3): ``(M+1)^2`` slots and ``D, H, W``.

    Equivariance: exact (rotations and flips of the fiber).

    Example:
        >>> GatedNonlinearity(2, gates="first_half")(torch.randn(1, 8, 5, 6, 6)).shape
        torch.Size([1, 4, 5, 6, 6])
    """

    group: Group | None  # set in __init__ (None: any planar group)

    def __init__(self, max_order: int,
                 function: Callable[[torch.Tensor], torch.Tensor] = F.relu, *,
                 gates: str = "own", group: GroupLike | None = None,
                 spatial_dims: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.max_order = _harmonic(self, max_order, name, required=True, group=group,
                                   spatial_dims=spatial_dims)
        self.function = C.function(function, name)
        self.gates = C.choice(gates, "gates", name, H.GATES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C.harmonic_fiber(x, self)
        C.gate_fields(x, self)  # 2C fields with gates="first_half", named as this module's
        return H.gated_nonlinearity(x, self.max_order, self.function, self.gates, group=self.group)

    def extra_repr(self) -> str:
        return f"max_order={self.max_order}" + (
            "" if self.gates == "own" else f", gates={self.gates!r}") + (
            C.function_repr(self.function, F.relu)) + _group_repr(self)


class NormPool(Typed, nn.Module):
    """Magnitude of every rotation order: ``(B, C, 2M+1, H, W) -> (B, C * (M + 1), H, W)``.

    Channel ``c * (M + 1) + m`` is ``|v_m|`` of field ``c`` (``|a_0|`` for order 0). The output
    is a plain feature map (rep ``"trivial"``): rotating the input only moves it spatially.
    ``max_order`` is read from the input (``F = 2M + 1``) unless given.

    Functional twin: :func:`~equilayers.functional.norm_pool`.

    Args:
        max_order: ``M``, or ``None`` to read it from the input.
        group: ``None`` (any planar group), a planar group, or ``"so3"``/``"o3"`` (SO(3)/O(3)
            fields ``(B, C, (M+1)^2, D, H, W) -> (B, C (M+1), D, H, W)``; ``max_order``
            required).
        spatial_dims: ``3`` for volumes of planar fields ``(B, C, 2M+1, D, H, W)`` (a planar
            group turning every depth slice, as from ``SteerableConv3d(..., group="so2")``);
            default ``None``: 2 for planar groups and ``None``, 3 for SO(3)/O(3).

    Shape: ``(B, C, 2M+1, H, W) -> (B, C (M+1), H, W)``.

    Equivariance: exact (the fiber action is orthogonal per order).

    Example:
        >>> NormPool()(torch.randn(2, 3, 5, 8, 8)).shape
        torch.Size([2, 9, 8, 8])
    """

    group: Group | None  # set in __init__ (None: any planar group)

    out_type = FieldType.trivial()

    def __init__(self, max_order: int | None = None, *, group: GroupLike | None = None,
                 spatial_dims: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.max_order = _harmonic(self, max_order, name, output=False, group=group,
                                   required=group is not None
                                   and H._volume_fields(group, name),
                                   spatial_dims=spatial_dims)
        if self.in_type is not None and self.in_type.spatial_dims == 3:  # set by _harmonic
            self.out_type = FieldType.trivial(self.group, spatial_dims=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C.harmonic_fiber(x, self)
        if self.group is not None and self.group.spatial_dim == 3:
            assert self.max_order is not None  # required for SO(3) fields
            return H.norm_pool(x, self.max_order, group=self.group)
        return H.norm_pool(x, _order_of(x, self.max_order, type(self).__name__))

    def extra_repr(self) -> str:
        return ", ".join(([] if self.max_order is None else [f"max_order={self.max_order}"])
                         + ([] if self.group is None else [f"group={self.group.name!r}"])
                         ) + _dims_repr(self)


@overload
def _harmonic(module: Typed, max_order, name: str, *, required: Literal[True],
              output: bool = True, group: GroupLike | None = None,
              spatial_dims: int | None = None) -> int: ...


@overload
def _harmonic(module: Typed, max_order, name: str, *, required: bool = False,
              output: bool = True, group: GroupLike | None = None,
              spatial_dims: int | None = None) -> int | None: ...


def _harmonic(module: Typed, max_order, name: str, *, required: bool = False,
              output: bool = True, group: GroupLike | None = None,
              spatial_dims: int | None = None) -> int | None:
    """Set ``module.in_type`` (and ``out_type``) to harmonic fields of ``max_order`` (of
    ``group``: ``None`` for any planar group; ``max_order=None``: read from the input) on
    ``spatial_dims`` (default the group's; 3: volumes of planar fields), validating them
    once, and ``module.group``; returns the order."""
    if group is not None:
        H._volume_fields(group, name)  # a group with harmonic fields, or a named error
    spatial_dims = C.spatial_dims(spatial_dims, name)
    in_type = field_type(group, "harmonic", max_order, spatial_dims, what=name,
                         order_required=required)
    setattr(module, "group", in_type.group)  # noqa: B010  (the modules declare `group`)
    module.in_type = in_type
    if output:
        module.out_type = in_type
    # field_type(order_required=True) raised on a max_order of None
    assert in_type.max_order is not None or not required
    return in_type.max_order


def _spatial(module) -> int:
    """The spatial dims of the fields a harmonic module takes (its ``in_type``'s)."""
    return module.in_type.spatial_dims


def _group_repr(module) -> str:
    """``", group=..."`` (when set) and ``", spatial_dims=3"`` for volumes of planar fields."""
    group = getattr(module, "group", None)
    return ("" if group is None else f", group={group.name!r}") + _dims_repr(module)


def _dims_repr(module) -> str:
    """``", spatial_dims=3"`` where the module takes volumes of planar fields (not its group's
    default dims)."""
    group = getattr(module, "group", None)
    in_type = getattr(module, "in_type", None)
    volume = in_type is not None and in_type.spatial_dims == 3
    return ", spatial_dims=3" if volume and (group is None or group.spatial_dim == 2) else ""


def _order_of(x: torch.Tensor, max_order: int | None, cls: str) -> int:
    """``max_order``, or the one an odd fiber ``F = 2M + 1`` implies."""
    if max_order is not None:
        return max_order
    if not isinstance(x, torch.Tensor) or x.dim() not in (5, 6) or x.shape[2] % 2 == 0:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        if isinstance(x, torch.fx.Proxy):
            raise TypeError(f"{cls} expects a tensor; got Proxy{proxy_fix(x)}")
        raise ValueError(f"{cls} expects a harmonic field (B, C, 2M+1, H, W) with an odd fiber; "
                         f"got shape {shape}")
    return (int(x.shape[2]) - 1) // 2  # int: under torch.jit.trace a size is a 0-d tensor


def __getattr__(name: str):
    # NormMaxPool moved to ._norm_max_pool and HarmonicBatchNorm to ._harmonic_batch_norm (this
    # file passed 500 lines); a model pickled whole before (torch.save(model)) names them here,
    # so the old path still finds them
    if name == "NormMaxPool":
        from ._norm_max_pool import NormMaxPool
        return NormMaxPool
    if name == "HarmonicBatchNorm":
        from ._harmonic_batch_norm import HarmonicBatchNorm
        return HarmonicBatchNorm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
