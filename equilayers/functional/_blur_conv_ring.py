"""The exact rewrites' parts of :func:`._blur_conv.blur_conv2d` (see its module docstring):
pool first for ``1 x 1`` kernels, the stride-1 blur of blur first, the folded weight, and the
border ring: the outputs whose blur taps leave the stride-1 conv's output, each recomputed as
the strided conv of its own blurred input with the blur's padding mode folded into its taps."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._cpu_cache import cpu_cache
from .._host import host_tensor
from ..kernels._autodiff import batched_grad, plain_tensor, transforms_active
from ..kernels._tables import Range as _Range
from ..kernels._tables import _source, axis_mode, binomial, pad_amounts
from ._blur import binomial_filter, blur_nd, blur_pool2d


def _blur_s1(x: torch.Tensor, blur: int, conv: bool = False) -> torch.Tensor:
    """The stride-1 blur of ``x`` with zero padding (blur first's input); ``conv`` (an odd
    ``blur``): as the depthwise conv, whatever the layout."""
    left, right = pad_amounts(blur)
    if left == right and (conv or _channels_last(x)):
        # oneDNN's depthwise conv runs at the copy floor in channels_last (the separable
        # fast path of blur_pool2d is ~4x slower there, and ~3x faster than it in the
        # contiguous layout; measured at 16 x 64 x 40 x 40)
        c = x.shape[1]
        f = binomial_filter(blur, dtype=x.dtype, device=x.device)
        return F.conv2d(x, torch.outer(f, f)[None, None].expand(c, 1, blur, blur), None, 1,
                        left, 1, c)
    return blur_pool2d(x, blur, 1, "zeros")


def _ring_inputs(x: torch.Tensor, blur: int, gathers: list[tuple[int, torch.Tensor]]):
    """``(blur_s1(x) or None, [x.index_select(dim, rows) for each ring rectangle])``.

    In plain ops every gather's backward is a zero-filled input-sized gradient that autograd
    then adds to the others (four full-size passes per rectangle, measured a third of a
    blurred 3x3 conv's training step at 40 px); :class:`_RingInputs` computes them in one node
    whose backward writes one input-sized gradient and adds the gathers' into it in place.
    Inside ``torch.func`` transforms, forward-mode AD and traced graphs, and for a tensor
    subclass (the backward's plain buffer would drop it), the plain ops run (the same values)."""
    if transforms_active() or torch.compiler.is_compiling() or torch.jit.is_tracing() or (
            blur and pad_amounts(blur)[0] != pad_amounts(blur)[1]) or not plain_tensor(x):
        blurred = _blur_s1(x, blur) if blur else None
        return blurred, [x.index_select(dim, rows) for dim, rows in gathers]
    dims = tuple(dim for dim, _ in gathers)
    outs = _RingInputs.apply(x, blur, dims, *(rows for _, rows in gathers))
    return (outs[0], outs[1:]) if blur else (None, outs)


class _RingInputs(torch.autograd.Function):
    """``x -> (blur_s1(x) if blur, *x.index_select(dim, rows))`` with one input-sized gradient.
    The stride-1 blur with zero padding and an odd binomial is its own adjoint."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, blur: int, dims: tuple[int, ...], *rows: torch.Tensor):
        outs = [x.index_select(dim, r) for dim, r in zip(dims, rows, strict=True)]
        if blur:
            outs.insert(0, _blur_s1(x, blur))
        ctx.save_for_backward(*rows)
        ctx.args = (blur, dims, x.shape, x.dtype, x.device,
                    torch.channels_last if _channels_last(x) and not x.is_contiguous()
                    else torch.contiguous_format)
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        blur, dims, shape, dtype, device, fmt = ctx.args
        # a batch of gradients (is_grads_batched=True): plain ops (no out= buffers in the
        # blur's fast path), out-of-place (an unbatched gx cannot take them in place)
        batched = any(batched_grad(g) for g in grads)
        if blur:
            # in x's dtype: under torch.autocast the blur's conv ran in autocast's dtype (its
            # gradient comes in that dtype, and a backward run under autocast blurs in it,
            # as torch's own backward formulas then compute) while the gathered rows'
            # gradients are in x's, and index_add takes one dtype
            gx = _blur_s1(grads[0].contiguous(memory_format=fmt), blur, conv=batched)
            gx = gx.to(dtype)
            grads = grads[1:]
        else:
            gx = torch.empty(shape, dtype=dtype, device=device, memory_format=fmt).zero_()
        graph = torch.is_grad_enabled() or batched  # create_graph=True: out-of-place too
        for dim, rows, g in zip(dims, ctx.saved_tensors, grads, strict=True):
            g = g.to(dtype)
            gx = gx.index_add(dim, rows, g) if graph else gx.index_add_(dim, rows, g)
        return (gx, None, None, *(None for _ in dims))


def _channels_last(x: torch.Tensor) -> bool:
    try:
        return x.is_contiguous(memory_format=torch.channels_last)
    except RuntimeError:  # inside vmap the memory format of a batched tensor is not known
        return False


# --- pool first ------------------------------------------------------------------------------
def _pool_first(x, weight, bias, pad, groups, stride, blur, mode):
    ph, pw = pad
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph))  # zeros: the other modes were applied by the caller
    pooled = blur_pool2d(x, blur, stride, mode)
    if bias is None or mode != "zeros" or blur == 1:
        return F.conv2d(pooled, weight, bias, 1, 0, 1, groups)
    out = F.conv2d(pooled, weight, None, 1, 0, 1, groups)
    # the composition blurs the bias with the zero padding too: scale it by the blur pool of
    # an all-ones image (separable: one ones vector per dim)
    filt = binomial_filter(blur, dtype=out.dtype, device=out.device)
    mh, mw = (blur_nd(torch.ones(1, 1, n, dtype=out.dtype, device=out.device), filt, stride,
                      "zeros", 1, "blur_conv2d")[0, 0] for n in x.shape[-2:])
    return out + bias.to(out.dtype)[:, None, None] * (mh[:, None] * mw[None, :])


# --- the folded weight ------------------------------------------------------------------------
def _band(n_taps: int, dilation: int, blur: int, dtype, device) -> torch.Tensor:
    """The ``(d (k - 1) + blur, k)`` matrix ``A[p, u] = b[p - d u]`` (``b`` the binomial): the
    full convolution of a dilated ``k``-tap filter with ``b`` along one dim is ``A w``."""
    b = binomial(blur)
    rows = dilation * (n_taps - 1) + blur
    a = [[b[p - dilation * u] if 0 <= p - dilation * u < blur else 0.0 for u in range(n_taps)]
         for p in range(rows)]
    return host_tensor(a, dtype=dtype, device=device)


def _folded_weight(weight: torch.Tensor, blur_size: int, dilation: tuple[int, int]
                   ) -> torch.Tensor:
    """The weight of one strided conv equal to the ``dilation``-dilated conv with ``weight``
    followed by the ``blur_size`` binomial blur: ``weight`` (dilated) convolved with the 2-D
    binomial, ``A_h w A_w^T`` per filter, shape ``(C_out, C_in / groups, d (kH - 1) +
    blur_size, d (kW - 1) + blur_size)``. One matrix product with ``kron(A_h, A_w)`` (a
    transposed convolution of ``C_out C_in`` one-channel images, or batched products per
    filter, measured 15-100x slower on CPU), plain differentiable ops that ``torch.func``
    batches."""
    c_out, cig, kh, kw = weight.shape
    a_h, a_w = (_band(k, d, blur_size, weight.dtype, weight.device)
                for k, d in zip((kh, kw), dilation, strict=True))
    fold = torch.kron(a_h, a_w)  # (fH fW, kH kW)
    return (weight.reshape(c_out * cig, kh * kw) @ fold.T).view(c_out, cig, a_h.shape[0],
                                                                 a_w.shape[0])


# --- the border ring ---------------------------------------------------------------------------
def _taps(outs: _Range, n_conv: int, n_in: int, pad: int, dilation: int, n_taps: int,
          stride: int, blur: int, mode: str) -> list[tuple[int, int, float]]:
    """The blur pool along one dim of outputs ``outs``, shifted by the conv's taps, as
    ``(row, input index, weight)`` triples: row ``o * n_taps + u`` (output ``o``, conv tap
    ``u``) reads input ``j + dilation u - pad`` with the blur's weight on stride-1 output ``j``
    (its padding mode folded in; taps on the conv's zero padding dropped)."""
    left, _ = pad_amounts(blur)
    b = binomial(blur)
    mode = axis_mode(n_conv, blur, mode)
    out = []
    for o, i in enumerate(range(*outs)):
        for t in range(blur):
            j = _source(stride * i + t - left, n_conv, mode)
            if j < 0:
                continue
            for u in range(n_taps):
                q = j + dilation * u - pad
                if 0 <= q < n_in:
                    out.append((o * n_taps + u, q, b[t]))
    return out


#: The bound on the ring tables held (they are keyed on the input size, and ``A_w`` grows as
#: ``W^2``: 7 MB a strip at 764 px; by count alone, variable-size inputs made 256 of them hold
#: 0.8-3.6 GB).
RING_CACHE_BYTES = 64 * 2**20


@cpu_cache(maxsize=256, max_bytes=RING_CACHE_BYTES)
def _ring_tables(rows: _Range, cols: _Range, n_conv: tuple[int, int], size: tuple[int, int],
                 pad: tuple[int, int], dilation: tuple[int, int], kernel: tuple[int, int],
                 stride: int, blur: int, mode: str, dtype: torch.dtype):
    """The host tables of :func:`_ring_rows` (a function of sizes and arguments only, so
    cached, on the CPU, in ``dtype``, computed in float64; see :mod:`equilayers._cpu_cache`):
    the input rows read, ``A_h`` ``(rows kH, rows read)``, ``A_w`` ``(W, cols kW)``, and each
    output's sum of blur taps ``(rows, cols)`` (1 except at a zero-padded border). In the
    input's dtype, so a CPU call does not convert them each time (12 MB at 1024 px)."""
    down = _taps(rows, n_conv[0], size[0], pad[0], dilation[0], kernel[0], stride, blur, mode)
    across = _taps(cols, n_conv[1], size[1], pad[1], dilation[1], kernel[1], stride, blur, mode)
    used = sorted({q for _, q, _ in down})
    at = {q: n for n, q in enumerate(used)}
    a_h = torch.zeros((rows[1] - rows[0]) * kernel[0], len(used), dtype=torch.float64)
    a_w = torch.zeros(size[1], (cols[1] - cols[0]) * kernel[1], dtype=torch.float64)
    for table, entries in ((a_h, [(r, at[q], wt) for r, q, wt in down]),
                           (a_w, [(q, c, wt) for c, q, wt in across])):
        if entries:
            r, c, v = zip(*entries, strict=True)
            table.index_put_((torch.tensor(r), torch.tensor(c)),
                             torch.tensor(v, dtype=torch.float64), accumulate=True)
    sums = [[sum(binomial(blur)[t] for t in range(blur)
                 if _source(stride * i + t - pad_amounts(blur)[0], n,
                            axis_mode(n, blur, mode)) >= 0)
             for i in range(*outs)] for outs, n in ((rows, n_conv[0]), (cols, n_conv[1]))]
    scale = torch.outer(torch.tensor(sums[0], dtype=torch.float64),
                        torch.tensor(sums[1], dtype=torch.float64))
    return (torch.tensor(used, dtype=torch.long), a_h.to(dtype), a_w.to(dtype),
            scale.to(dtype))


def _block_tables(x, kernel, pad, dilation, stride, blur, mode, n_conv, rows: _Range,
                  cols: _Range, full_rows: bool):
    """:func:`_ring_tables` on ``x``'s device and dtype for a full-width strip of border rows,
    or (transposed) for a strip of border columns between them: ``(used, A_h, A_w, scale)``,
    ``used`` indexing dim 2 (rows) or dim 3 (columns) of ``x``."""
    kh, kw = kernel
    args = (rows, cols, tuple(n_conv), tuple(x.shape[-2:]), tuple(pad), tuple(dilation),
            (kh, kw))
    if not full_rows:
        args = (cols, rows, tuple(n_conv[::-1]), tuple(x.shape[-2:][::-1]), tuple(pad[::-1]),
                tuple(dilation[::-1]), (kw, kh))
    # a traced graph builds the tables itself (dynamo cannot enter the cache's lock)
    tables = _ring_tables.__wrapped__ if torch.compiler.is_compiling() else _ring_tables
    return tuple(t.to(x.device) if t.dtype == torch.long else
                 t.to(dtype=x.dtype, device=x.device)
                 for t in tables(*args, stride, blur, mode, x.dtype))


def _ring_rows(g, tables, weight, bias, groups, mode) -> torch.Tensor:
    """The composition's outputs of one ring strip (a few border rows), computed at output
    resolution as one strided conv of their own blurred inputs, from ``g``, the input rows
    they read (``x.index_select(2, used)``).

    With ``A_h``, ``A_w`` the blur pool along each dim as a matrix (its padding mode folded
    in), the composition is ``z[i, k] = sum_{u, v} w[u, v] (A_h[i] xp_{u, v} A_w[k]^T)``,
    ``xp_{u, v}`` the padded input shifted by the conv tap ``(d_h u, d_w v)``. The inner
    products for every ``(i, u)`` and ``(k, v)`` are two small matrix products on the few
    input rows the outputs read, then one contraction with ``w``: the ring costs what its
    outputs cost in the strided conv, plus reading those rows."""
    kh, kw = weight.shape[-2:]
    _, a_h, a_w, scale = tables
    batch, c_in, n_used, width = g.shape
    rows, cols = a_h.shape[0] // kh, a_w.shape[1] // kw
    # three plain matrix products (measured 3-5x faster for forward+backward than a conv of
    # stride (kH, kW) over the stacked rows, whose shapes oneDNN handles poorly): the rows read
    # first (one product over every other dim), then the columns, then the weight
    t = a_h @ g.permute(2, 0, 1, 3).reshape(n_used, batch * c_in * width)  # (rows kH, B C W)
    t = (t.view(rows * kh * batch * c_in, width) @ a_w).view(rows, kh, batch, groups,
                                                             c_in // groups, cols, kw)
    w = weight.view(groups, -1, c_in // groups, kh, kw)
    out = torch.einsum("rubgcjv,gocuv->bgorj", t, w).reshape(batch, weight.shape[0], rows, cols)
    if bias is None:
        return out
    if mode != "zeros":
        return out + bias.to(out.dtype)[:, None, None]
    # zero padding: the bias is blurred too, scaled by each output's sum of taps
    return out + bias.to(out.dtype)[:, None, None] * scale.to(out.dtype)


def _ring_block(g, tables, weight, bias, groups, mode, full_rows: bool) -> torch.Tensor:
    """:func:`_ring_rows` for a full-width strip of border rows (``g`` the rows it reads), or
    (transposed) for a strip of border columns between them (``g`` the columns)."""
    if full_rows:
        return _ring_rows(g, tables, weight, bias, groups, mode)
    t = _ring_rows(g.transpose(-1, -2), tables, weight.transpose(-1, -2), bias, groups, mode)
    return t.transpose(-1, -2)
