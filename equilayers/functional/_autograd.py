"""When a functional may run its hand-written backward (an ``autograd.Function``) instead of
plain ops."""

from __future__ import annotations

import torch

from .. import _checks as C
from ..kernels._autodiff import transforms_active

__all__ = ["plain_autograd"]


def plain_autograd(x: torch.Tensor, *, autocast: bool = True) -> bool:
    """Whether plain eager autograd runs on ``x``: not under ``torch.func`` transforms or
    forward-mode AD (no ``jvp`` or batching rule is written), ``torch.compile`` (a compiler
    fuses the plain ops itself), tracing, nor (``autocast``) autocast on ``x``'s device.
    Elsewhere the hand-written backwards step aside for the same maths as plain ops."""
    return not (torch.compiler.is_compiling() or transforms_active() or torch.jit.is_tracing()
                or (autocast and C.autocast_on(x.device.type)))
