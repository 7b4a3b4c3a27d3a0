"""The benchmark contract shared by every family module ``benchmarks/bench_<family>.py``.

A family module defines ``cases(quick: bool) -> list[BenchCase]``. Each case builds the callable
under test and its input; ``floor`` names the case (same family) it is compared against, so
ratios are taken within one run. ``python -m benchmarks`` discovers the family modules, times
every case, and writes the results.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = ["BenchCase", "Subsample", "UsageError", "time_call", "forward_backward",
           "pool_sizes", "seeded_input"]


class UsageError(ValueError):
    """A mistake on the command line that a study family's ``run()`` finds (a ``--filter``
    that names none of its rows): ``python -m benchmarks`` prints the message in one line and
    exits with status 1, without a traceback."""


@dataclass
class BenchCase:
    """One benchmark row.

    Attributes:
        name: unique within the family, e.g. ``"MaxBlurPool2d b32 c64 56x56"``.
        family: ``"antialias"``, ``"gconv"``, ``"harmonic"``, ``"pool"`` ...
        make: returns ``(fn, x)``; ``fn(x)`` is the forward pass (a module or function).
        floor: the name of the case this one is compared with (``None`` for floors).
        bandwidth: the name of the case timing the bandwidth floor of this one's input (the
            time to read the input and write the output once, ``x[..., ::2, ::2].clone()``
            for a stride-2 pool); the forward is reported as a multiple of it too.
        peer: the name of a peer library (``"kornia"``, ``"escnn"``...) or ``None`` for ours.
        backward: whether forward+backward is timed too.
        construct: optional builder whose construction time is measured.
        params: free-form parameters recorded with the result (batch, channels, size...).
        metrics: optional ``metrics(device=None) -> dict`` of further measurements recorded
            with the row after the timings (a model's shift consistency...), untimed.
    """

    name: str
    family: str
    make: Callable[[], tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]]
    floor: str | None = None
    bandwidth: str | None = None
    peer: str | None = None
    backward: bool = True
    construct: Callable[[], object] | None = None
    params: dict = field(default_factory=dict)
    metrics: Callable[..., dict] | None = None


def time_call(fn: Callable[[], object], *, reps: int = 10, warmup: int = 2,
              sync: Callable[[], None] | None = None) -> float:
    """Median wall time of ``fn()`` in seconds over ``reps`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def forward_backward(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
    """A closure running forward and backward (sum of the output) with a fresh input grad."""
    xg = x.detach().requires_grad_(True)

    def run():
        out = fn(xg)
        out.sum().backward()
        xg.grad = None
    return run


class Subsample(torch.nn.Module):
    """The bandwidth floor of a stride-``s`` pool: read every ``s``-th row and column of the
    input once and write them once (``x[..., ::s, ::s].clone()``); no pool can be faster."""

    def __init__(self, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., ::self.stride, ::self.stride].clone()


def pool_sizes(quick: bool) -> list[tuple[int, int, int]]:
    """(batch, channels, size) of the pooling benchmarks (antialias and kernels families share
    them so their tables compare)."""
    if quick:
        return [(4, 16, 32)]
    return [(32, 64, 56), (32, 64, 112)]


class _Infer(torch.nn.Module):
    """``model`` in eval mode under ``torch.no_grad``; a module, so the runner's ``.to(device)``
    moves it (a closure kept the weights on the CPU: every inference row failed on CUDA)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(x)


def infer(m: torch.nn.Module) -> torch.nn.Module:
    """``m`` in eval mode, called under ``torch.no_grad`` (an inference row's callable)."""
    return _Infer(m)


def module_maker(builder: Callable[[], torch.nn.Module], shape: tuple[int, ...], mode: str
                 ) -> Callable[[], tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]]:
    """A row's ``make`` for a module: ``builder()`` in train mode (``mode="train"``) or in
    eval mode under ``torch.no_grad`` (:func:`infer`), and a random input of ``shape``."""
    def make():
        m = builder()
        return (m.train() if mode == "train" else infer(m)), torch.randn(*shape)
    return make


def peer_maker(build: Callable[[], torch.nn.Module],
               wrap: Callable[[torch.nn.Module], Callable[[torch.Tensor], torch.Tensor]],
               shape: tuple[int, ...], mode: str
               ) -> Callable[[], tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]]:
    """A row's ``make`` for a peer library's module: ``wrap(build())`` (the call on plain
    tensors, e.g. through escnn's ``GeometricTensor``), the module in train mode or in eval
    mode with the call under ``torch.no_grad``, and a random input of ``shape``."""
    def make():
        m = build()
        if mode == "train":
            return wrap(m.train()), torch.randn(*shape)
        f = wrap(m.eval())

        def fn(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return f(x)
        return fn, torch.randn(*shape)
    return make


def layer_rows(family: str, tag: str, shape: tuple[int, ...], mode: str, params: dict,
               floor: Callable[[], torch.nn.Module], ours: Callable[[], torch.nn.Module],
               peer: tuple[str, Callable[[], torch.nn.Module],
                           Callable[[torch.nn.Module], Callable[[torch.Tensor], torch.Tensor]]]
               | None = None) -> list[BenchCase]:
    """The rows of one layer at one shape in one mode (``"train"``: forward+backward timed
    too; ``"infer"``): ``floor {tag}``, ``ours {tag}`` (its construction timed) and, given
    ``peer = (name, build, wrap)``, ``{name} {tag}`` (its construction timed), each against
    the floor."""
    train = mode == "train"
    name = f"floor {tag}"
    rows = [BenchCase(name, family, module_maker(floor, shape, mode), backward=train,
                      params=params),
            BenchCase(f"ours {tag}", family, module_maker(ours, shape, mode), floor=name,
                      backward=train, construct=ours, params=params)]
    if peer is not None:
        lib, build, wrap = peer
        rows.append(BenchCase(f"{lib} {tag}", family, peer_maker(build, wrap, shape, mode),
                              floor=name, peer=lib, backward=train, construct=build,
                              params=params))
    return rows


def seeded_input(b: int, c: int, n: int, device=None) -> torch.Tensor:
    """A fixed ``(b, c, n, n)`` normal input (seed 0), on ``device``."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, c, n, n, generator=g).to(device)


def per_order_norms(v: torch.Tensor) -> torch.Tensor:
    """NormPool's output (the magnitude of each order 0..M of ``(B, C, 2M+1, H, W)``) with the
    fewest ops and no guard at zero: the floor of the NormPool rows."""
    b, c, f, h, w = v.shape
    sq = v * v
    pairs = sq[:, :, 1:].view(b, c, (f - 1) // 2, 2, h, w).sum(3)
    return torch.cat([sq[:, :, :1], pairs], 2).sqrt().view(b, -1, h, w)


# ------------------------------------------------------------------- training studies
def run_study(rows: list, seeds: range, train_one: Callable[..., dict],
              summarize: Callable[[object, list[dict]], dict], *, label: Callable[[object], str],
              steps_per_run: int, progress: bool = True) -> list[dict]:
    """The loop of the training families (``accuracy``, ``segmentation``): for each row and
    seed, ``train_one(row, seed, tick)`` under ``torch.manual_seed(seed)`` (``tick`` advances
    the progress bar one training step), then ``summarize(row, per_seed_results)``. A tqdm bar
    over all ``len(rows) * len(seeds) * steps_per_run`` steps when ``progress`` (and tqdm is
    installed); without it, one JSON line per finished row, so a long run's log keeps what it
    has."""
    import json

    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(rows) * len(seeds) * steps_per_run, unit="step",
                       dynamic_ncols=True)
        except ImportError:
            bar = None
    tick: Callable[[], object] = bar.update if bar is not None else (lambda: None)
    results = []
    for row in rows:
        per_seed = []
        for seed in seeds:
            if bar is not None:
                bar.set_description(f"{label(row)} seed {seed}")
            torch.manual_seed(seed)
            per_seed.append(train_one(row, seed, tick))
        results.append(summarize(row, per_seed))
        if not progress:
            print(json.dumps({k: v for k, v in results[-1].items() if k != "per_seed"}),
                  flush=True)
    if bar is not None:
        bar.close()
    return results


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_line(meta: dict) -> str:
    """A study table's first words: date, versions, threads and the CPU they ran on."""
    return (f"{meta['date']}; torch {meta['torch']}, Python {meta['python']}, {meta['threads']} "
            f"thread(s) on {meta.get('cpu') or 'an unrecorded CPU'}")


def write_study(out, stem: str, meta: dict, results: list[dict],
                markdown: Callable[[dict, list[dict]], str], name_filter: str = "") -> str:
    """Write ``<out>/<stem>.json`` (meta and results) and ``<stem>.md`` (``markdown``'s table),
    print the table and return it. A run of some rows (``name_filter``, ``--filter``) writes
    ``<stem>-filtered.*`` and records the filter: it overwrote the whole run's committed
    files with its few rows."""
    import json

    meta = {"cpu": _cpu_name(), **meta}  # the tables gave threads but not the machine
    if name_filter:
        stem, meta = f"{stem}-filtered", {**meta, "filter": name_filter}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1)
                                      + "\n")
    table = markdown(meta, results)
    (out / f"{stem}.md").write_text(table)
    print(table)
    return table


def predict(model: torch.nn.Module, x: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """The per-pixel (per-voxel) labels ``model(x).argmax(1)``, in batches, without grad."""
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])


def miou(pred: torch.Tensor, target: torch.Tensor, classes: int) -> float:
    """Mean over the classes present (in ``pred`` or ``target``) of intersection / union."""
    conf = torch.bincount(target.flatten() * classes + pred.flatten(),
                          minlength=classes * classes).view(classes, classes).double()
    inter = conf.diag()
    union = conf.sum(0) + conf.sum(1) - inter
    return float((inter[union > 0] / union[union > 0]).mean())
