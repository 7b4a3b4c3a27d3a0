"""Where a whole equivariant model's training step spends its GPU time, beside its dense floor:
``python3 -m benchmarks.gpu_profile`` (CUDA only; run by ``benchmarks/gpu_session.sh``).

For the ``equimodels`` family's models (``benchmarks/bench_equimodels.py``: the p4m ResNet and
the SO(2) CNN, batch 64 at 64x64, float32 and bfloat16 autocast) and their dense floors: the
step's time (CUDA events, median of 20 after 5 warm-ups), the kernels launched per step, and
torch.profiler's ten most expensive ops by device time, so a gap to the floor can be read as
filter expansion, gathers, or small launches.
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


def main() -> int:
    if not torch.cuda.is_available():
        print("benchmarks.gpu_profile: needs CUDA", file=sys.stderr)
        return 2
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.bench_equimodels import Autocast, p4m_resnet, so2_cnn

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
