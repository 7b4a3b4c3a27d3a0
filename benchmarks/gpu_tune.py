"""Tune the Triton kernels' launches on a CUDA device: ``python3 -m benchmarks.gpu_tune OUT``.

For every kernel of ``equilayers.kernels._triton`` (its ``LAUNCH`` table: blur forward and
backward, max-blur forward and backward, the polyphase norms, gather and scatter), in both
layouts, times each candidate ``(BLOCK, num_warps)`` with ``triton.testing.do_bench``
(median) on batch 32, 64 channels, 112x112 float32 (a 103 MB input, beyond the 60 MB L2 of an
H100/H200), and the shipped launch once more with int64 indexing forced (``I64_FROM = 0``: what
the int32 index saves). Every candidate's output must equal the shipped launch's bit for bit
(each element's arithmetic is the same whatever the block: a difference is a race).

Also measures the device's copy bandwidth (``x.clone()`` of 1 GiB, bytes read plus written)
and reports each kernel's bytes (its inputs read once and output written once) over its time.

Writes ``OUT/cuda-tune.md`` (the table), ``OUT/cuda-tune.json`` and ``OUT/cuda-launch.json``
(the best launch per kernel and layout, in ``LAUNCH``'s form: contiguous, channels_last); with
``--apply`` it then runs ``python -m benchmarks`` with the remaining arguments in this process,
with the best launches set, so the families measure the tuned kernels:

    python3 -m benchmarks.gpu_tune OUT --apply --device cuda --family kernels --out OUT
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

CANDIDATES = [(128, 4), (256, 2), (256, 4), (256, 8), (512, 4), (512, 8), (1024, 4),
              (1024, 8), (2048, 8)]
B, C, N = 32, 64, 112
DEVICE = "cuda"  # (a self-test here sets "cpu" under TRITON_INTERPRET=1)


def _bench(fn) -> float:
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=10, rep=40, return_mode="median"))


def copy_bandwidth() -> float:
    """GB/s of ``x.clone()`` on 1 GiB, counting the bytes read and written."""
    x = torch.randn(2**28, device="cuda")
    ms = _bench(lambda: x.clone())
    return 2 * x.numel() * 4 / (ms * 1e-3) / 1e9


def _ops(T, x: torch.Tensor) -> dict:
    """Kernel name -> (a call, the bytes it must move at least)."""
    H, W = x.shape[-2:]
    e = x.element_size()
    y = T.blur_forward(x, 3, 2, "reflect")
    g_small = torch.randn_like(y)
    _, index = T.polyphase_forward(x, 2, "l2")
    n_in, n_out = x.numel() * e, y.numel() * e
    return {
        "blur": (lambda: T.blur_forward(x, 3, 2, "reflect"), n_in + n_out),
        "blur_bwd": (lambda: T.blur_backward(g_small, H, W, 3, 2, "reflect"), n_in + n_out),
        "max_blur": (lambda: T.max_blur_forward(x, 2, 3, 2, "reflect"), n_in + n_out),
        "max_blur_bwd": (lambda: T.max_blur_backward(g_small, x, 2, 3, 2, "reflect"),
                         2 * n_in + n_out),
        # the norms read every element; the gather reads and writes a quarter of them
        "phase_norms": (lambda: T.polyphase_forward(x, 2, "l2"), n_in + 2 * n_out),
        "phase": (lambda: T.polyphase_forward(x, 2, "l2"), n_in + 2 * n_out),
        "phase_bwd": (lambda: T.polyphase_backward(g_small[:, :, :H // 2, :W // 2]
                                                   .contiguous(memory_format=_fmt(x)), index,
                                                   H, W, 2), n_in + n_out),
    }


def _fmt(x: torch.Tensor) -> torch.memory_format:
    cl = (not x.is_contiguous()) and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if cl else torch.contiguous_format


def _result(out):
    return out[0] if isinstance(out, tuple) else out


def tune(out: Path) -> dict:
    from equilayers.kernels import _triton as T

    shipped = dict(T.LAUNCH)
    bw = copy_bandwidth()
    print(f"copy bandwidth: {bw:.0f} GB/s", flush=True)
    rows, best = [], {}
    g = torch.Generator().manual_seed(0)
    base = torch.randn(B, C, N, N, generator=g)
    layouts = {"contiguous": base.to(DEVICE),
               "channels_last": base.to(DEVICE).contiguous(memory_format=torch.channels_last)}
    times: dict = {}
    t0 = time.time()
    for kind in shipped:
        for layout, x in layouts.items():
            call, nbytes = _ops(T, x)[kind]
            T.LAUNCH.update(shipped)
            ref = _result(call()).clone()
            cl = layout == "channels_last"
            variants = [(cfg, False) for cfg in CANDIDATES] + [(shipped[kind][cl], True)]
            for cfg, force64 in variants:
                T.LAUNCH[kind] = (cfg, cfg)
                T.I64_FROM = 0 if force64 else 2**31 - 2**16
                try:
                    res = _result(call())
                    same = bool(torch.equal(res, ref))
                    ms = _bench(call)
                    status = "ok" if same else "MISMATCH"
                except Exception as exc:  # a launch that fails to compile is a row, not a stop
                    ms, status = float("nan"), f"error: {type(exc).__name__}: {exc}"[:120]
                T.I64_FROM = 2**31 - 2**16
                rows.append({"kernel": kind, "layout": layout, "block": cfg[0],
                             "num_warps": cfg[1], "int64": force64, "ms": ms,
                             "gb_s": nbytes / (ms * 1e-3) / 1e9 if ms == ms else None,
                             "status": status})
                if not force64 and status == "ok":
                    times.setdefault((kind, cl), {})[cfg] = ms
            print(f"{kind} {layout}: done ({time.time() - t0:.0f} s)", flush=True)
    T.LAUNCH.update(shipped)
    for kind in shipped:  # a layout none of whose candidates passed keeps its shipped launch
        best[kind] = [list(min(times[kind, cl], key=times[kind, cl].__getitem__))
                      if times.get((kind, cl)) else list(shipped[kind][cl]) for cl in (0, 1)]
    meta = {"device": torch.cuda.get_device_name() if DEVICE == "cuda" else DEVICE,
            "torch": torch.__version__,
            "triton": __import__("triton").__version__, "copy_gb_s": bw,
            "shape": [B, C, N, N], "shipped": shipped, "best": best}
    out.mkdir(parents=True, exist_ok=True)
    (out / "cuda-tune.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (out / "cuda-launch.json").write_text(json.dumps(best))
    lines = [f"# Triton launch sweep on {meta['device']}", "",
             f"torch {meta['torch']}, triton {meta['triton']}; input {B}x{C}x{N}x{N} float32; "
             f"copy bandwidth {bw:.0f} GB/s (x.clone() of 1 GiB, read + write). Median of "
             "triton.testing.do_bench; GB/s counts each kernel's least bytes (inputs read and "
             "output written once). `int64`: the shipped launch with int64 indexing forced.",
             "", "| kernel | layout | BLOCK | warps | int64 | ms | GB/s | % copy | status |",
             "|---|---|---:|---:|---|---:|---:|---:|---|"]
    for r in rows:
        gb = r["gb_s"]
        lines.append(f"| {r['kernel']} | {r['layout']} | {r['block']} | {r['num_warps']} | "
                     f"{'yes' if r['int64'] else ''} | {r['ms']:.4f} | "
                     f"{'-' if gb is None else f'{gb:.0f}'} | "
                     f"{'-' if gb is None else f'{100 * gb / bw:.0f}'} | {r['status']} |")
    lines += ["", "Best launch per kernel, (contiguous, channels_last): "
              + ", ".join(f"{k} {tuple(map(tuple, v))}" for k, v in best.items())]
    (out / "cuda-tune.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-1:]), flush=True)
    return best


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    out, rest = Path(argv[0]), argv[1:]
    if not torch.cuda.is_available():
        print("benchmarks.gpu_tune: needs CUDA (torch.cuda.is_available() is False)",
              file=sys.stderr)
        return 2
    try:
        best = tune(out)
    except Exception:  # the families below still run, with the shipped launches
        import traceback
        traceback.print_exc()
        best = {}
    if rest and rest[0] == "--apply":
        from equilayers.kernels import _triton as T

        T.LAUNCH.update({k: (tuple(v[0]), tuple(v[1])) for k, v in best.items()})
        print(f"benchmarks.gpu_tune: running the families with {T.LAUNCH}", flush=True)
        from benchmarks.__main__ import main as bench

        return bench(rest[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
