"""Argument and input checks shared by every layer: one definition and one message format,
``"<what>: <arg>=<value> must be ...; <fix>"``.

Wrong types (``None``, a float or a bool where an int goes, a string where a number goes)
raise ``TypeError``; wrong values raise ``ValueError``. Tensors that are not floating point
raise ``TypeError`` naming the dtype and the fix. This module imports only torch, so every
layer of the package (``groups``, ``functional``, ``kernels``, ``nn``, ``metrics``) can use it.
"""

from __future__ import annotations

import inspect

import torch

from ._base import *  # noqa: F403 (the package is the one namespace: C.check_int, ...)
from ._base import _err
from ._conv import *  # noqa: F403

__all__: list[str] = []

#: Whether this torch's ``nn.BatchNorm*d`` take ``bias=`` (torch 2.12 and later; before, an
#: affine batch norm always has a bias). The one feature test of it: torch releases are named
#: in pyproject.toml's ``torch>=`` floor, not sniffed here.
BATCH_NORM_TAKES_BIAS = "bias" in inspect.signature(torch.nn.BatchNorm3d.__init__).parameters


def batch_norm_bias(bias: bool, affine: bool, what: str) -> dict[str, bool]:
    """The keyword arguments that make an ``nn.BatchNorm*d`` (or a subclass) have a bias iff
    ``affine and bias``: none where torch's default already does (``bias=True``, or no affine
    parameters at all), ``{"bias": False}`` where torch takes it, else ``TypeError``."""
    if bias or not affine:
        return {}
    if not BATCH_NORM_TAKES_BIAS:
        raise _err(TypeError, what, "bias", False,
                   f"True with affine=True on torch {torch.__version__} (nn.BatchNorm3d takes "
                   "bias= from torch 2.12 on)", "upgrade torch to 2.12 or later, or keep "
                   "bias=True (or affine=False, which has neither weight nor bias)")
    return {"bias": False}
