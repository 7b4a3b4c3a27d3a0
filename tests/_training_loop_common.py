"""Shared by the training-loop matrix (``tests/test_training_loop*.py``): the zoo's names, a zoo
module and its inputs in float64, a fresh copy loaded from its state dict, its eval output, and
the comparison."""

from __future__ import annotations

import torch
from _zoo import ZOO, build
from torch import nn

NAMES = sorted(ZOO)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _double_args(args):
    return tuple(a.double() if a.is_floating_point() else a for a in args)


def _model(name: str, seed: int = 0):
    """The zoo module in float64 (exact comparisons) and its float64 inputs."""
    m, args = build(name, seed)
    return m.double(), _double_args(args)


def _fresh(name: str, m: nn.Module) -> nn.Module:
    """A new instance of the same zoo entry (other random weights), loaded from ``m``."""
    other = ZOO[name].make().double()
    other.load_state_dict(m.state_dict())
    return other.train(m.training)


def _same(a, b, rtol=1e-12, atol=1e-12):
    torch.testing.assert_close(_first(a), _first(b), rtol=rtol, atol=atol)


def _eval_out(m, args):
    # eval() drops a group conv's kept eval filter (train(False) drops it): switch only from
    # train mode, so a model already in eval mode answers from its warm entry, which is what
    # the tests that change it between two eval calls must check
    if m.training:
        m.eval()
    with torch.no_grad():
        return m(*args)
