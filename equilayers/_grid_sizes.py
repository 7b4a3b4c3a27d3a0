"""``check_grid``'s size search, shared by the 2-D and 3-D checks (``_grid.py``,
``_grid3d.py``): the nearest larger input size at which no layer's window grid breaks
exactness in a way the size decides, named as the fix of those findings (a stride's parity;
the asymmetric padding of a layer that pads itself, an even blur pool)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from ._grid import Finding
from ._grid_runs import SIZED_PADDING_FIX

__all__ = ["size_fixable", "with_size_fix"]


def size_fixable(f: Finding) -> bool:
    """Whether an input size can remove ``f``: a stride's parity, or a built-in asymmetric
    padding (``_grid_runs.SIZED_PADDING_FIX``). A conv's ``padding='same'`` with an even kernel or
    an asymmetric pad module is asymmetric at every size: its fix is a padding."""
    return f.problem == "stride-parity" or (
        f.problem == "asymmetric-padding" and f.fix == SIZED_PADDING_FIX)


def with_size_fix(layer: list[Finding], shape: Sequence[int], moved: Sequence[int],
                  trial: Callable[[tuple[int, ...]], list[Finding]], search: int
                  ) -> list[Finding]:
    """``layer`` with ``"use an input size of N"`` as the fix of every
    :func:`size_fixable` finding, ``N`` the first larger size (the last ``len(moved)`` dims
    of ``shape``, those whose flag in ``moved`` is set grown together, up to ``search``)
    whose ``trial`` findings (the window grid law alone, no shifts) hold none that a size can
    fix: not only no stride-parity finding (an even blur whose asymmetric padding hides its
    parity was accepted so, at sizes measured inexact). Where none is found, a built-in
    asymmetric padding's fix is an odd blur size; the other findings keep theirs."""
    if not any(size_fixable(f) for f in layer):
        return layer
    nd = len(moved)
    spatial = tuple(shape[-nd:])
    for extra in range(1, search + 1):
        cand = (*shape[:-nd], *(n + extra if on else n for n, on in zip(spatial, moved,
                                                                         strict=True)))
        try:
            found = trial(cand)
        except Exception:  # the model may only accept some sizes (a Linear after Flatten)
            continue
        if not any(size_fixable(f) for f in found):
            better = cand[-nd:]
            text = str(better[0]) if len(set(better)) == 1 else "x".join(map(str, better))
            return [dataclasses.replace(f, fix=f"use an input size of {text}")
                    if size_fixable(f) else f for f in layer]
    return [dataclasses.replace(f, fix=f"an odd blur size (no input size up to {search} pixels "
                                "larger makes its windows reach as far past both ends: at "
                                "stride 1 none does)") if f.fix == SIZED_PADDING_FIX else f
            for f in layer]
