"""``check_grid``'s size search, shared by the 2-D and 3-D checks (``_grid.py``,
``_grid3d.py``): the nearest larger input size at which check_grid finds nothing that the size
decides (a stride's parity; the asymmetric padding of a layer that pads itself, an even blur
pool, or of a ``ceil_mode`` window; an upsampling's size) and nothing the given size did not
find, named as the fix of the findings a size can fix."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from ._grid import Finding
from ._grid_runs import SIZED_PADDING_FIX, sized_fix

__all__ = ["size_fixable", "with_size_fix"]


def size_fixable(f: Finding) -> bool:
    """Whether an input size can remove ``f``: a stride's parity, or an asymmetric padding the
    size decides (``_grid_runs.sized_fix``: an even blur's built-in one, a ``ceil_mode``
    window's). A conv's ``padding='same'`` with an even kernel or an asymmetric pad module is
    asymmetric at every size: its fix is a padding."""
    return f.problem == "stride-parity" or (
        f.problem == "asymmetric-padding" and sized_fix(f.fix))


def _size_decided(f: Finding) -> bool:
    """Whether the input size decides ``f`` (:func:`size_fixable`, an upsampling's size, any
    finding whose fix is a ``ceil_mode`` window's): a suggested size must have none."""
    return size_fixable(f) or f.problem == "upsample-size" or sized_fix(f.fix)


def with_size_fix(layer: list[Finding], shape: Sequence[int], moved: Sequence[int],
                  trial: Callable[[tuple[int, ...]], list[Finding]], search: int
                  ) -> list[Finding]:
    """``layer`` with ``"use an input size of N"`` as the fix of every
    :func:`size_fixable` finding, ``N`` the first larger size (the last ``len(moved)`` dims
    of ``shape``, those whose flag in ``moved`` is set grown together, up to ``search``)
    whose ``trial`` findings (check_grid's own, the same checks as ``layer``'s) hold none
    that the size decides and none that ``layer`` lacks (same layer, problem and what it
    breaks): where ``layer`` is all size-fixable, check_grid finds nothing at ``N``. (The
    trial was the window grid law alone: an even blur whose asymmetric padding hides its
    parity, a ``ceil_mode`` window, an upsampling's size were accepted so, at sizes measured
    inexact.) Where none is found, a built-in asymmetric padding's fix is an odd blur size;
    the other findings keep theirs."""
    if not any(size_fixable(f) for f in layer):
        return layer
    nd = len(moved)
    spatial = tuple(shape[-nd:])
    kept = {(f.layer, f.problem, f.breaks) for f in layer if not _size_decided(f)}
    for extra in range(1, search + 1):
        cand = (*shape[:-nd], *(n + extra if on else n for n, on in zip(spatial, moved,
                                                                         strict=True)))
        try:
            found = trial(cand)
        except Exception:  # the model may only accept some sizes (a Linear after Flatten)
            continue
        if all(not _size_decided(f) and (f.layer, f.problem, f.breaks) in kept for f in found):
            better = cand[-nd:]
            text = str(better[0]) if len(set(better)) == 1 else "x".join(map(str, better))
            return [dataclasses.replace(f, fix=f"use an input size of {text}" + (
                "" if f.fix == SIZED_PADDING_FIX or not sized_fix(f.fix) else
                ", or ceil_mode=False and circular padding before it"))
                    if size_fixable(f) else f for f in layer]
    return [dataclasses.replace(f, fix=f"an odd blur size (no input size up to {search} pixels "
                                "larger makes its windows reach as far past both ends: at "
                                "stride 1 none does)") if f.fix == SIZED_PADDING_FIX else f
            for f in layer]
