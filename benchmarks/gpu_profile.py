"""Where a whole equivariant model's training step spends its GPU time, beside its dense floor:
``python3 -m benchmarks.gpu_profile`` (CUDA only; run by ``benchmarks/gpu_session.sh``);
``--compile``: only the models' steps eager against ``torch.compile`` (:func:`compiled`).

For the ``equimodels`` family's models (``benchmarks/bench_equimodels.py``: the p4m ResNet and
the SO(2) CNN, batch 64 at 64x64, float32 and bfloat16 autocast) and their dense floors: the
step's time (CUDA events, median of 20 after 5 warm-ups), the kernels launched per step, and
torch.profiler's ten most expensive ops by device time, so a gap to the floor can be read as
filter expansion, gathers, or small launches.

First the batch norm of a group map, the p4m ResNet's largest cost on an H200 (2026-12-04: cuDNN's
per-channel kernels with C = 8 fields of |G|·H·W elements each, 77-88% of the step): its
training step (forward+backward) by reductions over all elements (``batch_norm_by_reductions``,
which the shipped rule ``split_batch_norm`` takes from ``SPLIT_FROM`` elements per channel on
CUDA), by ``F.batch_norm``, and the dense floor ``nn.BatchNorm2d(C*F)``
on ``(B, C*F, H, W)`` (the same bytes in more channels), float32 and bfloat16, for several
shapes, with peak memory and the agreement; then the p4m ResNet's step with each.
"""

from __future__ import annotations

import statistics
import sys

import torch


def _step(model, x):
    def run():
        model(x).sum().backward()
    return run


def _time(fn, reps: int = 20) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def batch_norm() -> None:
    for dtype in (torch.float32, torch.bfloat16):
        for shape in BN_SHAPES:
            _batch_norm_row(shape, dtype)


# (B, C fields, F slots, *spatial): the p4m ResNet's first map, wider and smaller maps, a
# cube-group volume
BN_SHAPES = ((64, 8, 8, 64, 64), (64, 16, 8, 32, 32), (64, 16, 8, 24, 24), (64, 16, 8, 16, 16),
             (64, 32, 8, 16, 16), (64, 64, 4, 16, 16), (32, 128, 8, 8, 8),
             (16, 8, 24, 16, 16, 16))


def _batch_norm_row(shape: tuple, dtype: torch.dtype) -> None:
    """One map's training step (forward+backward) of the group batch norm by reductions
    (``batch_norm_by_reductions``), by ``F.batch_norm`` (cuDNN / torch's per-channel kernels),
    and the dense floor (``nn.BatchNorm2d/3d(C*F)`` on the same bytes); times, peak memory,
    agreement."""
    import torch.nn.functional as F

    from equilayers.functional import _group_norm as GN

    c, f = shape[1], shape[2]
    spatial = shape[3:]
    x = torch.randn(shape, device="cuda", dtype=dtype, requires_grad=True)
    w = torch.rand(c, device="cuda") + 0.5
    bias = torch.randn(c, device="cuda")
    rm, rv = torch.zeros(c, device="cuda"), torch.ones(c, device="cuda")
    dense = (torch.nn.BatchNorm2d if len(spatial) == 2 else torch.nn.BatchNorm3d)(c * f).cuda()
    xd = torch.randn(shape[0], c * f, *spatial, device="cuda", dtype=dtype, requires_grad=True)

    def native():
        y = F.batch_norm(x.flatten(2, 3) if x.dim() == 6 else x, rm, rv, w, bias, True, 0.1,
                         1e-5)
        return y.view(x.shape)

    ways = {"reductions": lambda: GN.batch_norm_by_reductions(
                x, rm, rv, w, bias, 0.1, 1e-5),
            "F.batch_norm": native,
            f"dense BatchNorm({c * f})": lambda: dense(xd)}
    ref = native().float()
    row = []
    for name, fn in ways.items():
        err = (fn().float() - ref).abs().max().item() if "dense" not in name else 0.0
        ms = _time(lambda fn=fn: fn().sum().backward())
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn().sum().backward()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        row.append(f"{name} {ms:.3f} ms, peak +{peak:.0f} MiB"
                   + (f", |diff| {err:.1e}" if "dense" not in name else ""))
    rule = "reductions" if GN.split_batch_norm(x) else "F.batch_norm"
    print(f"batch norm {str(dtype)[6:]} {shape} (shipped: {rule}): " + "; ".join(row),
          flush=True)


def sync_points(label: str, fn) -> None:
    """The host-device synchronisations one call of ``fn`` makes (``torch.cuda``'s sync debug
    mode; each stalls the host until the queue drains, so a model with them is host-bound),
    by the source line that called the op."""
    import collections
    import warnings

    fn()
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    where = collections.Counter(f"{w.filename.split('/work/')[-1]}:{w.lineno}" for w in caught
                                if "synchroniz" in str(w.message))
    print(f"sync points {label}: {sum(where.values())}"
          + "".join(f"\n    {n} x {loc}" for loc, n in where.most_common(12)), flush=True)


def pool_trace(pool, x) -> None:
    """Where a pool's forward+backward spends host and device time: on 2026-12-04 the pools'
    forward+backward took 0.75-0.88 ms at both 56x56 and 112x112 (a fixed cost, about 0.5 ms
    over ``MaxPool2d(2)``'s) while the host work measured on a CPU with the launches stubbed
    was ~55 us; torch.profiler's CPU and CUDA tables of one step, by CPU time."""
    from torch.profiler import ProfilerActivity, profile

    step = _step(pool, x)
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    print(f"\n=== {type(pool).__name__} forward+backward, b{x.shape[0]} c{x.shape[1]} "
          f"{x.shape[2]}x{x.shape[3]}: step {_time(step):.3f} ms", flush=True)
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=20,
                                    max_name_column_width=60), flush=True)


def compiled() -> None:
    """The whole models' training steps eager and under ``torch.compile`` (default mode, and
    ``reduce-overhead``: CUDA graphs, which remove the host's per-op work), with the compile
    time; both models compile with ``fullgraph=True`` (checked on CPU, 2026-12-04)."""
    import time

    from benchmarks.bench_equimodels import p4m_resnet, so2_cnn

    x = torch.randn(64, 1, 64, 64, device="cuda")
    for name, build in (("p4m resnet", p4m_resnet), ("so2 cnn", so2_cnn)):
        for dense in (True, False):
            torch.manual_seed(0)
            model = build(8, dense=dense).cuda()
            row = [f"eager {_time(_step(model, x)):.3f} ms"]
            for mode in ("default", "reduce-overhead"):
                torch.compiler.reset()
                fn = torch.compile(model, fullgraph=True, mode=mode)
                start = time.perf_counter()
                _step(fn, x)()
                torch.cuda.synchronize()
                took = time.perf_counter() - start
                row.append(f"{mode} {_time(_step(fn, x)):.3f} ms (compiled in {took:.0f} s)")
            print(f"compiled {'dense' if dense else 'ours'} {name} float32 step: "
                  + "; ".join(row), flush=True)


def main() -> int:
    if {"-h", "--help"} & set(sys.argv[1:]):
        print((__doc__ or "").strip() + "\n\nusage: python -m benchmarks.gpu_profile "
              "[--compile] (on a CUDA machine)")
        return 0
    unknown = [a for a in sys.argv[1:] if a != "--compile"]
    if unknown:  # (they were ignored in silence)
        print(f"benchmarks.gpu_profile: unknown argument(s) {unknown}; it takes --compile "
              "only", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("benchmarks.gpu_profile: needs CUDA", file=sys.stderr)
        return 2
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.bench_equimodels import Autocast, p4m_resnet, so2_cnn
    from equilayers.functional import _group_norm as GN

    if "--compile" in sys.argv[1:]:
        compiled()
        return 0
    batch_norm()
    from equilayers.nn import BlurPool2d, MaxBlurPool2d, PolyphasePool2d

    xp = torch.randn(32, 64, 56, 56, device="cuda", requires_grad=True)
    for pool in (BlurPool2d(64), MaxBlurPool2d(), PolyphasePool2d()):
        sync_points(f"{type(pool).__name__} forward+backward",
                    lambda pool=pool: pool(xp).sum().backward())
    pool_trace(MaxBlurPool2d(), xp)
    x = torch.randn(64, 1, 64, 64, device="cuda")
    rule = GN.split_batch_norm
    for name, build in (("p4m resnet", p4m_resnet),):
        for precision in ("float32", "bf16 autocast"):
            times = []
            for split in (True, False):
                GN.split_batch_norm = rule if split else (lambda x: False)
                try:
                    torch.manual_seed(0)
                    model = build(8, dense=False).cuda()
                    if precision != "float32":
                        model = Autocast(model)
                    times.append(_time(_step(model, x)))
                finally:
                    GN.split_batch_norm = rule
            print(f"ours {name} {precision}: step {times[0]:.3f} ms with the shipped batch norm "
                  f"(the rule), {times[1]:.3f} ms with F.batch_norm", flush=True)
    for name, build in (("p4m resnet", p4m_resnet), ("so2 cnn", so2_cnn)):
        for precision in ("float32", "bf16 autocast"):
            for dense in (True, False):
                torch.manual_seed(0)
                model = build(8, dense=dense).cuda()
                if precision != "float32":
                    model = Autocast(model)
                step = _step(model, x)
                ms = _time(step)
                if not dense:
                    sync_points(f"{name} {precision} step", step)
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    step()
                    torch.cuda.synchronize()
                kernels = sum(e.count for e in prof.key_averages()
                              if getattr(e, "device_type", None)
                              == torch.autograd.DeviceType.CUDA)
                label = f"{'dense' if dense else 'ours'} {name} {precision}"
                print(f"\n=== {label}: step {ms:.3f} ms, {kernels} kernel launches per step",
                      flush=True)
                for key in ("device_time_total", "cuda_time_total"):  # torch's name, old and new
                    try:
                        print(prof.key_averages().table(sort_by=key, row_limit=10,
                                                        max_name_column_width=60))
                        break
                    except (AttributeError, KeyError, ValueError):
                        continue
    return 0


if __name__ == "__main__":
    sys.exit(main())
