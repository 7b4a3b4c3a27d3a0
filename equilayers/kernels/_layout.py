"""The measured choice among an op's fast paths, per memory layout and size.

The dispatcher (:mod:`._dispatch`) asks :func:`measured_choice` which of the op's candidates
for the device (its ``FastPath`` entries, see :mod:`._registry`) or the reference was measured
fastest for a call like this one. The answer comes from the table in :mod:`._layout_table`,
written by ``python -m benchmarks --family layout --write-table`` and read here at every
call (nothing is cached, so a rewritten table module is read by the next process; tests
``monkeypatch`` :data:`._layout_table.MEASURED`). A call the table has no entry for keeps the
op's default, its first candidate.

A table key is ``(op, device type, layout, size bucket, arguments, pass)``:

- ``layout``: ``"contiguous 4-D"``, ``"channels_last 4-D"``, ``"contiguous 5-D"``,
  ``"channels_last 5-D"`` (a group map ``(B, C, F, H, W)`` whose ``flatten(1, 2)`` is a
  channels_last ``(B, C F, H, W)``: the view of a channels_last group conv's output) or
  ``"channels_last_3d 5-D"``; anything else (sliced, transposed, 3-D or 6-D inputs) has no
  entry (:func:`layout_of`).
- ``size bucket``: the power of two at or above ``max(H, W)``, from 16 (28 px -> 32,
  56 -> 64, 112 -> 128, 224 -> 256; :func:`size_bucket`).
- ``arguments``: every argument of the op's spec, defaults filled in, as ``name=repr`` joined
  by ``", "`` in the spec's order (:func:`arguments_key`): a table measured at the defaults
  says nothing about another blur size or padding mode.
- ``pass``: ``"forward"``, or ``"forward+backward"`` when autograd records the call (grad mode
  on and ``x.requires_grad``): the two were measured separately and can differ.

Each entry is ``(choice, {path: median ms})``: the choice is the name of a candidate or
``"reference"``; the times are what :func:`equilayers.kernels.explain` quotes.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import NamedTuple

import torch

from . import _layout_table
from ._registry import FastPath, KernelOp

__all__ = ["Measured", "arguments_key", "layout_of", "measured_choice", "pass_of",
           "size_bucket", "table_key"]

#: The table's key: (op, device type, layout, size bucket, arguments, pass).
Key = tuple[str, str, str, int, str, str]


def layout_of(x: torch.Tensor) -> str | None:
    """The table's name for ``x``'s memory layout, or ``None`` (no entry can match).

    Example:
        >>> layout_of(torch.zeros(2, 3, 8, 8).contiguous(memory_format=torch.channels_last))
        'channels_last 4-D'
        >>> layout_of(torch.zeros(2, 3, 8, 8)[..., ::2]) is None
        True
    """
    nd = x.dim()
    if nd not in (4, 5):
        return None
    if x.is_contiguous():
        return f"contiguous {nd}-D"
    if nd == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return "channels_last 4-D"
    if nd == 5:
        b, c, f, h, w = x.shape
        sb, sc, sf, sh, sw = x.stride()
        # (B, C, F, H, W) viewed from a channels_last (B, C F, H, W): F, then C, innermost
        if ((f == 1 or sf == 1) and (c == 1 or sc == f) and (w == 1 or sw == c * f)
                and (h == 1 or sh == w * c * f) and (b == 1 or sb == h * w * c * f)):
            return "channels_last 5-D"
        if x.is_contiguous(memory_format=torch.channels_last_3d):
            return "channels_last_3d 5-D"
    return None


def size_bucket(h: int, w: int) -> int:
    """The power of two at or above ``max(h, w)``, at least 16.

    Example:
        >>> [size_bucket(n, n) for n in (7, 28, 56, 64, 112, 224)]
        [16, 32, 64, 64, 128, 256]
    """
    return max(16, 1 << max(0, max(h, w) - 1).bit_length())


def arguments_key(op: KernelOp, kwargs: dict) -> str:
    """Every argument of ``op``'s spec but ``x``, defaults filled in, as ``name=repr`` joined
    by ``", "`` (the spec's order)."""
    return ", ".join(f"{name}={kwargs.get(name, default)!r}"
                     for name, default in _spec(op.check))


@functools.lru_cache(maxsize=64)
def _spec(check: Callable[..., None]) -> tuple[tuple[str, object], ...]:
    """``(name, default)`` of every argument of a spec but ``x`` (a signature is slow to read
    per call; a function's signature does not change)."""
    params = list(inspect.signature(check).parameters.values())[1:]
    return tuple((p.name, p.default) for p in params)


def pass_of(x: torch.Tensor) -> str:
    """``"forward+backward"`` when autograd records a call on ``x``, else ``"forward"``."""
    return "forward+backward" if torch.is_grad_enabled() and x.requires_grad else "forward"


def table_key(op: KernelOp, x: torch.Tensor, kwargs: dict) -> Key | None:
    """The table key of ``op(x, **kwargs)``, or ``None`` for a layout no entry can match."""
    layout = layout_of(x)
    if layout is None:
        return None
    return (op.name, x.device.type, layout, size_bucket(*x.shape[-2:]),
            arguments_key(op, kwargs), pass_of(x))


#: The table's inputs hold 6.4M floats (25 MiB). From 32 MiB a contiguous (NCHW) input makes
#: the paths that allocate an input-sized temporary per call (the reference's padding copy,
#: oneDNN's depthwise conv on NCHW inputs) slow by 2-4x: glibc's malloc serves allocations
#: of 32 MiB and more by ``mmap``, so each call page-faults the whole temporary in (with
#: ``MALLOC_MMAP_THRESHOLD_`` raised the cliff mostly goes). The cliff sits there: forced
#: depthwise / separable forward at c64 112x112, one thread, 2026-12-07 (CPU time, a loaded
#: machine): b10 (30.6 MiB) reflect 10.4 / 11.0 ms, zeros 10.8 / 11.8; b11 (33.7 MiB) reflect
#: 24.5 / 11.9, zeros 23.3 / 12.2 (the rule stood at 64 MiB before, from a row mislabelled
#: 39 MiB below: 20 x 64 x 112 x 112 is 61 MiB). One-off timings of the forced paths
#: (not a ``benchmarks/`` family; 2 threads, forward / forward+backward ms, 2026-12-02):
#: ``blur_pool2d`` 32 x 64 x 112 x 112 reflect: depthwise
#: 187 / 261, separable 45 / 171, reference 227 / 543; zeros: 67 / 199, 68 / 186, 206 / 440;
#: 20 x 64 x 112 x 112 (61 MiB) reflect 118 / 260, 33 / 99, 115 / 302, zeros 58 / 176, 27 /
#: 110, 118 / 283 (kornia's ``BlurPool2D``, the depthwise conv, 115 ms forward at the first
#: size; the ``antialias`` family's b32 c64 112x112 rows record the effect: docs/benchmarks.md).
#: Above this size the entries of these ops do not apply to contiguous inputs, and
#: their default path (the separable one, which allocates only its output) is taken.
LARGE_CONTIGUOUS_BYTES = 32 << 20
LARGE_CONTIGUOUS_OPS = frozenset({"blur_pool2d", "max_blur_pool2d"})


class Measured(NamedTuple):
    """What the table says for a call: the path to take (a candidate's name or
    ``"reference"``) and the one line explaining it."""

    choice: str
    why: str


def _describe(key: Key, choice: str, times: dict[str, float]) -> str:
    _, _, layout, bucket, _, pass_ = key
    others = ", ".join(f"{name} {ms:.3g} ms" for name, ms in sorted(times.items(), key=lambda
                       kv: kv[1]) if name != choice)
    mine = f" {times[choice]:.3g} ms" if choice in times else ""
    return (f"{layout}, H, W up to {bucket}, {pass_}: {choice} measured fastest{mine}"
            + (f" vs {others}" if others else "") + f" ({_layout_table.SOURCE})")


def measured_choice(op: KernelOp, x: torch.Tensor, kwargs: dict,
                    candidates: tuple[FastPath, ...]) -> Measured | None:
    """The table's choice for ``op(x, **kwargs)`` among ``candidates`` (the fast paths that
    take the call) and the reference, or ``None`` when the table has no usable entry (no
    measurement for this key, or the measured winner cannot take this call)."""
    table = _layout_table.MEASURED
    if not table:
        return None
    size = x.numel() * x.element_size()
    if op.name in LARGE_CONTIGUOUS_OPS and size >= LARGE_CONTIGUOUS_BYTES and x.is_contiguous():
        return Measured(candidates[0].name, (
            f"a contiguous input of {size / 2**20:.0f} MiB: from 32 MiB the paths that allocate "
            "an input-sized temporary per call (the reference's padding, the NCHW depthwise "
            "conv) page-fault it in and were measured 2-4x slower, so the layout table "
            "(measured at 25 MiB) does not apply and the default is taken "
            "(equilayers/kernels/_layout.py)"))
    key = table_key(op, x, kwargs)
    entry = table.get(key) if key is not None else None
    if entry is None or key is None:
        return None
    choice, times = entry
    if choice != "reference" and choice not in {p.name for p in candidates}:
        return None
    return Measured(choice, _describe(key, choice, dict(times)))
