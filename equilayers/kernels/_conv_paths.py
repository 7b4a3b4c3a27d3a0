"""The depthwise-convolution fast paths: the blur as one depthwise strided ``F.conv2d``.

What kornia's ``BlurPool2D`` does: one depthwise ``conv2d`` at the stride with the outer
product of the normalized binomial, one ``expand()``ed filter for every channel, zero padding
as the convolution's own ``padding``. oneDNN vectorises a depthwise conv over the channels of
a channels_last input, where the separable strided adds of :mod:`._cpu` walk each plane; which
of the two is faster depends on the layout and size, so the op table lists both and the
measured layout table (:mod:`._layout`) picks.

The other padding modes (``reflect``, ``replicate``, ``circular``) at odd blur sizes are not
padded copies of the input (a full-size copy, mmapped and page-faulted afresh on every call at
some sizes): the conv runs with zero padding, which is exact wherever a window stays inside
the input, and the border ring (the outputs whose windows reach the padding: one row and
column per side for a 3-tap blur at stride 2) is recomputed from its own few padded rows and
columns and written over (:class:`_RingBlur`, whose backward is the transposed conv plus the
ring's few rows scattered back, never a full-size temporary). Even blur sizes pad one more
after than before, which no symmetric conv padding gives: they pad a copy, then convolve.

The leading dims are folded into the channels (``(B, C, F, H, W)`` -> ``(B, C F, H, W)``, a view
for contiguous inputs and for the channels_last view of a group conv's output), so a
channels_last group map stays channels_last; a channels_last input whose padding copy comes
back contiguous is made channels_last again before the conv. Under ``create_graph=True`` (and
for a batch of gradients, ``is_grads_batched=True``) the ring's backward differentiates the
padded formulation through autograd, so a gradient penalty differentiates it again. The same
sums as the reference (pad then depthwise conv), up to the order of float additions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._cpu_cache import cpu_cache
from .._host import host_tensor
from ._autodiff import batched_grad
from ._tables import _source, binomial, border_ring, inner_outputs, pad_amounts, pad_axes

__all__ = ["blur_pool2d", "max_blur_pool2d"]


def _planes(x: torch.Tensor) -> torch.Tensor:
    """``x`` as ``(N, G, H, W)``: every dim between the first and ``H`` folded into ``G``."""
    if x.dim() == 3:
        return x[None]
    return x if x.dim() == 4 else x.flatten(1, -3)


def _is_channels_last(x: torch.Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


#: ``(k, dtype, device) -> (1, 1, k, k)`` binomial filter: built once per key instead of per
#: call (two small ops, ~3% of a 1 ms blur pool). Its values are a function of the key alone
#: and it never leaves this module (F.conv2d reads it), so it cannot go stale; only a plain
#: tensor built outside tracing is kept (not a fake or inference tensor).
_FILTERS: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}


def _filter2d(k: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    key = (k, dtype, device)
    f2 = _FILTERS.get(key)
    if f2 is not None:
        return f2
    with torch.inference_mode(False):
        f = host_tensor(binomial(k), dtype=dtype, device=device)
        f2 = torch.outer(f, f)[None, None]
    if (type(f2) is torch.Tensor and not f2.is_inference() and len(_FILTERS) < 64
            and not torch.compiler.is_compiling() and not torch.jit.is_tracing()):
        _FILTERS[key] = f2
    return f2


def _weight(x: torch.Tensor, k: int) -> torch.Tensor:
    return _filter2d(k, x.dtype, x.device).expand(x.shape[1], 1, k, k)


def _blur4(x: torch.Tensor, k: int, s: int, mode: str) -> torch.Tensor:
    """The blur pooling of a ``(N, G, H, W)`` tensor as one depthwise strided conv."""
    if k == 1:
        return x[..., ::s, ::s]
    left, right = pad_amounts(k)
    if left == right:
        if mode == "zeros":
            return F.conv2d(x, _weight(x, k), stride=s, padding=left, groups=x.shape[1])
        if all(lo < hi for _, lo, hi in _axes(x.shape, k, s)):
            return _RingBlur.apply(x, k, s, mode)
    return _padded_blur(x, k, s, mode)


def _padded_blur(x: torch.Tensor, k: int, s: int, mode: str) -> torch.Tensor:
    """Pad a copy of ``x`` in ``mode`` (reflect on a too-short axis: replicate, as
    :func:`._tables.axis_mode` says), then the depthwise conv (differentiable plain ops). The
    ring path never sees such an axis: its outputs all read the padding there."""
    xp = pad_axes(x, k, mode, 2)
    if _is_channels_last(x) and not _is_channels_last(xp):
        xp = xp.contiguous(memory_format=torch.channels_last)
    return F.conv2d(xp, _weight(x, k), stride=s, groups=x.shape[1])


# --- zero padding, then the border ring ----------------------------------------------------------

def _axes(shape, k: int, s: int):
    return inner_outputs(shape[-2], k, s), inner_outputs(shape[-1], k, s)


def _window(a: int, b: int, k: int, s: int) -> tuple[int, int]:
    """The padded positions ``[p0, p1)`` (input coordinates) that outputs ``a..b-1`` read."""
    left, _ = pad_amounts(k)
    return s * a - left, s * (b - 1) - left + k


def _span(x: torch.Tensor, dim: int, p0: int, p1: int, mode: str) -> torch.Tensor:
    """The padded positions ``p0..p1-1`` of ``x`` along ``dim`` (-1 or -2), padding in
    ``mode``: a view where they lie inside, else a small copy. Reflect and replicate padding
    read only positions inside the span's own rows (the spans here reach past the blur's
    padding), so they pad the narrowed slice; circular padding reads the far end."""
    n = x.shape[dim]
    a, b = max(p0, 0), min(p1, n)
    t = x.narrow(dim, a, b - a)
    before, after = a - p0, p1 - b
    if not (before or after):
        return t
    if mode == "circular":
        parts = [x.narrow(dim, n - before, before)] if before else []
        parts += [t, x.narrow(dim, 0, after)] if after else [t]
        return torch.cat(parts, dim)
    return F.pad(t, (before, after, 0, 0) if dim == -1 else (0, 0, before, after), mode=mode)


@cpu_cache(maxsize=256)
def _ring_sources(h: int, w: int, k: int, s: int, mode: str):
    """Per rectangle of the border ring: ``(rows, cols, row sources, col sources)``, the
    input index each padded position of its window reads (a function of sizes only)."""
    out = []
    for rows, cols in border_ring(_axes((h, w), k, s)):
        rs, cs = (torch.tensor([_source(p, n, mode) for p in range(*_window(*r, k, s))])
                  for r, n in ((rows, h), (cols, w)))
        out.append((rows, cols, rs, cs))
    return tuple(out)


class _RingBlur(torch.autograd.Function):
    """The blur pooling of ``(N, G, H, W)`` with an odd blur and a non-zero padding mode: the
    depthwise conv with zero padding, its border ring recomputed from the padded rows and
    columns it reads. Backward: the transposed conv of the gradient with the ring zeroed,
    plus each ring rectangle's transposed conv added back onto the inputs its window read."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: int, s: int, mode: str) -> torch.Tensor:
        weight, g = _weight(x, k), x.shape[1]
        out = F.conv2d(x, weight, stride=s, padding=pad_amounts(k)[0], groups=g)
        for (a, b), (c, d) in border_ring(_axes(x.shape, k, s)):
            slab = _span(_span(x, -2, *_window(a, b, k, s), mode), -1, *_window(c, d, k, s),
                         mode)
            out[..., a:b, c:d] = F.conv2d(slab, weight, stride=s, groups=g)
        ctx.args = (k, s, mode)
        ctx.like = (x.shape, x.dtype, x.device, _is_channels_last(x))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        k, s, mode = ctx.args
        shape, dtype, device, channels_last = ctx.like
        # create_graph=True, or a batch of gradients (is_grads_batched=True: such a gradient
        # cannot be asked its layout nor written in place): differentiable plain ops
        if torch.is_grad_enabled() or batched_grad(grad):
            with torch.enable_grad():
                xd = torch.zeros(shape, dtype=dtype, device=device, requires_grad=True)
                (gx,) = torch.autograd.grad(_padded_blur(xd, k, s, mode), xd, grad,
                                            create_graph=True)
            return gx, None, None, None
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        grad = grad.contiguous(memory_format=fmt)
        h, w = shape[-2:]
        rects = _ring_sources(h, w, k, s, mode)
        g0 = grad.clone()
        for (a, b), (c, d), _, _ in rects:
            g0[..., a:b, c:d] = 0
        weight, groups, left = _weight(grad, k), shape[1], pad_amounts(k)[0]
        n_h, n_w = grad.shape[-2:]
        extra = (h - (n_h - 1) * s - k + 2 * left, w - (n_w - 1) * s - k + 2 * left)
        gx = F.conv_transpose2d(g0, weight, stride=s, padding=left, output_padding=extra,
                                groups=groups)
        for (a, b), (c, d), rs, cs in rects:
            gs = F.conv_transpose2d(grad[..., a:b, c:d], weight, stride=s, groups=groups)
            rs, cs = rs.to(device), cs.to(device)
            p0, p1 = _window(a, b, k, s)
            if p0 >= 0 and p1 <= h:  # rows inside: add the columns onto them in place
                gx.narrow(-2, p0, p1 - p0).index_add_(-1, cs, gs)
            else:
                rows = gs.new_zeros((*gs.shape[:-1], w)).index_add_(-1, cs, gs)
                gx.index_add_(-2, rs, rows)
        return gx, None, None, None


def _unfold(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return y.reshape(*x.shape[:-2], *y.shape[-2:])


def blur_pool2d(x: torch.Tensor, kernel_size: int = 3, stride: int = 2,
                padding_mode: str = "reflect") -> torch.Tensor:
    """``blur_pool2d`` as one depthwise strided ``conv2d`` (zero padding, the border ring
    recomputed for the other modes; arguments already validated by the op's spec).

    Example:
        >>> from equilayers import functional as EF, kernels
        >>> x = torch.randn(2, 3, 9, 8).contiguous(memory_format=torch.channels_last)
        >>> with kernels.use_reference():
        ...     ref = EF.blur_pool2d(x, 3, 2, "circular")
        >>> torch.allclose(blur_pool2d(x, 3, 2, "circular"), ref, atol=1e-6)
        True
    """
    return _unfold(_blur4(_planes(x), kernel_size, stride, padding_mode), x)


def max_blur_pool2d(x: torch.Tensor, kernel_size: int = 2, stride: int = 2, blur_size: int = 3,
                    padding_mode: str = "reflect", padding: int = 0) -> torch.Tensor:
    """``max_pool2d(x, kernel_size, 1, padding)`` (oneDNN's, which keeps channels_last), then
    :func:`blur_pool2d`'s depthwise conv (arguments already validated)."""
    y = F.max_pool2d(_planes(x), kernel_size, stride=1, padding=padding)
    return _unfold(_blur4(y, blur_size, stride, padding_mode), x)
