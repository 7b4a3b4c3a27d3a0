"""Cheaper PyTorch formulations with the references' exact semantics (the CPU fast path).

Each op is an ``autograd.Function`` with a hand-written backward:

- ``max_pool2d_stride1(x, m)`` equals ``F.max_pool2d(x, m, stride=1)``, values and gradients.
  The forward is elementwise ``torch.maximum`` passes over shifted views (separable: along W,
  then along H; max-pool padding as a ``-inf`` border), where CPU ``max_pool2d`` computes an
  int64 index per output and is an order of magnitude slower. The backward routes each
  output's gradient to the first maximum of its window in row-major order, as ``max_pool2d``
  does, separably too: the first window row reaching the maximum, then the first column of
  that row reaching the row's maximum, each as float 0/1 masks (``torch.eq(..., out=float)``:
  float masks multiply several times faster than bool ones on CPU). For ``m = 2`` without
  padding the two masks are single comparisons of neighbours. A window holding a NaN or an
  infinity, or a non-finite upstream gradient, takes the ``max_pool2d`` backward itself (masks
  would route them differently).
- ``blur_pool2d(x, k, s, mode)`` equals the reference blur pooling (pad, correlate with the
  outer product of the binomial, subsample): two separable 1-D passes, each the ``k`` taps as
  strided slices scaled and added (``out = w_c x[c::s]; out[lo:hi] += w_j x[...]``), the
  padding as a few single-row adds at the borders (the tap tables of :mod:`._tables`), never a
  padded copy; the backward is the transpose, strided adds into one buffer.
- ``max_blur_pool2d``: the stride-1 maxima (any window, max-pool padding), then the blur above.
(``polyphase_pool2d``'s fast path is in :mod:`._cpu_polyphase`.)

The blur and the max-blur run chunk by chunk (about :data:`CHUNK_BYTES_PER_THREAD` of input
planes per intra-op thread at a time), so the intermediates (the stride-1 max map, the masks,
the half-blurred rows) live in cache and the only full-size buffers are the output and the
input's gradient. The backward saves only ``x`` (the max pooling) or nothing (the blur, which
is linear) and recomputes the masks chunk by chunk: at 32 x 64 x 112 x 112 this took
``max_blur_pool2d`` forward+backward from 2.7x to about 0.9-1.1x ``MaxPool2d(2)``, and its
extra training memory from 2.6x to 0.7x ``MaxPool2d``'s (which keeps int64 indices). Under
``create_graph=True`` the backward runs the unchunked ops through autograd, so a gradient
penalty differentiates it again (``max_pool2d_stride1``: ``max_pool2d``'s own backward, recorded);
inside ``torch.func`` transforms and forward-mode AD ``max_pool2d_stride1`` is ``max_pool2d``.

Float rounding differs from the reference's convolution only in the order of the sums.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .. import _checks as C
from ._autodiff import batched_grad, plain_tensor, transforms_active
from ._tables import _source, axis_mode, binomial, pad_amounts

__all__ = ["blur_pool2d", "max_blur_pool2d", "max_pool2d_stride1"]


# --- stride-1 max pooling ------------------------------------------------------------------------

def _format(x: torch.Tensor) -> torch.memory_format:
    """``x``'s memory format for new buffers: channels_last(_3d) stays so, else contiguous."""
    if not x.is_contiguous():
        for fmt, nd in ((torch.channels_last, 4), (torch.channels_last_3d, 5)):
            if x.dim() == nd and x.is_contiguous(memory_format=fmt):
                return fmt
    return torch.contiguous_format


def _empty(shape, like: torch.Tensor) -> torch.Tensor:
    """A buffer in ``like``'s dtype, device and memory format: elementwise ops over operands of
    mixed layouts (an NCHW temporary beside NHWC views) take a slow strided path on CPU."""
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=_format(like))


def _torch_max_pool(x: torch.Tensor, m: int, padding: int = 0) -> torch.Tensor:
    """``F.max_pool2d(x, m, stride=1, padding)`` on any rank: F.max_pool2d takes 3-D and 4-D
    inputs only, so a 5-D group map (a channels_last one is not viewed as planes) is folded
    to ``(N, 1, H, W)`` and back, and a plane ``(H, W)`` gets a leading dim."""
    if x.dim() == 2:
        return F.max_pool2d(x[None], m, stride=1, padding=padding)[0]
    if x.dim() <= 4:
        return F.max_pool2d(x, m, stride=1, padding=padding)
    y = F.max_pool2d(x.reshape(-1, 1, *x.shape[-2:]), m, stride=1, padding=padding)
    return y.reshape(*x.shape[:-2], *y.shape[-2:])


def _max_pool_reference_grad(x: torch.Tensor, m: int, grad: torch.Tensor,
                             padding: int = 0, create_graph: bool = False) -> torch.Tensor:
    """``max_pool2d``'s own backward. ``create_graph``: recorded, so a gradient penalty
    differentiates it again (in ``grad``; in ``x`` it is piecewise constant)."""
    with torch.enable_grad():
        xd = x.detach().requires_grad_(True)
        (gx,) = torch.autograd.grad(_torch_max_pool(xd, m, padding), xd, grad,
                                    create_graph=create_graph)
    return gx


def _max2x2_masks(xc: torch.Tensor):
    """The 2x2 stride-1 max map's operands: ``cols`` (max of each horizontal pair) and the
    row-major first-maximum masks ``take_left`` (H, W-1) and ``take_top`` (H-1, W-1)."""
    left, right = xc[..., :-1], xc[..., 1:]
    cols = torch.maximum(left, right)
    top, bottom = cols[..., :-1, :], cols[..., 1:, :]
    take_left = torch.ge(left, right, out=_empty(cols.shape, xc))
    take_top = torch.ge(top, bottom, out=_empty(top.shape, xc))
    return cols, take_left, take_top


def _max2x2_backward(gm: torch.Tensor, take_left: torch.Tensor, take_top: torch.Tensor,
                     out: torch.Tensor) -> None:
    """Route ``gm`` (the max map's gradient) through the masks into ``out`` (the input's)."""
    h, w = gm.shape[-2:]
    # Rows: the grad of cols (H, W-1) is [g top; 0] + [0; g (1 - top)]: the bottom share
    # first (g - g top, exact for finite g), then the top share added (addcmul: no temporary).
    g_cols = _empty((*gm.shape[:-2], h + 1, w), gm)
    torch.addcmul(gm, gm, take_top, value=-1, out=g_cols[..., 1:, :])
    g_cols[..., :1, :] = 0
    g_cols[..., :h, :].addcmul_(gm, take_top)
    # Columns: the same along W.
    torch.addcmul(g_cols, g_cols, take_left, value=-1, out=out[..., 1:])
    out[..., :1] = 0
    out[..., :w].addcmul_(g_cols, take_left)


def _padded(xc: torch.Tensor, p: int) -> torch.Tensor:
    """``xc`` with ``p`` rows and columns of ``-inf`` around it (max pooling's padding)."""
    return F.pad(xc, (p, p, p, p), value=float("-inf")) if p else xc


def _max_map(xc: torch.Tensor, m: int, p: int):
    """``max_pool2d(xc, m, stride=1, padding=p)`` as separable maxima: ``(xp, cols, out)``,
    ``xp`` the ``-inf``-padded input and ``cols`` its maxima along W."""
    xp = _padded(xc, p)
    hm, wm = xp.shape[-2] - m + 1, xp.shape[-1] - m + 1
    cols = xp[..., :wm]
    for v in range(1, m):
        cols = torch.maximum(cols, xp[..., v:v + wm])
    out = cols[..., :hm, :]
    for u in range(1, m):
        out = torch.maximum(out, cols[..., u:u + hm, :])
    return xp, cols, out


def _first_max_masks(windows, best: torch.Tensor):
    """Float 0/1 masks, one per window offset, marking where that offset is the first (in
    order) to reach ``best``: max_pool2d's row-major first-maximum rule, one axis at a time."""
    left = None
    for view in windows:
        take = torch.eq(view, best, out=_empty(best.shape, best))
        if left is None:
            left = 1 - take
        else:
            take.mul_(left)
            left.sub_(take)
        yield take


def _max_backward(xc: torch.Tensor, m: int, p: int, gm: torch.Tensor,
                  out: torch.Tensor) -> None:
    """The gradient of ``max_pool2d(xc, m, 1, p)`` for upstream ``gm``, into ``out``: the first
    row (of the window) reaching the maximum, then the first column within that row, is the
    row-major first maximum. Needs finite ``xc`` (padding is ``-inf``; no NaN)."""
    xp, cols, mx = _max_map(xc, m, p)
    hm, wm = mx.shape[-2:]
    g_cols = _empty(cols.shape, gm).zero_()
    for u, take in enumerate(_first_max_masks([cols[..., u:u + hm, :] for u in range(m)], mx)):
        g_cols[..., u:u + hm, :].addcmul_(gm, take)
    gxp = _empty(xp.shape, gm).zero_() if p else out.zero_()
    for v, take in enumerate(_first_max_masks([xp[..., v:v + wm] for v in range(m)], cols)):
        gxp[..., v:v + wm].addcmul_(g_cols, take)
    if p:
        out.copy_(gxp[..., p:xp.shape[-2] - p, p:xp.shape[-1] - p])


class _MaxPool2x2Stride1(torch.autograd.Function):
    """``max_pool2d(x, 2, stride=1)``; the backward from two float masks saved by the forward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        if not ctx.needs_input_grad[0]:
            return _max_map(x, 2, 0)[2]
        cols, take_left, take_top = _max2x2_masks(x)
        out = torch.maximum(cols[..., :-1, :], cols[..., 1:, :])
        ctx.save_for_backward(x, take_top, take_left)
        # NaN anywhere routes differently; decided once here (a sum reads, writes nothing).
        ctx.finite = bool(torch.isfinite(out.sum()))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, take_top, take_left = ctx.saved_tensors
        graph = torch.is_grad_enabled()  # create_graph=True: recorded, differentiable again
        if graph or batched_grad(grad):  # or a batch of gradients: no out= buffers, no reads
            return _max_pool_reference_grad(x, 2, grad, create_graph=graph)
        if not ctx.finite or not bool(torch.isfinite(grad.sum())):
            return _max_pool_reference_grad(x, 2, grad)
        gx = _empty((*grad.shape[:-2], grad.shape[-2] + 1, grad.shape[-1] + 1), grad)
        _max2x2_backward(grad, take_left, take_top, gx)
        return gx


class _MaxPoolStride1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, m: int) -> torch.Tensor:
        out = _max_map(x, m, 0)[2]
        ctx.m = m
        ctx.save_for_backward(x)
        return out.clone() if m == 1 else out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        graph = torch.is_grad_enabled()  # as _MaxPool2x2Stride1's
        if graph or batched_grad(grad):
            return _max_pool_reference_grad(x, ctx.m, grad, create_graph=graph), None
        if not (bool(torch.isfinite(x.sum())) and bool(torch.isfinite(grad.sum()))):
            return _max_pool_reference_grad(x, ctx.m, grad), None
        gx = torch.empty_like(x)
        _max_backward(x, ctx.m, 0, grad, gx)
        return gx, None


def max_pool2d_stride1(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``F.max_pool2d(x, kernel_size, stride=1)`` (no padding), faster on CPU; same gradients.
    A tensor subclass gets ``F.max_pool2d`` itself (see :func:`._autodiff.plain_tensor`).

    Example:
        >>> x = torch.randn(2, 3, 7, 6)
        >>> torch.equal(max_pool2d_stride1(x, 2), F.max_pool2d(x, 2, stride=1))
        True
    """
    what = "max_pool2d_stride1"
    C.check_int(kernel_size, "kernel_size", what, minimum=1)
    C.check_tensor(x, "x", what, min_ndim=2, layout="(..., H, W)")
    if x.shape[-2] < kernel_size or x.shape[-1] < kernel_size:
        raise ValueError(f"max_pool2d_stride1: kernel_size={kernel_size} is larger than the "
                         f"spatial size {tuple(x.shape[-2:])}")
    if transforms_active() or not plain_tensor(x):  # torch.func or forward-mode AD: the op
        # itself (the Functions below have neither setup_context nor jvp); a tensor subclass:
        # the op, which keeps it (the Functions' plain out= buffers dropped it)
        return _torch_max_pool(x, kernel_size)
    if kernel_size == 2:
        return _MaxPool2x2Stride1.apply(x)
    return _MaxPoolStride1.apply(x, kernel_size)


# --- separable strided blur ----------------------------------------------------------------------

def _along(t: torch.Tensor, dim: int, start: int, count: int, step: int = 1) -> torch.Tensor:
    """``count`` entries of ``t`` along ``dim`` (-1 or -2) from ``start`` every ``step``."""
    stop = start + (count - 1) * step + 1
    return t[..., start:stop:step] if dim == -1 else t[..., start:stop:step, :]


@functools.lru_cache(maxsize=1024)
def _plan(n: int, k: int, s: int, mode: str):
    """The taps of one axis: ``(n_out, taps, border, first)``.

    ``taps[j] = (offset, weight, lo, hi)``: outputs ``lo..hi-1`` read input ``s o + offset``
    (in range); ``border`` lists ``(o, source, weight)`` for the taps that read the padding
    (``source`` from the padding mode; zeros padding reads nothing). ``first`` lists the taps
    whose transposes write disjoint inputs that together cover all ``n`` (the backward writes
    them, then adds the rest), or is empty when no such cover exists (zeros first).
    """
    mode = axis_mode(n, k, mode)  # reflect on a too-short axis: replicate
    left, _ = pad_amounts(k)
    weights = binomial(k)
    n_out = (n - 1) // s + 1
    taps, border = [], []
    for j in range(k):
        off = j - left
        lo = min(n_out, -(off // s)) if off < 0 else 0       # first o with s o + off >= 0
        hi = min(n_out, (n - 1 - off) // s + 1) if n - 1 - off >= 0 else 0
        hi = max(hi, lo)
        taps.append((off, weights[j], lo, hi))
        for o in [*range(lo), *range(hi, n_out)]:
            src = _source(s * o + off, n, mode)
            if src >= 0:
                border.append((o, src, weights[j]))
    covered: set[int] = set()
    first = []
    hits = [set(range(s * lo + off, s * (hi - 1) + off + 1, s)) for off, _, lo, hi in taps]
    for j in sorted(range(k), key=lambda j: (-len(hits[j]), abs(taps[j][0]))):
        hit = hits[j]
        if hit and not hit & covered:
            covered |= hit
            first.append(j)
    return n_out, tuple(taps), tuple(border), tuple(first) if len(covered) == n else ()


def _blur_axis(t: torch.Tensor, dim: int, k: int, s: int, mode: str,
               out: torch.Tensor | None = None) -> torch.Tensor:
    n_out, taps, border, _ = _plan(t.shape[dim], k, s, mode)
    left, _ = pad_amounts(k)
    out = torch.mul(_along(t, dim, 0, n_out, s), taps[left][1], out=out)  # centre: every o
    for j, (off, weight, lo, hi) in enumerate(taps):
        if j != left and hi > lo:
            _along(out, dim, lo, hi - lo).add_(_along(t, dim, s * lo + off, hi - lo, s),
                                               alpha=weight)
    for o, src, weight in border:
        _along(out, dim, o, 1).add_(_along(t, dim, src, 1), alpha=weight)
    return out


def _blur_axis_transpose(g: torch.Tensor, dim: int, n: int, k: int, s: int,
                         mode: str, out: torch.Tensor | None = None) -> torch.Tensor:
    n_out, taps, border, first = _plan(n, k, s, mode)
    if out is None:
        shape = list(g.shape)
        shape[dim] = n
        gin = _empty(shape, g) if first else _empty(shape, g).zero_()
    else:
        gin = out if first else out.zero_()
    for j in first:
        off, weight, lo, hi = taps[j]
        torch.mul(_along(g, dim, lo, hi - lo), weight,
                  out=_along(gin, dim, s * lo + off, hi - lo, s))
    for j, (off, weight, lo, hi) in enumerate(taps):
        if j not in first and hi > lo:
            _along(gin, dim, s * lo + off, hi - lo, s).add_(_along(g, dim, lo, hi - lo),
                                                            alpha=weight)
    for o, src, weight in border:
        _along(gin, dim, src, 1).add_(_along(g, dim, o, 1), alpha=weight)
    return gin


# --- cache-sized chunks ---------------------------------------------------------------------------

#: Bytes of input per chunk and per intra-op thread. Each op runs plane-group by plane-group so
#: that its intermediates (the stride-1 max map, the masks, the half-blurred rows) stay in cache
#: instead of costing memory traffic and page faults for fresh full-size buffers; an elementwise
#: op splits a chunk across the threads, so each thread's share stays near this size. Chosen by
#: an ad-hoc interleaved sweep (not a benchmarks/ case) on this project's 2-core machine (2 MiB
#: L2 per core, 2 threads, 32 x 64 x 56/112 planes): 2 MiB chunks were fastest for max-blur
#: pooling, 1 MiB lost to Python overhead at 112x112, 8 MiB to cache misses; blur alone was
#: flat from 2 to 8 MiB.
CHUNK_BYTES_PER_THREAD = 1 << 20


def _chunk_bytes() -> int:
    return CHUNK_BYTES_PER_THREAD * max(1, torch.get_num_threads())


def _plane_views(*ts: torch.Tensor) -> tuple[list[torch.Tensor], bool]:
    """The tensors as ``(planes, H, W)`` views when all their leading dims merge (contiguous
    and most slices), else as they are (chunked along dim 0: channels_last and the like)."""
    try:
        return [t.view(-1, t.shape[-2], t.shape[-1]) for t in ts], True
    except RuntimeError:
        return list(ts), False


def _chunks(t: torch.Tensor) -> tuple[range, int]:
    """Start indices along dim 0 of ``t``, one per chunk of about :func:`_chunk_bytes`."""
    per = t[:1].numel() * t.element_size()
    step = max(1, _chunk_bytes() // max(per, 1))
    return range(0, t.shape[0], step), step


def _graph_backward(x, grad, max_window, pad, k, s, mode):
    with torch.enable_grad():
        xd = x.detach().requires_grad_(True)
        y = _torch_max_pool(xd, max_window, pad) if max_window > 1 else xd
        y = _blur_axis(_blur_axis(y, -2, k, s, mode), -1, k, s, mode)
        (gx,) = torch.autograd.grad(y, xd, grad, create_graph=True)
    return gx


class _BlurPool(torch.autograd.Function):
    """Blur pooling (``max_window`` 1) or stride-1 max pooling (window ``max_window``, padding
    ``pad``) then blur pooling, chunk by chunk; the backward saves only ``x`` and recomputes
    the max pooling's masks per chunk."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, max_window: int, pad: int, k: int, s: int,
                mode: str) -> torch.Tensor:
        h = x.shape[-2] + 2 * pad - max_window + 1
        w = x.shape[-1] + 2 * pad - max_window + 1
        ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
        out = torch.empty((*x.shape[:-2], ho, wo), dtype=x.dtype, device=x.device,
                          memory_format=_format(x))
        (xv, ov), _ = _plane_views(x, out)
        starts, step = _chunks(xv)
        for i in starts:
            xc = xv[i:i + step]
            if max_window > 1:
                xc = _max_map(xc, max_window, pad)[2]
            rows = _blur_axis(xc, -2, k, s, mode)
            _blur_axis(rows, -1, k, s, mode, out=ov[i:i + step])
        ctx.args = (max_window, pad, k, s, mode)
        if max_window > 1:
            ctx.save_for_backward(x)
        else:  # the blur alone is linear: the backward needs only x's shape and layout
            ctx.like = (x.shape, x.dtype, x.device, _format(x))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        max_window, pad, k, s, mode = ctx.args
        if max_window > 1:
            (x,) = ctx.saved_tensors
            gx = torch.empty_like(x)
        else:
            shape, dtype, device, fmt = ctx.like
            gx = x = torch.empty(shape, dtype=dtype, device=device, memory_format=fmt)
        if torch.is_grad_enabled() or batched_grad(grad):
            # create_graph=True (a gradient penalty): the unchunked ops, which autograd can
            # differentiate again (the chunked backward writes through out= buffers); and a
            # batch of gradients (is_grads_batched=True), which out= buffers cannot take.
            x = x if max_window > 1 else x.zero_()  # a linear op's gradient ignores x
            return _graph_backward(x, grad, *ctx.args), None, None, None, None, None
        (xv, gxv), planes = _plane_views(x, gx)
        if planes:
            gv = grad.reshape(-1, *grad.shape[-2:])
        else:  # channels_last and the like: grad in x's layout, or every temporary mixes two
            gv = grad.contiguous(memory_format=_format(x))
        h = xv.shape[-2] + 2 * pad - max_window + 1
        w = xv.shape[-1] + 2 * pad - max_window + 1
        starts, step = _chunks(xv)
        for i in starts:
            gc = gv[i:i + step]
            g_rows = _blur_axis_transpose(gc, -1, w, k, s, mode)
            if max_window == 1:
                _blur_axis_transpose(g_rows, -2, h, k, s, mode, out=gxv[i:i + step])
                continue
            gm = _blur_axis_transpose(g_rows, -2, h, k, s, mode)
            xc = xv[i:i + step]
            if max_window == 2 and not pad:
                cols, take_left, take_top = _max2x2_masks(xc)
                finite = bool(torch.isfinite(cols.sum()))
            else:
                finite = bool(torch.isfinite(xc.sum()))
            # NaN/inf in the window or a non-finite gradient: max_pool2d's own backward (masks
            # would route them differently); decided per chunk (a sum reads, writes nothing).
            if not (finite and bool(torch.isfinite(gm.sum()))):
                gxv[i:i + step] = _max_pool_reference_grad(xc, max_window, gm, pad)
            elif max_window == 2 and not pad:
                _max2x2_backward(gm, take_left, take_top, gxv[i:i + step])
            else:
                _max_backward(xc, max_window, pad, gm, gxv[i:i + step])
        return gx, None, None, None, None, None


def blur_pool2d(x: torch.Tensor, kernel_size: int = 3, stride: int = 2,
                padding_mode: str = "reflect") -> torch.Tensor:
    """The reference ``blur_pool2d`` as separable strided adds (arguments already validated).

    Example:
        >>> from equilayers import functional as EF, kernels
        >>> x = torch.randn(2, 3, 9, 8)
        >>> with kernels.use_reference():
        ...     ref = EF.blur_pool2d(x, 3, 2, "circular")
        >>> torch.allclose(blur_pool2d(x, 3, 2, "circular"), ref, atol=1e-6)
        True
    """
    if kernel_size == 1:
        return x[..., ::stride, ::stride]
    return _BlurPool.apply(x, 1, 0, kernel_size, stride, padding_mode)


def max_blur_pool2d(x: torch.Tensor, kernel_size: int = 2, stride: int = 2, blur_size: int = 3,
                    padding_mode: str = "reflect", padding: int = 0) -> torch.Tensor:
    """``blur_pool2d(max_pool2d(x, kernel_size, 1, padding), blur_size, stride, padding_mode)``
    (arguments already validated)."""
    return _BlurPool.apply(x, kernel_size, padding, blur_size, stride, padding_mode)
