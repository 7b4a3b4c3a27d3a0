"""The shared case table's builds: each case builds the same module every time (same repr,
same parameter values and statistics): three builders popped the kernel size inside their
lambda, so every build after a process's first one had kernel size 3 (``lifting-k1`` tested
k=3, the cube groups' ``group-harmonic-k5-stride2`` k=3), and the learned-pool U-Nets drew the
Gumbel noise of their statistics-warming forward from the unseeded global RNG.

Every layer of the shared case table moved to the meta device (``model.to("meta")``, as for
shape inference or before ``to_empty``) runs a forward on a meta input and gives the shape of
its CPU forward. A group conv's integer tables stayed on the CPU beside its meta weight, and
the forward raised torch's "Cannot copy out of meta tensor; no data!" (217 of the 494 cases).

A meta forward also catches, on a machine without a GPU, a forward that builds a CPU tensor
and mixes it with its input (what failed five negative controls on CUDA, 2026-12-04): torch
refuses a CPU operand beside a meta one as it does beside a CUDA one.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from equilayers.testing.cases import all_cases

CASES = all_cases()


def _outputs(out) -> list[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else [o for o in out
                                                        if isinstance(o, torch.Tensor)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case_forward_on_meta_gives_the_cpu_shapes(case):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is not exactly equivariant",
                                category=UserWarning)
        x = case.make_input(0)
        with torch.no_grad():
            want = [o.shape for o in _outputs(case.build()(x))]
            f = case.build()  # moved before any forward (a forward first hid the failure)
            meta = f.to("meta") if isinstance(f, nn.Module) else f
            got = _outputs(meta(x.to("meta")))
    assert [o.shape for o in got] == want and all(o.is_meta for o in got)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case_builds_the_same_module_every_time(case):
    with warnings.catch_warnings():  # (a negative control's build runs at an inexact size)
        warnings.filterwarnings("ignore", message=".*is not exactly equivariant",
                                category=UserWarning)
        a, b = case.build(), case.build()
    if isinstance(a, nn.Module):  # (a function's repr is its address)
        assert repr(a) == repr(b)
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), case.name


def test_meta_forward_catches_a_cpu_tensor_built_in_forward():
    """Negative control: a module that builds its sign vector on the CPU (device= left out)
    fails on meta, as it fails on CUDA; built on the input's device it passes."""
    class Signs(nn.Module):
        def __init__(self, on_input_device: bool) -> None:
            super().__init__()
            self.on_input_device = on_input_device

        def forward(self, x):
            kw = {"device": x.device} if self.on_input_device else {}
            return x * torch.ones(x.shape[2], dtype=x.dtype, **kw).view(1, 1, -1, 1, 1)

    x = torch.randn(2, 3, 4, 5, 5, device="meta")
    assert Signs(True)(x).is_meta
    with pytest.raises(RuntimeError, match="device"):
        Signs(False)(x)
