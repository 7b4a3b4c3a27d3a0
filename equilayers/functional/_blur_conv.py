"""``blur_conv2d``: a strided convolution made anti-aliased, and three exact faster ways to
compute it.

The specification (the reference, ``fold=False``) is the composition ``conv2d`` at stride 1,
then ``blur_pool2d(., blur_size, stride, blur_padding_mode)``: a stride-1 convolution at full
resolution, ``stride**2`` times the strided conv's work. Three rewrites give the same numbers
up to float rounding (only the order of the sums changes):

* **Pool first** (``1 x 1`` kernels). A per-channel blur commutes with a pointwise linear map,
  padding included, so the blur pool runs on the input (after the conv's own padding) and the
  ``1 x 1`` conv on ``1 / stride**2`` of the pixels. The bias passes unchanged through a blur
  padded with ``"reflect"``, ``"replicate"`` or ``"circular"`` (the binomial weights sum to 1
  exactly); with ``"zeros"`` it is scaled by the blur pool of an all-ones image, as in the
  composition (the border outputs see less of it).
* **Blur first** (larger kernels). A stride-1 blur commutes with a convolution away from the
  borders, so the input is blurred at stride 1 (one memory-bound pass) and the strided conv
  runs on it at output resolution: the plain strided conv's work plus the blur.
* **Folded** (larger kernels). The blur folded into the weight: ``w`` (dilated by ``d``)
  convolved with the binomial, ``d (k - 1) + blur_size`` taps per dim, one convolution at
  stride ``s`` at output resolution, about ``(k + 2)**2 / k**2`` of the strided conv's work
  for a 3-tap blur and no full-resolution intermediate. The weight is folded in every call
  (one small matrix product): nothing that depends on the weight is cached, so nothing can
  go stale (see ``docs/deployment.md``).

Blur first and folded equal the composition wherever the blur's taps stay inside the
stride-1 conv's output. Per dim, with ``l = (blur_size - 1) // 2`` and ``r = blur_size - 1 -
l`` the blur's padding, the other outputs (``ceil(l / s)`` rows/columns at the top/left, at
most ``ceil(r / s)`` at the bottom/right: the border ring, one output row and column for a
3-tap blur at stride 2) are recomputed exactly, at output resolution too: each is the
strided conv of its own blurred input, the blur's padding mode folded into its taps
(:func:`._blur_conv_ring._ring_rows`; its host tables, a function of sizes and arguments
only, are cached on the CPU like the blur pools' tap tables). So the whole output is the
reference's.

``fold=None`` (the default) takes the path with the lowest cost: multiply-adds over the
batch, a depthwise blur's counted :data:`BLUR_COST` times and a border ring output's
:data:`RING_COST` times (both measured slower per multiply-add than a dense conv on the CPU
here), plus :data:`OP_COST` per extra op a path launches (so tiny inputs keep the
composition; :data:`DEVICE_OP_COST` on a GPU, where launches cost more than the
multiply-adds the rewrites save at common sizes); depthwise convs keep the composition
(memory-bound: the rewrites measured slower for forward+backward). The measurements are the
``BlurConv2d fold=...`` rows of ``benchmarks/bench_antialias.py``. ``fold=True`` takes the
fold itself (pool first for ``1 x 1`` kernels) wherever an output lies away from the border.
The choice depends on shapes, arguments and the device type only (``torch.compile`` traces
the chosen path;
:func:`equilayers.kernels.use_reference` forces the reference of the blur pools inside, not
the composition: ``fold=False`` does). A dynamic dim of ``torch.export`` or
``torch.compile(dynamic=True)`` is costed at the example input's size, so the graph holds no
guard on it: a symbolic batch takes the example's path; a symbolic height or width takes a
path without a border ring (the composition, or pool first for ``1 x 1`` kernels; the ring's
rows and columns depend on the sizes' parity), so every size runs the same graph, at the
composition's cost (export with static sizes for the faster paths).
:func:`blur_conv2d_path` says which path a call takes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _checks as C
from ..kernels._tables import border_ring, inner_outputs, pad_amounts
from ._blur import blur_pool2d
from ._blur_conv_ring import _block_tables, _folded_weight, _pool_first, _ring_block, _ring_inputs

__all__ = ["blur_conv2d", "blur_conv2d_path"]

#: The paths of :func:`blur_conv2d`: the composition and its three exact rewrites.
PATHS = ("reference", "pool_first", "blur_first", "folded")
#: How many dense-conv multiply-adds one multiply-add of a depthwise blur costs in the cost
#: model of ``fold=None`` (memory-bound: measured 4-40x slower per multiply-add here).
BLUR_COST = 8
#: How many strided-conv outputs one output of the border ring costs: thin strips of small
#: matrix products, each writing a whole weight gradient (estimated ~6x per output, forward
#: and forward+backward alike, from the paths' times at ResNet-18's 160x160 sizes,
#: 2026-12-02: at 10x10 inputs blur first beats the composition by 15-35%, at 5x5 the
#: composition wins by 2.5-4x; 10 before the ring's gathers and products were fused).
RING_COST = 6
#: The fixed cost of one op in multiply-adds (about 20 us of launch and bookkeeping on the CPU
#: here, at ~15 G multiply-adds per second and thread), charged for the ops a rewrite adds:
#: a few per path, eight per rectangle of its border ring.
OP_COST = 300_000
#: The same on a GPU, where an op's launch (about 20 us of host time) would have done ~5e8
#: multiply-adds: on an H200 (2026-12-04, b16, ResNet-18's sizes) the ring's small ops made
#: the folded path 3.5-4.2x slower than the composition's 0.27 ms forward, so a GPU keeps the
#: composition at these sizes (``benchmarks/results/cuda/``).
DEVICE_OP_COST = 500_000_000


def _op_cost(x: torch.Tensor) -> int:
    return OP_COST if x.device.type in ("cpu", "meta") else DEVICE_OP_COST


def _check(x, weight, bias, stride, padding, dilation, groups, blur_size, padding_mode,
           blur_padding_mode, fold, what):
    """The shared argument checks; returns the normalized arguments."""
    stride = C.check_square_stride(stride, "stride", what)
    C.check_blur_size(blur_size, "blur_size", what, "conv")
    C.check_padding_mode(padding_mode, "padding_mode", what, C.PADDING_MODES)
    if blur_padding_mode is None:
        blur_padding_mode = "circular" if padding_mode == "circular" else "reflect"
    C.check_padding_mode(blur_padding_mode, "blur_padding_mode", what)
    pad = C.check_strided_padding(padding, "padding", what)
    dilation = C.check_pair(dilation, "dilation", what, minimum=1)
    groups = C.check_int(groups, "groups", what, minimum=1)
    C.check_bool(fold, "fold", what, optional=True,
                 fix="None takes the cheapest exact path, True the fold, False the composition")
    C.check_tensor(x, "x", what, ndim=(3, 4), layout="(B, C_in, H, W) or unbatched (C_in, H, W)")
    C.check_conv_weight(weight, groups, what)
    C.check_channels(x, weight.shape[1] * groups, what, hint=" (weight.shape[1] * groups)")
    C.check_bias(bias, (weight.shape[0],), what)
    C.check_tensors_match(x, what, (("weight", weight), ("bias", bias)))
    kh, kw = weight.shape[-2:]
    ph, pw = pad
    C.check_window(x, (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1),
                   (pw, pw, ph, ph), what)
    # the blur pads the conv's stride-1 output: name blur_size, not blur_pool2d's kernel_size
    C.check_blur_padding(_conv_sizes(x.shape, weight.shape, pad, dilation), blur_size,
                         blur_padding_mode, what, x.shape, "blur_size")
    if padding_mode != "zeros" and (ph or pw):
        C.check_pad_fits(x, (pw, pw, ph, ph), padding_mode, what)
    return stride, pad, dilation, groups, blur_padding_mode


def _batched(x):
    """``(x with a batch dim, whether it had none)``: a 3-D ``(C_in, H, W)`` is one sample, as
    in ``F.conv2d``."""
    if isinstance(x, torch.Tensor) and x.dim() == 3:
        return x[None], True
    return x, False


def _conv_sizes(x_shape, w_shape, pad, dilation) -> tuple[int, int]:
    """The stride-1 convolution's output size ``(H_c, W_c)``."""
    h, w = (n + 2 * p - d * (k - 1) for n, p, d, k in
            zip(x_shape[-2:], pad, dilation, w_shape[-2:], strict=True))
    return h, w


def _pads_first(x_shape, pad, dilation, kernel, stride, blur) -> bool:
    """Whether blur first must blur the zero-padded input (a copy) rather than ``x`` itself
    (the conv then zero-pads the blurred ``x``, which is exact only for the outputs whose conv
    window stays off the padding): true when an output away from the border ring reaches the
    padding (a 7x7 stem with padding 3 at stride 2, say)."""
    for n, p, d, k in zip(x_shape[-2:], pad, dilation, kernel, strict=True):
        _, lo, hi = inner_outputs(n + 2 * p - d * (k - 1), blur, stride)
        if stride * lo < p or stride * (hi - 1) + d * (k - 1) > p + n - 1:
            return True
    return False


def _nominal(n) -> int:
    """A size as the cost model reads it: ``n`` itself, or for a symbolic size (a dynamic dim
    of ``torch.export`` / ``torch.compile(dynamic=True)``) the example input's, its hint (1
    where it has none). Every path is exact at every size, so the choice is only a matter of
    speed: comparing symbolic costs would put a guard on the size in the graph (a dynamic batch
    failed to export) for nothing."""
    if isinstance(n, int):
        return n
    hint = getattr(getattr(n, "node", None), "hint", None)
    return hint if isinstance(hint, int) else 1


def _plan(x_shape, w_shape, pad, dilation, groups, stride, blur, mode, op_cost=OP_COST):
    """``{path: (cost, axes)}`` for every path that applies: its cost (multiply-adds over the
    batch and ops, weighted as in the module docstring; ``None``: never chosen by
    ``fold=None``) and,
    per dim, ``(n_out, lo, hi)``: the outputs ``lo..hi-1`` computed directly, the rest (the
    border ring) through :func:`._blur_conv_ring._ring_rows`. ``pad`` is the conv's zero
    padding (other modes are applied to ``x`` first). Symbolic sizes are costed at their
    hints (:func:`_nominal`); with a symbolic height or width only the paths without a border
    ring apply."""
    c_out, cig, kh, kw = w_shape
    # a symbolic height or width: the border ring's rows and columns depend on the sizes
    # (their parity at stride 2), so only the paths without a ring apply, for every size
    symbolic = not all(isinstance(n, int) for n in x_shape[-2:])
    x_shape = tuple(_nominal(n) for n in x_shape)
    c_in, batch = cig * groups, x_shape[0]
    n_conv = _conv_sizes(x_shape, w_shape, pad, dilation)
    axes = [inner_outputs(n, blur, stride) for n in n_conv]
    n_out = axes[0][0] * axes[1][0]
    per_tap = cig * c_out  # multiply-adds per output pixel and kernel tap
    blur_macs = blur * blur * BLUR_COST
    plan = {"reference": (batch * (n_conv[0] * n_conv[1] * kh * kw * per_tap
                                   + n_out * blur_macs * c_out), axes)}
    if kh == kw == 1:
        plan["pool_first"] = (batch * n_out * (blur_macs * c_in + per_tap) + op_cost, axes)
        return plan
    if symbolic or any(lo >= hi for _, lo, hi in axes):
        return plan  # no output lies away from the border (or sizes unknown): the composition
    depthwise = cig == 1 and groups > 1
    rects = border_ring(axes)
    ring = batch * sum((r[1] - r[0]) * (c[1] - c[0]) for r, c in rects) * kh * kw * per_tap \
        * RING_COST + 8 * len(rects) * op_cost
    fh, fw = (d * (k - 1) + blur for d, k in zip(dilation, (kh, kw), strict=True))
    folded = batch * n_out * fh * fw * per_tap + ring + 3 * op_cost
    plan["folded"] = (None if depthwise else folded, axes)
    n_blur = x_shape[-2:]
    if _pads_first(x_shape, pad, dilation, (kh, kw), stride, blur):
        n_blur = [n + 2 * p for n, p in zip(x_shape[-2:], pad, strict=True)]
    first = batch * (n_blur[0] * n_blur[1] * blur_macs * c_in + n_out * kh * kw * per_tap) \
        + ring + 4 * op_cost
    plan["blur_first"] = (None if depthwise else first, axes)
    return plan


def _choose(plan: dict, fold: bool | None) -> str:
    if fold is False or len(plan) == 1:
        return "reference"
    if fold is True:
        return "pool_first" if "pool_first" in plan else "folded"
    # a plain loop, not min(..., key=...): dynamo cannot trace min over a dict with a key
    best, best_cost = "reference", None
    for p in PATHS:
        cost = plan[p][0] if p in plan else None
        if cost is not None and (best_cost is None or cost < best_cost):
            best, best_cost = p, cost
    return best


def blur_conv2d_path(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     stride: int | tuple[int, int] = 2, padding: int | tuple[int, int] = 0,
                     dilation: int | tuple[int, int] = 1, groups: int = 1, *,
                     blur_size: int = 3, padding_mode: str = "zeros",
                     blur_padding_mode: str | None = None, fold: bool | None = None) -> str:
    """Which path :func:`blur_conv2d` takes for these arguments (same signature):
    ``"reference"`` (stride-1 conv, then blur pool), ``"pool_first"`` (``1 x 1`` kernels: blur
    pool, then the conv), ``"blur_first"`` (stride-1 blur of the input, then the strided conv)
    or ``"folded"`` (the blur folded into the weight); the last two recompute the border ring
    exactly. Only shapes and arguments are read.

    Example:
        >>> x, w = torch.randn(2, 64, 32, 32), torch.randn(128, 64, 3, 3)
        >>> blur_conv2d_path(x, w, padding=1)
        'blur_first'
        >>> blur_conv2d_path(x, w, padding=1, fold=True)
        'folded'
        >>> blur_conv2d_path(x, w, padding=1, fold=False)
        'reference'
        >>> blur_conv2d_path(x, torch.randn(128, 64, 1, 1))
        'pool_first'
    """
    x, _ = _batched(x)
    stride, pad, dilation, groups, bmode = _check(
        x, weight, bias, stride, padding, dilation, groups, blur_size, padding_mode,
        blur_padding_mode, fold, "blur_conv2d_path")
    shape = tuple(x.shape)
    if padding_mode != "zeros":  # blur_conv2d pads x itself first
        shape = (*shape[:2], shape[2] + 2 * pad[0], shape[3] + 2 * pad[1])
        pad = (0, 0)
    return _choose(_plan(shape, weight.shape, pad, dilation, groups, stride, blur_size, bmode,
                         _op_cost(x)),
                   fold)


def blur_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                stride: int | tuple[int, int] = 2, padding: int | tuple[int, int] = 0,
                dilation: int | tuple[int, int] = 1, groups: int = 1, *, blur_size: int = 3,
                padding_mode: str = "zeros", blur_padding_mode: str | None = None,
                fold: bool | None = None) -> torch.Tensor:
    """``conv2d`` at stride 1 followed by ``blur_pool2d(., blur_size, stride, ...)``.

    ``padding_mode`` pads the convolution (as in ``nn.Conv2d``); ``blur_padding_mode`` pads the
    blur (default ``"circular"`` when ``padding_mode="circular"``, else ``"reflect"``; a dim of
    the stride-1 output too short to reflect, size ``<= (b-1) - (b-1)//2`` with ``b =
    blur_size``, is padded with ``"replicate"`` instead). Output
    size per dim: ``floor((N + 2 padding - dilation (k - 1) - 1) / stride) + 1``, the same as
    the strided ``nn.Conv2d``. ``x`` is ``(B, C_in, H, W)`` or unbatched ``(C_in, H, W)``, as
    in ``F.conv2d``; ``stride`` an int or a pair of equal ints. See
    :class:`equilayers.nn.BlurConv2d`.

    ``fold`` chooses how, never what: ``False`` runs the composition (a stride-1 conv at full
    resolution, then the blur pool); ``True`` the blur folded into the weight (one strided
    conv with ``k + blur_size - 1`` taps per dim; ``1 x 1`` kernels: blur pool, then the conv);
    ``None`` (default) the cheapest of these and of blurring the input at stride 1 before the
    strided conv. The rewrites compute the outputs whose blur taps reach the padding
    separately, exactly. Every path gives the composition's output to float rounding (see the
    module docstring of ``equilayers.functional._blur_conv``); :func:`blur_conv2d_path` says
    which one a call takes.

    Example:
        >>> x, w = torch.randn(2, 3, 16, 16), torch.randn(8, 3, 3, 3)
        >>> a = blur_conv2d(x, w, padding=1, fold=True)
        >>> torch.allclose(a, blur_conv2d(x, w, padding=1, fold=False), atol=1e-5)
        True
    """
    x, unbatched = _batched(x)
    stride, pad, dilation, groups, bmode = _check(
        x, weight, bias, stride, padding, dilation, groups, blur_size, padding_mode,
        blur_padding_mode, fold, "blur_conv2d")
    y = _run(x, weight, bias, stride, pad, dilation, groups, blur_size, padding_mode, bmode, fold)
    return y[0] if unbatched else y


def _run(x, weight, bias, stride, pad, dilation, groups, blur, padding_mode, mode, fold,
         path: str | None = None) -> torch.Tensor:
    """``blur_conv2d`` on checked arguments, by ``path`` (default: the one ``fold`` picks;
    tests force each)."""
    ph, pw = pad
    if padding_mode != "zeros" and (ph or pw):
        x = F.pad(x, (pw, pw, ph, ph), mode=padding_mode)
        ph = pw = 0
    plan = _plan(x.shape, weight.shape, (ph, pw), dilation, groups, stride, blur, mode,
                 _op_cost(x))
    if path is None:
        path = _choose(plan, fold)
    elif path not in plan:
        raise ValueError(f"blur_conv2d: path {path!r} does not apply here (only {list(plan)})")
    if path == "reference":
        y = F.conv2d(x, weight, bias, 1, (ph, pw), dilation, groups)
        return blur_pool2d(y, blur, stride, mode)
    if path == "pool_first":
        return _pool_first(x, weight, bias, (ph, pw), groups, stride, blur, mode)
    left, right = pad_amounts(blur)
    if path == "blur_first" and (ph or pw) and _pads_first(x.shape, (ph, pw), dilation,
                                                           weight.shape[-2:], stride, blur):
        x, ph, pw = F.pad(x, (pw, pw, ph, ph)), 0, 0
    axes = plan[path][1]
    n_conv = _conv_sizes(x.shape, weight.shape, (ph, pw), dilation)
    rects = [(rows, cols, cols == (0, axes[1][0])) for rows, cols in border_ring(axes)]
    tables = [_block_tables(x, weight.shape[-2:], (ph, pw), dilation, stride, blur, mode, n_conv,
                            rows, cols, full) for rows, cols, full in rects]
    blurred, gathers = _ring_inputs(x, blur if path == "blur_first" else 0,
                                    [(2 if full else 3, t[0]) for (_, _, full), t in
                                     zip(rects, tables, strict=True)])
    if path == "blur_first":
        out = F.conv2d(blurred, weight, bias, stride, (ph, pw), dilation, groups)
    else:
        wf = _folded_weight(weight, blur, dilation)
        if left == right:
            out = F.conv2d(x, wf, bias, stride, (ph + left, pw + left), 1, groups)
        else:  # even blur sizes pad one more after than before: no symmetric conv padding
            out = F.conv2d(F.pad(x, (pw + left, pw + right, ph + left, ph + right)), wf, bias,
                           stride, 0, 1, groups)
    for (rows, cols, full), t, g in zip(rects, tables, gathers, strict=True):
        out[..., rows[0]:rows[1], cols[0]:cols[1]] = _ring_block(g, t, weight, bias, groups,
                                                                 mode, full)
    return out
