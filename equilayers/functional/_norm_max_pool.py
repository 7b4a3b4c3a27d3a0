"""Spatial max pooling of harmonic fields by magnitude (escnn's ``NormMaxPool``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _checks as C
from ._group_pool import check_max_windows
from ._harmonic import _low_precision, check_harmonic

__all__ = ["norm_max_pool2d", "PER"]

PER = ("field", "order")


def check_pool_args(kernel_size, stride, padding, dilation, what: str = "norm_max_pool2d"):
    """``nn.MaxPool2d``'s arguments as pairs (:func:`equilayers._checks.check_pool_args`)."""
    return C.check_pool_args(kernel_size, stride, padding, dilation, what, max_pool=True)


def norm_max_pool2d(
    x: torch.Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    ceil_mode: bool = False,
    *,
    max_order: int | None = None,
    per: str = "field",
) -> torch.Tensor:
    """Max pooling by magnitude: in every window keep the vector with the largest norm.

    ``per="field"`` (default): one location per field, the one of largest ``|v|^2 = a_0^2 +
    sum_m (c_m^2 + s_m^2)``, and the whole fiber is copied from it (escnn's ``NormMaxPool`` on
    a field of type ``irrep(0) + ... + irrep(M)``). ``per="order"``: one location per field and
    order, the one of largest ``|v_m|`` (escnn's ``NormMaxPool`` with one field per irrep).
    The squared norms are compared (float32 for float16/bfloat16 inputs); the vectors are
    gathered unchanged, so gradients flow to the chosen ones only. ``max_order`` defaults to
    the one the fiber implies (``F = 2M + 1``). The other arguments are ``F.max_pool2d``'s
    (padding is never chosen).
    """
    if max_order is None:
        if not isinstance(x, torch.Tensor) or x.dim() != 5 or x.shape[2] % 2 == 0:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            if isinstance(x, torch.fx.Proxy):
                C.check_tensor(x, "x", "norm_max_pool2d")  # the TypeError naming the fx fix
            raise ValueError(f"norm_max_pool2d expects a harmonic field (B, C, 2M+1, H, W) with "
                             f"an odd fiber; got shape {shape}")
        max_order = (int(x.shape[2]) - 1) // 2  # int: a traced size is a tensor
    what = "norm_max_pool2d"
    check_harmonic(x, max_order, what)
    C.check_choice(per, "per", PER, what, fix="'field': one location per field, 'order': one "
                   "per field and rotation order")
    k, s, p, d = check_pool_args(kernel_size, stride, padding, dilation)
    C.check_flag(ceil_mode, "ceil_mode", what)
    if not ceil_mode:  # torch's "Output size is too small"; ceil_mode's own rule otherwise
        C.check_window(x, (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1),
                       (p[1], p[1], p[0], p[0]), what)
    check_max_windows(x, k, s, p, d, ceil_mode, what)
    b, c, f, h, w = x.shape
    v = x.detach()
    if _low_precision(v):
        v = v.float()
    sq = v * v
    if max_order:
        sq = torch.cat([sq[:, :, :1], sq[:, :, 1:].unflatten(2, (-1, 2)).sum(3)], 2)
    if per == "field":  # orders summed in a fixed order: rotations and flips keep it exact
        sq = sq.sum(2, keepdim=True)
    groups = sq.shape[2]
    # no planes (C = 0): an empty batch instead, which max_pool2d takes (it refuses 0 channels)
    planes = sq.flatten(1, 2) if c else sq.reshape(0, 1, h, w)
    _, idx = F.max_pool2d(planes, k, s, p, d, ceil_mode, return_indices=True)
    ho, wo = idx.shape[-2:]
    idx = idx.view(b, c, groups, ho * wo)
    if per == "field":
        idx = idx.expand(b, c, f, ho * wo)
    elif max_order:  # slot -> order: [0, 1, 1, 2, 2, ...]
        slot_order = torch.arange(f, device=idx.device).add(1).div(2, rounding_mode="floor")
        idx = idx.index_select(2, slot_order)
    return x.flatten(3).gather(3, idx).view(b, c, f, ho, wo)
