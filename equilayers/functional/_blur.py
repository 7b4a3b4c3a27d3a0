"""Anti-aliased downsampling and upsampling with binomial filters (Zhang 2019).

The reference semantics (a Triton kernel must reproduce them to float rounding):

* the filter is the normalized binomial of size ``k`` in ``1..7`` (``C(k-1, i) / 2^(k-1)``),
  the outer product of it in 2-D and 3-D;
* every spatial dim is padded by ``(k-1)//2`` on the left/top and ``(k-1) - (k-1)//2`` on the
  right/bottom (for even ``k`` the extra pixel sits at the bottom/right, as in Zhang's
  reference), with ``padding_mode`` ``"reflect"``, ``"replicate"``, ``"zeros"`` or
  ``"circular"``; with ``"reflect"``, a dim of size ``<= (k-1) - (k-1)//2`` (the larger pad:
  too short to reflect) is padded with ``"replicate"`` instead, both sides (a 1-pixel dim
  blurs to itself; both modes are symmetric, so flips and rot90 still commute);
* the padded signal is correlated with the filter at stride ``s`` starting at offset 0, so the
  output has ``floor((N - 1) / s) + 1`` samples per dim and ``k = 1`` is exactly
  ``x[..., ::s, ::s]``.

``blur_pool2d`` and ``max_blur_pool2d`` dispatch (:mod:`equilayers.kernels`, whose op table
holds their references and argument specs): the Triton kernel on CUDA, a faster PyTorch
formulation with the same semantics where one exists (``"fast"``), the reference otherwise;
``equilayers.kernels.explain("blur_pool2d", x)`` says which. The other blurs here run the
shared reference (``blur_nd``) directly.

The filter is broadcast over every leading dim (a depthwise convolution over
``(prod(leading[:-1]), leading[-1], *spatial)`` with an ``expand()``-ed view of the one
filter): no per-channel copy is stored.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import _checks as C
from .. import kernels
from .._host import host_tensor
from ..kernels._reference import blur_nd, kept_channels_last
from ..kernels._tables import binomial
from ._ceil_mode import ceil_mode_pad

__all__ = [
    "binomial_filter",
    "blur_pool1d",
    "blur_pool2d",
    "blur_pool3d",
    "max_blur_pool2d",
    "blur_upsample2d",
    "blur_upsample3d",
]


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
    k = C.check_blur_size(kernel_size, "kernel_size", "binomial_filter", "filter")
    C.check_float_dtype(dtype, "dtype", "binomial_filter")
    return host_tensor(binomial(k), dtype=dtype, device=device)


def _blur_pool(x, kernel_size, stride, padding_mode, nd, what):
    # equal tuples as their ints, as blur_pool2d takes them
    kernel_size, stride = (C.square_int(v, n, what, f"a depthwise F.conv{nd}d", nd) for v, n
                           in ((kernel_size, "kernel_size"), (stride, "stride")))
    C.check_blur_pool_args(kernel_size, stride, padding_mode, what)
    filt = binomial_filter(kernel_size, dtype=x.dtype if isinstance(x, torch.Tensor) and
                           x.is_floating_point() else None,
                           device=x.device if isinstance(x, torch.Tensor) else None)
    return blur_nd(x, filt, stride, padding_mode, nd, what)


def blur_pool1d(x: torch.Tensor, kernel_size: int | tuple[int] = 3,
                stride: int | tuple[int] = 2, padding_mode: str = "reflect") -> torch.Tensor:
    """Blur the last dim with a binomial filter and subsample it by ``stride``.

    ``x`` is ``(..., L)`` with at least one leading dim; output ``(..., floor((L-1)/s)+1)``.
    ``kernel_size`` and ``stride``: ints or 1-tuples. See :class:`equilayers.nn.BlurPool1d`.
    """
    return _blur_pool(x, kernel_size, stride, padding_mode, 1, "blur_pool1d")


def blur_pool2d(x: torch.Tensor, kernel_size: int | tuple[int, int] = 3,
                stride: int | tuple[int, int] = 2, padding_mode: str = "reflect"
                ) -> torch.Tensor:
    """Blur the last two dims with a 2-D binomial filter and subsample them by ``stride``.

    ``x`` is ``(B, C, H, W)`` or a group feature map ``(B, C, F, H, W)`` (any leading dims);
    output ``(..., floor((H-1)/s)+1, floor((W-1)/s)+1)``. See :class:`equilayers.nn.BlurPool2d`.

    Example:
        >>> blur_pool2d(torch.ones(1, 2, 7, 8)).shape
        torch.Size([1, 2, 4, 4])
    """
    kernel_size, stride = (C.square_int(v, n, "blur_pool2d", "a depthwise F.conv2d") for v, n
                           in ((kernel_size, "kernel_size"), (stride, "stride")))
    return kernels.dispatch("blur_pool2d", x, kernel_size=kernel_size, stride=stride,
                            padding_mode=padding_mode)


def blur_pool3d(x: torch.Tensor, kernel_size: int | tuple[int, int, int] = 3,
                stride: int | tuple[int, int, int] = 2, padding_mode: str = "reflect"
                ) -> torch.Tensor:
    """Blur the last three dims with a 3-D binomial filter and subsample them by ``stride``.

    ``x`` is ``(B, C, D, H, W)`` or a cube-group feature map ``(B, C, F, D, H, W)`` (any
    leading dims); output ``(..., floor((D-1)/s)+1, floor((H-1)/s)+1, floor((W-1)/s)+1)``.
    ``kernel_size`` and ``stride``: ints or equal triples. See :class:`equilayers.nn.BlurPool3d`.

    Example:
        >>> blur_pool3d(torch.ones(1, 2, 24, 7, 7, 7)).shape
        torch.Size([1, 2, 24, 4, 4, 4])
    """
    return _blur_pool(x, kernel_size, stride, padding_mode, 3, "blur_pool3d")


def max_blur_pool2d(x: torch.Tensor, kernel_size: int = 2, stride: int | None = None,
                    padding: int = 0, *, ceil_mode: bool = False, blur_size: int = 3,
                    padding_mode: str = "reflect") -> torch.Tensor:
    """``max_pool2d(x, kernel_size, stride=1, padding)`` followed by
    ``blur_pool2d(., blur_size, stride, padding_mode)``.

    The positional arguments are ``F.max_pool2d``'s (``stride=None`` means ``kernel_size``).
    ``x`` is ``(B, C, H, W)``, unbatched ``(C, H, W)`` (as ``F.max_pool2d``) or a group map
    ``(B, C, F, H, W)``.
    Output size per dim: ``floor((N + 2 padding - kernel_size) / stride) + 1``, the same as
    ``F.max_pool2d(x, kernel_size, stride, padding)``; with ``ceil_mode=True``, ``ceil``
    instead of ``floor``, less one where that last window would start past ``N + padding``
    (torch's rule): ``F.max_pool2d(..., ceil_mode=True)``'s size and maxima, made by
    replicating the last row and column as far as the extra window reaches (nothing where
    ``(N + 2 padding - kernel_size) % stride == 0``; the window also covers the row or column
    it copies, so its max is torch's over the pixels it covers). See
    :class:`equilayers.nn.MaxBlurPool2d`.

    Example:
        >>> max_blur_pool2d(torch.randn(1, 2, 9, 9), 3, 2, 1).shape
        torch.Size([1, 2, 5, 5])
        >>> max_blur_pool2d(torch.randn(1, 2, 9, 9), 2, ceil_mode=True).shape
        torch.Size([1, 2, 5, 5])
    """
    what = "max_blur_pool2d"
    kernel_size, stride, padding = (C.square_int(v, n, what, "F.max_pool2d") for v, n in (
        (kernel_size, "kernel_size"), (stride, "stride"), (padding, "padding")))
    stride = kernel_size if stride is None else stride  # as F.max_pool2d
    C.check_flag(ceil_mode, "ceil_mode", what)
    C.check_tensor(x, "x", what, ndim=(3, 4, 5),
                   layout="(C, H, W), (B, C, H, W) or (B, C, F, H, W)")
    if ceil_mode:  # the extra window's reach (edge copies), then the floor-mode op on it
        C.check_max_blur_args(kernel_size, stride, blur_size, padding_mode, padding, what)
        x = ceil_mode_pad(x, kernel_size, stride, padding, "replicate")
    unbatched = x.dim() == 3  # one (C, H, W) sample, as in F.max_pool2d
    y = kernels.dispatch(what, x[None] if unbatched else x,
                         kernel_size=kernel_size, stride=stride, blur_size=blur_size,
                         padding_mode=padding_mode, padding=padding)
    return y[0] if unbatched else y


def blur_upsample2d(x: torch.Tensor, scale_factor: int = 2, blur_size: int = 3,
                    padding_mode: str = "reflect", *, transposed: bool = False) -> torch.Tensor:
    """Zero-insertion upsampling by ``scale_factor`` followed by a binomial blur scaled by
    ``scale_factor ** 2`` (which keeps the mean).

    ``x[..., i, j]`` goes to ``y[..., s i, s j]``, zeros elsewhere; the result is blurred at
    stride 1 with the padding of :func:`blur_pool2d`. With ``scale_factor=2`` and
    ``blur_size=3`` the input samples stay in place and the new ones are the averages of their
    neighbours (linear interpolation). Output ``(..., s H, s W)``. With circular padding the
    mean is preserved exactly and a circular shift of the input by ``t`` shifts the output by
    ``s t``. See :class:`equilayers.nn.BlurUpsample2d`.

    ``blur_size=1`` is the zero insertion alone, scaled by ``s**2``.

    ``transposed=True`` (``padding_mode`` ``"zeros"`` or ``"circular"``) computes ``s**2``
    times the transpose of ``blur_pool2d(., blur_size, s, padding_mode)``, for every ``s >= 1``
    and ``blur_size``: the same as the default for odd ``blur_size``; for even sizes the blur's
    pads are swapped (one pixel more before than after), which puts ``x[..., i, j]`` on
    ``y[..., s i + 1, s j + 1]`` instead, so the output lines up with the grid the pool read
    (``blur_size=2``, ``s=2`` is nearest-neighbour upsampling; ``blur_size=4`` is
    nearest-neighbour followed by a ``[1, 2, 1] / 4`` blur).

    Example:
        >>> blur_upsample2d(torch.tensor([[[[1., 2.]]]]), blur_size=2, transposed=True,
        ...                 padding_mode="zeros")
        tensor([[[[1., 1., 2., 2.],
                  [1., 1., 2., 2.]]]])
    """
    return _blur_upsample(x, scale_factor, blur_size, padding_mode, transposed, 2,
                          "blur_upsample2d")


def blur_upsample3d(x: torch.Tensor, scale_factor: int = 2, blur_size: int = 3,
                    padding_mode: str = "reflect", *, transposed: bool = False) -> torch.Tensor:
    """:func:`blur_upsample2d` on volumes: zero insertion by ``scale_factor`` along ``D, H,
    W`` and a binomial blur scaled by ``scale_factor ** 3``; output ``(..., s D, s H, s W)``
    (volumes ``(B, C, D, H, W)`` or the cube groups' maps ``(B, C, |G|, D, H, W)``). The same
    options and properties: ``transposed=True`` (``padding_mode`` ``"zeros"`` or
    ``"circular"``) is ``s**3`` times the transpose of :func:`blur_pool3d` with the same size.
    See :class:`equilayers.nn.BlurUpsample3d`.

    Example:
        >>> blur_upsample3d(torch.ones(1, 1, 2, 2, 2), blur_size=2, transposed=True,
        ...                 padding_mode="circular").shape
        torch.Size([1, 1, 4, 4, 4])
    """
    return _blur_upsample(x, scale_factor, blur_size, padding_mode, transposed, 3,
                          "blur_upsample3d")


def _blur_upsample(x: torch.Tensor, scale_factor: int, blur_size: int, padding_mode: str,
                   transposed: bool, nd: int, what: str) -> torch.Tensor:
    s = C.check_blur_upsample_args(scale_factor, blur_size, padding_mode, transposed, what)[0]
    dims = "(..., H, W)" if nd == 2 else "(..., D, H, W)"
    C.check_tensor(x, "x", what, min_ndim=nd + 1, layout=f"{dims} with a batch dim")
    sizes, lead = x.shape[-nd:], x.shape[:-nd]
    keep = kept_channels_last(x, nd)
    if keep is not None:
        # the input's layout (as nn.Upsample keeps it): the zeros in it, then the blur keeps it
        # (x.new_zeros, channels innermost, then moved: a tensor subclass keeps its type, where
        # torch.empty(memory_format=...) made a plain buffer that a wrapper's halves both
        # wrote into)
        y = x.new_zeros(lead[0], *(n * s for n in sizes), lead[1]).movedim(-1, 1)
        y[(Ellipsis,) + (slice(None, None, s),) * nd] = x
    else:
        y = x.new_zeros(*lead, *(v for n in sizes for v in (n, s)))
        inserted: tuple[Any, ...] = (Ellipsis,) + (slice(None), 0) * nd
        y[inserted] = x  # x[..., i] at y[..., s i]
        y = y.reshape(*lead, *(n * s for n in sizes))
    if blur_size == 1:  # the filter [s] in each dim (blur_nd reads no filter of size 1)
        return y * s ** nd
    def blur(z: torch.Tensor) -> torch.Tensor:  # the filter times s per dim, on the zeros
        # the dispatched stride-1 blur pool (its CPU fast path: the reference's depthwise conv
        # unfolded every window of the s^nd times larger map, 18x the output at 2048^2)
        C.check_blur_padding(z.shape[-nd:], blur_size, padding_mode, what, z.shape, "blur_size")
        pool = blur_pool2d if nd == 2 else blur_pool3d
        return pool(z, blur_size, 1, padding_mode) * s ** nd

    if not (transposed and blur_size % 2 == 0):
        return blur(y)
    # the transpose of an even blur pool: its pads swapped (one more pixel before than after),
    # i.e. the samples one pixel further on: a roll for circular padding; for zeros one zero
    # before in each dim, and the last ones of the result dropped (at s = 1 the last input
    # row is not a zero to shift out)
    if padding_mode == "circular":
        return blur(torch.roll(y, (1,) * nd, tuple(range(-nd, 0))))
    out = blur(torch.nn.functional.pad(y, (1, 0) * nd))
    kept: tuple[Any, ...] = (Ellipsis,) + tuple(slice(0, n * s) for n in sizes)
    return out[kept] if keep is None else out[kept].contiguous(memory_format=keep)
