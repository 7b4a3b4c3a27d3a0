"""Steerable convs and NormPool against their dense floors (see benchmarks/_core.py), and
against escnn's SO(2) and C8 ``R2Conv`` of the same shape when escnn is importable."""

from __future__ import annotations

import functools
import importlib.util

import torch
from torch import nn

from ._core import BenchCase, infer, per_order_norms

#: peer libraries whose rows this family has only where they are installed (the runner
#: names each one missing)
OPTIONAL_PEERS = ("escnn",)


def _layer_builder(group, c, k, mi=None):
    """Build the layer with an empty basis cache: the per-layer cost of the first layer of its
    (group, k) in a process where torch has already run (the table, the buffer, the init)."""
    def build():
        from equilayers.functional import _steerable
        from equilayers.nn import GroupConv2d

        _steerable._cached.cache_clear()
        _steerable._irrep_scale.cache_clear()  # (the element scales: cached beside the table)
        return GroupConv2d(c, c, k, padding=k // 2, group=group, max_order=mi)
    return build


def _dense_expansion(conv):
    """``conv`` expanding its filter the former way (the dense regular basis, one matmul of
    ``|G|`` times the work): the before/after row of the compact expansion."""
    from equilayers.functional import expand_steerable, steerable_basis

    # a buffer, so that the runner's .to(device) moves it with the weight
    conv.register_buffer("dense_basis", steerable_basis(conv.group, "regular", "regular",
                                                        conv.kernel_size[0]), persistent=False)
    conv._expand = lambda: expand_steerable(conv.weight, conv.dense_basis, conv.groups)
    return conv


def _maybe_export(m, how: str):
    import equilayers

    return equilayers.export(m) if how else m


@functools.cache
def _escnn_space(group: str):
    from escnn import gspaces

    if group == "so2":
        return gspaces.rot2dOnR2(N=-1, maximum_frequency=2)
    n = int(group[1:])
    return gspaces.rot2dOnR2(n) if group[0] == "c" else gspaces.flipRot2dOnR2(n)


def _escnn_conv(group: str, c: int, k: int):
    """``(build, wrap)`` of escnn's ``R2Conv`` with our layer's fields: ``c`` fields of orders
    0..2 (so2) or ``c`` regular fields. escnn keeps its own basis caches across layers, so its
    construction rows are per layer in a process where that gspace already built a layer."""
    from escnn import nn as esc

    gs = _escnn_space(group)
    reps = [gs.irrep(m) for m in range(3)] if group == "so2" else [gs.regular_repr]
    ftype = esc.FieldType(gs, c * reps)

    def build():
        return esc.R2Conv(ftype, ftype, k, padding=k // 2)

    def wrap(conv):
        return lambda x: conv(esc.GeometricTensor(x, ftype)).tensor
    return build, wrap


def _order_slices(x: torch.Tensor, max_order: int) -> tuple[torch.Tensor, ...]:
    """The SO(3) layers' former views of their input: a slice per order (each slice's
    backward a gradient of the input's full size, mostly zeros) where ``order_blocks`` takes
    one ``split``."""
    return tuple(x[:, :, l * l:(l + 1) ** 2] for l in range(max_order + 1))


def _former(what: str):
    """``(module, attribute, value)`` that puts back the former code of a row (see
    :class:`_Former`)."""
    from equilayers.functional import _gated, _harmonic3d, _harmonic_bn, _norm_map, _norm_map3d

    return {"addcmul affine": (_harmonic_bn, "SCALE_SHIFT_BN_FROM", float("inf")),
            "cat formulation": (_norm_map, "_one_buffer", lambda x: False),
            "gated cat formulation": (_gated, "gated_relu", lambda *args: None),
            "order slices": (_harmonic3d, "order_blocks", _order_slices),
            "so3 plain": (_norm_map3d, "norm_relu3d", lambda *args: None)}[what]


class _Former(nn.Module):
    """``m`` run with one attribute of the package set back to the former code (the
    before/after rows): the broadcasting ``addcmul`` affine and backward sums of the harmonic
    batch norms, the ``cat`` formulation of the norm-ReLU (with today's pair sums), or the
    gated nonlinearity's plain ops (``cat``; its one-split views, 2026-12-04, kept). The
    attribute is restored once the input's gradient is computed (or the output's node has
    run, for an input without one), or at once when no graph was recorded, so the rows of the
    current code see it as it is."""

    def __init__(self, m: nn.Module, what: str) -> None:
        super().__init__()
        self.m, self.what = m, what

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        module, name, value = _former(self.what)
        kept = getattr(module, name)

        def restore(*_) -> None:
            setattr(module, name, kept)

        setattr(module, name, value)
        try:
            out = self.m(x)
        except BaseException:
            restore()
            raise
        if out.grad_fn is None:
            restore()
        elif x.requires_grad:  # x's gradient comes last: after every node of the layer
            def on_grad(grad: torch.Tensor) -> None:
                restore()
                handle.remove()
            handle = x.register_hook(on_grad)
        else:
            out.grad_fn.register_hook(restore)  # runs after that node's backward
        return out


def _field_layer_cases(b: int, c: int, size: int) -> list[BenchCase]:
    """Layers on ``(B, C, 5, H, W)`` fields (orders 0..2), training and eval, each against a
    plain layer on the same tensor, and each with its former code in the same run (rows
    interleaved round by round: this machine's memory speed varies 2-3x between runs):
    HarmonicBatchNorm against ``nn.BatchNorm3d``, NormNonlinearity (the norm-ReLU) and
    GatedNonlinearity against ``nn.ReLU`` (one elementwise pass: a floor the maps, which read
    the fiber twice, cannot reach)."""
    from equilayers import nn as enn

    def batch_norm() -> nn.Module:
        m = enn.HarmonicBatchNorm(c, 2)
        m(torch.randn(b, c, 5, size, size))  # running statistics of a batch
        return m

    def former(make, what: str):
        return lambda: _Former(make(), what)

    def norm_relu() -> nn.Module:
        return enn.NormNonlinearity(c, 2)

    def gated() -> nn.Module:
        return enn.GatedNonlinearity(2)

    layers = (("BatchNorm3d", lambda: nn.BatchNorm3d(c),
               (("HarmonicBatchNorm", batch_norm),
                ("HarmonicBatchNorm", former(batch_norm, "addcmul affine"), " addcmul affine"))),
              ("ReLU", nn.ReLU,
               (("NormNonlinearity", norm_relu),
                ("NormNonlinearity", former(norm_relu, "cat formulation"), " cat formulation"),
                ("GatedNonlinearity", gated),
                ("GatedNonlinearity", former(gated, "gated cat formulation"),
                 " cat formulation"))))
    return _layer_rows(layers, f"b{b} c{c} M2 {size}x{size}", (b, c, 5, size, size),
                       {"b": b, "c": c, "size": size})


def _layer_rows(layers, tag: str, shape: tuple[int, ...], params: dict) -> list[BenchCase]:
    """Training and eval rows of each ``(floor name, floor builder, ours)`` on a random
    tensor of ``shape``, each of ``ours`` (``(name, builder, *suffix)``) against its floor."""
    out = []
    for floor_name, floor_make, ours in layers:
        for mode in ("train", "infer"):
            wrap = infer if mode == "infer" else (lambda m: m)
            row = {**params, "mode": mode}
            floor = f"{floor_name} {tag} {mode}"
            out.append(BenchCase(floor, "harmonic", lambda wrap=wrap, make=floor_make: (
                wrap(make()), torch.randn(shape)), backward=mode == "train", params=row))
            for name, make, *how in ours:
                out.append(BenchCase(
                    f"{name} {tag} {mode}{''.join(how)}", "harmonic",
                    lambda wrap=wrap, make=make: (wrap(make()), torch.randn(shape)),
                    floor=floor, backward=mode == "train", params=row))
    return out


class _FlatBatchNorm(nn.Module):
    """``nn.BatchNorm3d`` over ``x.flatten(1, 2)``: a batch norm per slot of an SO(3) field
    ``(B, C, F, D, H, W)`` (not equivariant: the floor of the volume batch-norm rows)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.flatten(1, 2)).view_as(x)


def _volume_field_cases(b: int, c: int, size: int) -> list[BenchCase]:
    """SO(3) fields ``(B, C, 9, D, H, W)`` (orders 0..2): the norm-ReLU against ``nn.ReLU``
    (beside its plain formulation), the harmonic batch norm against a batch norm per slot
    (beside its former per-order slices), training and eval, in the same run."""
    from equilayers import nn as enn

    def former(make, what: str):
        return lambda: _Former(make(), what)

    def norm_relu() -> nn.Module:
        return enn.NormNonlinearity(c, 2, group="so3")

    def batch_norm() -> nn.Module:
        return enn.HarmonicBatchNorm(c, 2, group="so3")

    layers = (("ReLU", nn.ReLU,
               (("NormNonlinearity so3", norm_relu),
                ("NormNonlinearity so3", former(norm_relu, "so3 plain"), " plain formulation"))),
              ("BatchNorm3d per slot", lambda: _FlatBatchNorm(c * 9),
               (("HarmonicBatchNorm so3", batch_norm),
                ("HarmonicBatchNorm so3", former(batch_norm, "order slices"),
                 " order slices"))))
    return _layer_rows(layers, f"b{b} c{c} L2 {size}^3", (b, c, 9, size, size, size),
                       {"b": b, "c": c, "size": size})


def cases(quick: bool) -> list[BenchCase]:
    from equilayers import nn as enn

    peer = importlib.util.find_spec("escnn") is not None

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
                construct=_layer_builder(group, c, k, mi),
                params={"b": b, "c": c, "size": size, "k": k, "group": group}))
            if peer:
                build, wrap = _escnn_conv(group, c, k)
                out.append(BenchCase(
                    f"escnn R2Conv {group} {in_rep}->{out_rep} k{k} {tag}", "harmonic",
                    lambda build=build, wrap=wrap, fib_in=fib_in: (
                        wrap(build().train()), torch.randn(b, c * fib_in, size, size)),
                    floor=f"{floor} {tag}", peer="escnn", construct=build,
                    params={"b": b, "c": c, "size": size, "k": k, "group": group}))
            if group == "c8":
                out.append(BenchCase(
                    f"GroupConv2d {group} {in_rep}->{out_rep} k{k} {tag} dense-basis expansion",
                    "harmonic",
                    lambda k=k, group=group: (
                        _dense_expansion(enn.GroupConv2d(c, c, k, padding=k // 2, group=group)),
                        torch.randn(b, c, 8, size, size)),
                    floor=f"{floor} {tag}",
                    params={"b": b, "c": c, "size": size, "k": k, "group": group}))
    # batch-1 inference (eval, no_grad): the filter is expanded by every forward (no cache),
    # against the dense floor and against the same layer after equilayers.export()
    for k in (5, 7):
        for group, fib_in, mi in (("so2", 5, 2), ("c8", 8, None)):
            f_out = 5 if group == "so2" else 8
            tag = f"infer b1 c{c} {size}x{size}"
            floor = f"Conv2d {c * fib_in}->{c * f_out} k{k} {tag}"
            out.append(BenchCase(
                floor, "harmonic",
                lambda k=k, fib_in=fib_in, f_out=f_out: (
                    infer(nn.Conv2d(c * fib_in, c * f_out, k, padding=k // 2)),
                    torch.randn(1, c * fib_in, size, size)),
                backward=False, params={"b": 1, "c": c, "size": size, "k": k}))
            for how in ("", " exported"):
                out.append(BenchCase(
                    f"GroupConv2d {group} k{k} {tag}{how}", "harmonic",
                    lambda k=k, group=group, mi=mi, fib_in=fib_in, how=how: (
                        infer(_maybe_export(enn.GroupConv2d(c, c, k, padding=k // 2,
                                                             group=group, max_order=mi), how)),
                        torch.randn(1, c, fib_in, size, size)),
                    floor=floor, backward=False,
                    params={"b": 1, "c": c, "size": size, "k": k, "group": group}))
    # construction of regular-field layers, 16 -> 16 fields, cold basis cache; a tiny forward
    # (batch 1, 15x15, no backward) so the rows stay cheap
    for group in ("c8", "d8", "c16", "d16"):
        for k in ((5,) if quick else (3, 5, 7, 11)):
            fib = int(group[1:]) * (2 if group[0] == "d" else 1)
            out.append(BenchCase(
                f"construction GroupConv2d {group} 16->16 k{k} (b1 15x15 forward)", "harmonic",
                lambda group=group, k=k, fib=fib: (
                    enn.GroupConv2d(16, 16, k, padding=k // 2, group=group),
                    torch.randn(1, 16, fib, 15, 15)),
                backward=False, construct=_layer_builder(group, 16, k),
                params={"c": 16, "k": k, "group": group}))
            if peer and (group in ("c8", "d8") and k in (5, 7) or quick):
                build, wrap = _escnn_conv(group, 16, k)
                out.append(BenchCase(
                    f"construction escnn R2Conv {group} 16->16 k{k} (b1 15x15 forward)",
                    "harmonic",
                    lambda build=build, wrap=wrap, fib=fib: (
                        wrap(build().eval()), torch.randn(1, 16 * fib, 15, 15)),
                    peer="escnn", backward=False, construct=build,
                    floor=f"construction GroupConv2d {group} 16->16 k{k} (b1 15x15 forward)",
                    params={"c": 16, "k": k, "group": group}))
    out += _field_layer_cases(b, c, size)
    out += _volume_field_cases(*((2, 8, 8) if quick else (8, 16, 16)))
    m = 3

    floor = f"floor per-order (v*v) sum sqrt M{m} b{b} c{c}"
    out.append(BenchCase(floor, "harmonic",
                         lambda: (per_order_norms, torch.randn(b, c, 2 * m + 1, size, size))))
    out.append(BenchCase(  # a different output (one norm per field), kept for reference
        f"whole-fiber (v*v).sum(2).sqrt() M{m} b{b} c{c}", "harmonic",
        lambda: (lambda v: (v * v).sum(2).sqrt(), torch.randn(b, c, 2 * m + 1, size, size)),
        floor=floor))
    out.append(BenchCase(
        f"NormPool M{m} b{b} c{c}", "harmonic",
        lambda: (enn.NormPool(m), torch.randn(b, c, 2 * m + 1, size, size)),
        floor=floor))
    return out
