"""Cheaper PyTorch formulations with the references' exact semantics (the CPU fast path).

Three ops, each an ``autograd.Function`` with a hand-written backward:

- ``max_pool2d_stride1(x, m)`` equals ``F.max_pool2d(x, m, stride=1)``, values and gradients.
  The forward is elementwise ``torch.maximum`` passes over shifted views (separable: along W,
  then along H), where CPU ``max_pool2d`` computes an int64 index per output and is an order of
  magnitude slower. The backward routes each output's gradient to the first maximum of its
  window in row-major order, as ``max_pool2d`` does. For ``m = 2`` the forward stores two
  float 0/1 masks (``torch.ge(..., out=float)``: one pass each, and float masks multiply several
  times faster than bool ones on CPU) and the backward is six elementwise passes; other ``m``
  build equality masks over the ``m * m`` windows in the backward. A window holding a NaN, or a
  non-finite upstream gradient, takes the ``max_pool2d`` backward itself (masks would route
  NaN/inf differently).
- ``blur_pool2d(x, k, s, mode)`` equals the reference blur pooling (pad, correlate with the
  outer product of the binomial, subsample): two separable 1-D passes, each the ``k`` taps as
  strided slices scaled and added (``out = w_c x[c::s]; out[lo:hi] += w_j x[...]``), the
  padding as a few single-row adds at the borders (the tap tables of :mod:`._tables`), never a
  padded copy; the backward is the transpose, strided adds into one buffer (``empty`` when the
  taps that write first cover every input, else ``zeros``).
- ``max_blur_pool2d``: the two above, composed.

Float rounding differs from the reference's convolution only in the order of the sums.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ._tables import _source, binomial, pad_amounts

__all__ = ["blur_pool2d", "max_blur_pool2d", "max_pool2d_stride1"]


# --- stride-1 max pooling ------------------------------------------------------------------------

def _window(t: torch.Tensor, u: int, v: int, h: int, w: int) -> torch.Tensor:
    return t[..., u:u + h, v:v + w]


def _max_pool_reference_grad(x: torch.Tensor, m: int, grad: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        xd = x.detach().requires_grad_(True)
        (gx,) = torch.autograd.grad(F.max_pool2d(xd, m, stride=1), xd, grad)
    return gx


class _MaxPool2x2Stride1(torch.autograd.Function):
    """``max_pool2d(x, 2, stride=1)``; the backward from two float masks saved by the forward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        left, right = x[..., :-1], x[..., 1:]
        cols = torch.maximum(left, right)                      # (H, W-1): max over each pair
        top, bottom = cols[..., :-1, :], cols[..., 1:, :]
        out = torch.maximum(top, bottom)                       # (H-1, W-1)
        if ctx.needs_input_grad[0]:
            # Row-major first maximum: the top row when its max is >= the bottom's, then the
            # left column when x >= its right neighbour.
            take_left = torch.ge(left, right, out=x.new_empty(cols.shape))
            take_top = torch.ge(top, bottom, out=x.new_empty(out.shape))
            ctx.save_for_backward(x, take_top, take_left)
            # NaN anywhere routes differently; decided once here (a sum reads, writes nothing).
            ctx.finite = bool(torch.isfinite(out.sum()))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, take_top, take_left = ctx.saved_tensors
        if not ctx.finite or not bool(torch.isfinite(grad.sum())):
            return _max_pool_reference_grad(x, 2, grad)
        h, w = grad.shape[-2:]
        # Rows: the grad of cols (H, W-1) is [g top; 0] + [0; g (1 - top)]: written straight
        # into one buffer, the bottom share first (g - g top, exact for finite g), then the
        # top share added (addcmul: no temporary; a fresh buffer costs its page faults).
        g_cols = grad.new_empty((*grad.shape[:-2], h + 1, w))
        torch.addcmul(grad, grad, take_top, value=-1, out=g_cols[..., 1:, :])
        g_cols[..., :1, :] = 0
        g_cols[..., :h, :].addcmul_(grad, take_top)
        # Columns: the same along W.
        gx = grad.new_empty((*grad.shape[:-2], h + 1, w + 1))
        torch.addcmul(g_cols, g_cols, take_left, value=-1, out=gx[..., 1:])
        gx[..., :1] = 0
        gx[..., :w].addcmul_(g_cols, take_left)
        return gx


class _MaxPoolStride1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, m: int) -> torch.Tensor:
        h, w = x.shape[-2] - m + 1, x.shape[-1] - m + 1
        rows = x[..., :h, :]
        for u in range(1, m):
            rows = torch.maximum(rows, x[..., u:u + h, :])
        out = rows[..., :w]
        for v in range(1, m):
            out = torch.maximum(out, rows[..., v:v + w])
        if m == 1:
            out = out.clone()
        ctx.m = m
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, out = ctx.saved_tensors
        m = ctx.m
        if torch.isnan(out).any():
            return _max_pool_reference_grad(x, m, grad), None
        h, w = out.shape[-2:]
        gx = torch.zeros_like(x)
        taken = None
        for u in range(m):
            for v in range(m):
                win = _window(x, u, v, h, w) == out
                if taken is None:
                    taken = win
                else:
                    win &= ~taken
                    taken = taken | win
                _window(gx, u, v, h, w).addcmul_(grad, win)
        return gx, None


def max_pool2d_stride1(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``F.max_pool2d(x, kernel_size, stride=1)`` (no padding), faster on CPU; same gradients.

    Example:
        >>> x = torch.randn(2, 3, 7, 6)
        >>> torch.equal(max_pool2d_stride1(x, 2), F.max_pool2d(x, 2, stride=1))
        True
    """
    if x.shape[-2] < kernel_size or x.shape[-1] < kernel_size:
        raise ValueError(f"max_pool2d_stride1: kernel_size={kernel_size} is larger than the "
                         f"spatial size {tuple(x.shape[-2:])}")
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


def _blur_axis(t: torch.Tensor, dim: int, k: int, s: int, mode: str) -> torch.Tensor:
    n_out, taps, border, _ = _plan(t.shape[dim], k, s, mode)
    left, _ = pad_amounts(k)
    out = _along(t, dim, 0, n_out, s) * taps[left][1]        # the centre tap reads every o
    for j, (off, weight, lo, hi) in enumerate(taps):
        if j != left and hi > lo:
            _along(out, dim, lo, hi - lo).add_(_along(t, dim, s * lo + off, hi - lo, s),
                                               alpha=weight)
    for o, src, weight in border:
        _along(out, dim, o, 1).add_(_along(t, dim, src, 1), alpha=weight)
    return out


def _blur_axis_transpose(g: torch.Tensor, dim: int, n: int, k: int, s: int,
                         mode: str) -> torch.Tensor:
    n_out, taps, border, first = _plan(n, k, s, mode)
    shape = list(g.shape)
    shape[dim] = n
    gin = g.new_empty(shape) if first else g.new_zeros(shape)
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


class _SeparableBlur2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, k: int, s: int, mode: str) -> torch.Tensor:
        ctx.args = (x.shape[-2], x.shape[-1], k, s, mode)
        return _blur_axis(_blur_axis(x, -2, k, s, mode), -1, k, s, mode)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, w, k, s, mode = ctx.args
        g = _blur_axis_transpose(grad, -1, w, k, s, mode)
        return _blur_axis_transpose(g, -2, h, k, s, mode), None, None, None


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
    return _SeparableBlur2d.apply(x, kernel_size, stride, padding_mode)


def max_blur_pool2d(x: torch.Tensor, kernel_size: int = 2, stride: int = 2, blur_size: int = 3,
                    padding_mode: str = "reflect") -> torch.Tensor:
    """``blur_pool2d(max_pool2d_stride1(x, kernel_size), blur_size, stride, padding_mode)``."""
    y = x if kernel_size == 1 else max_pool2d_stride1(x, kernel_size)
    return blur_pool2d(y, blur_size, stride, padding_mode)
