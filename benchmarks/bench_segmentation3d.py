"""Segmentation3d family: 3-D U-Nets (``equilayers.models.UNet3d``) segmenting scenes of Tetris
pieces, trained with every piece upright and tested on scenes turned by the cube's rotations,
on scenes whose pieces are each turned their own way, and on shifted scenes; mIoU, per-voxel
consistency, training time, mean and spread over seeds.

Data (procedural, ``benchmarks/_scenes3d.py``, fixed seeds): 2-3 of the 8 Tetris pieces
(``_polycubes.TETRIS``; two are mirror images, which the rotations of ``"o"`` keep apart) at
random non-touching positions on a ``SIZE^3`` grid, ``SCALE`` voxels per cube, rendered with
soft edges (``_polycubes.render``); labels per voxel: 0 background, ``1 + piece`` where the
piece's occupancy is above 0.5 (pieces keep a voxel apart, so no voxel has two). Train scenes:
every piece upright. Test conditions: ``upright`` (new scenes drawn alike), ``scene turned``
(those scenes, each turned whole by a random one of the cube's 24 rotations: exact),
``pieces turned`` (new scenes whose pieces are each in their own random cube orientation:
only local equivariance helps), ``shifted`` (the upright test scenes rolled circularly by
random offsets, not multiples of ``2**DEPTH``). Per-voxel consistency (the share of voxels
whose predicted label is unchanged once the transform is undone) on the ``pieces turned``
scenes: ``o`` (all 23 non-trivial cube rotations) and ``shift`` (3 random circular shifts,
not multiples of ``2**DEPTH``).

Models (depth ``DEPTH``, circular padding; the ``"o"`` U-Net, voxel basis, at width
``REF_WIDTH``, the plain ones at the widths whose parameter counts are the nearest to its):
a plain U-Net (``group=None``, ``down="max"``: 2 x 2 x 2 max pools and nearest upsampling,
the classic U-Net's sampling), an anti-aliased plain U-Net (``down="blur"``), the O U-Net
(``group="o"``, ``down="blur"``), the same in the harmonic basis (``basis="harmonic"``:
escnn's basis; ``UNet3d``'s default) at one, two and four fields (one and two: the parameters
of escnn's O U-Nets of one and two fields), and
the O U-Net at twice and four times the width (two and four
regular fields at level 0, 4x and 16x the parameters: at matched parameters one field, 24
orientations of a single learned feature, is the whole full-resolution state, and in probes it
found the pieces but did not tell them apart in 1,000 steps; full run only, each with an
anti-aliased plain U-Net of its parameter count, "wide" and "twin of width 4"); and three
rows that augment instead (``AUGMENTED``: the anti-aliased plain U-Net, the wide one and the
width-4 twin trained on scenes whose pieces are each turned, the ``train turned`` split: what
the O U-Net's exactness gives, bought with data); in ``--quick`` mode instead the O U-Net with
polyphase sampling.
Per-voxel consistency by :func:`equilayers.metrics.pixel_consistency`. With escnn installed
(the peers venv), the O U-Net built with escnn
at one and two fields (:func:`escnn_unet`: ``R3Conv`` on ``octaOnR3`` regular fields,
``InnerBatchNorm``, ``ReLU``,
``PointwiseAvgPoolAntialiased3D(sigma=0.6, stride=2)`` down and trilinear ``R3Upsampling`` up,
escnn's samplers closest to our blur pair (trilinear x2 upsampling is our transposed
``[1, 3, 3, 1]`` blur away from the border; escnn's odd Gaussian at stride 2 samples an even
grid off centre, so it is not exact on the cube's rotations), a ``1 x 1 x 1`` ``R3Conv`` head
and ``GroupPooling``). Training: Adam (``LR``) with cosine decay, batch ``BATCH``, per-voxel
cross-entropy with the background weighted ``BACKGROUND_WEIGHT`` (it covers about 95% of the
voxels), one thread; the batch-norm statistics re-estimated on the training scenes
(``equilayers.recalibrate_batch_norm``, as the tetris family) before testing in eval mode.

Run: ``python -m benchmarks --family segmentation3d [--quick] [--seeds 3] [--filter TEXT]
[--steps N]``. Results: ``benchmarks/results/cpu-segmentation3d[-quick].{json,md}``; with
``--steps`` other than the default (300, quick 3), ``cpu-segmentation3d-steps<N>[-quick]...``.
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

from . import _core
from . import _scenes3d as S
from ._core import UsageError, run_line, run_study, write_study
from ._escnn_unet import escnn_harmonic_unet
from ._escnn_unet import escnn_unet as build_escnn_unet

FAMILY = "segmentation3d"
SIZE, SCALE, DEPTH, CLASSES = 12, 2, 2, S.CLASSES
BATCH, LR, BACKGROUND_WEIGHT = 8, 3e-3, 0.05
REF_WIDTH = 1  # the O U-Net's regular fields at level 0 (24 channels)
#: (train scenes, test scenes per condition, training steps) of the full and quick runs
FULL, QUICK = (400, 24, 300), (8, 4, 3)
QUICK_SIZE = 8  # the quick run's grid (scale 1)


# ----------------------------------------------------------------------------------- models
def _unet(group: str | None, width: int, down: str, basis: str | None = None,
          nonlinearity: str | None = None, up: str = "matched") -> nn.Module:
    """``UNet3d``; an O U-Net's basis is ``"voxel"`` unless ``basis`` says otherwise (the
    rows of this family predate ``UNet3d``'s harmonic default and keep their models); an
    SO(3) U-Net's is its harmonic one (orders 0 .. 1, ``UNet3d``'s default)."""
    from equilayers.models import UNet3d

    basis = basis or ("voxel" if group not in (None, "so3") else None)
    return UNet3d(1, CLASSES, group=group, depth=DEPTH, width=width, down=down, basis=basis,
                  nonlinearity=nonlinearity, up=up)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def matched_width(group: str | None, down: str, target: int) -> int:
    """The width whose parameter count is nearest ``target`` (counts grow with the width)."""
    counts: dict[int, int] = {}
    for w in range(1, 128):
        counts[w] = n_params(_unet(group, w, down))
        if counts[w] >= target:
            break
    return min(counts, key=lambda w: abs(counts[w] - target))


def escnn_unet(width: int, down: str = "max") -> nn.Module:
    """``UNet3d(group="o", down="max")``'s architecture built with escnn: ``R3Conv``
    3 x 3 x 3 (circular padding, no bias; escnn's basis and init) on ``octaOnR3`` regular
    fields, ``InnerBatchNorm``, ``ReLU``; ``PointwiseMaxPool3D(2)`` down and ``R3Upsampling``
    nearest up, the skip by ``tensor_directsum``; a ``1 x 1 x 1`` ``R3Conv`` to ``CLASSES``
    regular fields and ``GroupPooling`` (max over the 24 slots). ``down="blur"``: escnn's
    ``PointwiseAvgPoolAntialiased3D(sigma=0.6, stride=2)`` and trilinear ``R3Upsampling``."""
    from escnn import gspaces
    from escnn import nn as enn

    def pool(t):
        return (enn.PointwiseMaxPool3D(t, 2) if down == "max"
                else enn.PointwiseAvgPoolAntialiased3D(t, sigma=0.6, stride=2))

    mode = "nearest" if down == "max" else "trilinear"
    return build_escnn_unet(gspaces.octaOnR3(), width, depth=DEPTH, classes=CLASSES,
                            conv=enn.R3Conv, pool=pool,
                            upsample=lambda t: enn.R3Upsampling(t, 2, mode=mode))


def escnn_so3_unet(width: int) -> nn.Module:
    """``UNet3d(group="so3")``'s architecture built with escnn: ``R3Conv`` on ``rot3dOnR3``
    fields of the irreps 0 .. 1, ``GNormBatchNorm``, ``QuotientFourierELU`` on the sphere
    (``SO(3) / SO(2)``, escnn's Thomson grid of 74 points: our default's number);
    ``PointwiseAvgPoolAntialiased3D(sigma=0.6, stride=2)`` down and trilinear
    ``R3Upsampling`` up (escnn's blur, as the O U-Net's escnn row)."""
    from escnn import gspaces
    from escnn import nn as enn

    gs = gspaces.rot3dOnR3()
    so3 = gs.fibergroup
    return escnn_harmonic_unet(
        gs, width, depth=DEPTH, classes=CLASSES, conv=enn.R3Conv,
        nonlinearity=lambda c: enn.QuotientFourierELU(
            gs, (False, -1), c, so3.bl_irreps(1), grid=so3.sphere_grid("thomson", N=74),
            inplace=True),
        pool=lambda t: enn.PointwiseAvgPoolAntialiased3D(t, sigma=0.6, stride=2),
        upsample=lambda t: enn.R3Upsampling(t, 2, mode="trilinear"))


@dataclass(frozen=True)
class Model:
    name: str
    group: str | None
    down: str
    width: int
    library: str = "equilayers"
    train: str = "train"  # the training split: "train" (upright) or "train turned"
    basis: str | None = None  # the O U-Net's filter basis (None: the voxel basis, _unet)
    nonlinearity: str | None = None  # UNet3d's (None: its default, the Fourier ELU on SO(3))
    up: str = "matched"  # UNet3d's ("transposed": learned 2 x 2 x 2 up-convolutions)

    def build(self) -> nn.Module:
        if self.library == "escnn" and self.group == "so3":
            return escnn_so3_unet(self.width)
        if self.library == "escnn":
            return escnn_unet(self.width, self.down)
        return _unet(self.group, self.width, self.down, self.basis, self.nonlinearity,
                     self.up)


def row_names(quick: bool) -> list[str]:
    """The names of :func:`models`' rows, in its order, without building a model."""
    names = ["plain U-Net (max pool)", "anti-aliased plain U-Net", "O U-Net"]
    names += ["O U-Net (polyphase)"] if quick else [
        "O U-Net (width 2)", "anti-aliased plain U-Net (wide)", HARMONIC_1, HARMONIC,
        HARMONIC_4, "O U-Net (width 4)",
        "anti-aliased plain U-Net (twin of width 4)", "anti-aliased plain U-Net" + AUGMENTED,
        "anti-aliased plain U-Net (wide)" + AUGMENTED,
        "anti-aliased plain U-Net (twin of width 4)" + AUGMENTED, SO3,
        *(SO3 + suffix for suffix in NONLINEAR.values()), SO3 + UP_CONVS]
    if importlib.util.find_spec("escnn") is not None:  # the O U-Net built with escnn
        names += ["O U-Net (escnn)"] + ([] if quick else ["O U-Net (escnn, width 2)",
                                                          SO3 + " (escnn)"])
    return names


AUGMENTED = ", turned in training"  # a row trained on the ``train turned`` split
HARMONIC = "O U-Net (harmonic, width 2)"  # escnn's basis and parameter count at two fields
HARMONIC_1 = "O U-Net (harmonic)"  # ... and at one field
HARMONIC_4 = "O U-Net (harmonic, width 4)"  # UNet3d's defaults (width 4, harmonic basis)
SO3 = "SO(3) U-Net"  # harmonic fields of orders 0 .. 1, at HARMONIC's parameter count
#: the suffixes of the SO(3) U-Net's rows with another ``nonlinearity`` (the same width)
NONLINEAR = {"gated": ", gated", "norm": ", norm-ReLU"}
#: the suffix of the SO(3) U-Net's row with learned 2 x 2 x 2 up-convolutions (the same width)
UP_CONVS = ", 2 x 2 x 2 up-convs"


def models(quick: bool, name_filter: str = "") -> list[Model]:
    """The rows whose name contains ``name_filter``; the plain U-Nets' widths matched to the
    O U-Net's parameter count (at ``REF_WIDTH``); a name ending in ``AUGMENTED`` is the row
    of the name before it, trained with the pieces turned."""
    return [_model(name) for name in row_names(quick) if name_filter in name]


def _model(name: str) -> Model:
    if name.endswith(AUGMENTED):
        m = _model(name[:-len(AUGMENTED)])
        return Model(name, m.group, m.down, m.width, m.library, train="train turned")
    for nl, suffix in NONLINEAR.items():
        if name == SO3 + suffix:
            return Model(name, "so3", "blur", _model(SO3).width, nonlinearity=nl)
    if name == SO3 + UP_CONVS:
        return Model(name, "so3", "blur", _model(SO3).width, up="transposed")
    if name == SO3 + " (escnn)":
        return Model(name, "so3", "blur", _model(SO3).width, "escnn")
    if name.endswith("(escnn)"):
        return Model(name, "o", "blur", REF_WIDTH, "escnn")
    if name.endswith("(escnn, width 2)"):
        return Model(name, "o", "blur", 2 * REF_WIDTH, "escnn")
    if name in (HARMONIC_1, HARMONIC, HARMONIC_4):
        fields = {HARMONIC_1: 1, HARMONIC: 2, HARMONIC_4: 4}[name]
        return Model(name, "o", "blur", fields * REF_WIDTH, basis="harmonic")
    if name == SO3:
        return Model(name, "so3", "blur", matched_width(
            "so3", "blur", n_params(_unet("o", 2 * REF_WIDTH, "blur", "harmonic"))))
    if name in ("O U-Net (width 2)", "O U-Net (width 4)"):  # more fields, more parameters
        return Model(name, "o", "blur", int(name[-2]) * REF_WIDTH)
    if name.endswith(("(wide)", "(twin of width 4)")):  # the plain twins of those
        fields = 2 if name.endswith("(wide)") else 4
        return Model(name, None, "blur",
                     matched_width(None, "blur", n_params(_unet("o", fields * REF_WIDTH,
                                                                "blur"))))
    g, d = {"plain U-Net (max pool)": (None, "max"), "anti-aliased plain U-Net": (None, "blur"),
            "O U-Net": ("o", "blur"), "O U-Net (polyphase)": ("o", "polyphase")}[name]
    target = n_params(_unet("o", REF_WIDTH, "blur"))
    return Model(name, g, d, REF_WIDTH if g else matched_width(g, d, target))


# ---------------------------------------------------------------------------------- metrics
def predict(model: nn.Module, x: torch.Tensor, batch: int = 16) -> torch.Tensor:
    return _core.predict(model, x, batch)


def miou(pred: torch.Tensor, target: torch.Tensor, classes: int = CLASSES) -> float:
    """Mean over the classes present (in ``pred`` or ``target``) of intersection / union."""
    return _core.miou(pred, target, classes)


# -------------------------------------------------------------------------------- training
TESTS = ("upright", "scene turned", "pieces turned", "shifted")


def train_and_test(model: nn.Module, data: dict, *, steps: int, seed: int, lr: float = LR,
                   batch: int = BATCH, tick: Callable[[], None] = lambda: None) -> dict:
    """Adam with cosine decay for ``steps`` steps on ``data["train"]`` (per-voxel
    cross-entropy, the background weighted ``BACKGROUND_WEIGHT``), batch-norm statistics
    re-estimated on it, then every test condition in eval mode."""
    from equilayers import recalibrate_batch_norm
    from equilayers.metrics import pixel_consistency

    x_tr, y_tr = data["train"]
    weight = torch.ones(CLASSES)
    weight[0] = BACKGROUND_WEIGHT
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
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x_tr[idx]), y_tr[idx], weight=weight).backward()
            opt.step()
            sched.step()
            done += 1
            tick()
    seconds = time.perf_counter() - t0
    recalibrate_batch_norm(model, x_tr, batch_size=16, max_samples=256)
    out = {f"miou {k}": miou(predict(model, data[k][0]), data[k][1]) for k in TESTS}
    x = data["pieces turned"][0]
    model.eval()
    out["o consistency"] = pixel_consistency(model, x, "o")
    shifts = S.offsets(3, torch.Generator().manual_seed(seed), x.shape[-1], 2**DEPTH)
    out["shift consistency"] = pixel_consistency(model, x, shifts=shifts)
    out["train_s"] = seconds
    return out


KEYS = tuple(f"miou {k}" for k in TESTS) + ("o consistency", "shift consistency", "train_s")


def run(quick: bool, out, seeds: int | None = None, progress: bool = True,
        name_filter: str = "", steps: int | None = None) -> list[dict]:
    """Train every model for every seed; write ``cpu-segmentation3d[-quick].{json,md}``, or
    ``cpu-segmentation3d-steps<steps>[-quick]...`` when ``steps`` (training steps per model,
    the cosine decay over all of them) is not the run's default (it makes its own volumes: no
    ``--data``)."""
    n_train, n_test, default_steps = QUICK if quick else FULL
    if steps is None:
        steps = default_steps
    elif isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UsageError(f"steps must be a positive int (training steps per model); got "
                         f"{steps!r}. Pass e.g. --steps 1000, or leave it out for "
                         f"{default_steps}")
    size, scale = (QUICK_SIZE, 1) if quick else (SIZE, SCALE)
    seeds = seeds if seeds is not None else (1 if quick else 3)
    rows = models(quick, name_filter)
    if not rows:
        raise UsageError(f"--filter {name_filter!r} names no row of {row_names(quick)}")
    dataset = S.dataset(n_train, n_test, size=size, scale=scale, multiple=2**DEPTH)

    def train_one(m, seed, tick):
        model = m.build()
        res = train_and_test(model, {**dataset, "train": dataset[m.train]}, steps=steps,
                             seed=seed, tick=tick)
        res["params"] = n_params(model)
        return res

    def summarize(m, per_seed):
        row = {"model": m.name, "library": m.library, "group": m.group, "down": m.down,
               "train": m.train,
               "width": m.width, "params": per_seed[-1]["params"], "per_seed": per_seed}
        for k in KEYS:
            vals = [r[k] for r in per_seed]
            row[k] = statistics.mean(vals)
            row[k + "_spread"] = (max(vals) - min(vals)) / 2
        return row

    results = run_study(rows, range(seeds), train_one, summarize, label=lambda m: m.name,
                        steps_per_run=steps, progress=progress)
    meta = _meta(quick, n_train, n_test, steps, seeds, size, scale,
                 float((dataset["train"][1] == 0).double().mean()))
    stem = "cpu-segmentation3d" + (f"-steps{steps}" if steps != default_steps else "")
    write_study(out, stem + ("-quick" if quick else ""), meta, results, markdown,
                name_filter=name_filter)
    return results


def _meta(quick, n_train, n_test, steps, seeds, size, scale, background) -> dict:
    import datetime
    import platform

    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "quick": quick, "n_train": n_train,
            "n_test": n_test, "steps": steps, "batch": BATCH, "lr": LR, "seeds": seeds,
            "size": size, "scale": scale, "depth": DEPTH,
            "background_weight": BACKGROUND_WEIGHT, "background_share": background}


def markdown(meta: dict, results: list[dict]) -> str:
    def pct(r, k):
        return f"{100 * r[k]:.1f} +- {100 * r[k + '_spread']:.1f}"

    n = meta["size"]
    lines = [
        "# 3-D segmentation of Tetris scenes: trained upright, tested turned and shifted",
        "",
        run_line(meta) + f". {meta['n_train']} train / {meta['n_test']} test scenes (per "
        f"condition) of 2-3 Tetris pieces on {n}x{n}x{n}, {meta['scale']} voxel(s) per cube, "
        "soft edges; "
        f"9 classes (background, {100 * meta['background_share']:.1f}% of the voxels, + the "
        f"8 pieces); U-Nets of depth {meta['depth']}, circular padding; Adam {meta['lr']:g} "
        f"with cosine decay, {meta['steps']} steps of {meta['batch']}, background weight "
        f"{meta['background_weight']:g}; batch-norm statistics re-estimated on the training "
        f"scenes; {meta['seeds']} seed(s), mean +- half range over seeds. mIoU in %: "
        "`upright` new upright scenes, `scene turned` those turned whole by a random cube "
        "rotation (exact), `pieces turned` scenes whose pieces are each in a random cube "
        "orientation, `shifted` circular shifts (not multiples of 4). Consistency: % of voxels "
        "whose label is unchanged once the transform is undone, on the `pieces turned` scenes "
        "(o: the 23 non-trivial cube rotations; shift: 3 circular shifts, not multiples of 4)."
        + (f" {meta['note']}" if meta.get("note") else ""),
        "",
        "| model | params | mIoU upright | mIoU scene turned | mIoU pieces turned "
        "| mIoU shifted | o consistency | shift consistency | train s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cells = " | ".join(pct(r, k) for k in KEYS[:-1])
        lines.append(f"| {r['model']} | {r['params']:,} | {cells} | {r['train_s']:.0f} |")
    return "\n".join(lines) + "\n"

