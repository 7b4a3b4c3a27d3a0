"""The pure-PyTorch references of the table's ops, and their argument specs.

Each op has a ``check_<op>(x, **kwargs)``: its one argument spec, which raises the
``TypeError``/``ValueError`` that names the fix. The reference runs it first; the dispatcher
(:mod:`._dispatch`) routes every call it rejects to the reference, so the Triton kernel and the
fast paths only ever see calls the reference accepts. The references are differentiable, run
in float64 and on any device, and are the specification the other paths are tested against.

The binomial blurs (:func:`blur_nd`; the semantics are in :mod:`equilayers.functional._blur`)
pad by ``(k - 1) // 2`` on the left/top and the rest on the right/bottom, correlate with the
outer product of the normalized binomial and subsample from offset 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import _checks as C
from .._host import host_tensor, traced_ints
from ._dispatch import dispatch
from ._tables import binomial, pad_axes

__all__ = ["CRITERIA", "blur_nd", "blur_pool2d", "check_blur_pool2d", "check_max_blur_pool2d",
           "check_polyphase_pool2d", "max_blur_pool2d", "polyphase_pool2d"]

#: The norm order of each polyphase criterion.
CRITERIA = {"l2": 2, "l1": 1, "linf": math.inf}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_DIMS = {1: "L", 2: "H, W", 3: "D, H, W"}


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
    over the last ``nd`` dims of ``x`` (the shared reference of the binomial blurs; the other
    arguments already validated)."""
    C.check_tensor(x, "x", what, min_ndim=nd + 1, layout=f"(..., {_DIMS[nd]})")
    k = filt.shape[0]
    spatial = x.shape[-nd:]
    index = (Ellipsis,) + (slice(None, None, stride),) * nd
    if k == 1:
        return x[index]
    C.check_blur_padding(spatial, k, padding_mode, what, x.shape, name)
    if x.numel() == 0:  # (a zero channel or spatial size): the strided slice has the output's
        return x[index]  # shape, (n - 1) // stride + 1 per dim; F.pad and conv refuse it
    lead = x.shape[:-nd]
    channels = x.shape[-nd - 1]
    if isinstance(channels, torch.Tensor):  # traced (the legacy ONNX exporter): the filter's
        channels = traced_ints(channels)[0]  # shape a constant (after a pad, ONNX knows none;
        # the conv's groups is one already)
    flat = x.reshape(math.prod(lead[:-1]), channels, *spatial)  # no -1: empty batches work
    flat = pad_axes(flat, k, padding_mode, nd)  # reflect on a too-short axis: replicate
    # depthwise conv with an expand()ed view of the one filter (no per-channel copy is kept;
    # on CPU this is ~3x faster than one single-channel conv over (B*C, 1, H, W))
    weight = _outer(filt.to(dtype=x.dtype, device=x.device), nd)
    weight = weight[None, None].expand(channels, 1, *weight.shape)
    out = _CONV[nd](flat, weight, stride=stride, groups=channels)
    out = out.reshape(*lead, *out.shape[2:])
    fmt = kept_channels_last(x, nd)
    if fmt is not None:
        # the input's layout, on every padding (a circular F.pad returns a contiguous copy)
        out = out.contiguous(memory_format=fmt)
    return out


#: The channels-last layout of a batch of images (``nd=2``, 4-D) and of volumes (3, 5-D).
_CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}


def _in_format(x: torch.Tensor, fmt: torch.memory_format) -> bool:
    try:
        return x.is_contiguous(memory_format=fmt)
    except RuntimeError:  # inside vmap: "NYI: querying is_contiguous ..." (no layout to keep)
        return False


def kept_channels_last(x: torch.Tensor, nd: int) -> torch.memory_format | None:
    """The channels-last layout that an op on the last ``nd`` dims of ``x`` gives its output,
    as ``nn.Upsample`` and torch's pools keep it: ``channels_last`` for a 4-D image batch in
    that layout, ``channels_last_3d`` for a 5-D volume batch in that one; None otherwise."""
    fmt = _CHANNELS_LAST.get(nd)
    if fmt is None or x.dim() != nd + 2 or x.is_contiguous() or not _in_format(x, fmt):
        return None
    return fmt


def _filter(k: int, x: torch.Tensor) -> torch.Tensor:
    return host_tensor(binomial(k), dtype=x.dtype, device=x.device)


# --- blur_pool2d ---------------------------------------------------------------------------------

def check_blur_pool2d(x: torch.Tensor, kernel_size: int = 3, stride: int = 2,
                      padding_mode: str = "reflect") -> None:
    """The argument spec of ``blur_pool2d``: any leading dims, the padding fits ``H, W``."""
    what = "blur_pool2d"
    C.check_blur_pool_args(kernel_size, stride, padding_mode, what)
    C.check_tensor(x, "x", what, min_ndim=3, layout=f"(..., {_DIMS[2]})")
    C.check_blur_padding(x.shape[-2:], kernel_size, padding_mode, what, x.shape)


def blur_pool2d(x: torch.Tensor, kernel_size: int = 3, stride: int = 2,
                padding_mode: str = "reflect") -> torch.Tensor:
    """The reference of :func:`equilayers.functional.blur_pool2d`."""
    check_blur_pool2d(x, kernel_size, stride, padding_mode)
    return blur_nd(x, _filter(kernel_size, x), stride, padding_mode, 2, "blur_pool2d")


# --- max_blur_pool2d -----------------------------------------------------------------------------

def check_max_blur_pool2d(x: torch.Tensor, kernel_size: int = 2, stride: int = 2,
                          blur_size: int = 3, padding_mode: str = "reflect",
                          padding: int = 0) -> None:
    """The argument spec of ``max_blur_pool2d``: 4-D or 5-D input, the padded input holds a
    max-pool window, the blur's padding fits the max-pooled map."""
    what = "max_blur_pool2d"
    C.check_max_blur_args(kernel_size, stride, blur_size, padding_mode, padding, what)
    C.check_tensor(x, "x", what, ndim=(4, 5), layout="(B, C, H, W) or (B, C, F, H, W)")
    C.check_window(x, (kernel_size, kernel_size), (padding,) * 4, what)
    pooled = tuple(n + 2 * padding - kernel_size + 1 for n in x.shape[-2:])
    C.check_blur_padding(pooled, blur_size, padding_mode, what, x.shape, "blur_size")


def max_blur_pool2d(x: torch.Tensor, kernel_size: int = 2, stride: int = 2, blur_size: int = 3,
                    padding_mode: str = "reflect", padding: int = 0) -> torch.Tensor:
    """The reference of :func:`equilayers.functional.max_blur_pool2d`: ``max_pool2d`` at
    stride 1, then ``blur_pool2d`` (itself dispatched: the Triton blur or the fast one where
    they apply)."""
    check_max_blur_pool2d(x, kernel_size, stride, blur_size, padding_mode, padding)
    flat = x.flatten(0, 1) if x.dim() == 5 else x
    if x.numel() == 0:  # max_pool2d refuses a zero channel count: the empty pooled map
        n = [size + 2 * padding - kernel_size + 1 for size in flat.shape[-2:]]
        y = F.pad(flat, (padding,) * 4)[..., :n[0], :n[1]]
    else:
        y = F.max_pool2d(flat, kernel_size, stride=1, padding=padding)
    y = y.reshape(*x.shape[:-2], *y.shape[-2:])
    return dispatch("blur_pool2d", y, kernel_size=blur_size, stride=stride,
                    padding_mode=padding_mode)


# --- polyphase_pool2d ----------------------------------------------------------------------------

def check_polyphase_pool2d(x: torch.Tensor, stride: int = 2, *, criterion: str = "l2",
                           blur_size: int = 1, padding_mode: str = "circular",
                           return_index: bool = False) -> None:
    """The argument spec of ``polyphase_pool2d``: a batch dim, ``H`` and ``W`` divisible by
    ``stride``, the blur's padding fits. (Here a 3-D ``x`` is ``(B, H, W)``; the public
    :func:`equilayers.functional.polyphase_pool2d` reads it as an unbatched ``(C, H, W)`` and
    sends it here as ``x[None]``.)"""
    what = "polyphase_pool2d"
    C.check_polyphase_args(stride, criterion, blur_size, padding_mode, what)
    C.check_flag(return_index, "return_index", what)
    C.check_tensor(x, "x", what, min_ndim=3, layout="(B, ..., H, W) with a batch dim")
    h, w = x.shape[-2:]
    if h % stride or w % stride:
        raise ValueError(f"polyphase_pool2d needs H and W divisible by stride={stride} "
                         f"(circular shifts must permute the components); got H={h}, W={w} "
                         f"(shape {tuple(x.shape)}). Crop or pad the input to a multiple of "
                         f"{stride} first")
    C.check_blur_padding((h, w), blur_size, padding_mode, what, x.shape, "blur_size")


def polyphase_pool2d(x: torch.Tensor, stride: int = 2, *, criterion: str = "l2",
                     blur_size: int = 1, padding_mode: str = "circular",
                     return_index: bool = False
                     ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The reference of :func:`equilayers.functional.polyphase_pool2d`."""
    check_polyphase_pool2d(x, stride, criterion=criterion, blur_size=blur_size,
                           padding_mode=padding_mode, return_index=return_index)
    s, order = stride, CRITERIA[criterion]
    h, w = x.shape[-2:]
    if blur_size > 1:
        x = blur_nd(x, _filter(blur_size, x), 1, padding_mode, 2, "polyphase_pool2d",
                    "blur_size")
    b = x.shape[0]
    lead = x.shape[1:-2]
    xr = x.reshape(b, math.prod(lead), h // s, s, w // s, s)  # no -1: empty batches work
    acc = None if x.device.type == "mps" else torch.float64
    if xr.numel():
        crit = torch.linalg.vector_norm(xr, order, dim=(1, 2, 4), dtype=acc)  # (B, s, s)
    else:  # no sample (no channel, fiber or pixel): every norm is 0 (linf refuses the empty)
        crit = xr.new_zeros(b, s, s, dtype=acc)
    index = crit.reshape(b, s * s).argmax(dim=1)
    rows = torch.arange(b, device=x.device)
    out = xr[rows, :, :, index // s, :, index % s]  # (B, R, H/s, W/s)
    out = out.reshape(b, *lead, h // s, w // s)
    return (out, index) if return_index else out
