"""``equilayers audit FILE.py:FACTORY``: measure a model's equivariance, layer by layer."""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from . import metrics
from ._grid import check_grid
from ._table import print_table, table_width, terminal_width, wrap
from .groups import fractional_shift, gaussian_smooth, get, rotate
from .metrics._consistency import Transform, _fiber_moves
from .testing._fields import declared_type

__all__ = ["load_factory", "parse_shape", "audit", "invariance_curves", "check_plot_path"]

SMOOTH = 1.0  # sigma in pixels of the Gaussian smoothing of the plot's inputs


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
    # the file's folder first on sys.path while it loads, as `python FILE.py` has it: a model
    # file that imports its neighbours (from blocks import Block) failed with
    # ModuleNotFoundError unless run from its folder
    folder = str(file.resolve().parent)
    sys.path.insert(0, folder)
    try:
        try:
            mod_spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - any failure of the user's file, named so
            raise ValueError(f"importing {str(file)!r} failed: {_failure(exc, file)}") from exc
        factory = getattr(module, name, None)
        if not callable(factory):
            raise ValueError(f"{str(file)!r} has no callable {name!r}")
        model = _call_factory(factory, name, file)
    finally:
        if folder in sys.path:  # the first match: the entry put there above
            sys.path.remove(folder)
    if not isinstance(model, nn.Module):
        raise ValueError(f"{name}() must return an nn.Module; got {type(model).__name__}")
    return model


def _call_factory(factory, name: str, file: Path):
    try:
        return factory()
    except Exception as exc:  # noqa: BLE001 - any failure of the user's factory
        hint = (" (audit calls it with no arguments; it must return the nn.Module)"
                if isinstance(exc, TypeError) else "")
        raise ValueError(f"{name}() of {str(file)!r} failed: {_failure(exc, file)}{hint}"
                         ) from exc


def _failure(exc: Exception, file: Path) -> str:
    """``TYPE: message``, and the line of ``file`` the error came from (its innermost frame
    there; a SyntaxError names its line itself)."""
    text = f"{type(exc).__name__}: {exc}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if Path(f.filename).resolve() == file.resolve()]
    if frames and not isinstance(exc, SyntaxError):
        text += f" (at {file.name}, line {frames[-1].lineno})"
    return text


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(v < 1 for v in shape):
        raise ValueError(f"--input-shape must be comma-separated positive ints such as "
                         f"1,3,64,64; got {text!r}")
    if len(shape) < 4:  # a 1-D model got a raw torch channel error from the audit's steps
        raise ValueError(f"--input-shape {text!r} has {len(shape)} number(s): the audit "
                         f"rotates and shifts an image or volume batch, so it needs at least 4 "
                         f"(B,C,H,W such as 1,3,64,64; B,C,D,H,W for volumes); 1-D models "
                         f"(B,C,L) cannot be audited")
    return shape


def _rel_change(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.to(torch.float64), b.to(torch.float64)
    return float((a - b).norm() / max(a.norm().item(), b.norm().item(), 1e-300))


def invariance_curves(model: nn.Module, x: torch.Tensor, *, angles: int = 37,
                      shifts: int = 17, max_shift: float = 2.0) -> dict[str, list[float]]:
    """Relative change ``||f(T x) - f(x)|| / ||f(x)||`` of the output against the rotation
    angle (degrees, bilinear :func:`~equilayers.groups.rotate` of a smoothed input) and
    against a horizontal sub-pixel shift (:func:`~equilayers.groups.fractional_shift`).
    The rotation curve is all NaN for a model whose declared input type has a fiber (a
    group feature map): a pixel rotation would not move its fibers (see :func:`skipped`)."""
    xs = gaussian_smooth(x, SMOOTH)
    degs = [360.0 * i / (angles - 1) for i in range(angles)]
    offs = [max_shift * i / (shifts - 1) for i in range(shifts)]
    with torch.no_grad():
        y = model(xs)
        rot = ([math.nan] * len(degs) if skipped(model, "rotate") else
               [_rel_change(model(rotate(xs, math.radians(d))), y) for d in degs])
        sh = [_rel_change(model(fractional_shift(xs, (0.0, s))), y) for s in offs]
    return {"angle": degs, "rotation": rot, "shift": offs, "translation": sh}


def skipped(model: nn.Module, transform: str) -> str | None:
    """Why ``transform`` does not apply to the model's declared input type (a group feature
    map: a pixel rotation by any angle would not move its fibers; a flip outside its group),
    or None where it applies (images, translations)."""
    try:
        _fiber_moves(model, transform)
    except ValueError:
        t = declared_type(model, "in")
        return (f"the model's declared input type {t!r} is a group feature map, whose fibers a "
                f"pixel rotation by an arbitrary angle does not move" if transform == "rotate"
                else f"{transform} is not an element of the group of the model's declared "
                     f"input type {t!r}")
    return None


_PLANAR = {"rot90": " about depth axis", "rotate": " about depth axis",
           "flip": " about depth axis", "circular_shift": " in H, W",
           "fractional_shift": " in H, W"}  # what consistency does to a volume


def _volume_guess(model: nn.Module, shape: tuple[int, ...], grp) -> str:
    """Refuse a planar group on a model whose declared input type is a volume; for an
    undeclared 5-D input under a planar group, the line that says how it is taken (a plain
    Conv3d model's (B, C, D, H, W) with D = |G| was labelled a regular map in silence)."""
    if grp.spatial_dim != 2 or len(shape) < 5:
        return ""
    declared = declared_type(model, "in")
    if getattr(declared, "spatial_dims", 2) == 3:
        raise ValueError(f"--group {grp.name} is a planar group, but the model's declared "
                         f"input type {declared!r} is a volume: audit it with a group of "
                         f"volumes (--group o, oh, so3, ...)")
    if declared is not None:
        return ""
    as_what = (f"a regular {grp.name} feature map (B, C, F, H, W), its F = {shape[2]} = "
               f"|{grp.name}| slots permuted" if shape[2] == grp.order else
               f"a {grp.name} feature map (B, C, F, H, W) with F = {shape[2]} slots")
    return (f"note: the model declares no in_type, so its 5-D input is taken as {as_what}; "
            f"if it is a volume (B, C, D, H, W), audit it with a group of volumes "
            f"(--group o, oh, so3, ...)")


def _require_matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("the plot needs matplotlib, an optional extra: "
                           "pip install 'equilayers[plot]' (or leave out --out)") from None
    return matplotlib


def check_plot_path(out: Path, flag: str = "--out", name: str = "audit.png") -> None:
    """Raise before measuring on an ``--out`` the plot cannot be written to: without a suffix
    matplotlib wrote ``OUT.png`` while the report named ``OUT``; a suffix it does not know
    failed after the measurements; a folder at a file's place was a traceback; a folder (or
    file) that is not writable failed in ``savefig``. ``flag``: the
    option named (the examples' ``--plot``); ``name``: the file suggested in a folder."""
    from matplotlib.backend_bases import FigureCanvasBase

    # (pgf needs a LaTeX install: it failed in savefig, after the measurements)
    formats = {f: d for f, d in FigureCanvasBase.get_supported_filetypes().items() if f != "pgf"}
    suffix = out.suffix[1:].lower()
    if out.is_dir() or suffix not in formats:
        what, like = (("is a folder", out / name) if out.is_dir() else
                      ("has no file suffix" if not suffix else
                       f"has the suffix .{suffix}, not an image format", out.with_suffix(".png")))
        raise ValueError(f"{flag} {str(out)!r} {what}: name the plot's file with its format, "
                         f"e.g. {str(like)!r} (formats: {', '.join(sorted(formats))})")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{flag} {str(out)!r}: cannot make its folder {str(out.parent)!r} "
                         f"({exc.strerror or exc}); pass a path you can write to") from None
    # a folder or file it cannot write failed in savefig, after all the measurements
    where = out if out.exists() else out.parent
    if not os.access(where, os.W_OK):
        what = "the file" if where == out else "its folder"
        raise ValueError(f"{flag} {str(out)!r}: {what} {str(where)!r} is not writable; pass a "
                         f"path you can write to") from None


def _plot(curves: dict[str, list[float]], out: Path, title: str) -> None:
    matplotlib = _require_matplotlib()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.9))
    if all(v != v for v in curves["rotation"]):  # left out (invariance_curves says why)
        a.text(0.5, 0.5, "left out: a pixel rotation does not\nmove this input's fibers",
               ha="center", va="center", transform=a.transAxes)
    else:
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
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _fmt(v: float) -> str:
    return "n/a" if v != v else f"{v:.2e}"


_EXACT = ("rot90", "flip")  # finite and small: every pair of copies, not random ones
PAIRS = 8


def _inputs(shape: tuple[int, ...], batch: int, seed: int, dtype: torch.dtype,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    """The per-layer input (``shape``) and the whole-model batch (``batch`` inputs whose first
    ones are the per-layer input), both N(0, 1) noise drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    if batch > shape[0]:
        more = torch.randn((batch - shape[0], *shape[1:]), generator=gen, dtype=torch.float64)
        xb = torch.cat([x, more])
    else:
        xb = x[:batch]
    return x.to(dtype=dtype, device=device), xb.to(dtype=dtype, device=device), gen


def _layer_table(rot_rows: list, shift_rows: list, group: str, on: str, file,
                 width: int) -> None:
    """The per-layer table; a note that explains a row's n/a goes under the table, and a table
    wider than ``width`` splits into a group table and a shift table."""
    notes: list[str] = []

    def cells(row) -> list[str]:
        if row.error == row.error:
            return [_fmt(row.error), row.worst]
        if row.note not in notes:
            notes.append(row.note)
        return [f"n/a [{notes.index(row.note) + 1}]", "-"]

    title = f"Per-layer relative equivariance error (float64 norms), {on}"
    head = ["layer", "type", "output", "rep", f"{group} error", "worst", "shift error",
            "worst shift", ""]
    rows = []
    for r, s in zip(rot_rows, shift_rows, strict=True):
        lost = ", ".join(w for w, row in (("group", r), ("shift", s)) if row.lost)
        rows.append([r.name, r.kind, "x".join(map(str, r.shape)), r.rep, *cells(r), *cells(s),
                     f"<- lost ({lost})" if lost else ""])
    if table_width(head, rows) <= width:
        print_table(title, head, rows, file, width, keep=(4, 6))
    else:
        for k, (what, cols) in enumerate(((group, (0, 1, 2, 3, 4, 5)), ("shift", (0, 1, 6, 7)))):
            if k:
                print(file=file)
            flag = [f"<- lost ({what})" if r.lost else ""
                    for r in (rot_rows if what == group else shift_rows)]
            print_table(f"{title}: {what}", [head[c] for c in cols] + [""],
                        [[row[c] for c in cols] + [f] for row, f in zip(rows, flag, strict=True)],
                        file, width, keep=(4,) if what == group else (2,))
    for k, note in enumerate(notes, 1):
        print(wrap(note, width, f"  [{k}] "), file=file)


def audit(spec: str, input_shape: str, group: str = "p4", out: str | None = None,
          seed: int = 0, file=None, *, batch: int = 32, width: int | None = None) -> int:
    """Run the audit and print its report; returns a process exit code.

    The per-layer table runs on one input of ``input_shape``; the whole-model numbers and the
    plot on ``batch`` inputs (the first ones that same input), all N(0, 1) noise from ``seed``.
    The report fits ``width`` columns (default: the terminal's).
    """
    file = file or sys.stdout
    width = terminal_width(width)
    shape = parse_shape(input_shape)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"--batch must be a positive int (inputs for the whole-model "
                         f"numbers); got {batch!r}")
    grp = get(group)
    if out is not None:
        _require_matplotlib()  # fail before measuring, not after
        check_plot_path(Path(out))
    model = load_factory(spec).eval()
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    device = p.device if p is not None else torch.device("cpu")
    x, xb, gen = _inputs(shape, batch, seed, dtype, device)
    try:  # one plain call first, so a wrong --input-shape is named as such
        with torch.no_grad():
            y0 = model(x)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's model on this shape
        raise ValueError(f"the model fails on an input of shape {tuple(shape)} "
                         f"(--input-shape: the whole input shape, batch first, e.g. "
                         f"1,1,28,28 for one 28x28 grey image): {type(exc).__name__}: {exc}"
                         ) from exc
    if not isinstance(y0, torch.Tensor):  # it was invariance_error's TypeError traceback
        raise ValueError(f"the model returns a {type(y0).__name__}, not a tensor: audit "
                         f"measures one output; let the factory return a module whose forward "
                         f"picks it (e.g. model(x)[0])")
    guess = _volume_guess(model, shape, grp)
    # before the report: its refusals (a planar group on a Conv3d model) came after the tables
    findings = check_grid(model, shape, grp)
    size = "x".join(map(str, shape[1:]))
    source = f"N(0, 1) noise, seed {seed}"
    head = wrap(f"equilayers audit:\0{spec}  input {tuple(shape)}  group {grp.name}  "
                f"dtype {dtype}", width)  # \0: the command's name stays with the model's
    print(head.replace("\0", " "), file=file)
    print(wrap(f"inputs: {source}, {size} each (--seed); the per-layer table on "
               f"{_count(shape[0])}, the whole-model numbers"
               f"{' and the plot' if out is not None else ''} on {_count(batch)} (--batch)",
               width), file=file)
    if guess:
        print(wrap(guess, width), file=file)

    rot_rows = metrics.layerwise_equivariance(model, x, grp)
    shift_rows = metrics.layerwise_shift_equivariance(model, x,
                                                      spatial_dims=grp.spatial_dim)
    print(file=file)
    _layer_table(rot_rows, shift_rows, grp.name, f"on {_count(shape[0])} ({source})", file,
                 width)
    print(wrap(f"{grp.name} error: {_grid_cover(grp)}", width, "  "), file=file)

    with torch.no_grad():
        y = model(xb)
    n = batch
    model_rows, notes = _invariance_rows(model, xb, grp)
    if isinstance(y, torch.Tensor) and y.dim() == 2:
        transforms: list[Transform] = ["circular_shift", "fractional_shift", "rot90",
                                               "rotate"]
        if grp.has_reflections:
            transforms.append("flip")
        if shape[-1] != shape[-2]:
            transforms.remove("rot90")
            notes.append(f"consistency under rot90 is left out: the {shape[-2]}x{shape[-1]} "
                         "input is not square (pass a square --input-shape to measure it).")
        for t in list(transforms):
            if (why := skipped(model, t)) is not None:
                transforms.remove(t)
                notes.append(f"consistency under {t} is left out: {why}.")
                continue
            pairs: int | Literal["all"] = "all" if t in _EXACT else PAIRS
            c = metrics.consistency(model, xb, t, pairs=pairs, generator=gen)
            label = t + (_PLANAR[t] if grp.spatial_dim == 3 else "")
            model_rows.append(["consistency", label, f"{c:.3f}", f"{_count(n)} x " + (
                "all pairs" if pairs == "all" else f"{PAIRS} random pairs")])
        classes = int(y.argmax(dim=1).unique().numel())
        model_rows.append(["top-1 classes", "-", f"{classes} of {y.shape[1]}", _count(n)])
        if grp.spatial_dim == 3:
            notes.append(f"consistency on volumes: rot90, rotate and flip turn or flip each "
                         f"volume about its depth axis only (the last two dims), and the shifts "
                         f"move it in H and W only: a few of {grp.name}'s elements, not all.")
        exact = " and ".join(t for t in _EXACT if t in transforms)
        notes.append(f"consistency: the share of pairs of transformed copies (t1 x, t2 x) "
                     f"given the same top-1 class (Zhang 2019), averaged over the {_count(n)}; "
                     f"{exact}: every pair of transforms, the others {PAIRS} random pairs.")
        if classes == 1:
            notes.append(f"all {_count(n)} get the same top-1 class, so a consistency of 1.000 "
                         f"says nothing here: audit a trained model, and check its accuracy on "
                         f"real data as well.")
    else:
        model_rows.append(["consistency", "-", "n/a (the output is not (B, K) logits)", "-"])
    print(file=file)
    print_table(f"Whole model, on {_count(batch)} ({source})",
                ["metric", "transform", "value", "over"], model_rows, file, width,
                keep=(0, 1, 2))
    for note in notes:
        print(wrap(note, width, "  "), file=file)

    print(file=file)
    if findings:
        print(wrap(f"check_grid: {len(findings)} finding(s) at this input size:", width),
              file=file)
        for f in findings:
            print(wrap(str(f), width, "  - "), file=file)
    else:
        print(wrap("check_grid: no findings (the grid allows exact equivariance)", width),
              file=file)

    if out is not None:
        curves = invariance_curves(model, xb)
        smoothed = f"{_count(batch)} ({source}), smoothed (Gaussian, sigma {SMOOTH:g} px)"
        _plot(curves, Path(out), f"{Path(spec.rpartition(':')[0]).name}: "
                                 f"{spec.rpartition(':')[2]}  {tuple(shape)}\non {smoothed}")
        at90 = curves["rotation"][curves["angle"].index(90.0)] if 90.0 in curves["angle"] \
            else float("nan")
        print(wrap(f"plot written to {out}: relative change of the output against rotation "
                   f"angle and sub-pixel shift, norms over {smoothed} (bilinear rotation of "
                   f"raw noise is mostly interpolation error), so its values differ from the "
                   f"tables' (at 90 degrees: {_fmt(at90)})", width), file=file)
        if grp.spatial_dim == 3:
            print(wrap("the plot on volumes: rotations about the depth axis only (the last "
                       "two dims), shifts along W", width, "  "), file=file)
        if (why := skipped(model, "rotate")) is not None:
            print(wrap(f"the plot's rotation curve is left out: {why}", width, "  "),
                  file=file)
    return 0


OFF_GRID = 16  # the whole model's off-grid angles of SO(2)/O(2): every 360/16 = 22.5 degrees


def _names(els: list) -> str:
    return ", ".join(map(repr, els[:8])) + (f", ... ({len(els)} in all)" if len(els) > 8 else "")


def _grid_cover(grp) -> str:
    """Which elements the per-layer table's group column covers (the grid elements)."""
    grid = grp.grid_elements()
    if grp.is_finite and len(grid) == len(grp.elements()):
        return f"over all {len(grid)} elements of {grp.name} ({_names(grid)}), exact"
    others = (f"its other {len(grp.elements()) - len(grid)} elements are measured in the "
              f"whole-model numbers only" if grp.is_finite else
              f"not a bound over {grp.name}'s other rotations")
    return (f"over the {len(grid)} grid elements of {grp.name} only ({_names(grid)}: the ones "
            f"that map the pixel grid onto itself); {others}")


def _invariance_rows(model: nn.Module, xb: torch.Tensor, grp) -> tuple[list, list[str]]:
    """The whole model's invariance_error row(s) and their notes, each saying which elements
    it covers: all elements of a finite group; the grid elements of SO(2)/O(2) and, in a
    second row, :data:`OFF_GRID` angles off the grid (a continuous group's grid elements
    alone are no bound over it); the grid elements only of SO(3)/O(3)."""
    n = len(xb)
    head = (f"invariance_error: the worst relative change ||f(g x) - f(x)|| / ||f(x)|| over "
            f"the elements g named, norms over all {_count(n)}")
    grid = grp.grid_elements()
    if grp.is_finite:
        els = grp.elements()
        err = metrics.invariance_error(model, xb, grp, elements=els)
        exact = len(grid) == len(els)
        rows = [["invariance_error", f"{grp.name}: all {len(els)}", _fmt(err), _count(n)]]
        how = ("exact actions" if exact else
               f"{len(grid)} on the grid, the others by bilinear interpolation, so the input "
               f"is smoothed first and the number is approximate")
        return rows, [f"{head}; {grp.name}: all {len(els)} elements ({_names(els)}; {how})."]
    err = metrics.invariance_error(model, xb, grp, elements=grid)
    rows = [["invariance_error", f"{grp.name}: {len(grid)} grid", _fmt(err), _count(n)]]
    note = (f"{head}; {grp.name}: {len(grid)} grid: its grid elements only ({_names(grid)}), "
            f"exact")
    if grp.spatial_dim != 2:
        return rows, [f"{note}; not a bound over {grp.name}, whose other rotations are not "
                      f"measured here."]
    step = 360.0 / OFF_GRID
    degs = [step * (k + 0.5) for k in range(OFF_GRID)]  # none a multiple of 90 degrees
    off = [g for r in (False, True)[:1 + grp.has_reflections]
           for g in grp.elements_at(degs, reflection=r)]
    err_off = metrics.invariance_error(model, xb, grp, elements=off)
    rows.append(["invariance_error", f"{grp.name}: {len(off)} off-grid", _fmt(err_off),
                 _count(n)])
    return rows, [f"{note}; {grp.name}: {len(off)} off-grid: rotations by {degs[0]:g}, "
                  f"{degs[1]:g}, ..., {degs[-1]:g} degrees (every {step:g}"
                  f"{', each with and without the flip' if grp.has_reflections else ''}), "
                  f"bilinear rotation of the smoothed input (approximate), a sample of "
                  f"{grp.name}, not a bound over it."]


def _count(n: int) -> str:
    return f"{n} input" + ("s" if n != 1 else "")
