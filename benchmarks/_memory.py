"""Peak memory of one call, on CUDA and on CPU.

CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus what was
allocated before the call.

CPU: the PyTorch profiler with ``profile_memory=True`` records every allocation and free made by
the CPU allocator, with its size and time stamp. Replaying those events in time order and taking
the maximum of the running sum gives the peak of tensor memory allocated during the call, beyond
what was live before it (the input, the parameters). This counts tensor storage only (not the
Python heap or allocator caches); it is the CPU counterpart of ``max_memory_allocated``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

import torch

__all__ = ["peak_memory"]


@contextlib.contextmanager
def _quiet_fd2() -> Iterator[None]:
    """Silence the profiler's C++ start/stop lines, which go straight to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_peak(fn: Callable[[], object]) -> int:
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_fd2():
        prof.start()
    try:
        fn()
    finally:
        with _quiet_fd2():
            prof.stop()
    events: list[tuple[int, int]] = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            fields = node.extra_fields
            if fields.device.type == "cpu":
                events.append((node.start_time_ns, fields.alloc_size))
        stack.extend(node.children)
    events.sort()
    current = peak = 0
    for _, size in events:
        current += size
        peak = max(peak, current)
    return peak


def _cuda_peak(fn: Callable[[], object], device: torch.device) -> int:
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def peak_memory(fn: Callable[[], object], device: torch.device | str) -> int:
    """Peak bytes allocated by ``fn()`` beyond what was live before it (one call, after warmup)."""
    device = torch.device(device)
    fn()  # warm up: lazy init, caches and autotuning are not part of the peak
    if device.type == "cuda":
        return _cuda_peak(fn, device)
    if device.type == "cpu":
        return _cpu_peak(fn)
    raise ValueError(f"peak_memory: device {device} is not supported; use 'cpu' or 'cuda'")
