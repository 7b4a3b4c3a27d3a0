"""Anti-aliased downsampling against its floors (``nn.MaxPool2d(2)``, ``nn.AvgPool2d(2)``, the
strided ``nn.Conv2d``) and its peers (the naive reference composition, kornia).

The "reference composition" is what the published anti-aliased models compute, written here
from the paper: max-pool at stride 1, then reflect padding and a depthwise convolution with the
binomial filter copied once per channel, at stride 2.

Layout sweep (``... contiguous|channels_last ...`` rows, 28-224 px, the batch shrinking with
the size so every input holds the same 6.4M floats: b128 at 28, b32 at 56, b8 at 112, b2 at
224; 64 channels): ``BlurPool2d``, ``MaxBlurPool2d`` and kornia's ``BlurPool2D`` /
``MaxBlurPool2D`` (where installed; both pad with zeros, so ours run with the default reflect
padding and with ``padding_mode="zeros"``) against the bandwidth floor
``x[..., ::2, ::2].clone()`` on the same tensor (reads a quarter of the input, writes the
output once: no pool can be faster), forward only for the floor; their forward+backward
times compare row to row. The per-size rows (b32 c64 at 56 and 112 px, contiguous) name the
same floor as their ``bandwidth``: the ``x bw`` column.

Strided-conv rows (``BlurConv2d ... fold=...``): the strided convs of a ResNet-18 at batch 16
and 160x160 (the 7x7 stem, the 3x3 convs starting stages 2-4, a 1x1 shortcut) and a
MobileNetV2 depthwise conv, each as ``BlurConv2d`` with ``fold=False`` (the composition),
``None`` (the default: the cheapest exact path) and ``True`` (the folded weight), against
the plain strided ``nn.Conv2d``, in both layouts: the measurements behind ``fold=None``.

Edge-aware rows (``edge-aware: ...``, b32 c64 at 56 and 112 px, contiguous): our
``EdgeAwareBlurPool2d`` and kornia's ``EdgeAwareBlurPool2D`` (the same outputs) against the
plain stride-1 blur (``blur_pool2d(x, 3, stride=1)``, the part every edge-aware blur pays),
on a positive input (``|x| + 0.1``: the edge test reads logarithms).

Run ``python -m benchmarks.bench_antialias [--quick]`` for a small table (CPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._core import BenchCase, Subsample, forward_backward, time_call
from ._core import pool_sizes as _sizes
from ._core import seeded_input as _input

FAMILY = "antialias"
#: peer libraries whose rows this family has only where they are installed (the runner
#: names each one missing)
OPTIONAL_PEERS = ("kornia",)



class ReferenceMaxBlurPool(nn.Module):
    """Max at stride 1, then a depthwise blur with a per-channel copy of the filter."""

    def __init__(self, channels: int, blur_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        from equilayers.functional import binomial_filter

        f = binomial_filter(blur_size)
        self.register_buffer("filt", torch.outer(f, f)[None, None].repeat(channels, 1, 1, 1))
        self.stride = stride
        left = (blur_size - 1) // 2
        self.pad = (left, blur_size - 1 - left) * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(x, 2, 1)
        x = F.pad(x, self.pad, mode="reflect")
        return F.conv2d(x, self.filt, stride=self.stride, groups=x.shape[1])


def _kornia():
    try:
        import kornia.filters as kf
    except ImportError:
        return None
    return kf


LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def _sweep_sizes(quick: bool) -> list[tuple[int, int, int]]:
    """(batch, channels, size) of the layout sweep: 6.4M floats per input."""
    if quick:
        return [(4, 16, 28), (1, 16, 56)]
    return [(128, 64, 28), (32, 64, 56), (8, 64, 112), (2, 64, 224)]


def _layout_sweep(quick: bool, kf) -> list[BenchCase]:
    from equilayers.nn import BlurPool2d, MaxBlurPool2d

    out = []
    for b, c, n in _sweep_sizes(quick):
        for layout, fmt in LAYOUTS.items():
            tag = f"{layout} b{b} c{c} {n}x{n}"
            params = {"batch": b, "channels": c, "size": n, "layout": layout}

            def make(build, b=b, c=c, n=n, fmt=fmt):
                def _make(device=None):
                    torch.manual_seed(0)
                    return build().to(device), _input(b, c, n, device).contiguous(
                        memory_format=fmt)
                return _make

            floor = f"copy x[..., ::2, ::2] {tag}"
            rows = [(floor, lambda: Subsample(), None, None),
                    (f"MaxPool2d(2) {tag}", lambda: nn.MaxPool2d(2), floor, None),
                    (f"BlurPool2d {tag}", lambda: BlurPool2d(), floor, None),
                    (f"MaxBlurPool2d {tag}", lambda: MaxBlurPool2d(), floor, None),
                    # kornia's padding (zeros), for a like-for-like comparison
                    (f"BlurPool2d zeros {tag}", lambda: BlurPool2d(padding_mode="zeros"),
                     floor, None),
                    (f"MaxBlurPool2d zeros {tag}", lambda: MaxBlurPool2d(padding_mode="zeros"),
                     floor, None)]
            if kf is not None:
                rows += [(f"kornia BlurPool2D {tag}", lambda: kf.BlurPool2D(3, 2), floor,
                          "kornia"),
                         (f"kornia MaxBlurPool2D {tag}", lambda: kf.MaxBlurPool2D(3, 2, 2),
                          floor, "kornia")]
            out += [BenchCase(name, FAMILY, make(build), floor=fl, peer=peer,
                              bandwidth=fl, backward=name != floor, params=params)
                    for name, build, fl, peer in rows]
    return out


def _conv_shapes(quick: bool) -> list[tuple[str, int, int, int, int, int, int]]:
    """(what, batch, c_in, c_out, kernel, groups, input size) of the strided-conv rows."""
    if quick:
        return [("3x3", 2, 8, 16, 3, 1, 16), ("1x1", 2, 8, 16, 1, 1, 16)]
    return [("ResNet-18 stem 7x7", 16, 3, 64, 7, 1, 160),
            ("ResNet-18 layer2 3x3", 16, 64, 128, 3, 1, 40),
            ("ResNet-18 layer3 3x3", 16, 128, 256, 3, 1, 20),
            ("ResNet-18 layer4 3x3", 16, 256, 512, 3, 1, 10),
            ("ResNet-18 shortcut 1x1", 16, 64, 128, 1, 1, 40),
            ("MobileNetV2 depthwise 3x3", 16, 144, 144, 3, 144, 40)]


def _strided_convs(quick: bool) -> list[BenchCase]:
    from equilayers.nn import BlurConv2d

    out = []
    for what, b, c_in, c_out, k, groups, n in _conv_shapes(quick):
        for layout, fmt in LAYOUTS.items():
            tag = f"{what} {layout} b{b} {c_in}->{c_out} {n}x{n}"
            params = {"batch": b, "c_in": c_in, "c_out": c_out, "kernel": k, "groups": groups,
                      "size": n, "layout": layout}

            def make(build, b=b, c=c_in, n=n, fmt=fmt):
                def _make(device=None):
                    torch.manual_seed(0)
                    return (build().to(device=device, memory_format=fmt),
                            _input(b, c, n, device).contiguous(memory_format=fmt))
                return _make

            conv = (c_in, c_out, k, 2, k // 2, 1, groups)
            floor = f"Conv2d {tag}"
            out.append(BenchCase(floor, FAMILY, make(lambda conv=conv: nn.Conv2d(*conv)),
                                 params=params))
            for fold in (False, None, True):
                out.append(BenchCase(
                    f"BlurConv2d fold={fold} {tag}", FAMILY,
                    make(lambda conv=conv, fold=fold: BlurConv2d(*conv, fold=fold)),
                    floor=floor, params={**params, "fold": fold}))
    return out


class _StrideOneBlur(nn.Module):
    """The plain binomial blur at stride 1 (reflected border): the edge-aware rows' floor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from equilayers.functional import blur_pool2d

        return blur_pool2d(x, 3, stride=1)


def _maker(b: int, c: int, n: int, positive: bool = False):
    """``make(build)`` for the per-size rows: the module built with seed 0 and the seeded
    ``(b, c, n, n)`` input (``|x| + 0.1`` where ``positive``: the edge test reads logarithms)."""
    def make(build):
        def _make(device=None):
            torch.manual_seed(0)
            x = _input(b, c, n, device)
            return build().to(device), (x.abs() + 0.1 if positive else x)
        return _make
    return make


def _edge_aware(quick: bool, kf) -> list[BenchCase]:
    from equilayers.nn import EdgeAwareBlurPool2d

    out = []
    for b, c, n in _sizes(quick):
        tag = f"b{b} c{c} {n}x{n}"
        params = {"batch": b, "channels": c, "size": n}
        make = _maker(b, c, n, positive=True)
        floor = f"edge-aware: blur_pool2d stride 1 {tag}"
        out += [BenchCase(floor, FAMILY, make(_StrideOneBlur), params=params),
                BenchCase(f"edge-aware: EdgeAwareBlurPool2d {tag}", FAMILY,
                          make(lambda: EdgeAwareBlurPool2d(3)), floor=floor, params=params)]
        if kf is not None:
            out.append(BenchCase(f"edge-aware: kornia EdgeAwareBlurPool2D {tag}", FAMILY,
                                 make(lambda: kf.EdgeAwareBlurPool2D(3)), floor=floor,
                                 peer="kornia", params=params))
    return out


def cases(quick: bool) -> list[BenchCase]:
    from equilayers.nn import BlurConv2d, BlurPool2d, MaxBlurPool2d, PolyphasePool2d

    kf = _kornia()
    out = _layout_sweep(quick, kf) + _strided_convs(quick) + _edge_aware(quick, kf)
    for b, c, n in _sizes(quick):
        tag = f"b{b} c{c} {n}x{n}"
        params = {"batch": b, "channels": c, "size": n}
        make = _maker(b, c, n)
        max_floor, avg_floor, conv_floor = (f"MaxPool2d(2) {tag}", f"AvgPool2d(2) {tag}",
                                            f"Conv2d 3x3 s2 {tag}")
        bw = f"copy x[..., ::2, ::2] {tag}"
        out += [
            BenchCase(bw, FAMILY, make(lambda: Subsample()), backward=False, params=params),
            BenchCase(max_floor, FAMILY, make(lambda: nn.MaxPool2d(2)), params=params),
            BenchCase(avg_floor, FAMILY, make(lambda: nn.AvgPool2d(2)), params=params),
            BenchCase(conv_floor, FAMILY, make(lambda c=c: nn.Conv2d(c, c, 3, 2, 1)),
                      params=params),
            BenchCase(f"BlurPool2d {tag}", FAMILY, make(lambda: BlurPool2d()),
                      floor=avg_floor, bandwidth=bw, params=params),
            BenchCase(f"MaxBlurPool2d {tag}", FAMILY, make(lambda: MaxBlurPool2d()),
                      floor=max_floor, bandwidth=bw, params=params),
            BenchCase(f"reference max+depthwise blur {tag}", FAMILY,
                      make(lambda c=c: ReferenceMaxBlurPool(c)), floor=max_floor,
                      peer="reference", bandwidth=bw, params=params),
            BenchCase(f"PolyphasePool2d {tag}", FAMILY, make(lambda: PolyphasePool2d(2)),
                      floor=max_floor, bandwidth=bw, params=params),
            BenchCase(f"BlurConv2d 3x3 s2 {tag}", FAMILY,
                      make(lambda c=c: BlurConv2d(c, c, 3, 2, 1)), floor=conv_floor,
                      params=params),
        ]
        if kf is not None:
            out += [
                BenchCase(f"kornia BlurPool2D {tag}", FAMILY,
                          make(lambda: kf.BlurPool2D(3, 2)), floor=avg_floor, peer="kornia",
                          bandwidth=bw, params=params),
                BenchCase(f"kornia MaxBlurPool2D {tag}", FAMILY,
                          make(lambda: kf.MaxBlurPool2D(3, 2, 2)), floor=max_floor,
                          peer="kornia", bandwidth=bw, params=params),
            ]
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--filter", default="")
    args = p.parse_args(argv)
    rows, fwd_times, fb_times = [], {}, {}
    for case in cases(args.quick):
        if args.filter not in case.name:
            continue
        fn, x = case.make()
        with torch.no_grad():
            t_f = time_call(lambda fn=fn, x=x: fn(x), reps=args.reps, warmup=1)
        t_fb = time_call(forward_backward(fn, x), reps=args.reps, warmup=1)
        fwd_times[case.name], fb_times[case.name] = t_f, t_fb
        ratio = ""
        if case.floor in fb_times:
            ratio = f"{t_f / fwd_times[case.floor]:.2f}x / {t_fb / fb_times[case.floor]:.2f}x"
        rows.append((case.name, f"{t_f * 1e3:.2f}", f"{t_fb * 1e3:.2f}", case.floor or "-",
                     ratio))
    head = ("case", "fwd ms", "fwd+bwd ms", "floor", "vs floor (fwd / fwd+bwd)")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join("{:<" + str(w) + "}" for w in widths)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU")
    print(fmt.format(*head))
    for r in rows:
        print(fmt.format(*r))


if __name__ == "__main__":
    main()
