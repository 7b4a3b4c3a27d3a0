"""Batch normalization of regular group feature maps."""

from __future__ import annotations

import torch
from torch import nn

from .. import _checks as C
from .._checks import (
    batch_norm_bias,
    check_device_match,
    check_dtype_match,
    check_flag,
    check_float_dtype,
    check_int,
)
from ..functional._group_norm import batch_norm_checked, check_input
from ..groups import FieldType
from ._derived import parametrized_once
from ._typed import Typed

__all__ = ["GroupBatchNorm2d", "GroupBatchNorm3d"]


class _GroupBatchNorm(Typed, nn.BatchNorm3d):
    """The validated constructor the group batch norms share."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None,
                 dtype=None, *, bias: bool = True, **unexpected) -> None:
        what = type(self).__name__
        for name in unexpected:  # Python's message named _GroupBatchNorm.__init__
            fix = {"group": ": the statistics are shared over each field's fiber, alike for "
                            "every group's regular fields; leave it out",
                   "max_order": ": this norm is for regular fields; harmonic fields take "
                                "HarmonicBatchNorm(num_features, max_order)"}.get(name, "")
            raise TypeError(f"{what}() got an unexpected keyword argument {name!r}"
                            + (f" ({name}={unexpected[name]!r}){fix}" if fix else ""))
        check_int(num_features, "num_features", what, minimum=1, fix="the number of fields C")
        C.check_norm_args(eps, momentum, what, momentum_none=True)
        check_float_dtype(dtype, "dtype", what)
        affine = check_flag(affine, "affine", what)
        track_running_stats = check_flag(track_running_stats, "track_running_stats", what)
        check_flag(bias, "bias", what)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype,
                         **batch_norm_bias(bias, affine, what))

    @parametrized_once  # (a parametrized weight: evaluated once per call)
    def forward(self, input: torch.Tensor) -> torch.Tensor:
        # nn.BatchNorm3d's forward, through the functional twin's unchecked core (the input is
        # checked first, once): on CUDA it computes batch statistics by reductions over all
        # elements (cuDNN's kernels parallelise over the few fields), and it folds a 6-D map to
        # the 5 dims that cuDNN's batch norm takes (torch's own forward fails on CUDA with
        # "Expected 2 to 5 dimensions"). The running-statistics rules are torch's, line for line.
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # a cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats
        return batch_norm_checked(input, self.running_mean if keep else None,
                                  self.running_var if keep else None, self.weight, self.bias,
                                  batch_stats, factor, self.eps, type(self).__name__)


class GroupBatchNorm2d(_GroupBatchNorm):
    """Batch norm of regular fields ``(B, C, F, H, W)`` with statistics shared over the fiber.

    ``y = (x - mean_c) / sqrt(var_c + eps) * gamma_c + beta_c`` with one mean/variance per
    field ``c`` over ``B, F, H, W`` (this is ``nn.BatchNorm3d`` on the 5-D layout, with a
    check that the input is a group feature map; the math is
    :func:`equilayers.functional.group_batch_norm`).

    Functional twin: :func:`~equilayers.functional.group_batch_norm`.

    Args:
        num_features, eps, momentum, affine, track_running_stats, device, dtype, bias: as
            ``nn.BatchNorm2d``; ``num_features`` counts fields ``C``.

    Shape:
        ``(B, C, F, H, W) -> (B, C, F, H, W)``.

    Equivariance:
        Exact for any group acting on regular fields (statistics do not see slot order or
        positions); for harmonic fields it is not (use a norm-based normalization).

    Example:
        >>> import torch
        >>> GroupBatchNorm2d(4)(torch.randn(2, 4, 8, 5, 5)).shape
        torch.Size([2, 4, 8, 5, 5])
    """

    in_type = out_type = FieldType.regular()  # of any finite group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        what = type(self).__name__
        check_input(input, self.num_features, what)
        param = self.weight if self.weight is not None else self.running_mean
        check_dtype_match(input, param, what, low_precision_input=True)  # as GroupBatchNorm3d
        check_device_match(input, param, what)


class GroupBatchNorm3d(_GroupBatchNorm):
    """Batch norm of regular fields on volumes ``(B, C, F, D, H, W)`` (the cube groups' maps)
    with statistics shared over the fiber.

    ``y = (x - mean_c) / sqrt(var_c + eps) * gamma_c + beta_c`` with one mean/variance per
    field ``c`` over ``B, F, D, H, W`` (``nn.BatchNorm3d``'s statistics, which ``F.batch_norm``
    computes over every dim but 1, on the 6-D layout; the math is
    :func:`equilayers.functional.group_batch_norm`).

    Functional twin: :func:`~equilayers.functional.group_batch_norm`.

    Args:
        num_features, eps, momentum, affine, track_running_stats, device, dtype, bias: as
            ``nn.BatchNorm3d``; ``num_features`` counts fields ``C``.

    Shape:
        ``(B, C, F, D, H, W) -> (B, C, F, D, H, W)``.

    Equivariance:
        Exact for any group acting on regular fields (statistics do not see slot order or
        positions).

    Example:
        >>> import torch
        >>> GroupBatchNorm3d(2)(torch.randn(2, 2, 24, 3, 3, 3)).shape
        torch.Size([2, 2, 24, 3, 3, 3])
    """

    in_type = out_type = FieldType.regular(spatial_dims=3)  # of any finite group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        what = type(self).__name__
        check_input(input, self.num_features, what, 6)
        # the parameters', or the running statistics' dtype (torch's batch norm takes a
        # float16/bfloat16 input with float32 ones)
        param = self.weight if self.weight is not None else self.running_mean
        check_dtype_match(input, param, what, low_precision_input=True)
        check_device_match(input, param, what)
