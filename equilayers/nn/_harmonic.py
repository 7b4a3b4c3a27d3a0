"""Modules for harmonic fields ``(B, C, 2M+1, H, W)`` (the steerable convolutions are
``LiftingConv2d``/``GroupConv2d`` with ``max_order``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..functional import _harmonic as H
from ..groups import GroupLike, get

__all__ = [
    "NormNonlinearity",
    "GatedNonlinearity",
    "HarmonicBatchNorm",
    "NormPool",
    "RegularToHarmonic",
    "HarmonicToRegular",
]


def _order(max_order) -> int:
    if isinstance(max_order, bool) or not isinstance(max_order, int) or max_order < 0:
        raise ValueError(f"max_order must be an integer >= 0 (fiber 2*max_order+1); got "
                         f"{max_order!r}")
    return max_order


class NormNonlinearity(nn.Module):
    """Norm nonlinearity for harmonic fields: ``v_m -> v_m * function(|v_m| + b) / |v_m|``.

    Orders ``m >= 1`` keep their direction and have their magnitude mapped (norm-ReLU by
    default, with a learnable bias per field and order, initialised to 0); order 0 is a signed
    invariant scalar and becomes ``function(a_0 + b_0)``, or, with ``order0="norm"``, a
    one-dimensional norm field like the others: ``sign(a_0) * function(|a_0| + b_0)`` (escnn's
    ``NormNonLinearity`` convention; both signs survive).

    Args:
        channels: number of fields ``C``.
        max_order: ``M``.
        function: applied to the biased magnitude (default ``F.relu``).
        bias: learn the ``(C, M + 1)`` bias.
        order0: ``"function"`` (default) or ``"norm"``, see above.

    Shape: ``(B, C, 2M+1, H, W)`` -> same.

    Equivariance: exact for every rotation and flip of the fiber (SO(2)/O(2) and subgroups).

    Example:
        >>> NormNonlinearity(4, 2)(torch.randn(1, 4, 5, 6, 6)).shape
        torch.Size([1, 4, 5, 6, 6])
    """

    in_rep = "harmonic"
    out_rep = "harmonic"

    def __init__(self, channels: int, max_order: int,
                 function: Callable[[torch.Tensor], torch.Tensor] = F.relu, bias: bool = True,
                 device=None, dtype=None, *, order0: str = "function") -> None:
        super().__init__()
        if order0 not in ("function", "norm"):
            raise ValueError(f"NormNonlinearity: order0 must be 'function' or 'norm'; got "
                             f"{order0!r}")
        self.channels = channels
        self.max_order = _order(max_order)
        self.function = function
        self.order0 = order0
        self.bias = nn.Parameter(torch.zeros(channels, max_order + 1, device=device,
                                             dtype=dtype)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return H.norm_nonlinearity(x, self.bias, self.max_order, self.function,
                                   order0=self.order0)

    def extra_repr(self) -> str:
        return f"{self.channels}, max_order={self.max_order}" + (
            "" if self.bias is not None else ", bias=False") + (
            "" if self.order0 == "function" else f", order0={self.order0!r}")


class GatedNonlinearity(nn.Module):
    """Gated nonlinearity: ``v_m -> sigmoid(a_0) v_m`` for ``m >= 1``, ``a_0 -> function(a_0)``.

    Each field's invariant order-0 slot gates its own higher orders (no extra channels).

    Shape: ``(B, C, 2M+1, H, W)`` -> same. Equivariance: exact (rotations and flips).
    """

    in_rep = "harmonic"
    out_rep = "harmonic"

    def __init__(self, max_order: int,
                 function: Callable[[torch.Tensor], torch.Tensor] = F.relu) -> None:
        super().__init__()
        self.max_order = _order(max_order)
        self.function = function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return H.gated_nonlinearity(x, self.max_order, self.function)

    def extra_repr(self) -> str:
        return f"max_order={self.max_order}"


class HarmonicBatchNorm(nn.Module):
    """Batch norm for harmonic fields that only rescales the magnitudes of orders ``m >= 1``.

    Order 0 is normalized like ``nn.BatchNorm3d`` (mean/variance, affine); each order ``m >= 1``
    is divided by the root of its mean squared magnitude per pair slot (no centring, which would
    break equivariance) and multiplied by a learnable ``weight[c, m]``.

    Args:
        num_features: fields ``C``; max_order: ``M``; eps, momentum, affine,
        track_running_stats: as in ``nn.BatchNorm3d``.

    Shape: ``(B, C, 2M+1, H, W)`` -> same.

    Equivariance: exact for every rotation and flip (train and eval mode).
    """

    in_rep = "harmonic"
    out_rep = "harmonic"

    def __init__(self, num_features: int, max_order: int, eps: float = 1e-5,
                 momentum: float = 0.1, affine: bool = True, track_running_stats: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.num_features = num_features
        self.max_order = _order(max_order)
        self.eps, self.momentum, self.affine = eps, momentum, affine
        self.track_running_stats = track_running_stats
        kw = {"device": device, "dtype": dtype}
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, max_order + 1, **kw))
            self.bias = nn.Parameter(torch.zeros(num_features, **kw))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **kw))
            self.register_buffer("running_var", torch.ones(num_features, max_order + 1, **kw))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        use_batch = self.training or not self.track_running_stats
        return H.harmonic_batch_norm(x, self.max_order, self.running_mean, self.running_var,
                                     self.weight, self.bias, use_batch, self.momentum, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, max_order={self.max_order}, eps={self.eps}"


class NormPool(nn.Module):
    """Magnitude of every rotation order: ``(B, C, 2M+1, H, W) -> (B, C * (M + 1), H, W)``.

    Channel ``c * (M + 1) + m`` is ``|v_m|`` of field ``c`` (``|a_0|`` for order 0). The output
    is a plain feature map (rep ``"trivial"``): rotating the input only moves it spatially.
    ``max_order`` is read from the input (``F = 2M + 1``) unless given.

    Equivariance: exact (the fiber action is orthogonal per order).

    Example:
        >>> NormPool()(torch.randn(2, 3, 5, 8, 8)).shape
        torch.Size([2, 9, 8, 8])
    """

    in_rep = "harmonic"
    out_rep = "trivial"

    def __init__(self, max_order: int | None = None) -> None:
        super().__init__()
        self.max_order = None if max_order is None else _order(max_order)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.max_order is None:
            if x.dim() != 5 or x.shape[2] % 2 == 0:
                raise ValueError(f"NormPool expects a harmonic field (B, C, 2M+1, H, W) with an "
                                 f"odd fiber; got shape {tuple(x.shape)}")
            return H.norm_pool(x, (x.shape[2] - 1) // 2)
        return H.norm_pool(x, self.max_order)

    def extra_repr(self) -> str:
        return "" if self.max_order is None else f"max_order={self.max_order}"


class RegularToHarmonic(nn.Module):
    """Fourier transform over the fiber: regular C_N/D_N fields -> harmonic fields of order
    ``max_order`` (default ``N // 2``); see :func:`~equilayers.functional.regular_to_harmonic`.

    Shape: ``(B, C, |G|, H, W) -> (B, C, 2M+1, H, W)``.
    Equivariance: exact for every element of C_N/D_N. Inverted exactly by
    :class:`HarmonicToRegular` for C_N with ``max_order = N // 2``.
    """

    in_rep = "regular"
    out_rep = "harmonic"

    def __init__(self, group: GroupLike, max_order: int | None = None) -> None:
        super().__init__()
        self.group = get(group)
        if not self.group.is_finite:
            raise ValueError(f"{self.group.name} is continuous and has no regular fields; use "
                             "a finite group 'cN'/'dN'")
        self.max_order = self.group.n // 2 if max_order is None else _order(max_order)
        self.register_buffer("matrix", H.fourier_matrix(self.group, self.max_order,
                                                        torch.get_default_dtype()),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return H.regular_to_harmonic(x, self.group, self.max_order)

    def extra_repr(self) -> str:
        return f"group={self.group.name!r}, max_order={self.max_order}"


class HarmonicToRegular(RegularToHarmonic):
    """Inverse Fourier transform over the fiber: harmonic fields -> regular C_N/D_N fields;
    see :func:`~equilayers.functional.harmonic_to_regular`.

    Shape: ``(B, C, 2M+1, H, W) -> (B, C, |G|, H, W)``. Equivariance: exact.
    """

    in_rep = "harmonic"
    out_rep = "regular"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return H.harmonic_to_regular(x, self.group, self.max_order)
