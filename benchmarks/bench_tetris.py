"""Tetris family: 3-D shapes trained in one orientation and tested under random 3-D rotations;
a plain 3-D CNN against an octahedral (``"o"``, voxel filters) and an SO(3) steerable model of
about the same parameter count; accuracy, mean and spread over seeds.

Data (procedural, ``benchmarks/_polycubes.py``, fixed seeds): polycubes rendered with soft
edges on an ``11^3`` grid, rotated about their centroid, 2 voxels per cube (pentacubes: the
scale at which every orientation fits the grid's inscribed ball). Tasks:

- ``tetris``: the classic protocol of Thomas et al. (2018): eight shapes of four cubes (two of
  them mirror images), each seen once, upright and centred (8 training volumes); tested
  upright, under the cube's 24 rotations (exact voxel permutations, ``equilayers.groups.act``:
  the sanity row, where the octahedral and SO(3) models equal their upright accuracy) and
  under 32 uniformly random rotations per shape.
- ``pentacubes``: the harder variant: the 29 polycubes of five cubes (mirror images distinct),
  Gaussian voxel noise (``NOISE``) and a random shift of up to a voxel per axis on every
  volume, eight upright copies per shape to train on, tested on eight other upright copies
  and under 8 random rotations per shape.
- ``pentacubes, rotation-trained`` (not in the default run; ``--filter rotation-trained``):
  the same shapes trained under random rotations (augmentation, the plain CNN's best case)
  and tested upright and under other random rotations.
- ``pentacubes, z-rotated`` (not in the default run; ``--filter z-rotated``): trained upright,
  tested under random rotations about the depth axis only (an anisotropic scan's symmetry),
  with its own models (:data:`TASK_MODELS`): the plain CNN, the octahedral one, the same on
  ``"c4z"`` (the quarter turns about the depth axis, exact) and an SO(2)-about-depth model
  (:func:`so2_depth_cnn`), beside escnn's ``rot2dOnR3`` twin where escnn imports.

Per task: :data:`STEPS`, :data:`BATCH`, :data:`COPIES`, :data:`TEST_ROTATIONS`.

Models (three 3 x 3 x 3 convolutions, the second at stride 2 (11 -> 6: exact on the grid for
the cube's rotations), batch norm, then an invariant pooling, ``BatchNorm1d`` on the pooled
features and a linear layer): ``plain`` ``nn.Conv3d`` / ``nn.BatchNorm3d`` / ReLU, global mean;
``octahedral`` ``LiftingConv3d`` / ``GroupConv3d`` (``group="o"``; voxel filters, and in a
second row ``basis="harmonic"``: band-limited filters, escnn's function space) /
``GroupBatchNorm3d`` /
ReLU, then the global mean of every slot and the max and the mean over the 24 slots
(:class:`SpaceThenFiber`: per field, how strongly each orientation is present over the whole
volume, then its invariants; the per-voxel max over the slots first, ``GroupPool("max")``
then the global mean, lets every voxel pick its own orientation and scored 25-31% upright on
pentacubes against 53-55%, and space first with the max alone 37% (one-off probes, 2 seeds and
1)); ``SO(3)`` ``SteerableConv3d``
(``group="so3"``, fields of orders 0..1) / ``HarmonicBatchNorm`` / ``NormNonlinearity``,
``NormPool``, global mean, once with ``NormNonlinearity``'s defaults and once with escnn's
norm-ReLU (``order0="norm", bias_form="exp"``: escnn's SO(3) model to the letter). The
widths: the octahedral model at ``REF_WIDTH`` fields, the others at the widths whose parameter
counts are the nearest to its. Where escnn is installed (the
peers venv), the same two equivariant architectures built with escnn's ``R3Conv`` join the
run (:data:`PEER_BUILDERS`: ``octaOnR3`` regular fields with ``InnerBatchNorm`` and the same
head; ``rot3dOnR3`` fields of the irreps ``0..1`` with ``GNormBatchNorm``, ``NormNonLinearity``
and ``NormPool``), matched to the same parameter count. An optional model runs only when
``--filter`` names it (:data:`OPTIONAL_BUILDERS`): ``icosahedral (I)``, the octahedral
architecture on ``group="ico"`` (harmonic basis); ``tensor-product SO(3)``, the SO(3) model
with ``TensorProductNonlinearity`` in place of the norm-ReLU, and (peers venv) its escnn
twin with ``TensorProductModule`` (``--filter "tetris: tensor-product"``). Training: Adam
(lr ``LR``, cosine decay to 0), cross-entropy, one thread; the batch-norm statistics
re-estimated on the training set (``equilayers.recalibrate_batch_norm``) before testing in eval
mode.

Run: ``python -m benchmarks --family tetris [--quick] [--seeds 3] [--filter TEXT]`` (``TEXT``:
the rows ``"task: model"`` that contain it, of the default tasks and of the tasks it names,
as a whole or, in a ``"task: model"`` filter, by the part before ``": "``).
Results:
``benchmarks/results/cpu-tetris[-quick].{json,md}``.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import _polycubes as P
from ._core import UsageError, run_line, run_study, write_study
from ._tetris_models import (  # noqa: F401  (re-exported: the family's models)
    MAX_ORDER,
    SpaceThenFiber,
    _EscnnNet,
    c4z_cnn,
    escnn_octahedral_cnn,
    escnn_so2_depth_cnn,
    escnn_so3_cnn,
    escnn_so3_tensor_product_cnn,
    icosahedral_cnn,
    octahedral_cnn,
    octahedral_harmonic_cnn,
    plain_cnn,
    so2_depth_cnn,
    so2_depth_escnn_norm_relu_cnn,
    so3_cnn,
    so3_escnn_norm_relu_cnn,
    so3_tensor_product_cnn,
)

FAMILY = "tetris"
SIZE = 11  # the grid: odd, so the stride-2 conv is exact for the cube's rotations (11 -> 6)
#: The pentacubes' Gaussian voxel noise (the shapes are 0..1). At 0.1 with two copies per
#: shape (the configuration until 2026-12-02) every model memorized its training volumes
#: (upright test accuracy 4-10%); at 0.05 with 8 copies the plain CNN generalizes upright.
NOISE = 0.05
LR = 3e-3
# per task: training steps, batch, training copies per shape, random test rotations per shape
STEPS = {"tetris": 150, "pentacubes": 300, "pentacubes, rotation-trained": 300,
         "pentacubes, z-rotated": 300}
BATCH = {"tetris": 8, "pentacubes": 32, "pentacubes, rotation-trained": 16,
         "pentacubes, z-rotated": 32}
COPIES = {"tetris": 1, "pentacubes": 8, "pentacubes, rotation-trained": 8,
          "pentacubes, z-rotated": 8}
TEST_ROTATIONS = {"tetris": 32, "pentacubes": 8, "pentacubes, rotation-trained": 8,
                  "pentacubes, z-rotated": 8}
#: The tasks of the default run (about 50 minutes on one thread, 90 with the escnn rows of
#: the peers venv: the recorded runs' 35 and 73 plus the SO(3) row with escnn's norm-ReLU,
#: 15 minutes alone); the rotation-trained one runs when named (``--filter
#: rotation-trained``).
DEFAULT_TASKS = ("tetris", "pentacubes")
#: Per task, the octahedral model's fields (x 24 slots); the others are matched to its
#: parameter count. Pentacubes at width 4: 29 classes from 16 invariant features.
REF_WIDTH = {"tetris": 2, "pentacubes": 4, "pentacubes, rotation-trained": 4,
             "pentacubes, z-rotated": 4}


# ------------------------------------------------------------------------------------- data
def _about_depth(n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` rotations about the depth axis (the shapes' coordinate 0), uniform angles."""
    t = torch.rand(n, generator=gen, dtype=torch.float64) * 2 * torch.pi
    c, s, one, zero = t.cos(), t.sin(), torch.ones_like(t), torch.zeros_like(t)
    return torch.stack([one, zero, zero, zero, c, -s, zero, s, c], 1).view(n, 3, 3)


def _copies(shapes, rotations_per_shape: int, gen: torch.Generator, *, rotated: bool | str,
            shift: float, noise: float, size: int, scale: float):
    """``rotations_per_shape`` volumes of every shape (upright, uniformly rotated or, with
    ``rotated="depth"``, rotated about the depth axis; shifted by up to ``shift`` voxels per
    axis, plus Gaussian ``noise``) and their labels."""
    xs = []
    n = rotations_per_shape
    for s in shapes:
        rot = (_about_depth(n, gen) if rotated == "depth" else P.random_rotations(n, gen)
               if rotated else torch.eye(3, dtype=torch.float64).expand(n, 3, 3))
        shifts = (torch.rand(n, 3, generator=gen, dtype=torch.float64) * 2 - 1) * shift
        xs.append(P.render(s, rot, size, scale, shifts=shifts))
    x = torch.cat(xs)
    if noise:
        x = x + noise * torch.randn(x.shape, generator=gen)
    return x, torch.arange(len(shapes)).repeat_interleave(n)


def dataset(task: str, *, copies: int | None = None, test_rotations: int | None = None,
            seed: int = 0, size: int = SIZE) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The training set and the test conditions of ``task`` (``"tetris"``, ``"pentacubes"``
    or ``"pentacubes, rotation-trained"``), deterministic in ``seed``: ``{"train": (x, y),
    "upright": ..., "cube": ... (tetris), "random": ...}``, ``x`` ``(N, 1, size, size, size)``.
    ``copies`` (training volumes per shape) and ``test_rotations`` (random rotations per
    shape) default to the task's (:data:`COPIES`, :data:`TEST_ROTATIONS`).

    ``tetris`` is the classic protocol: each shape once, upright and centred, no noise.
    The pentacube tasks add noise and shift every volume by up to a voxel per axis."""
    if task not in STEPS:
        raise ValueError(f"task must be one of {sorted(STEPS)}; got {task!r}")
    copies = COPIES[task] if copies is None else copies
    test_rotations = TEST_ROTATIONS[task] if test_rotations is None else test_rotations
    gen = torch.Generator().manual_seed(seed)
    tetris = task == "tetris"
    shapes = P.TETRIS if tetris else P.polycubes(5)
    scale = P.fit_scale(shapes, size)
    kw = {"gen": gen, "shift": 0.0 if tetris else 1.0, "noise": 0.0 if tetris else NOISE,
          "size": size, "scale": scale}
    out = {"train": _copies(shapes, copies, rotated=task.endswith("rotation-trained"), **kw),
           "upright": _copies(shapes, 1 if tetris else copies, rotated=False, **kw),
           "random": _copies(shapes, test_rotations,
                             rotated="depth" if task.endswith("z-rotated") else True, **kw)}
    if tetris:
        out["cube"] = (P.cube_turns(out["upright"][0]), out["upright"][1].repeat(24))
    return out


#: Models that run only when ``--filter`` names them (the first word of the name).
OPTIONAL_BUILDERS: dict[str, Callable[[int, int], nn.Module]] = {
    "icosahedral (I)": icosahedral_cnn, "tensor-product SO(3)": so3_tensor_product_cnn}
#: The same, built with escnn (where escnn imports).
OPTIONAL_PEER_BUILDERS: dict[str, Callable[[int, int], nn.Module]] = {
    "tensor-product SO(3), escnn": escnn_so3_tensor_product_cnn}

BUILDERS: dict[str, Callable[[int, int], nn.Module]] = {
    "plain 3-D CNN": plain_cnn, "octahedral (O)": octahedral_cnn,
    "octahedral (O), harmonic basis": octahedral_harmonic_cnn, "SO(3) steerable": so3_cnn,
    "SO(3) steerable, escnn's norm-ReLU": so3_escnn_norm_relu_cnn}
#: The same architectures built with escnn: rows of the run where escnn is installed (the
#: peers venv), matched to the octahedral model's parameter count like the others.
PEER_BUILDERS: dict[str, Callable[[int, int], nn.Module]] = {
    "octahedral (O), escnn": escnn_octahedral_cnn, "SO(3) steerable, escnn": escnn_so3_cnn}
#: Models of the z-rotated task only (and their escnn twin, where escnn imports).
AXIAL_BUILDERS: dict[str, Callable[[int, int], nn.Module]] = {
    "C4z (voxel)": c4z_cnn, "SO(2) about depth": so2_depth_cnn,
    "SO(2) about depth, escnn's norm-ReLU": so2_depth_escnn_norm_relu_cnn}
AXIAL_PEER_BUILDERS: dict[str, Callable[[int, int], nn.Module]] = {
    "SO(2) about depth, escnn": escnn_so2_depth_cnn}
#: Tasks with a model list of their own (the others take every model but the axial ones).
TASK_MODELS = {"pentacubes, z-rotated": (
    "plain 3-D CNN", "octahedral (O)", "C4z (voxel)", "SO(2) about depth",
    "SO(2) about depth, escnn's norm-ReLU", "SO(2) about depth, escnn")}


def builders(peers: bool | None = None, name_filter: str = "") -> dict[
        str, Callable[[int, int], nn.Module]]:
    """The models of a run: :data:`BUILDERS`, :data:`AXIAL_BUILDERS`, the peer builders when
    ``peers`` (by default: when escnn is installed), and the :data:`OPTIONAL_BUILDERS` whose
    first word ``name_filter`` contains (:func:`rows` picks each task's)."""
    if peers is None:
        peers = importlib.util.find_spec("escnn") is not None
    optional = {**OPTIONAL_BUILDERS, **(OPTIONAL_PEER_BUILDERS if peers else {})}
    named = {k: b for k, b in optional.items() if k.split()[0] in name_filter}
    return {**BUILDERS, **(PEER_BUILDERS if peers else {}), **named, **AXIAL_BUILDERS,
            **(AXIAL_PEER_BUILDERS if peers else {})}


def _task_models(task: str, names) -> list[str]:
    """The models of ``names`` that ``task`` trains (:data:`TASK_MODELS`)."""
    if task in TASK_MODELS:
        return [n for n in names if n in TASK_MODELS[task]]
    return [n for n in names if n not in AXIAL_BUILDERS and n not in AXIAL_PEER_BUILDERS]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def matched_width(name: str, target: int, classes: int) -> int:
    """The width of the model ``name`` whose parameter count is nearest ``target`` (the
    counts grow with the width: the search stops at the first one above)."""
    counts = {}
    for w in range(1, 257):
        counts[w] = n_params(builders(True, name)[name](w, classes))
        if counts[w] >= target:
            break
    return min(counts, key=lambda w: abs(counts[w] - target))


@dataclass(frozen=True)
class Row:
    task: str
    model: str
    width: int
    classes: int

    def build(self) -> nn.Module:
        return builders(True, self.model)[self.model](self.width, self.classes)


def rows(tasks, ref_width: int | None = None, peers: bool | None = None,
         name_filter: str = "") -> list[Row]:
    """Every (task, model) row of :func:`builders` (``peers``, ``name_filter``), widths
    matched to the octahedral model's parameter count (its width ``ref_width``, or the task's
    :data:`REF_WIDTH`)."""
    out = []
    for task in tasks:
        classes = len(P.TETRIS) if task == "tetris" else len(P.polycubes(5))
        ref = REF_WIDTH[task] if ref_width is None else ref_width
        target = n_params(octahedral_cnn(ref, classes))
        for name in _task_models(task, builders(peers, name_filter)):
            width = ref if name == "octahedral (O)" else matched_width(name, target, classes)
            out.append(Row(task, name, width, classes))
    return out


# -------------------------------------------------------------------------------- training
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 64) -> float:
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return float((pred == y).float().mean())


def train_and_test(model: nn.Module, data: dict, *, steps: int, seed: int, lr: float = LR,
                   batch: int = 16, tick: Callable[[], None] = lambda: None) -> dict:
    """Adam with cosine decay for ``steps`` steps on ``data["train"]``, batch-norm statistics
    re-estimated on it, then the accuracy on every test condition in eval mode."""
    from equilayers import recalibrate_batch_norm

    x_tr, y_tr = data["train"]
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    t0 = time.perf_counter()
    model.train()
    done = 0
    while done < steps:
        for idx in torch.randperm(len(x_tr), generator=gen).split(batch):
            if done == steps:
                break
            if len(idx) < 2:  # BatchNorm1d needs two samples
                continue
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x_tr[idx]), y_tr[idx]).backward()
            opt.step()
            sched.step()
            done += 1
            tick()
    seconds = time.perf_counter() - t0
    recalibrate_batch_norm(model, x_tr)
    out = {k: accuracy(model, *data[k]) for k in ("train", "upright", "cube", "random")
           if k in data}
    out["train_s"] = seconds
    return out


KEYS = ("upright", "cube", "random")


def _label(r: Row) -> str:
    """A row's name, which ``--filter`` matches: ``"task: model"``."""
    return f"{r.task}: {r.model}"


def run(quick: bool, out, seeds: int | None = None, progress: bool = True,
        name_filter: str = "") -> list[dict]:
    """Train every (task, model) row for every seed; write ``cpu-tetris[-quick].{json,md}``.
    (It makes its own shapes: no ``--data``.)"""
    seeds = seeds if seeds is not None else (1 if quick else 3)
    # the default tasks, and the others when the filter names them
    # (a filter "task: model" names its task by the part before ": ")
    named = name_filter.split(": ")[0] if ": " in name_filter else name_filter
    candidates = [t for t in STEPS if t in DEFAULT_TASKS or (named and named in t)]
    table = [r for r in rows(candidates, 1 if quick else None, name_filter=name_filter)
             if name_filter in _label(r)]
    if not table:
        raise UsageError(f"--filter {name_filter!r} names no row 'task: model' (tasks "
                         f"{sorted(STEPS)}, models {sorted(builders())})")
    tasks = [t for t in STEPS if any(r.task == t for r in table)]
    if quick:
        tasks = tasks[:1]
        table = [r for r in table if r.task in tasks]
    steps = {t: (10 if quick else STEPS[t]) for t in tasks}
    datasets = {t: dataset(t, copies=1 if quick else None, test_rotations=4 if quick else None)
                for t in tasks}

    def train_one(r, seed, tick):
        model = r.build()
        res = train_and_test(model, datasets[r.task], steps=steps[r.task], seed=seed,
                             batch=BATCH[r.task], tick=tick)
        res["params"] = n_params(model)
        return res

    def summarize(r, per_seed):
        row = {"task": r.task, "model": r.model, "width": r.width,
               "params": per_seed[-1]["params"], "per_seed": per_seed,
               "train_s": statistics.mean(p["train_s"] for p in per_seed)}
        for k in ("train", *KEYS):
            if k in per_seed[0]:
                vals = [p[k] for p in per_seed]
                row[k] = statistics.mean(vals)
                row[k + "_spread"] = (max(vals) - min(vals)) / 2
        return row

    # steps_per_run: the bar counts the longest task's steps per run (an estimate)
    results = run_study(table, range(seeds), train_one, summarize,
                        label=_label,
                        steps_per_run=max(steps.values()), progress=progress)
    meta = _meta(quick, seeds, {t: len(d["train"][1]) for t, d in datasets.items()},
                 {t: len(d["random"][1]) for t, d in datasets.items()}, steps)
    write_study(out, "cpu-tetris" + ("-quick" if quick else ""), meta, results, markdown,
                name_filter=name_filter)
    return results


def _meta(quick, seeds, n_train, n_random, steps) -> dict:
    import datetime
    import platform

    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "quick": quick, "seeds": seeds,
            "size": SIZE, "n_train": n_train, "n_random": n_random, "steps": steps,
            "batch": {t: BATCH[t] for t in steps}, "noise": NOISE, "lr": LR}


def markdown(meta: dict, results: list[dict]) -> str:
    def pct(r, k):
        return f"{100 * r[k]:.1f} +- {100 * r[k + '_spread']:.1f}" if k in r else "-"

    per_task = "; ".join(
        f"{t}: {meta['n_train'][t]} training volumes, {meta['steps'][t]} steps of "
        f"{meta['batch'][t]}, {meta['n_random'][t]} randomly rotated test volumes"
        for t in meta["steps"])
    lines = [
        "# 3-D Tetris: trained in one orientation, tested under random rotations",
        "",
        run_line(meta) + f". Polycubes rendered on a {meta['size']}^3 grid (soft edges); tetris: "
        "the 8 shapes once each, upright and centred; pentacubes: 29 shapes, Gaussian voxel "
        f"noise {meta['noise']}, shifts up to 1 voxel. {per_task}. Adam {meta['lr']:g} with "
        "cosine decay; batch-norm statistics re-estimated on the training set; "
        f"{meta['seeds']} seed(s), mean +- half range. Accuracy in %: `upright` the training "
        "orientation, `cube` the cube's 24 rotations (exact), `random` uniformly random "
        "rotations (the z-rotated task: about the depth axis only)."
        + (f" {meta['note']}" if meta.get("note") else ""),
        "",
        "| task | model | params | train | upright | cube rotations | random rotations "
        "| train s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['task']} | {r['model']} | {r['params']:,} | {pct(r, 'train')} | "
                     f"{pct(r, 'upright')} | {pct(r, 'cube')} | {pct(r, 'random')} | "
                     f"{r['train_s']:.0f} |")
    return "\n".join(lines) + "\n"
