"""Triton kernels for blur pooling and max-blur pooling, forward and backward.

Imported only when a kernel runs (this module imports ``triton``). Every kernel walks one
output tensor in its memory order (channels_last or contiguous), one element per lane, and
reads its inputs through their strides, so any input layout works without a copy. The padding
mode lives in the per-axis tap tables (:mod:`._tables`); accumulation is in float32.

- ``_sep_gather``: ``out[b, c, i, j] = sum_{a, t} wr[i, a] wc[j, t] src[b, c, ir[i, a], ic[j, t]]``
  -- the blur forward (forward tables) and its backward (transposed tables).
- ``_max_blur_fwd``: the same with ``src`` replaced by the ``m x m`` stride-1 max of the input
  (max-pool padding read as ``-inf``), computed on the fly: max pooling then blur in one pass,
  nothing in between is stored.
- ``_max_blur_bwd``: for every input pixel, the ``m x m`` windows that contain it; a window
  sends it the blur's gradient at that window (transposed tables) when the pixel is the
  window's first maximum in row-major order (PyTorch's ``max_pool2d`` rule). The argmax is
  recomputed, not stored, so training keeps no index tensor.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._dispatch import _env_is_1
from ._tables import call_tables


@triton.jit
def _flat(BLOCK: tl.constexpr, I64: tl.constexpr):
    """This program's flat output indices: int32 (fast division in :func:`_decompose`) unless the
    launch is too large for it."""
    if I64:  # a constexpr: only one branch is compiled
        pid = tl.program_id(0).to(tl.int64)
    else:
        pid = tl.program_id(0)
    return pid * BLOCK + tl.arange(0, BLOCK)


@triton.jit
def _decompose(idx, C, H, W, CL: tl.constexpr):
    """``(b, c, i, j)`` of the flat indices, in ``idx``'s integer type; the caller widens them to
    int64 before any address arithmetic (an input can be larger than the output)."""
    if CL:
        c = idx % C
        t = idx // C
        j = t % W
        t = t // W
        i = t % H
        b = t // H
    else:
        j = idx % W
        t = idx // W
        i = t % H
        t = t // H
        c = t % C
        b = t // C
    return b.to(tl.int64), c.to(tl.int64), i.to(tl.int64), j.to(tl.int64)


@triton.jit
def _sep_gather(src, out, taps, wts, at_wr, at_ic, at_wc, total, C, HO, WO,
                s_b, s_c, s_h, s_w, o_b, o_c, o_h, o_w,
                KA: tl.constexpr, KB: tl.constexpr, CL: tl.constexpr, BLOCK: tl.constexpr,
                I64: tl.constexpr):
    idx = _flat(BLOCK, I64)
    live = idx < total
    b, c, i, j = _decompose(idx, C, HO, WO, CL)
    base = b * s_b + c * s_c
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for a in tl.static_range(KA):
        r = tl.load(taps + i * KA + a, mask=live, other=-1).to(tl.int64)
        wr = tl.load(wts + at_wr + i * KA + a, mask=live, other=0.0)
        row = tl.zeros([BLOCK], dtype=tl.float32)
        for t in tl.static_range(KB):
            q = tl.load(taps + at_ic + j * KB + t, mask=live, other=-1).to(tl.int64)
            wq = tl.load(wts + at_wc + j * KB + t, mask=live, other=0.0)
            v = tl.load(src + base + r * s_h + q * s_w, mask=live & (r >= 0) & (q >= 0),
                        other=0.0)
            row += wq * v.to(tl.float32)
        acc += wr * row
    tl.store(out + b * o_b + c * o_c + i * o_h + j * o_w, acc.to(out.dtype.element_ty),
             mask=live)


@triton.jit
def _max_blur_fwd(src, out, taps, wts, at_wr, at_ic, at_wc, total, C, HO, WO, H, W,
                  s_b, s_c, s_h, s_w, o_b, o_c, o_h, o_w,
                  MK: tl.constexpr, PAD: tl.constexpr, KA: tl.constexpr, KB: tl.constexpr,
                  CL: tl.constexpr, BLOCK: tl.constexpr, I64: tl.constexpr):
    idx = _flat(BLOCK, I64)
    live = idx < total
    b, c, i, j = _decompose(idx, C, HO, WO, CL)
    base = b * s_b + c * s_c
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for a in tl.static_range(KA):
        r = tl.load(taps + i * KA + a, mask=live, other=-1).to(tl.int64)
        wr = tl.load(wts + at_wr + i * KA + a, mask=live, other=0.0)
        row = tl.zeros([BLOCK], dtype=tl.float32)
        for t in tl.static_range(KB):
            q = tl.load(taps + at_ic + j * KB + t, mask=live, other=-1).to(tl.int64)
            wq = tl.load(wts + at_wc + j * KB + t, mask=live, other=0.0)
            ok = live & (r >= 0) & (q >= 0)
            best = tl.full([BLOCK], float("-inf"), tl.float32)
            for u in tl.static_range(MK):
                for v in tl.static_range(MK):
                    ri = r + u - PAD  # max-pool padding: rows/columns outside read -inf
                    qi = q + v - PAD
                    val = tl.load(src + base + ri * s_h + qi * s_w,
                                  mask=ok & (ri >= 0) & (ri < H) & (qi >= 0) & (qi < W),
                                  other=float("-inf")).to(tl.float32)
                    best = tl.where((val > best) | (val != val), val, best)
            row += wq * tl.where(ok, best, 0.0)
        acc += wr * row
    tl.store(out + b * o_b + c * o_c + i * o_h + j * o_w, acc.to(out.dtype.element_ty),
             mask=live)


@triton.jit
def _max_blur_bwd(x, g, gx, taps, wts, at_wr, at_ic, at_wc, total, C, H, W, HM, WM,
                  x_b, x_c, x_h, x_w, g_b, g_c, g_h, g_w, o_b, o_c, o_h, o_w,
                  MK: tl.constexpr, PAD: tl.constexpr, MA: tl.constexpr, MB: tl.constexpr,
                  CL: tl.constexpr, BLOCK: tl.constexpr, I64: tl.constexpr):
    idx = _flat(BLOCK, I64)
    live = idx < total
    b, c, y, z = _decompose(idx, C, H, W, CL)
    xbase = b * x_b + c * x_c
    gbase = b * g_b + c * g_c
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for u in tl.static_range(MK):
        for v in tl.static_range(MK):
            r = y + PAD - u  # the window (of the max map) holding (y, z) at offset (u, v)
            q = z + PAD - v
            inside = live & (r >= 0) & (r < HM) & (q >= 0) & (q < WM)
            best = tl.full([BLOCK], float("-inf"), tl.float32)
            # Start at the window's first real (unpadded) element, as max_pool2d does: an
            # all -inf window routes its gradient there, never to the padding.
            bu = tl.maximum(PAD - r, 0).to(tl.int32)
            bv = tl.maximum(PAD - q, 0).to(tl.int32)
            for uu in tl.static_range(MK):
                for vv in tl.static_range(MK):
                    ri = r + uu - PAD
                    qi = q + vv - PAD
                    val = tl.load(x + xbase + ri * x_h + qi * x_w,
                                  mask=inside & (ri >= 0) & (ri < H) & (qi >= 0) & (qi < W),
                                  other=float("-inf")).to(tl.float32)
                    take = (val > best) | (val != val)
                    best = tl.where(take, val, best)
                    bu = tl.where(take, uu, bu)
                    bv = tl.where(take, vv, bv)
            hit = inside & (bu == u) & (bv == v)
            gm = tl.zeros([BLOCK], dtype=tl.float32)
            for a in tl.static_range(MA):
                rr = tl.load(taps + r * MA + a, mask=hit, other=-1).to(tl.int64)
                w1 = tl.load(wts + at_wr + r * MA + a, mask=hit, other=0.0)
                row = tl.zeros([BLOCK], dtype=tl.float32)
                for t in tl.static_range(MB):
                    cc = tl.load(taps + at_ic + q * MB + t, mask=hit, other=-1).to(tl.int64)
                    w2 = tl.load(wts + at_wc + q * MB + t, mask=hit, other=0.0)
                    gv = tl.load(g + gbase + rr * g_h + cc * g_w,
                                 mask=hit & (rr >= 0) & (cc >= 0), other=0.0)
                    row += w2 * gv.to(tl.float32)
                gm += w1 * row
            acc += gm
    tl.store(gx + b * o_b + c * o_c + y * o_h + z * o_w, acc.to(gx.dtype.element_ty),
             mask=live)


# (BLOCK, num_warps) of each kernel's launch on a GPU, for contiguous and for channels_last
# tensors: the elements one program writes and the warps that write them. Measured, not guessed:
# benchmarks/gpu_tune.py times every candidate on the device (NVIDIA H200, torch 2.11, Triton
# 3.6, 2026-12-04: benchmarks/results/cuda/cuda-tune.md); the layouts differ (the max-blur
# forward is fastest with one element per lane when contiguous, four in channels_last).
LAUNCH: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "blur": ((256, 2), (512, 8)),
    "blur_bwd": ((256, 4), (256, 2)),
    "max_blur": ((128, 4), (512, 4)),
    "max_blur_bwd": ((256, 4), (256, 4)),
    "phase_norms": ((512, 8), (256, 2)),
    "phase": ((256, 2), (512, 8)),
    "phase_bwd": ((1024, 4), (1024, 4)),
}
# Flat output indices are int32 below this many elements (int64 division is several times the
# cost of int32 on a GPU); the margin covers the last program's overshoot past ``total``.
I64_FROM = 2**31 - 2**16


def _launch(kind: str, total: int, t: torch.Tensor, cl: bool | None = None) -> dict:
    """The launch keywords of kernel ``kind`` writing ``total`` elements, walking ``t`` (on
    its device, in its layout; ``cl``: ``_channels_last(t)`` where the caller has it)."""
    if t.device.type == "cpu" or _env_is_1("TRITON_INTERPRET", b"TRITON_INTERPRET"):
        # The interpreter runs one program at a time in numpy: fewer, wider programs are faster.
        return {"BLOCK": 4096, "I64": total >= I64_FROM}
    if cl is None:
        cl = _channels_last(t)
    block, warps = LAUNCH[kind][cl]
    # fp fusion (multiply-adds fused) named, not left to Triton's default: Triton 3.9 warns
    # that the default turns off in 3.10, which would change the rounding silently
    return {"BLOCK": block, "I64": total >= I64_FROM, "num_warps": warps,
            "enable_fp_fusion": True}


def _grid(total: int, launch: dict) -> tuple[int]:
    # ceil(total / BLOCK) (``triton.cdiv`` is a constexpr_function: ~2 us of Python a call)
    return (-(-total // launch["BLOCK"]),)


def _channels_last(x: torch.Tensor) -> bool:
    return (not x.is_contiguous()) and x.is_contiguous(memory_format=torch.channels_last)


def _empty_like_layout(x: torch.Tensor, shape) -> torch.Tensor:
    if _channels_last(x):
        return torch.empty(shape, dtype=x.dtype, device=x.device,
                           memory_format=torch.channels_last)
    return x.new_empty(shape)  # (contiguous, x's dtype and device; ~0.5 us less than empty)


def _launch_sep(kind: str, src: torch.Tensor, size: tuple[int, int], k: int, s: int,
                mode: str, backward: bool, shape) -> torch.Tensor:
    """The separable gather over ``src`` (4-D) with the tables of a ``size`` input, into a new
    tensor of ``shape`` in ``src``'s layout."""
    out = _empty_like_layout(src, shape)
    total = out.numel()
    if total == 0:
        return out
    cl = _channels_last(out)  # (of the output: a 1 x 1 map is contiguous in both layouts)
    taps, wts, at, rows, cols = call_tables(*size, k, s, mode, src.device, backward)
    launch = _launch(kind, total, out, cl)
    _sep_gather[_grid(total, launch)](
        src, out, taps, wts, *at, total, shape[1], shape[2], shape[3],
        *src.stride(), *out.stride(), KA=rows[1], KB=cols[1], CL=cl, **launch)
    return out


def blur_forward(x: torch.Tensor, k: int, s: int, mode: str) -> torch.Tensor:
    """4-D ``(B, C, H, W)`` blur pooling; the output keeps channels_last when ``x`` has it."""
    B, C, H, W = x.shape
    shape = (B, C, (H - 1) // s + 1, (W - 1) // s + 1)
    return _launch_sep("blur", x, (H, W), k, s, mode, False, shape)


def blur_backward(g: torch.Tensor, H: int, W: int, k: int, s: int, mode: str) -> torch.Tensor:
    """The gradient of :func:`blur_forward` with respect to its ``(B, C, H, W)`` input."""
    B, C = g.shape[:2]
    return _launch_sep("blur_bwd", g, (H, W), k, s, mode, True, (B, C, H, W))


def max_blur_forward(x: torch.Tensor, m: int, k: int, s: int, mode: str,
                     pad: int = 0) -> torch.Tensor:
    """``blur_pool2d(max_pool2d(x, m, stride=1, padding=pad), k, s, mode)`` in one pass, 4-D
    input."""
    B, C, H, W = x.shape
    HM, WM = H + 2 * pad - m + 1, W + 2 * pad - m + 1
    HO, WO = (HM - 1) // s + 1, (WM - 1) // s + 1
    out = _empty_like_layout(x, (B, C, HO, WO))
    total = out.numel()
    if total == 0:
        return out
    cl = _channels_last(out)
    taps, wts, at, _, _ = call_tables(HM, WM, k, s, mode, x.device)
    launch = _launch("max_blur", total, out, cl)
    _max_blur_fwd[_grid(total, launch)](
        x, out, taps, wts, *at, total, C, HO, WO, H, W,
        *x.stride(), *out.stride(), MK=m, PAD=pad, KA=k, KB=k, CL=cl, **launch)
    return out


def max_blur_backward(g: torch.Tensor, x: torch.Tensor, m: int, k: int, s: int,
                      mode: str, pad: int = 0) -> torch.Tensor:
    """The gradient of :func:`max_blur_forward` with respect to ``x``."""
    B, C, H, W = x.shape
    HM, WM = H + 2 * pad - m + 1, W + 2 * pad - m + 1
    gx = _empty_like_layout(x, (B, C, H, W))
    total = gx.numel()
    if total == 0:
        return gx
    cl = _channels_last(gx)
    taps, wts, at, rows, cols = call_tables(HM, WM, k, s, mode, x.device, True)
    launch = _launch("max_blur_bwd", total, gx, cl)
    _max_blur_bwd[_grid(total, launch)](
        x, g, gx, taps, wts, *at, total, C, H, W, HM, WM,
        *x.stride(), *g.stride(), *gx.stride(), MK=m, PAD=pad, MA=rows[1],
        MB=cols[1], CL=cl, **launch)
    return gx


# --- polyphase pooling (adaptive polyphase sampling) --------------------------------------------
# Component (a, c) of a stride-S input is x[..., a::S, c::S], flat index a * S + c. The forward
# is two kernels and a tiny reduction: ``_phase_norms`` writes, per (sample, component, chunk of
# the component's elements), a float64 partial norm (sum of squares, sum of magnitudes, or max
# magnitude); torch finishes the (B, S*S) norms and their argmax (the first maximum: ties go to
# the lowest index, NaN counts as the maximum, as ``torch.argmax``); ``_phase_gather`` copies the
# chosen component. The partials have a fixed order, so the choice is deterministic (no atomics).
# The backward ``_phase_scatter`` writes every input-gradient element once: the output gradient
# on the chosen component, zero elsewhere (the choice is piecewise constant: no gradient flows
# through the norms, as through the reference's argmax).

_ORDERS = {"l2": 2, "l1": 1, "linf": 0}


@triton.jit
def _phase_norms(src, part, n_comp, R, HO, WO, NCH, s_b, s_c, s_h, s_w,
                 S: tl.constexpr, ORD: tl.constexpr, CL: tl.constexpr, BLOCK: tl.constexpr,
                 ITERS: tl.constexpr):
    pid = tl.program_id(0)  # sample * S * S + component
    chunk = tl.program_id(1)
    b = pid // (S * S)
    ph = pid % (S * S)
    base = b.to(tl.int64) * s_b + (ph // S) * s_h + (ph % S) * s_w
    acc = tl.zeros([BLOCK], dtype=tl.float64)
    start = chunk.to(tl.int64) * (BLOCK * ITERS)
    for it in tl.static_range(ITERS):
        idx = start + it * BLOCK + tl.arange(0, BLOCK)
        live = idx < n_comp
        _, r, p, q = _decompose(idx, R, HO, WO, CL)
        v = tl.load(src + base + r * s_c + p * (S * s_h) + q * (S * s_w), mask=live,
                    other=0.0).to(tl.float64)
        if ORD == 2:
            acc += v * v
        elif ORD == 1:
            acc += tl.abs(v)
        else:
            v = tl.abs(v)
            acc = tl.where((v > acc) | (v != v), v, acc)
    if ORD == 0:
        # tl.max need not propagate NaN: a NaN anywhere makes the partial NaN, as in amax.
        nans = tl.sum((acc != acc).to(tl.int32), axis=0)
        res = tl.where(nans > 0, float("nan"), tl.max(acc, axis=0))
    else:
        res = tl.sum(acc, axis=0)
    tl.store(part + pid.to(tl.int64) * NCH + chunk, res)


@triton.jit
def _phase_gather(src, out, index, total, R, HO, WO, s_b, s_c, s_h, s_w, o_b, o_c, o_h, o_w,
                  S: tl.constexpr, CL: tl.constexpr, BLOCK: tl.constexpr,
                  I64: tl.constexpr):
    idx = _flat(BLOCK, I64)
    live = idx < total
    b, r, p, q = _decompose(idx, R, HO, WO, CL)
    k = tl.load(index + b, mask=live, other=0)
    v = tl.load(src + b * s_b + r * s_c + (p * S + k // S) * s_h + (q * S + k % S) * s_w,
                mask=live)
    tl.store(out + b * o_b + r * o_c + p * o_h + q * o_w, v, mask=live)


@triton.jit
def _phase_scatter(g, gx, index, total, R, H, W, g_b, g_c, g_h, g_w, o_b, o_c, o_h, o_w,
                   S: tl.constexpr, CL: tl.constexpr, BLOCK: tl.constexpr,
                   I64: tl.constexpr):
    idx = _flat(BLOCK, I64)
    live = idx < total
    b, r, i, j = _decompose(idx, R, H, W, CL)
    k = tl.load(index + b, mask=live, other=0)
    hit = live & (i % S == k // S) & (j % S == k % S)
    v = tl.load(g + b * g_b + r * g_c + (i // S) * g_h + (j // S) * g_w, mask=hit, other=0.0)
    tl.store(gx + b * o_b + r * o_c + i * o_h + j * o_w, v.to(gx.dtype.element_ty), mask=live)


def phase_chunks(n_comp: int, block: int) -> tuple[int, int]:
    """``(ITERS, chunks)`` of the norms' launch: ``chunks`` programs per component on the
    grid's second dim, which CUDA caps at 65535 (a ``(1, 16, 8, 4096, 4096)`` input asked for
    131k); ``ITERS`` (blocks per program) doubles until they fit."""
    iters = 1 if block >= 4096 else 8
    while -(-n_comp // (block * iters)) > 65535:
        iters *= 2
    return iters, -(-n_comp // (block * iters))


def polyphase_forward(x: torch.Tensor, s: int, criterion: str):
    """``(y, index)``: per sample of the 4-D ``(B, R, H, W)`` input, the stride-``s`` polyphase
    component of largest ``criterion`` norm (``(B, R, H/s, W/s)``, channels_last kept) and its
    flat index ``a * s + c`` (int64, ``(B,)``)."""
    B, R, H, W = x.shape
    HO, WO = H // s, W // s
    out = _empty_like_layout(x, (B, R, HO, WO))
    n_comp = R * HO * WO
    if B == 0 or n_comp == 0:
        # Every norm is 0 (an empty sum): the first component wins, as in the reference.
        return out, torch.zeros(B, dtype=torch.int64, device=x.device)
    cl = _channels_last(x)
    norms = _launch("phase_norms", n_comp, x, cl)
    del norms["I64"]  # the norms index in int64 always (a chunk's start is int64)
    iters, nch = phase_chunks(n_comp, norms["BLOCK"])
    part = torch.empty((B, s * s, nch), dtype=torch.float64, device=x.device)
    order = _ORDERS[criterion]
    _phase_norms[(B * s * s, nch)](
        x, part, n_comp, R, HO, WO, nch, *x.stride(), S=s, ORD=order, CL=cl, ITERS=iters,
        **norms)
    if order == 0:
        crit = part.amax(dim=2)
    else:
        crit = part.sum(dim=2)
        if order == 2:
            crit = crit.sqrt_()  # as the reference's norm: equal roundings tie the same way
    index = crit.argmax(dim=1)
    total = out.numel()
    cl = _channels_last(out)
    launch = _launch("phase", total, out, cl)
    _phase_gather[_grid(total, launch)](
        x, out, index, total, R, HO, WO, *x.stride(), *out.stride(), S=s,
        CL=cl, **launch)
    return out, index


def polyphase_backward(g: torch.Tensor, index: torch.Tensor, H: int, W: int,
                       s: int) -> torch.Tensor:
    """The gradient of :func:`polyphase_forward`'s ``y`` with respect to its ``(B, R, H, W)``
    input: ``g`` on the chosen component of each sample, zero elsewhere."""
    B, R = g.shape[:2]
    gx = _empty_like_layout(g, (B, R, H, W))
    total = gx.numel()
    if total == 0:
        return gx
    cl = _channels_last(gx)
    launch = _launch("phase_bwd", total, gx, cl)
    _phase_scatter[_grid(total, launch)](
        g, gx, index, total, R, H, W, *g.stride(), *gx.stride(), S=s,
        CL=cl, **launch)
    return gx
