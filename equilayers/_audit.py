"""``equilayers audit FILE.py:FACTORY``: measure a model's equivariance, layer by layer."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import torch
from torch import nn

from . import metrics
from ._grid import check_grid
from .groups import fractional_shift, gaussian_smooth, get, rotate

__all__ = ["load_factory", "parse_shape", "audit", "invariance_curves"]


def load_factory(spec: str) -> nn.Module:
    """Build the model from ``"path/to/file.py:FACTORY"`` (``FACTORY()`` returns a module)."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        raise ValueError(f"expected FILE.py:FACTORY (e.g. model.py:build); got {spec!r}")
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"model file {str(file)!r} does not exist")
    mod_spec = importlib.util.spec_from_file_location(f"_equilayers_audit_{file.stem}", file)
    if mod_spec is None or mod_spec.loader is None:
        raise ValueError(f"cannot import {str(file)!r} as a Python module")
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ValueError(f"{str(file)!r} has no callable {name!r}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise ValueError(f"{name}() must return an nn.Module; got {type(model).__name__}")
    return model


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) < 3 or any(v < 1 for v in shape):
        raise ValueError(f"--input-shape must be comma-separated positive ints such as "
                         f"1,3,64,64; got {text!r}")
    return shape


def _rel_change(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.to(torch.float64), b.to(torch.float64)
    return float((a - b).norm() / max(a.norm().item(), b.norm().item(), 1e-300))


def invariance_curves(model: nn.Module, x: torch.Tensor, *, angles: int = 37,
                      shifts: int = 17, max_shift: float = 2.0) -> dict[str, list[float]]:
    """Relative change ``||f(T x) - f(x)|| / ||f(x)||`` of the output against the rotation
    angle (degrees, bilinear :func:`~equilayers.groups.rotate` of a smoothed input) and
    against a horizontal sub-pixel shift (:func:`~equilayers.groups.fractional_shift`)."""
    xs = gaussian_smooth(x, 1.0)
    degs = [360.0 * i / (angles - 1) for i in range(angles)]
    offs = [max_shift * i / (shifts - 1) for i in range(shifts)]
    with torch.no_grad():
        y = model(xs)
        rot = [_rel_change(model(rotate(xs, math.radians(d))), y) for d in degs]
        sh = [_rel_change(model(fractional_shift(xs, (0.0, s))), y) for s in offs]
    return {"angle": degs, "rotation": rot, "shift": offs, "translation": sh}


def _require_matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("the plot needs matplotlib, an optional extra: "
                           "pip install 'equilayers[plot]' (or leave out --out)") from None
    return matplotlib


def _plot(curves: dict[str, list[float]], out: Path, title: str) -> None:
    matplotlib = _require_matplotlib()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(curves["angle"], curves["rotation"], marker=".")
    a.set_xlabel("rotation angle (degrees)")
    a.set_ylabel("relative change of the output")
    a.set_xticks(range(0, 361, 90))
    a.set_title("invariance to rotation")
    b.plot(curves["shift"], curves["translation"], marker=".")
    b.set_xlabel("horizontal shift (pixels, Fourier)")
    b.set_title("invariance to sub-pixel shift")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _fmt(v: float) -> str:
    return "n/a" if v != v else f"{v:.2e}"


def _print_table(title: str, head: list[str], rows: list[list[str]], file) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        line = "  ".join("{:<" + str(w) + "}" for w in widths)
        print(title, file=file)
        print(line.format(*head), file=file)
        print(line.format(*("-" * w for w in widths)), file=file)
        for r in rows:
            print(line.format(*r), file=file)
        return
    table = Table(title=title)
    for h in head:
        table.add_column(h)
    for r in rows:
        table.add_row(*r)
    Console(file=file, width=160).print(table)


def audit(spec: str, input_shape: str, group: str = "p4", out: str | None = None,
          seed: int = 0, file=None) -> int:
    """Run the audit and print its report; returns a process exit code."""
    file = file or sys.stdout
    shape = parse_shape(input_shape)
    grp = get(group)
    if out is not None:
        _require_matplotlib()  # fail before measuring, not after
    model = load_factory(spec).eval()
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    device = p.device if p is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    print(f"equilayers audit: {spec}  input {tuple(shape)}  group {grp.name}  dtype {dtype}",
          file=file)

    rot_rows = metrics.layerwise_equivariance(model, x, grp)
    shift_rows = metrics.layerwise_shift_equivariance(model, x)
    rows = []
    for r, s in zip(rot_rows, shift_rows, strict=True):
        lost = ", ".join(w for w, row in (("group", r), ("shift", s)) if row.lost)
        rows.append([r.name, r.kind, "x".join(map(str, r.shape)), r.rep,
                     _fmt(r.error), r.worst if r.error == r.error else r.note,
                     _fmt(s.error), s.worst if s.error == s.error else s.note,
                     f"<- lost ({lost})" if lost else ""])
    _print_table("Per-layer relative equivariance error (float64 norms)",
                 ["layer", "type", "output", "rep", f"{grp.name} error", "worst",
                  "shift error", "worst shift", ""], rows, file)

    with torch.no_grad():
        y = model(x)
    model_rows = [["invariance_error", grp.name, _fmt(metrics.invariance_error(model, x, grp))]]
    if isinstance(y, torch.Tensor) and y.dim() == 2:
        transforms = ["circular_shift", "fractional_shift", "rot90", "rotate"]
        if grp.has_reflections:
            transforms.append("flip")
        for t in transforms:
            if t == "rot90" and shape[-1] != shape[-2]:
                continue
            c = metrics.consistency(model, x, t, pairs=8, generator=gen)
            model_rows.append(["consistency", t, f"{c:.3f}"])
    else:
        model_rows.append(["consistency", "-", "n/a (the output is not (B, K) logits)"])
    _print_table("Whole model", ["metric", "transform", "value"], model_rows, file)

    findings = check_grid(model, shape, grp)
    if findings:
        print(f"check_grid: {len(findings)} finding(s) at this input size:", file=file)
        for f in findings:
            print(f"  - {f}", file=file)
    else:
        print("check_grid: no findings (the grid allows exact equivariance)", file=file)

    if out is not None:
        curves = invariance_curves(model, x)
        _plot(curves, Path(out), f"{Path(spec.rpartition(':')[0]).name}: "
                                 f"{spec.rpartition(':')[2]}  {tuple(shape)}")
        print(f"plot written to {out}", file=file)
    return 0
