"""Gaussian anti-aliased pooling of volumes (escnn's ``PointwiseAvgPoolAntialiased3D``) and the
smooth ball mask (escnn's ``MaskModule`` on volumes), for volumes ``(B, C, D, H, W)`` and the
cube groups' maps ``(B, C, F, D, H, W)`` (spatial dims only, so they commute with every fiber
action).

escnn's conventions, as in 2-D (:mod:`equilayers.functional._gaussian`): ``k = 2 * round(truncate
* sigma) + 1`` taps per dim (``truncate = 3``; escnn's antialiased max pool uses 4), values
``exp(-|q|^2 / (2 sigma^2))`` at the integer offsets ``q`` from the centre, normalized to sum 1,
zero padding of ``(k - 1) // 2`` by default, one depthwise ``F.conv3d`` at ``stride``:
``D' = floor((D + 2 padding - k) / stride) + 1`` (and ``H'``, ``W'`` alike).

Ball mask, escnn's formula in 3-D: for an ``S x S x S`` volume with centre ``c = (S - 1) / 2``
and ``t = (c - margin / 100 * c)^2``, the voxel at squared distance ``d^2`` from the centre is
multiplied by 1 where ``d^2 <= t`` and by ``exp((t - d^2) / sigma^2)`` outside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _checks as C
from ._gaussian import _positive, check_mask_args, check_mask_size, gaussian_filter_size

__all__ = ["MAX_FILTER_SIZE3D", "gaussian_filter3d", "check_pool3d_args", "blur_with3d",
           "gaussian_blur_pool3d", "ball_mask_weights", "ball_mask3d", "apply_ball_mask"]

#: The largest 3-D filter a sigma may ask for: 257 taps per dim (a 129 MiB float64 filter).
MAX_FILTER_SIZE3D = 257


def gaussian_filter3d(sigma: float, *, truncate: float = 3.0, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """The normalized ``(k, k, k)`` Gaussian filter of escnn's antialiased 3-D pools (computed
    in float64, then cast).

    Example:
        >>> gaussian_filter3d(0.66).shape
        torch.Size([5, 5, 5])
    """
    k = gaussian_filter_size(sigma, "gaussian_filter3d", truncate=truncate,
                             limit=MAX_FILTER_SIZE3D)
    q = (torch.arange(k, dtype=torch.float64, device="cpu") - (k - 1) / 2) ** 2
    r = q[:, None, None] + q[None, :, None] + q[None, None, :]
    filt = torch.exp(-r / (2 * float(sigma) ** 2))
    return (filt / filt.sum()).to(dtype=dtype or torch.get_default_dtype(), device=device)


def check_pool3d_args(sigma, stride, padding, what: str, truncate: float = 3.0):
    """``(sigma, stride triple, padding triple)``, validated (``stride=None``: the filter size,
    as escnn; ``padding=None``: ``(k - 1) // 2``)."""
    sigma = _positive(sigma, "sigma", what)
    k = gaussian_filter_size(sigma, what, truncate=truncate, limit=MAX_FILTER_SIZE3D)
    stride_t = (k,) * 3 if stride is None else C.check_triple(
        stride, "stride", what, minimum=1, fix="or None for the filter size")
    pad_t = ((k - 1) // 2,) * 3 if padding is None else C.check_triple(
        padding, "padding", what, minimum=0, fix="or None for (k - 1) // 2")
    return sigma, stride_t, pad_t


def blur_with3d(x: torch.Tensor, filt: torch.Tensor, stride: tuple[int, int, int],
                padding: tuple[int, int, int], what: str) -> torch.Tensor:
    """A depthwise ``F.conv3d`` of every ``(D, H, W)`` volume with the one ``(k, k, k)``
    filter (an ``expand()``-ed view, no per-channel copy), zero padding."""
    C.check_tensor(x, "x", what, ndim=(5, 6),
                   layout="(a (B, C, D, H, W) volume or a (B, C, F, D, H, W) group map)")
    # (an int set on the module after construction, as on torch's pools)
    stride = C.check_triple(stride, "stride", what, minimum=1)
    padding = C.check_triple(padding, "padding", what, minimum=0)
    k = filt.shape[-1]
    size = tuple(x.shape[-3:])
    if any(n + 2 * p < k for n, p in zip(size, padding, strict=True)):
        raise ValueError(f"{what}: the {k}x{k}x{k} filter does not fit the padded input "
                         f"{' x '.join(f'{n}+2*{p}' for n, p in zip(size, padding, strict=True))}"
                         f" (shape {tuple(x.shape)}); use a larger input, more padding or a "
                         "smaller sigma")
    volumes = x.shape[-4]
    if volumes == 0:  # no channels: an empty batch of one volume
        volumes = 1
        flat = x.reshape(0, 1, *size)
    else:
        flat = x.reshape(-1, volumes, *size)
    weight = filt.to(dtype=x.dtype, device=x.device)[None, None].expand(volumes, 1, k, k, k)
    y = F.conv3d(flat, weight, stride=stride, padding=padding, groups=volumes)
    return y.reshape(*x.shape[:-3], *y.shape[-3:])


def gaussian_blur_pool3d(x: torch.Tensor, sigma: float = 0.66, stride: int | None = 2,
                         padding: int | None = None, *, truncate: float = 3.0) -> torch.Tensor:
    """Gaussian blur, then subsample: escnn's ``PointwiseAvgPoolAntialiased3D`` (module
    docstring) on ``(B, C, D, H, W)`` or ``(B, C, F, D, H, W)``; ``truncate``: the filter's
    half-width in standard deviations.

    Example:
        >>> gaussian_blur_pool3d(torch.randn(2, 3, 24, 9, 9, 9), 0.66).shape
        torch.Size([2, 3, 24, 5, 5, 5])
    """
    what = "gaussian_blur_pool3d"
    sigma, stride_t, pad_t = check_pool3d_args(sigma, stride, padding, what, truncate)
    return blur_with3d(x, gaussian_filter3d(sigma, truncate=truncate, dtype=torch.float64),
                       stride_t, pad_t, what)


def ball_mask_weights(size: int, margin: float = 0.0, sigma: float = 2.0, *,
                      dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """escnn's ``MaskModule`` mask on volumes, ``(size, size, size)`` (module docstring;
    float64, then cast).

    Example:
        >>> ball_mask_weights(5)[2, 2].tolist()
        [1.0, 1.0, 1.0, 1.0, 1.0]
    """
    check_mask_size(size, "ball_mask_weights")
    margin, sigma = check_mask_args(margin, sigma, "ball_mask_weights")
    c = (size - 1) / 2
    t = (c - margin / 100.0 * c) ** 2
    q = (torch.arange(size, dtype=torch.float64, device="cpu") - c) ** 2
    r = q[:, None, None] + q[None, :, None] + q[None, None, :]
    mask = torch.where(r > t, torch.exp((t - r) / sigma ** 2), torch.ones_like(r))
    return mask.to(dtype=dtype or torch.get_default_dtype(), device=device)


def apply_ball_mask(x: torch.Tensor, mask: torch.Tensor, size: int | None,
                    what: str) -> torch.Tensor:
    """``x * mask`` after checking that ``x`` is a volume or 6-D map with ``size`` (any equal
    size when ``None``) on each of its last three dims."""
    C.check_tensor(x, "x", what, ndim=(5, 6),
                   layout="(a (B, C, S, S, S) volume or a (B, C, F, S, S, S) group map)")
    d, h, w = x.shape[-3:]
    if not d == h == w or (size is not None and d != size):
        want = f"{size}x{size}x{size}" if size is not None else "cubic (equal)"
        raise ValueError(f"{what} expects {want} spatial dims; got shape {tuple(x.shape)}"
                         + (f" (built for size={size})" if size is not None else ""))
    return x * mask.to(dtype=x.dtype, device=x.device)  # (as apply_mask: a meta input too)


def ball_mask3d(x: torch.Tensor, margin: float = 0.0, sigma: float = 2.0) -> torch.Tensor:
    """``x`` times escnn's smooth ball mask of its (cubic) size, on ``(B, C, S, S, S)`` or
    ``(B, C, F, S, S, S)``.

    Example:
        >>> ball_mask3d(torch.ones(1, 1, 5, 5, 5))[0, 0, 0, 0, 0] < 1
        tensor(True)
    """
    what = "ball_mask3d"
    C.check_tensor(x, "x", what, ndim=(5, 6),
                   layout="(a (B, C, S, S, S) volume or a (B, C, F, S, S, S) group map)")
    mask = ball_mask_weights(x.shape[-1], margin, sigma, dtype=x.dtype, device=x.device)
    return apply_ball_mask(x, mask, None, what)
