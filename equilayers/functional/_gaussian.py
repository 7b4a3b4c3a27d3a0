"""Gaussian anti-aliased pooling (escnn's ``PointwiseAvgPoolAntialiased2D``) and the smooth
disk mask (escnn's ``MaskModule``), for images ``(B, C, H, W)`` and group maps
``(B, C, F, H, W)`` (spatial dims only, so they commute with every fiber action).

Gaussian pool, escnn's conventions: the filter has ``k = 2 * round(truncate * sigma) + 1`` taps
per dim, ``truncate = 3`` by default (``sigma = 0.66``, e2cnn's tutorial value, gives 5; escnn's
antialiased *max* pool truncates at 4), values ``exp(-|q|^2 / (2 sigma^2))`` at
the integer offsets ``q`` from the centre, normalized to sum 1; zero padding of ``(k - 1) // 2``
by default (the size is kept at stride 1), ``F.conv2d`` at ``stride``:
``H' = floor((H + 2 padding - k) / stride) + 1``.

Disk mask, escnn's formula: for an ``S x S`` map with centre ``c = (S - 1) / 2`` and
``t = (c - margin / 100 * c)^2``, the pixel at squared distance ``d^2`` from the centre is
multiplied by 1 where ``d^2 <= t`` and by ``exp((t - d^2) / sigma^2)`` outside (``margin`` is
a percentage of the radius ``c``; ``sigma`` in pixels, default 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _checks as C

__all__ = ["gaussian_filter_size", "gaussian_filter2d", "gaussian_blur_pool2d",
           "disk_mask_weights", "disk_mask2d"]


#: The largest filter a sigma may ask for (``sigma <= 682``): 4097 taps per dim, a 128 MiB
#: float64 filter; ``sigma=1e6`` asked torch for a 6e6 x 6e6 filter (144 TB).
MAX_FILTER_SIZE = 4097


def _positive(v, name: str, what: str) -> float:
    return C.check_number(v, name, what, positive=True, fix=f"{name} in pixels")


def check_truncate(truncate, what: str) -> float:
    """The filter's half-width in standard deviations, > 0 (escnn: 3 for its average pool, 4
    for its max pool; scipy's ``gaussian_filter`` calls it ``truncate`` too)."""
    return C.check_number(truncate, "truncate", what, positive=True,
                          fix="the filter's half-width in standard deviations (escnn: 3)")


def gaussian_filter_size(sigma: float, what: str = "gaussian_filter_size", *,
                         truncate: float = 3.0, limit: int = MAX_FILTER_SIZE) -> int:
    """escnn's filter size ``2 * int(round(truncate * sigma)) + 1`` (odd), at most ``limit``
    (:data:`MAX_FILTER_SIZE`; the 3-D pool's is smaller)."""
    sigma = _positive(sigma, "sigma", what)
    truncate = check_truncate(truncate, what)
    reach = truncate * sigma
    k = 2 * int(round(reach)) + 1 if reach < 1e9 else limit + 2
    if k > limit:
        raise ValueError(f"{what}: sigma={sigma:g} asks for a filter of {k} taps per dim (2 * "
                         f"round({truncate:g} * sigma) + 1); sigma must be at most "
                         f"{(limit - 1) / 2 / truncate:g} (a {limit}-tap filter): the "
                         "Gaussian's standard deviation in pixels")
    return k


def gaussian_filter2d(sigma: float, *, truncate: float = 3.0,
                      dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """The normalized ``(k, k)`` Gaussian filter of escnn's antialiased pool (computed in
    float64, then cast).

    Example:
        >>> gaussian_filter2d(0.66).shape
        torch.Size([5, 5])
    """
    k = gaussian_filter_size(sigma, "gaussian_filter2d", truncate=truncate)
    q = torch.arange(k, dtype=torch.float64, device="cpu") - (k - 1) / 2
    filt = torch.exp(-(q[:, None] ** 2 + q[None, :] ** 2) / (2 * float(sigma) ** 2))
    return (filt / filt.sum()).to(dtype=dtype or torch.get_default_dtype(), device=device)


def check_pool_args(sigma, stride, padding, what: str, truncate: float = 3.0):
    """``(sigma, stride pair, padding pair)``, validated (``stride=None``: the filter size, as
    escnn; ``padding=None``: ``(k - 1) // 2``)."""
    sigma = _positive(sigma, "sigma", what)
    k = gaussian_filter_size(sigma, what, truncate=truncate)
    stride_p = (k, k) if stride is None else C.check_pair(
        stride, "stride", what, minimum=1, fix="or None for the filter size")
    pad_p = ((k - 1) // 2,) * 2 if padding is None else C.check_pair(
        padding, "padding", what, minimum=0, fix="or None for (k - 1) // 2")
    return sigma, stride_p, pad_p


def _check_map(x: torch.Tensor, what: str) -> None:
    C.check_tensor(x, "x", what, ndim=(4, 5),
                   layout="(a (B, C, H, W) image or a (B, C, F, H, W) group map)")


def blur_with(x: torch.Tensor, filt: torch.Tensor, stride: tuple[int, int],
              padding: tuple[int, int], what: str) -> torch.Tensor:
    """A depthwise ``F.conv2d`` of every ``(H, W)`` plane with the one ``(k, k)`` filter (an
    ``expand()``-ed view, no per-channel copy), zero padding."""
    _check_map(x, what)
    # (an int set on the module after construction, as on torch's pools)
    stride = C.check_pair(stride, "stride", what, minimum=1)
    padding = C.check_pair(padding, "padding", what, minimum=0)
    k = filt.shape[-1]
    h, w = x.shape[-2:]
    if h + 2 * padding[0] < k or w + 2 * padding[1] < k:
        raise ValueError(f"{what}: the {k}x{k} filter does not fit the padded input "
                         f"{h}+2*{padding[0]} x {w}+2*{padding[1]} (shape {tuple(x.shape)}); use "
                         "a larger input, more padding or a smaller sigma")
    planes = x.shape[-3]
    if planes == 0:  # no channels: an empty batch of one plane (a 0-group conv is refused)
        planes = 1
        flat = x.reshape(0, 1, h, w)
    else:
        flat = x.reshape(-1, planes, h, w)
    weight = filt.to(dtype=x.dtype, device=x.device)[None, None].expand(planes, 1, k, k)
    y = F.conv2d(flat, weight, stride=stride, padding=padding, groups=planes)
    return y.reshape(*x.shape[:-2], *y.shape[-2:])


def gaussian_blur_pool2d(x: torch.Tensor, sigma: float = 0.66, stride: int | None = 2,
                         padding: int | None = None, *, truncate: float = 3.0) -> torch.Tensor:
    """Gaussian blur, then subsample: escnn's ``PointwiseAvgPoolAntialiased2D`` (module
    docstring) on ``(B, C, H, W)`` or ``(B, C, F, H, W)``; ``truncate``: the filter's
    half-width in standard deviations.

    Example:
        >>> gaussian_blur_pool2d(torch.randn(2, 3, 8, 9, 9), 0.66).shape
        torch.Size([2, 3, 8, 5, 5])
    """
    sigma, stride_p, pad_p = check_pool_args(sigma, stride, padding, "gaussian_blur_pool2d",
                                             truncate)
    return blur_with(x, gaussian_filter2d(sigma, truncate=truncate, dtype=torch.float64),
                     stride_p, pad_p, "gaussian_blur_pool2d")


def check_mask_args(margin, sigma, what: str) -> tuple[float, float]:
    margin = C.check_number(margin, "margin", what, minimum=0, maximum=100,
                            fix="a percentage of the radius")
    return margin, _positive(sigma, "sigma", what)


def check_mask_size(size, what: str) -> int:
    return C.check_int(size, "size", what, minimum=1,
                       fix="the spatial size of the square inputs")


def disk_mask_weights(size: int, margin: float = 0.0, sigma: float = 2.0, *,
                      dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """escnn's ``MaskModule`` mask, ``(size, size)`` (module docstring; float64, then cast).

    Example:
        >>> disk_mask_weights(5)[2].tolist()
        [1.0, 1.0, 1.0, 1.0, 1.0]
    """
    check_mask_size(size, "disk_mask_weights")
    margin, sigma = check_mask_args(margin, sigma, "disk_mask_weights")
    c = (size - 1) / 2
    t = (c - margin / 100.0 * c) ** 2
    q = torch.arange(size, dtype=torch.float64, device="cpu") - c
    r = q[:, None] ** 2 + q[None, :] ** 2
    mask = torch.where(r > t, torch.exp((t - r) / sigma ** 2), torch.ones_like(r))
    return mask.to(dtype=dtype or torch.get_default_dtype(), device=device)


def check_square(x: torch.Tensor, size: int | None, what: str) -> None:
    _check_map(x, what)
    h, w = x.shape[-2:]
    if h != w or (size is not None and h != size):
        want = f"{size}x{size}" if size is not None else "square"
        raise ValueError(f"{what} expects {want} spatial dims; got shape {tuple(x.shape)}"
                         + (f" (built for size={size})" if size is not None else ""))


def disk_mask2d(x: torch.Tensor, margin: float = 0.0, sigma: float = 2.0) -> torch.Tensor:
    """``x`` times escnn's smooth disk mask of its (square) size, on ``(B, C, S, S)`` or
    ``(B, C, F, S, S)``.

    Example:
        >>> disk_mask2d(torch.ones(1, 1, 5, 5))[0, 0, 0, 0] < 1
        tensor(True)
    """
    check_square(x, None, "disk_mask2d")
    mask = disk_mask_weights(x.shape[-1], margin, sigma, dtype=x.dtype, device=x.device)
    return apply_mask(x, mask, x.shape[-1], "disk_mask2d")


def apply_mask(x: torch.Tensor, mask: torch.Tensor, size: int, what: str) -> torch.Tensor:
    """``x * mask`` after checking that ``x`` is ``(..., size, size)``; the mask (a table
    derived from the size alone) is moved to ``x``'s device, as a meta input for shape
    inference needs (it failed in torch's device check)."""
    check_square(x, size, what)
    return x * mask.to(dtype=x.dtype, device=x.device)
