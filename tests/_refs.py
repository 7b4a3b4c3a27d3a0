"""Shared by the kernel and fast-path tests: the specifications they compare against (the
functional ops with ``equilayers.kernels.use_reference()`` forced: their pure-PyTorch
references), and where the Triton kernels can run (the ``interpret`` fixture is in conftest)."""

import os

import pytest
import torch

from equilayers import functional as EF
from equilayers import kernels

ON_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if ON_CUDA else "cpu"
CAN_RUN = kernels.triton_available() and (ON_CUDA or os.environ.get("TRITON_INTERPRET") == "1")
# the reason names what is missing here: triton itself, or (triton installed, no CUDA) the
# interpreter switch that `make test` sets
_WHY = ("triton is not installed (pip install triton); on CPU the kernel tests also need "
        "TRITON_INTERPRET=1" if not kernels.triton_available() else
        "no CUDA here and TRITON_INTERPRET=1 is not set: the kernel tests run on CPU through "
        "Triton's interpreter with TRITON_INTERPRET=1 pytest tests/test_kernels*.py (as "
        "`make test` does)")
needs_triton = pytest.mark.skipif(not CAN_RUN, reason=_WHY)


def ref_blur(x, kernel_size=3, stride=2, padding_mode="reflect"):
    with kernels.use_reference():
        return EF.blur_pool2d(x, kernel_size, stride, padding_mode)


def ref_max_blur(x, kernel_size=2, stride=2, blur_size=3, padding_mode="reflect", padding=0):
    """The reference of ``max_blur_pool2d`` in the kernels' argument order and defaults
    (``kernels.triton_max_blur_pool2d``'s)."""
    with kernels.use_reference():
        return EF.max_blur_pool2d(x, kernel_size, stride, padding, blur_size=blur_size,
                                  padding_mode=padding_mode)


def ref_poly(x, stride=2, **kw):
    with kernels.use_reference():
        return EF.polyphase_pool2d(x, stride, **kw)
