"""The once-per-module warning of layers whose sampling grid can break exact equivariance (group
convs, spatial pools of group maps), and a scoped switch that silences it without using it up.

A module warns the first time it sees an input size at which it is not exactly equivariant on
its grid subgroup, once per module. Tools that run a model only to inspect it
(:func:`equilayers.check_grid`) do so inside :func:`quiet_exactness_warnings`: nothing is
printed and nothing is recorded, so the model's own later forward at a bad size still warns.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from ..functional import _gconv as G
from ..groups import GroupLike, get

__all__ = ["quiet_exactness_warnings"]

_state = threading.local()


@contextlib.contextmanager
def quiet_exactness_warnings() -> Iterator[None]:
    """Inside the block no layer checks or warns about exactness, and none records that it
    did (the once-per-module warning stays armed for later forwards)."""
    depth = getattr(_state, "quiet", 0)
    _state.quiet = depth + 1
    try:
        yield
    finally:
        _state.quiet = depth


def _quiet() -> bool:
    return getattr(_state, "quiet", 0) > 0


class _WarnsInexact(nn.Module):
    """Mixin: ``self._warn_if_inexact(x, group, k, stride, pad, dilation)`` warns once per
    module at the first input size that breaks exactness on ``group``'s grid subgroup
    (``output_padding``: a transposed conv's, ``None`` for a conv or pool)."""

    _warned: bool = False

    def _warn_if_inexact(self, x: torch.Tensor, group: GroupLike, kernel_size: int, stride,
                         pad: tuple[int, int, int, int], dilation, label: str | None = None,
                         stacklevel: int = 5, output_padding=None) -> None:
        if self._warned or _quiet() or torch.compiler.is_compiling() or torch.jit.is_tracing():
            return
        size = (x.shape[-2], x.shape[-1])
        key = size if output_padding is None else (size, output_padding)
        exact = self.__dict__.setdefault("_exact_sizes", set())
        if key in exact:  # memo: the check costs ~20 us of Python per call
            return
        grp = get(group)
        problems = G.exactness_problems(grp, size, kernel_size, stride, pad, dilation,
                                        output_padding=output_padding)
        if not problems:
            exact.add(key)
            return
        self._warned = True
        sub = G.grid_subgroup(grp)
        what = ("" if sub == grp or label else
                f" even on its grid subgroup {sub.name} (its only elements that can be exact;"
                " other rotations are approximate in any case)")
        warnings.warn(f"{type(self).__name__} ({label or grp.name}) is not exactly equivariant"
                      f"{what} on input of size {size[0]}x{size[1]}: " + "; ".join(problems)
                      + " (warned once per module)", stacklevel=stacklevel)
