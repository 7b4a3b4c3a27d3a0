"""Anti-aliased downsampling and upsampling with binomial filters (Zhang 2019).

The reference semantics (a Triton kernel must reproduce them to float rounding):

* the filter is the normalized binomial of size ``k`` in ``1..7`` (``C(k-1, i) / 2^(k-1)``),
  the outer product of it in 2-D and 3-D;
* every spatial dim is padded by ``(k-1)//2`` on the left/top and ``(k-1) - (k-1)//2`` on the
  right/bottom (for even ``k`` the extra pixel sits at the bottom/right, as in Zhang's
  reference), with ``padding_mode`` ``"reflect"``, ``"replicate"``, ``"zeros"`` or
  ``"circular"``;
* the padded signal is correlated with the filter at stride ``s`` starting at offset 0, so the
  output has ``floor((N - 1) / s) + 1`` samples per dim and ``k = 1`` is exactly
  ``x[..., ::s, ::s]``.

``blur_pool2d`` and ``max_blur_pool2d`` dispatch (:mod:`equilayers.kernels`): the Triton kernel
on CUDA, a faster PyTorch formulation with the same semantics where one exists (``"fast"``), the
reference here otherwise; ``equilayers.kernels.explain("blur_pool2d", x)`` says which.

The filter is broadcast over every leading dim (a depthwise convolution over
``(prod(leading[:-1]), leading[-1], *spatial)`` with an ``expand()``-ed view of the one
filter): no per-channel copy is stored.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import _checks as C
from .. import kernels
from ..kernels import _cpu

__all__ = [
    "binomial_filter",
    "blur_pool1d",
    "blur_pool2d",
    "blur_pool3d",
    "max_blur_pool2d",
    "blur_upsample2d",
]

PADDING_MODES = C.BLUR_PADDING_MODES
MAX_KERNEL_SIZE = C.MAX_BLUR_SIZE
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_DIMS = {1: "L", 2: "H, W", 3: "D, H, W"}

# The shared checks (``equilayers._checks``), under the names the layers import from here.
check_kernel_size = C.check_blur_size
check_stride = C.check_stride
check_padding_mode = C.check_padding_mode
check_max_blur_args = C.check_max_blur_args


def binomial_filter(
    kernel_size: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """The normalized 1-D binomial filter ``C(k-1, i) / 2^(k-1)``, ``i = 0..k-1``.

    Args:
        kernel_size: ``k`` in ``1..7`` (``1`` gives ``[1.]``, ``3`` gives ``[.25, .5, .25]``).
        dtype, device: of the returned tensor (default: torch's default dtype, CPU).

    Example:
        >>> binomial_filter(3).tolist()
        [0.25, 0.5, 0.25]
    """
    k = check_kernel_size(kernel_size, "kernel_size", "binomial_filter")
    C.check_float_dtype(dtype, "dtype", "binomial_filter")
    coeffs = [math.comb(k - 1, i) / 2 ** (k - 1) for i in range(k)]
    return torch.tensor(coeffs, dtype=dtype, device=device)


def _pads(k: int) -> tuple[int, int]:
    left = (k - 1) // 2
    return left, (k - 1) - left


def _outer(filt: torch.Tensor, nd: int) -> torch.Tensor:
    out = filt
    for _ in range(nd - 1):
        out = out[..., None] * filt
    return out


def blur_nd(
    x: torch.Tensor, filt: torch.Tensor, stride: int, padding_mode: str, nd: int, what: str,
    name: str = "kernel_size",
) -> torch.Tensor:
    """Pad, correlate with the outer product of the 1-D ``filt`` and subsample by ``stride``
    over the last ``nd`` dims of ``x`` (the shared reference; inputs already validated except
    the tensor itself)."""
    C.check_tensor(x, "x", what, min_ndim=nd + 1, layout=f"(..., {_DIMS[nd]})")
    k = filt.shape[0]
    spatial = x.shape[-nd:]
    if k == 1:
        index = (Ellipsis,) + (slice(None, None, stride),) * nd
        return x[index]
    left, right = _pads(k)
    C.check_blur_padding(spatial, k, padding_mode, what, x.shape, name)
    lead = x.shape[:-nd]
    channels = x.shape[-nd - 1]
    flat = x.reshape(math.prod(lead[:-1]), channels, *spatial)  # no -1: empty batches work
    pad = (left, right) * nd
    if padding_mode == "zeros":
        flat = F.pad(flat, pad)
    else:
        flat = F.pad(flat, pad, mode=padding_mode)
    # depthwise conv with an expand()ed view of the one filter (no per-channel copy is kept;
    # on CPU this is ~3x faster than one single-channel conv over (B*C, 1, H, W))
    weight = _outer(filt.to(dtype=x.dtype, device=x.device), nd)
    weight = weight[None, None].expand(channels, 1, *weight.shape)
    out = _CONV[nd](flat, weight, stride=stride, groups=channels)
    return out.reshape(*lead, *out.shape[2:])


def _blur_pool(x, kernel_size, stride, padding_mode, nd, what):
    C.check_blur_pool_args(kernel_size, stride, padding_mode, what)
    filt = binomial_filter(kernel_size, dtype=x.dtype if isinstance(x, torch.Tensor) and
                           x.is_floating_point() else None,
                           device=x.device if isinstance(x, torch.Tensor) else None)
    return blur_nd(x, filt, stride, padding_mode, nd, what)


def blur_pool1d(x: torch.Tensor, kernel_size: int = 3, stride: int = 2,
                padding_mode: str = "reflect") -> torch.Tensor:
    """Blur the last dim with a binomial filter and subsample it by ``stride``.

    ``x`` is ``(..., L)`` with at least one leading dim; output ``(..., floor((L-1)/s)+1)``.
    See :class:`equilayers.nn.BlurPool1d`.
    """
    return _blur_pool(x, kernel_size, stride, padding_mode, 1, "blur_pool1d")


def blur_pool2d(x: torch.Tensor, kernel_size: int = 3, stride: int = 2,
                padding_mode: str = "reflect") -> torch.Tensor:
    """Blur the last two dims with a 2-D binomial filter and subsample them by ``stride``.

    ``x`` is ``(B, C, H, W)`` or a group feature map ``(B, C, F, H, W)`` (any leading dims);
    output ``(..., floor((H-1)/s)+1, floor((W-1)/s)+1)``. See :class:`equilayers.nn.BlurPool2d`.

    Example:
        >>> blur_pool2d(torch.ones(1, 2, 7, 8)).shape
        torch.Size([1, 2, 4, 4])
    """
    # the reference's argument checks run before any path is chosen, so the Triton kernel
    # and the CPU fast path see exactly the arguments the reference accepts
    C.check_blur_pool_args(kernel_size, stride, padding_mode, "blur_pool2d")
    return kernels.dispatch("blur_pool2d", x, _blur_pool2d_reference, fast=_cpu.blur_pool2d,
                            kernel_size=kernel_size, stride=stride, padding_mode=padding_mode)


def _blur_pool2d_reference(x: torch.Tensor, kernel_size: int = 3, stride: int = 2,
                           padding_mode: str = "reflect") -> torch.Tensor:
    return _blur_pool(x, kernel_size, stride, padding_mode, 2, "blur_pool2d")


def blur_pool3d(x: torch.Tensor, kernel_size: int = 3, stride: int = 2,
                padding_mode: str = "reflect") -> torch.Tensor:
    """Blur the last three dims with a 3-D binomial filter and subsample them by ``stride``.

    See :class:`equilayers.nn.BlurPool3d`.
    """
    return _blur_pool(x, kernel_size, stride, padding_mode, 3, "blur_pool3d")


def _flat_spatial(x: torch.Tensor, what: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    C.check_tensor(x, "x", what, ndim=(4, 5), layout="(B, C, H, W) or (B, C, F, H, W)")
    flat = x.reshape(math.prod(x.shape[:2]), *x.shape[-3:]) if x.dim() == 5 else x
    return flat, tuple(x.shape[:-2])


def _check_max_window(x: torch.Tensor, kernel_size: int, padding: int, what: str) -> None:
    C.check_window(x, (kernel_size, kernel_size), (padding,) * 4, what)


def max_blur_pool2d(x: torch.Tensor, kernel_size: int = 2, stride: int = 2, blur_size: int = 3,
                    padding_mode: str = "reflect", *, padding: int = 0) -> torch.Tensor:
    """``max_pool2d(x, kernel_size, stride=1, padding)`` followed by
    ``blur_pool2d(., blur_size, stride, padding_mode)``.

    Output size per dim: ``floor((N + 2 padding - kernel_size) / stride) + 1``, the same as
    ``nn.MaxPool2d(kernel_size, stride, padding)``. See :class:`equilayers.nn.MaxBlurPool2d`.
    """
    check_max_blur_args(kernel_size, stride, blur_size, padding_mode, padding)  # every path
    return kernels.dispatch("max_blur_pool2d", x, _max_blur_pool2d_reference,
                            fast=_max_blur_pool2d_fast, kernel_size=kernel_size, stride=stride,
                            blur_size=blur_size, padding_mode=padding_mode, padding=padding)


def _max_blur_pool2d_reference(x: torch.Tensor, kernel_size: int = 2, stride: int = 2,
                               blur_size: int = 3, padding_mode: str = "reflect",
                               padding: int = 0) -> torch.Tensor:
    check_max_blur_args(kernel_size, stride, blur_size, padding_mode, padding)
    flat, lead = _flat_spatial(x, "max_blur_pool2d")
    _check_max_window(x, kernel_size, padding, "max_blur_pool2d")
    y = F.max_pool2d(flat, kernel_size, stride=1, padding=padding)
    y = y.reshape(*lead, *y.shape[-2:])
    return blur_pool2d(y, blur_size, stride, padding_mode)


def _max_blur_pool2d_fast(x: torch.Tensor, kernel_size: int = 2, stride: int = 2,
                          blur_size: int = 3, padding_mode: str = "reflect",
                          padding: int = 0) -> torch.Tensor:
    # The dispatcher takes this path only with valid arguments; the rank is checked here (the
    # fast ops take any leading dims).
    _flat_spatial(x, "max_blur_pool2d")
    _check_max_window(x, kernel_size, padding, "max_blur_pool2d")
    return _cpu.max_blur_pool2d(x, kernel_size, stride, blur_size, padding_mode, padding)


def blur_upsample2d(x: torch.Tensor, scale_factor: int = 2, blur_size: int = 3,
                    padding_mode: str = "reflect") -> torch.Tensor:
    """Zero-insertion upsampling by ``scale_factor`` followed by a binomial blur scaled by
    ``scale_factor ** 2`` (which keeps the mean).

    ``x[..., i, j]`` goes to ``y[..., s i, s j]``, zeros elsewhere; the result is blurred at
    stride 1 with the padding of :func:`blur_pool2d`. With ``scale_factor=2`` and
    ``blur_size=3`` the input samples stay in place and the new ones are the averages of their
    neighbours (linear interpolation). Output ``(..., s H, s W)``. With circular padding the
    mean is preserved exactly and a circular shift of the input by ``t`` shifts the output by
    ``s t``. See :class:`equilayers.nn.BlurUpsample2d`.
    """
    what = "blur_upsample2d"
    s = check_stride(scale_factor, "scale_factor", what)
    check_kernel_size(blur_size, "blur_size", what)
    check_padding_mode(padding_mode, "padding_mode", what)
    C.check_tensor(x, "x", what, min_ndim=3, layout="(..., H, W) with a batch dim")
    h, w = x.shape[-2:]
    y = x.new_zeros(*x.shape[:-2], h, s, w, s)
    y[..., :, 0, :, 0] = x
    y = y.reshape(*x.shape[:-2], h * s, w * s)
    filt = binomial_filter(blur_size, dtype=x.dtype, device=x.device) * s
    return blur_nd(y, filt, 1, padding_mode, 2, what, "blur_size")
