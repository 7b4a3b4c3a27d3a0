"""Tap tables: every padding mode of a strided binomial blur, as per-axis gather lists.

Along one axis of size ``n``, blur pooling with a binomial filter of size ``k``, stride ``s`` and
padding ``(k - 1) // 2`` left, the rest right, is a linear map ``A`` from ``n`` inputs to
``(n - 1) // s + 1`` outputs with at most ``k`` taps per output. The padding mode only decides
which input each tap reads (or none, for zeros). The 2-D op is ``A_h X A_w^T`` per plane, so a
kernel needs, per axis:

- forward: for each output ``o``, the ``k`` pairs ``(input index, weight)`` (index -1: no tap);
- backward: for each input ``i``, the pairs ``(output index, summed weight)`` of ``A[:, i]``
  (reflect, replicate and circular padding make several taps land on one input).

The tables are tiny (``n x k``), cached on the CPU per (size, blur, stride, mode) and copied to
the input's device per call (a device-side cache would outlive ``torch.cuda`` state and meta
builds; see :mod:`equilayers._cpu_cache`). A kernel call takes the four tables of its pass
(:func:`call_tables`) packed in one buffer, cached per call description: one copy per call,
which the kernels read at offsets.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._cpu_cache import cpu_cache

__all__ = ["binomial", "axis_mode", "axis_tables", "border_ring", "call_tables", "inner_outputs",
           "pad_amounts", "pad_axes"]


def binomial(k: int) -> list[float]:
    """The normalized binomial coefficients of size ``k`` (exact dyadic rationals)."""
    return [math.comb(k - 1, i) / 2 ** (k - 1) for i in range(k)]


def pad_amounts(k: int) -> tuple[int, int]:
    """Left and right padding of a size-``k`` blur: ``(k - 1) // 2`` and the rest."""
    return (k - 1) // 2, (k - 1) - (k - 1) // 2


def axis_mode(n: int, k: int, mode: str) -> str:
    """The padding mode a blur of size ``k`` uses along an axis of ``n`` samples: ``mode``,
    except that ``"reflect"`` on an axis too short to reflect (``n <= (k - 1) - (k - 1) // 2``,
    the larger of the two pads: ``F.pad`` needs each pad smaller than the size) falls back to
    ``"replicate"`` on that axis, both sides (a 1-pixel axis blurs to itself). Both modes are
    symmetric, so flips and rot90 commute with the fallback as with reflect."""
    if mode == "reflect" and k > 1 and n <= pad_amounts(k)[1]:
        return "replicate"
    return mode


def pad_axes(x: torch.Tensor, k: int, mode: str, nd: int) -> torch.Tensor:
    """``x`` padded over its last ``nd`` dims for a blur of size ``k`` (``(k - 1) // 2``
    before, the rest after), in each axis's :func:`axis_mode` (``x`` has ``nd + 1`` or
    ``nd + 2`` dims, as ``F.pad``'s modes need)."""
    left, right = pad_amounts(k)
    if mode == "zeros":
        return F.pad(x, (left, right) * nd)
    modes = [axis_mode(n, k, mode) for n in x.shape[-nd:]][::-1]  # F.pad's order: last first
    if all(m == mode for m in modes):
        return F.pad(x, (left, right) * nd, mode=mode)
    for m in dict.fromkeys(modes):  # one F.pad per mode, the other axes padded by 0 there
        x = F.pad(x, [p for a in modes for p in ((left, right) if a == m else (0, 0))], mode=m)
    return x


def inner_outputs(n: int, k: int, s: int) -> tuple[int, int, int]:
    """``(n_out, lo, hi)`` along one axis of ``n`` samples blurred by ``k`` taps at stride
    ``s``: the output count and the outputs ``lo..hi-1`` whose taps stay inside the samples
    (the rest, which read the padding, form the border ring; ``lo == hi`` when none stays
    inside)."""
    left, right = pad_amounts(k)
    n_out = (n - 1) // s + 1
    lo = min(-(-left // s), n_out)
    hi = (n - 1 - right) // s + 1 if n - 1 - right >= 0 else 0
    return n_out, lo, max(hi, lo)


Range = tuple[int, int]


def border_ring(axes) -> list[tuple[Range, Range]]:
    """The border ring of a 2-D output as rectangles ``((row0, row1), (col0, col1))``, from
    :func:`inner_outputs` of each axis: full-width strips at the top and bottom, the left
    and right strips between them."""
    (nh, loh, hih), (nw, low, hiw) = axes
    rects = []
    if loh > 0:
        rects.append(((0, loh), (0, nw)))
    if hih < nh:
        rects.append(((hih, nh), (0, nw)))
    if low > 0:
        rects.append(((loh, hih), (0, low)))
    if hiw < nw:
        rects.append(((loh, hih), (hiw, nw)))
    return rects


def _source(p: int, n: int, mode: str) -> int:
    """The input index that padded position ``p`` (in input coordinates) reads, or -1."""
    if 0 <= p < n:
        return p
    if mode == "zeros":
        return -1
    if mode == "replicate":
        return min(max(p, 0), n - 1)
    if mode == "circular":
        return p % n
    if mode == "reflect":
        return -p if p < 0 else 2 * (n - 1) - p
    raise ValueError(f"padding_mode={mode!r} must be one of reflect, replicate, zeros, circular")


@cpu_cache(maxsize=512)
def _tables_cpu(n: int, k: int, s: int, mode: str):
    mode = axis_mode(n, k, mode)
    w = binomial(k)
    left, _ = pad_amounts(k)
    n_out = (n - 1) // s + 1
    f_idx = [[-1] * k for _ in range(n_out)]
    f_w = [[0.0] * k for _ in range(n_out)]
    back: list[dict[int, float]] = [{} for _ in range(n)]
    for o in range(n_out):
        for t in range(k):
            i = _source(o * s + t - left, n, mode)
            if i < 0:
                continue
            f_idx[o][t], f_w[o][t] = i, w[t]
            back[i][o] = back[i].get(o, 0.0) + w[t]
    m = max(1, max((len(b) for b in back), default=0))
    b_idx = [list(b.keys()) + [-1] * (m - len(b)) for b in back]
    b_w = [list(b.values()) + [0.0] * (m - len(b)) for b in back]
    # (reshape: an empty axis, n = 0, gives (0, k) and (0, m) tables, not torch.tensor([])'s (0,))
    return (torch.tensor(f_idx, dtype=torch.int32).reshape(n_out, k),
            torch.tensor(f_w, dtype=torch.float32).reshape(n_out, k),
            torch.tensor(b_idx, dtype=torch.int32).reshape(n, m),
            torch.tensor(b_w, dtype=torch.float32).reshape(n, m))


@cpu_cache(maxsize=512)
def _tables_pinned(n: int, k: int, s: int, mode: str):
    """:func:`_tables_cpu` in page-locked memory: a copy from it to a GPU is asynchronous (from
    pageable memory each copy waits for the device's queue, which made every pool call wait)."""
    return tuple(t.pin_memory() for t in _tables_cpu(n, k, s, mode))


def axis_tables(n: int, k: int, s: int, mode: str, device: torch.device | str,
                backward: bool = False):
    """``(idx, w)`` of one axis on ``device``: the forward taps, shapes ``(n_out, k)``, or with
    ``backward`` the transposed ones, ``(n, m)``; only these two are copied."""
    device = torch.device(device)
    tables = (_tables_pinned if device.type == "cuda" else _tables_cpu)(n, k, s, mode)
    return tuple(t.to(device, non_blocking=True) for t in tables[2 * backward:2 * backward + 2])


#: Each packed table starts on a multiple of this many int32s (16 bytes: Triton specialises a
#: pointer argument on 16-byte alignment, as the separate tables had).
_ALIGN = 4


@cpu_cache(maxsize=512)
def _packed_cpu(nh: int, nw: int, k: int, s: int, mode: str, backward: bool):
    """The tables of one pass over an ``nh x nw`` input (rows' indices and weights, columns'
    indices and weights) in one int32 tensor, the weights as their float32 bits, each table
    zero-padded to a multiple of ``_ALIGN``; with each table's padded length and the rows'
    and columns' ``(count, taps)``."""
    j = 2 if backward else 0
    rows, cols = _tables_cpu(nh, k, s, mode)[j:j + 2], _tables_cpu(nw, k, s, mode)[j:j + 2]
    parts = [t.reshape(-1) if t.dtype == torch.int32 else t.reshape(-1).view(torch.int32)
             for t in (*rows, *cols)]
    lengths = tuple(-(-p.numel() // _ALIGN) * _ALIGN for p in parts)
    packed = torch.zeros(sum(lengths), dtype=torch.int32)
    start = 0
    for p, n in zip(parts, lengths, strict=True):
        packed[start:start + p.numel()] = p
        start += n
    return packed, lengths, tuple(rows[0].shape), tuple(cols[0].shape)


@cpu_cache(maxsize=512)
def _packed_pinned(nh: int, nw: int, k: int, s: int, mode: str, backward: bool):
    """:func:`_packed_cpu` in page-locked memory (an asynchronous copy to a GPU)."""
    packed, *rest = _packed_cpu(nh, nw, k, s, mode, backward)
    return (packed.pin_memory(), *rest)


def call_tables(nh: int, nw: int, k: int, s: int, mode: str, device: torch.device,
                backward: bool = False):
    """``(taps, weights, (at_wr, at_ic, at_wc), rows, cols)``: :func:`axis_tables` of both
    axes of an ``nh x nw`` input on ``device`` (a ``torch.device``), copied in one buffer: the
    rows' indices from ``taps[0]``, their weights from ``weights[at_wr]``, the columns' from
    ``taps[at_ic]`` and ``weights[at_wc]`` (``weights`` is ``taps`` read as float32), each
    row-major ``(count, taps)``, those shapes being ``rows`` and ``cols``."""
    packed, lengths, rows, cols = (_packed_pinned if device.type == "cuda" else _packed_cpu)(
        nh, nw, k, s, mode, backward)
    taps = packed.to(device, non_blocking=True)
    la, lb, lc, _ = lengths
    return taps, taps.view(torch.float32), (la, la + lb, la + lb + lc), rows, cols
