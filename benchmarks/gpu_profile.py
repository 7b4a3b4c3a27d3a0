"""Where a whole equivariant model's training step spends its GPU time, beside its dense floor:
``python3 -m benchmarks.gpu_profile`` (CUDA only; run by ``benchmarks/gpu_session.sh``).

For the ``equimodels`` family's models (``benchmarks/bench_equimodels.py``: the p4m ResNet and
the SO(2) CNN, batch 64 at 64x64, float32 and bfloat16 autocast) and their dense floors: the
step's time (CUDA events, median of 20 after 5 warm-ups), the kernels launched per step, and
torch.profiler's ten most expensive ops by device time, so a gap to the floor can be read as
filter expansion, gathers, or small launches.

Then the batch norm of a group map, the p4m ResNet's largest cost on an H200 (2026-12-04: cuDNN's
per-channel kernels with C = 8 fields of |G|·H·W elements each, 77-88% of the step): its
training step (forward+backward) as shipped (``GroupBatchNorm2d``, ``F.batch_norm`` on the 5-D
map), on the 4-D view ``(B, C, F*H, W)``, as ``var_mean`` plus elementwise ops (reductions
parallel over all elements), and the dense floor ``nn.BatchNorm2d(C*F)`` on ``(B, C*F, H, W)``
(the same bytes in more channels), float32 and bfloat16, each checked against the shipped
output.
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


def _bn_var_mean(x, weight, bias, eps=1e-5):
    var, mean = torch.var_mean(x.float(), dim=(0, 2, 3, 4), correction=0, keepdim=True)
    scale = weight.view(1, -1, 1, 1, 1) * torch.rsqrt(var + eps)
    return ((x - mean) * scale + bias.view(1, -1, 1, 1, 1)).to(x.dtype)


def batch_norm() -> None:
    for dtype in (torch.float32, torch.bfloat16):
        _batch_norm_rows(dtype)


def _batch_norm_rows(dtype: torch.dtype) -> None:
    import torch.nn.functional as F

    from equilayers.nn import GroupBatchNorm2d

    b, c, f, n = 64, 8, 8, 64
    x = torch.randn(b, c, f, n, n, device="cuda", dtype=dtype, requires_grad=True)
    bn = GroupBatchNorm2d(c).cuda()
    w, bias = bn.weight, bn.bias
    dense = torch.nn.BatchNorm2d(c * f).cuda()
    xd = torch.randn(b, c * f, n, n, device="cuda", dtype=dtype, requires_grad=True)
    ways = {
        "shipped (5-D F.batch_norm)": lambda: bn(x),
        "4-D view (B, C, F*H, W)": lambda: F.batch_norm(
            x.flatten(2, 3), None, None, w, bias, True, 0.1, 1e-5).view(x.shape),
        "var_mean + elementwise": lambda: _bn_var_mean(x, w, bias),
    }
    ref = ways["shipped (5-D F.batch_norm)"]().float()
    for name, fn in ways.items():
        err = (fn().float() - ref).abs().max().item()
        ms = _time(lambda fn=fn: fn().sum().backward())
        print(f"batch norm {dtype} b{b} c{c} f{f} {n}x{n}: {name}: {ms:.3f} ms "
              f"(max |diff| to shipped {err:.2e})", flush=True)
    ms = _time(lambda: dense(xd).sum().backward())
    print(f"batch norm {dtype}: dense nn.BatchNorm2d({c * f}) floor: {ms:.3f} ms",
          flush=True)


def main() -> int:
    if not torch.cuda.is_available():
        print("benchmarks.gpu_profile: needs CUDA", file=sys.stderr)
        return 2
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.bench_equimodels import Autocast, p4m_resnet, so2_cnn

    batch_norm()
    x = torch.randn(64, 1, 64, 64, device="cuda")
    for name, build in (("p4m resnet", p4m_resnet), ("so2 cnn", so2_cnn)):
        for precision in ("float32", "bf16 autocast"):
            for dense in (True, False):
                torch.manual_seed(0)
                model = build(8, dense=dense).cuda()
                if precision != "float32":
                    model = Autocast(model)
                step = _step(model, x)
                ms = _time(step)
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
