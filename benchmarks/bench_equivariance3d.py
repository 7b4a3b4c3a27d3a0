"""Equivariance3d family: the off-grid and cube-group equivariance error of the same small SO(3)
steerable stack built with equilayers and with escnn (issue 16); no training.

The stacks (three convolutions, ``padding = k // 2``, ``C`` fields of orders ``0..L`` between
them, a nonlinearity after the first two; :data:`STACKS`):

- ``norm``: ``SteerableConv3d`` + ``NormNonlinearity(order0="norm")`` (a norm-ReLU per order,
  ``relu(|v_l| - 1) v_l / |v_l|``); escnn: ``R3Conv`` on ``rot3dOnR3(L)`` with each field the
  irreps ``0..L`` as separate fields + ``NormNonLinearity("n_relu")`` (its bias ``exp(0) = 1``
  at init: the same function).
- ``gated``: ``SteerableConv3d`` to ``2C`` fields + ``GatedNonlinearity(gates="first_half")``
  (``relu(a_0)``, orders ``>= 1`` times ``sigmoid`` of a gate field's order 0); escnn:
  ``R3Conv`` to ``C`` scalars + ``C`` gates + ``C`` gated fields (irreps ``1..L``), a
  ``MultipleModule`` of ``ReLU`` on the scalars and ``GatedNonLinearity1``.
- a plain ``nn.Conv3d`` stack of the same channel counts with ReLUs, read as the same fields
  (the negative control: what "not equivariant" measures here).

Each library's own initialisation, drawn per seed. The input: Gaussian noise smoothed with
sigma :data:`SIGMA` voxels, scaled to unit standard deviation, times a ball window (1 inside
radius ``(n - 1) / 2 - 6``, a cosine taper to 0 at ``(n - 1) / 2 - 1``), so a rotation moves
all of it and zero padding stays consistent. Measured in float32:

- ``off-grid``: ``|f(g x) - g f(x)| / |g f(x)|`` inside the output's inscribed ball
  (1 voxel margin), ``g`` a uniformly random rotation applied by trilinear interpolation
  (``equilayers.groups.rotate3d``) and, on the output's fibers, by the Wigner-D matrices
  (ours: ``FieldType.act``; escnn: its field type's ``representation``). The worst over
  :data:`ROTATIONS` rotations per seed, then the mean over the seeds.
- ``floor (identity)``: the same for the identity map (the input rotated forth and back);
  ``floor (output)``: the stack's output rotated forth and back. Both the worst over the
  rotations, the mean over the seeds.
- ``cube``: the worst relative error over the cube's 24 rotations, applied exactly (axis
  permutations and flips), over all seeds.

escnn's coordinates are ours turned by a half turn about z (``tests/test_escnn_so3.py``): its
group element for our rotation ``R`` is ``P R P`` with ``P = diag(-1, -1, 1)``; the cube
column checks this frame (it is float rounding only in the right frame).

Run: ``python -m benchmarks --family equivariance3d [--quick] [--seeds 3]`` (escnn rows only
where escnn imports: the peers venv). Results: ``cpu-equivariance3d[-quick].{json,md}``.
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

from ._core import UsageError, run_line, run_study, write_study

FAMILY = "equivariance3d"
SIZE = 25  # the grid (quick: QUICK_SIZE)
QUICK_SIZE = 15
SIGMA = 2.0  # smoothing of the input noise, voxels
ROTATIONS = 5  # random rotations per seed (quick: 2)
FIELDS = 4  # C
#: (nonlinearity, L, kernel size)
STACKS = (("norm", 1, 3), ("norm", 2, 5), ("gated", 1, 3))
LIBRARIES = ("equilayers", "escnn", "plain nn.Conv3d")
P = torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64))


@dataclass
class Row:
    nonlinearity: str
    order: int
    kernel: int
    library: str

    @property
    def label(self) -> str:
        return f"{self.nonlinearity} L={self.order} k={self.kernel}: {self.library}"


# --- the stacks ---------------------------------------------------------------------------------
class _Ours(nn.Module):
    """Our stack: ``(B, 1, D, H, W) -> (B, C, (L+1)^2, D, H, W)``."""

    def __init__(self, nonlinearity: str, order: int, k: int, c: int = FIELDS) -> None:
        super().__init__()
        from equilayers import nn as enn

        wide = 2 * c if nonlinearity == "gated" else c
        p = k // 2

        def act():
            if nonlinearity == "norm":
                return enn.NormNonlinearity(c, order, order0="norm", group="so3")
            return enn.GatedNonlinearity(order, gates="first_half", group="so3")
        self.body = nn.Sequential(
            enn.SteerableConv3d(1, wide, k, padding=p, max_order=order), act(),
            enn.SteerableConv3d(c, wide, k, padding=p, in_max_order=order, max_order=order),
            act(),
            enn.SteerableConv3d(c, c, k, padding=p, in_max_order=order, max_order=order))
        self.out_type = self.body[-1].out_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def act(self, g, y: torch.Tensor) -> torch.Tensor:
        return self.out_type.act(g, y)


class _Escnn(nn.Module):
    """escnn's stack of the same shape; ``act`` applies our rotation ``R`` as escnn's element
    ``P R P`` on the fibers."""

    def __init__(self, nonlinearity: str, order: int, k: int, c: int = FIELDS) -> None:
        super().__init__()
        from escnn import gspaces
        from escnn import nn as esc

        gs = gspaces.rot3dOnR3(maximum_frequency=order)
        self.gs = gs
        irreps = [gs.fibergroup.irrep(j) for j in range(order + 1)]
        fields = esc.FieldType(gs, c * irreps)  # C fields, orders 0..L each
        p = k // 2
        layers: list = []
        t_in = esc.FieldType(gs, [gs.trivial_repr])
        for i in range(3):
            if i == 2:
                layers.append(esc.R3Conv(t_in, fields, k, padding=p))
                break
            if nonlinearity == "norm":
                layers += [esc.R3Conv(t_in, fields, k, padding=p), esc.NormNonLinearity(fields)]
                t_in = fields
                continue
            from escnn.group import directsum
            scalars = esc.FieldType(gs, c * [gs.trivial_repr])
            gated = esc.FieldType(gs, c * [directsum(irreps[1:])])
            t_mid = scalars + scalars + gated  # scalars, gates, gated fields
            labels = ["scalar"] * c + ["gate"] * (2 * c)
            layers += [esc.R3Conv(t_in, t_mid, k, padding=p), esc.MultipleModule(
                t_mid, labels, [(esc.ReLU(scalars), "scalar"),
                                (esc.GatedNonLinearity1(scalars + gated), "gate")])]
            t_in = layers[-1].out_type
        self.body = esc.SequentialModule(*layers)
        self.in_type, self.out_type = layers[0].in_type, layers[-1].out_type
        self.shape = (c, (order + 1) ** 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from escnn import nn as esc

        y = self.body(esc.GeometricTensor(x, self.in_type)).tensor
        return y.unflatten(1, self.shape)

    def act(self, g, y: torch.Tensor) -> torch.Tensor:
        from equilayers.groups import act_spatial

        m = g.group.matrix(g)
        e = self.gs.fibergroup.element((P @ m @ P).numpy(), param="MAT")
        rho = torch.as_tensor(self.out_type.representation(e), dtype=y.dtype)
        moved = act_spatial(y.flatten(1, 2), g)
        return torch.einsum("ab,nb...->na...", rho, moved).unflatten(1, self.shape)


class _Plain(nn.Module):
    """A plain ``nn.Conv3d`` stack of our channel counts, read as the same fields."""

    def __init__(self, nonlinearity: str, order: int, k: int, c: int = FIELDS) -> None:
        super().__init__()
        from equilayers.groups import FieldType

        f = (order + 1) ** 2
        p = k // 2
        self.body = nn.Sequential(nn.Conv3d(1, c * f, k, padding=p), nn.ReLU(),
                                  nn.Conv3d(c * f, c * f, k, padding=p), nn.ReLU(),
                                  nn.Conv3d(c * f, c * f, k, padding=p), nn.Unflatten(1, (c, f)))
        self.out_type = FieldType.harmonic("so3", order)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def act(self, g, y: torch.Tensor) -> torch.Tensor:
        return self.out_type.act(g, y)


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "equilayers": _Ours, "escnn": _Escnn, "plain nn.Conv3d": _Plain}


# --- the input and the measurements ---------------------------------------------------------------
def smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of the last three dims (zero padding)."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    v = x.reshape(-1, 1, *x.shape[-3:])
    for dim in range(3):
        view = [1, 1, 1, 1, 1]
        view[2 + dim] = -1
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - dim)] = pad[2 * (2 - dim) + 1] = r
        v = F.conv3d(F.pad(v, pad), k.view(view))
    return v.reshape(x.shape)


def _radius(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    return torch.sqrt(i[:, None, None] ** 2 + i[None, :, None] ** 2 + i[None, None, :] ** 2)


def window(n: int) -> torch.Tensor:
    """1 inside radius ``(n-1)/2 - 6``, a cosine taper to 0 at ``(n-1)/2 - 1``."""
    outer = (n - 1) / 2 - 1
    t = ((outer - _radius(n)) / 5).clamp(0, 1)
    return torch.sin(0.5 * math.pi * t) ** 2


def volume(n: int, seed: int) -> torch.Tensor:
    """The seed's input, ``(1, 1, n, n, n)`` float32."""
    g = torch.Generator().manual_seed(1000 + seed)
    x = smooth(torch.randn(1, 1, n, n, n, generator=g, dtype=torch.float64), SIGMA)
    w = window(n)
    x = x / x[..., w > 0.5].std()
    return (x * w).float()


def _rel(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None) -> float:
    d, r = (a - b).double(), b.double()
    if mask is not None:
        d, r = d * mask, r * mask
    return float(d.norm() / r.norm())


def measure(model: nn.Module, x: torch.Tensor, rotations: list) -> dict:
    """Off-grid error and floors (worst over ``rotations``), and the worst cube error."""
    from equilayers.groups import FieldType, get

    n = x.shape[-1]
    mask = (_radius(n) <= (n - 1) / 2 - 1).double()
    scalar = FieldType.trivial("so3")
    out: dict = {"off_grid": 0.0, "floor_identity": 0.0, "floor_output": 0.0, "cube": 0.0}
    with torch.no_grad():
        y = model(x)
        for g in rotations:
            gy = model.act(g, y)
            out["off_grid"] = max(out["off_grid"], _rel(model(scalar.act(g, x)), gy, mask))
            back = model.act(g.inverse(), gy)
            out["floor_output"] = max(out["floor_output"], _rel(back, y, mask))
            xb = scalar.act(g.inverse(), scalar.act(g, x))
            out["floor_identity"] = max(out["floor_identity"], _rel(xb, x, mask))
        for g in get("so3").grid_elements()[1:]:
            out["cube"] = max(out["cube"],
                              _rel(model(scalar.act(g, x)), model.act(g, y), None))
    return out


def rows(name_filter: str = "") -> list[Row]:
    libs = [lib for lib in LIBRARIES
            if lib != "escnn" or importlib.util.find_spec("escnn") is not None]
    out = [Row(nl, order, k, lib) for nl, order, k in STACKS for lib in libs]
    return [r for r in out if name_filter in r.label]


KEYS = ("off_grid", "floor_identity", "floor_output", "cube")


def run(quick: bool, out, seeds: int | None = None, progress: bool = True,
        name_filter: str = "") -> list[dict]:
    """Measure every (stack, library) row for every seed; write
    ``cpu-equivariance3d[-quick].{json,md}`` (it makes its own volumes: no ``--data``)."""
    from equilayers.groups import get

    seeds = seeds if seeds is not None else (1 if quick else 3)
    n = QUICK_SIZE if quick else SIZE
    n_rot = 2 if quick else ROTATIONS
    table = rows(name_filter)
    if quick:
        first = (table[0].nonlinearity, table[0].order, table[0].kernel) if table else None
        table = [r for r in table if (r.nonlinearity, r.order, r.kernel) == first]
    if not table:
        raise UsageError(f"--filter {name_filter!r} names no row of {[r.label for r in rows()]}")
    so3 = get("so3")

    def one(r: Row, seed: int, tick) -> dict:
        t = time.perf_counter()
        model = BUILDERS[r.library](r.nonlinearity, r.order, r.kernel).eval()
        gen = torch.Generator().manual_seed(seed)
        rotations = [so3.random_element(gen) for _ in range(n_rot)]
        res = measure(model, volume(n, seed), rotations)
        res["params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        res["seconds"] = time.perf_counter() - t
        tick()
        return res

    def summarize(r: Row, per_seed: list[dict]) -> dict:
        row = {"stack": f"{r.nonlinearity} L={r.order} k={r.kernel}", "library": r.library,
               "params": per_seed[-1]["params"], "per_seed": per_seed}
        for k in ("off_grid", "floor_identity", "floor_output"):
            row[k] = statistics.mean(p[k] for p in per_seed)
        row["cube"] = max(p["cube"] for p in per_seed)
        return row

    results = run_study(table, range(seeds), one, summarize, label=lambda r: r.label,
                        steps_per_run=1, progress=progress)
    meta = _meta(quick, seeds, n, n_rot)
    write_study(out, "cpu-equivariance3d" + ("-quick" if quick else ""), meta, results,
                markdown, name_filter=name_filter)
    return results


def _meta(quick: bool, seeds: int, n: int, n_rot: int) -> dict:
    import datetime
    import platform

    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "quick": quick, "seeds": seeds, "size": n,
            "rotations": n_rot, "sigma": SIGMA, "fields": FIELDS}
    if importlib.util.find_spec("escnn") is not None:
        from importlib.metadata import version
        meta["escnn"] = version("escnn")
    return meta


def markdown(meta: dict, results: list[dict]) -> str:
    lines = [
        "# SO(3) steerable stacks: equivariance error, equilayers and escnn",
        "",
        run_line(meta) + (f", escnn {meta['escnn']}" if meta.get("escnn") else ", no escnn")
        + f". Three convolutions of {meta['fields']} fields of orders 0..L (`padding=k//2`), "
        "a nonlinearity after the first two, each library's own init; float32. Input: "
        f"Gaussian noise smoothed with sigma {meta['sigma']:g} voxels on a {meta['size']}^3 "
        "grid, unit std, inside a tapered ball. `off-grid`: relative error `|f(gx) - g f(x)| "
        f"/ |g f(x)|` inside the inscribed ball, worst of {meta['rotations']} uniformly "
        "random rotations (trilinear) per seed, mean over "
        f"{meta['seeds']} seed(s) (per seed in brackets); `floor`: the identity map's error "
        "(the input rotated forth and back) and the stack output's; `cube`: worst over the "
        "cube's 24 exact rotations and the seeds. No training; errors are not timing-"
        "sensitive.",
        "",
        "| stack | library | params | off-grid | per seed | floor (identity) "
        "| floor (output) | cube |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in results:
        per = ", ".join(f"{p['off_grid']:.4f}" for p in r["per_seed"])
        lines.append(f"| {r['stack']} | {r['library']} | {r['params']:,} | {r['off_grid']:.4f} "
                     f"| {per} | {r['floor_identity']:.4f} | {r['floor_output']:.4f} "
                     f"| {r['cube']:.2g} |")
    return "\n".join(lines) + "\n"
