"""Steerable convs and NormPool against their dense floors (see benchmarks/_core.py)."""

from __future__ import annotations

import torch
from torch import nn

from ._core import BenchCase


def _basis_builder(group, in_rep, out_rep, k, mi=None, mo=None):
    def build():
        from equilayers.functional import _steerable

        _steerable._cached.cache_clear()  # time a cold build
        return _steerable.steerable_basis(group, in_rep, out_rep, k, in_order=mi, out_order=mo)
    return build


def cases(quick: bool) -> list[BenchCase]:
    from equilayers import nn as enn

    b, c, size = (4, 16, 32) if quick else (16, 32, 64)
    out: list[BenchCase] = []
    for k in (5, 7):
        for group, in_rep, fib_in, mi in (("so2", "harmonic", 5, 2), ("c8", "regular", 8, None)):
            f_out = 5 if group == "so2" else 8
            floor = f"Conv2d {c * fib_in}->{c * f_out} k{k}"
            tag = f"b{b} c{c} {size}x{size}"
            out.append(BenchCase(
                f"{floor} {tag}", "harmonic",
                lambda k=k, fib_in=fib_in, f_out=f_out: (
                    nn.Conv2d(c * fib_in, c * f_out, k, padding=k // 2),
                    torch.randn(b, c * fib_in, size, size)),
                params={"b": b, "c": c, "size": size, "k": k}))
            out_rep = "harmonic" if group == "so2" else "regular"
            out.append(BenchCase(
                f"GroupConv2d {group} {in_rep}->{out_rep} k{k} {tag}", "harmonic",
                lambda k=k, group=group, in_rep=in_rep, out_rep=out_rep, mi=mi, fib_in=fib_in: (
                    enn.GroupConv2d(c, c, k, padding=k // 2, group=group, max_order=mi),
                    torch.randn(b, c, fib_in, size, size)),
                floor=f"{floor} {tag}",
                construct=_basis_builder(group, in_rep, out_rep, k, mi, mi),
                params={"b": b, "c": c, "size": size, "k": k, "group": group}))
    m = 3

    def per_order(v):  # NormPool's output with the fewest ops and no guard at zero
        sq = v * v
        pairs = sq[:, :, 1:].view(b, c, m, 2, size, size).sum(3)
        return torch.cat([sq[:, :, :1], pairs], 2).sqrt().view(b, c * (m + 1), size, size)

    floor = f"floor per-order (v*v) sum sqrt M{m} b{b} c{c}"
    out.append(BenchCase(floor, "harmonic",
                         lambda: (per_order, torch.randn(b, c, 2 * m + 1, size, size))))
    out.append(BenchCase(  # a different output (one norm per field), kept for reference
        f"whole-fiber (v*v).sum(2).sqrt() M{m} b{b} c{c}", "harmonic",
        lambda: (lambda v: (v * v).sum(2).sqrt(), torch.randn(b, c, 2 * m + 1, size, size)),
        floor=floor))
    out.append(BenchCase(
        f"NormPool M{m} b{b} c{c}", "harmonic",
        lambda: (enn.NormPool(m), torch.randn(b, c, 2 * m + 1, size, size)),
        floor=floor))
    return out
